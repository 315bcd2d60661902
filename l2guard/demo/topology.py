"""The demo's network: a client and two nodes, each a network namespace joined through a veth pair to one Linux
bridge (in a namespace of its own) with multicast snooping and an active querier, so that a speaker that forgets
to join a solicited-node group is not rescued by flooding (without an active querier the bridge floods multicast,
also during the first seconds after snooping is turned on).

Only documentation addresses (192.0.2.0/24, 2001:db8::/64) and only namespaces named `l2demo-*`, which this module
creates and deletes; it never touches the root namespace's links, addresses or sysctls. Every command is `ip` or
`sysctl` (run inside one of our namespaces) through subprocess, bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX = "l2demo-"
BRIDGE_NS = f"{PREFIX}br"
VIP4 = "192.0.2.100"
VIP6 = "2001:db8::100"
COMMAND_TIMEOUT = 10.0


class TopologyError(Exception):
    """An `ip` or `sysctl` command failed; the message is one line."""


def sh(argv: Sequence[str], *, check: bool = True) -> str:
    """Run a command without a shell and return its stdout; raise TopologyError with its stderr on failure."""
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TopologyError(f"{' '.join(argv)}: {exc}") from exc
    if check and res.returncode != 0:
        raise TopologyError(f"{' '.join(argv)}: {res.stderr.strip() or f'exit {res.returncode}'}")
    return res.stdout


@dataclass(frozen=True)
class Host:
    """One namespace on the bridge; its end of the veth is eth0."""

    name: str  # the node (or "client")
    mac: str
    ip4: str
    ip6: str
    port: str  # the veth end in the bridge namespace

    @property
    def ns(self) -> str:
        return PREFIX + self.name

    def cmd(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def neighbour(self, ip: str) -> tuple[str | None, str]:
        """(MAC or None, state) of this host's neighbour entry for `ip` on eth0."""
        words = sh(["ip", "-n", self.ns, "neigh", "show", ip, "dev", "eth0"], check=False).split()
        mac = words[words.index("lladdr") + 1] if "lladdr" in words else None
        return mac, (words[-1] if words else "none")

    def flush_neighbours(self) -> None:
        sh(["ip", "-n", self.ns, "neigh", "flush", "dev", "eth0"], check=False)


CLIENT = Host("client", "02:00:00:00:0d:01", "192.0.2.1", "2001:db8::1", "pclient")
NODES = (
    Host("cp-1", "02:00:00:00:0d:10", "192.0.2.10", "2001:db8::10", "pcp1"),
    Host("worker-1", "02:00:00:00:0d:11", "192.0.2.11", "2001:db8::11", "pworker1"),
)


def namespaces() -> list[str]:
    """The names of every `l2demo-*` namespace that exists now."""
    out = sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def remove_all() -> list[str]:
    """Kill what runs inside our namespaces (ours only: they are named l2demo-*) and delete them; returns their
    names. Used at the start (a crashed run's leftovers) and at every exit."""
    found = namespaces()
    for ns in found:
        for pid in sh(["ip", "netns", "pids", ns], check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)
    for ns in found:
        sh(["ip", "netns", "del", ns], check=False)
    return found


def _quiet_ipv6(ns: str) -> None:
    """No duplicate address detection (addresses usable at once) and no router solicitations in `ns`."""
    for conf in ("all", "default"):
        for key, value in (("accept_dad", "0"), ("dad_transmits", "0"), ("router_solicitations", "0")):
            sh(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.{key}={value}"])


def build() -> None:
    """The bridge namespace, the snooping bridge with a querier (queries every second, so that snooping is active
    within the demo's first second, not after the default 125 s), and the three hosts on it."""
    sh(["ip", "netns", "add", BRIDGE_NS])
    _quiet_ipv6(BRIDGE_NS)
    sh(["ip", "-n", BRIDGE_NS, "link", "set", "lo", "up"])
    sh(["ip", "-n", BRIDGE_NS, "link", "add", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_querier", "1",
        "mcast_query_interval", "100", "mcast_query_response_interval", "50",
        "mcast_startup_query_interval", "25", "mcast_startup_query_count", "2"])  # fmt: skip
    for host in (CLIENT, *NODES):
        sh(["ip", "netns", "add", host.ns])
        _quiet_ipv6(host.ns)
        sh(["ip", "-n", host.ns, "link", "set", "lo", "up"])
        sh(["ip", "-n", BRIDGE_NS, "link", "add", host.port, "type", "veth", "peer", "name", "eth0", "netns", host.ns])
        sh(["ip", "-n", host.ns, "link", "set", "eth0", "address", host.mac])
        sh(["ip", "-n", host.ns, "addr", "add", f"{host.ip4}/24", "dev", "eth0"])
        sh(["ip", "-n", host.ns, "addr", "add", f"{host.ip6}/64", "dev", "eth0", "nodad"])
        sh(["ip", "-n", BRIDGE_NS, "link", "set", host.port, "master", "br0"])
        sh(["ip", "-n", BRIDGE_NS, "link", "set", host.port, "up"])
        sh(["ip", "-n", host.ns, "link", "set", "eth0", "up"])
    sh(["ip", "-n", BRIDGE_NS, "link", "set", "br0", "up"])
    for host in NODES:
        serve_vips_on_lo(host)


def serve_vips_on_lo(host: Host) -> None:
    """The VIPs on the node's lo, as kube-proxy's IPVS mode has them: traffic to them is accepted, but the kernel
    never answers ARP for them (arp_ignore=1: only for addresses of the receiving interface; arp_announce=2) and
    answers Neighbor Solicitations only for addresses of the receiving interface, so only the speaker makes the
    client reach a node."""
    sh(["ip", "-n", host.ns, "addr", "add", f"{VIP4}/32", "dev", "lo"])
    sh(["ip", "-n", host.ns, "addr", "add", f"{VIP6}/128", "dev", "lo", "nodad"])
    for conf in ("all", "eth0"):
        sh(host.cmd(["sysctl", "-qw", f"net.ipv4.conf.{conf}.arp_ignore=1"]))
        sh(host.cmd(["sysctl", "-qw", f"net.ipv4.conf.{conf}.arp_announce=2"]))


def kill_node_link(host: Host) -> None:
    """The node dies, as far as the LAN can tell: its link goes down."""
    sh(["ip", "-n", host.ns, "link", "set", "eth0", "down"])
