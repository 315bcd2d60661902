"""Network-namespace topology for the speaker tests and benchmarks: a client, node-a and node-b on one
Linux bridge (in its own namespace) with MLD/IGMP snooping and an active querier.

Only documentation addresses are used (192.0.2.0/24, 2001:db8::/32). Every namespace gets a per-run
suffix and is deleted by ``Topology.destroy()`` (call it from a finalizer). This module runs real
commands (``ip``, ``sysctl``); it must not touch the root namespace's links or addresses.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
HELPER = str(Path(__file__).with_name("speaker_node.py"))

VIP4 = "192.0.2.100"
VIP6 = "2001:db8::100"


def sn_group(ip6: str) -> str:
    """Text form of the solicited-node group of ``ip6``."""
    import ipaddress

    from speaker.packets import solicited_node_address

    return str(ipaddress.IPv6Address(solicited_node_address(ipaddress.IPv6Address(ip6).packed)))


def sh(cmd: str | Sequence[str], *, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell), capture text output; raise with its stderr on failure if ``check``."""
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({res.returncode}): {res.stderr.strip()}")
    return res


@dataclass
class Host:
    """One namespace attached to the bridge through a veth whose inner end is called eth0."""

    ns: str
    mac: str
    ip4: str
    ip6: str
    port: str  # the veth end in the bridge namespace

    def cmd(self, argv: str | Sequence[str]) -> list[str]:
        rest = shlex.split(argv) if isinstance(argv, str) else list(argv)
        return ["ip", "netns", "exec", self.ns, *rest]

    def run(self, argv: str | Sequence[str], *, check: bool = True, timeout: float = 20.0) -> str:
        return sh(self.cmd(argv), check=check, timeout=timeout).stdout

    def neigh(self, ip: str) -> tuple[str | None, str]:
        """(lladdr or None, state text) of the client's neighbour entry for ``ip``."""
        out = sh(["ip", "-n", self.ns, "neigh", "show", ip, "dev", "eth0"], check=False).stdout.split()
        mac = out[out.index("lladdr") + 1] if "lladdr" in out else None
        return mac, (out[-1] if out else "NONE")

    def flush_neigh(self) -> None:
        sh(["ip", "-n", self.ns, "neigh", "flush", "dev", "eth0"], check=False)


@dataclass
class Topology:
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: dict[str, Host] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)

    @property
    def br(self) -> str:
        return f"l2br-{self.suffix}"

    @property
    def client(self) -> Host:
        return self.hosts["client"]

    @property
    def node_a(self) -> Host:
        return self.hosts["node-a"]

    @property
    def node_b(self) -> Host:
        return self.hosts["node-b"]

    @property
    def nodes(self) -> dict[str, Host]:
        """The node hosts by node name (node-a, node-b and, when built with three nodes, node-c)."""
        return {name: h for name, h in self.hosts.items() if name.startswith("node-")}

    def build(self, *, query_interval_cs: int = 100, nodes: int = 2) -> Topology:
        """Create the namespaces, the snooping bridge with an active querier, the client and `nodes` nodes (2 or
        3: node-a, node-b, node-c)."""
        sh(["ip", "netns", "add", self.br])
        self.created.append(self.br)
        self._quiet_ipv6(self.br)
        sh(["ip", "-n", self.br, "link", "set", "lo", "up"])
        sh(["ip", "-n", self.br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "1",
            "mcast_querier", "1", "mcast_query_interval", str(query_interval_cs),
            "mcast_query_response_interval", str(max(10, query_interval_cs // 2)),
            "mcast_startup_query_interval", str(max(10, query_interval_cs // 4)),
            "mcast_startup_query_count", "2", "mcast_stats_enabled", "1"])  # fmt: skip
        specs = [
            ("client", "02:00:00:00:0c:01", "192.0.2.1", "2001:db8::1", "pc"),
            ("node-a", "02:00:00:00:0a:01", "192.0.2.10", "2001:db8::a", "pa"),
            ("node-b", "02:00:00:00:0b:01", "192.0.2.11", "2001:db8::b", "pb"),
            ("node-c", "02:00:00:00:0d:01", "192.0.2.12", "2001:db8::d", "pd"),
        ][: 1 + nodes]
        for role, mac, ip4, ip6, port in specs:
            ns = f"l2{'c' if role == 'client' else 'n' + role[-1]}-{self.suffix}"
            sh(["ip", "netns", "add", ns])
            self.created.append(ns)
            self._quiet_ipv6(ns)
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            sh(
                [
                    "ip",
                    "-n",
                    self.br,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    ns,
                ]
            )
            sh(["ip", "-n", ns, "link", "set", "eth0", "address", mac])
            sh(["ip", "-n", ns, "addr", "add", f"{ip4}/24", "dev", "eth0"])
            sh(["ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad"])
            sh(["ip", "-n", self.br, "link", "set", port, "master", "br0"])
            sh(["ip", "-n", self.br, "link", "set", port, "up"])
            sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
            self.hosts[role] = Host(ns, mac, ip4, ip6, port)
        sh(["ip", "-n", self.br, "link", "set", "br0", "up"])
        return self

    @staticmethod
    def _quiet_ipv6(ns: str) -> None:
        """No DAD (addresses usable at once) and no router solicitations in ``ns``."""
        for conf in ("all", "default"):
            for key, value in (("accept_dad", "0"), ("router_solicitations", "0"), ("dad_transmits", "0")):
                sh(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.{key}={value}"])

    def mdb_ports(self, group: str) -> set[str]:
        """Bridge ports that the snooping bridge forwards ``group`` to (from `bridge mdb`)."""
        out = sh(["ip", "netns", "exec", self.br, "bridge", "mdb", "show", "dev", "br0"], check=False).stdout
        return {line.split()[3] for line in out.splitlines() if f" grp {group} " in f"{line} " and "port" in line}

    def destroy(self) -> None:
        for ns in reversed(self.created):
            pids = sh(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:  # only processes started inside our own namespaces
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh(["ip", "netns", "del", ns], check=False)
        self.created.clear()


def wait_for(predicate: object, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass; returns the last result's truth."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class NodeProc:
    """An announcer running in ``host``'s namespace (speaker_node.py), driven over stdin/stdout."""

    def __init__(self, host: Host, *extra: str, helper: str = HELPER) -> None:
        self.host = host
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            host.cmd([PYTHON, helper, *extra]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: list[dict[str, object]] = []
        self._buf = ""
        first = self._read_line(20.0)
        assert first.get("ready"), first

    def _read_line(self, timeout: float) -> dict[str, object]:
        import json
        import select

        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while "\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from announcer in {self.host.ns}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536).decode()
                if not chunk:
                    err = self.proc.stderr.read() if self.proc.stderr else ""
                    raise RuntimeError(f"announcer in {self.host.ns} exited: {err[-2000:]}")
                self._buf += chunk
        line, self._buf = self._buf.split("\n", 1)
        obj: dict[str, object] = json.loads(line)
        return obj

    def request(self, obj: dict[str, object], timeout: float = 15.0) -> dict[str, object]:
        import json

        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()
        while True:
            msg = self._read_line(timeout)
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def set(self, desired: dict[str, object]) -> dict[str, object]:
        return self.request({"cmd": "set", "desired": desired})

    def status(self) -> dict[str, object]:
        st = self.request({"cmd": "status"})["status"]
        assert isinstance(st, dict)
        return st

    def stop(self) -> dict[str, object]:
        reply = self.request({"cmd": "stop"})
        self.proc.wait(10)
        return reply

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


class Capture:
    """tcpdump in a namespace, writing a pcap file; ``stop()`` returns the frames (bytes, timestamp)."""

    def __init__(self, host: Host, path: Path, bpf_filter: str, *, iface: str = "eth0") -> None:
        self.path = path
        self.proc = subprocess.Popen(
            host.cmd(
                [
                    "tcpdump",
                    "-i",
                    iface,
                    "--immediate-mode",
                    "-U",
                    "-n",
                    "-s",
                    "256",
                    "-w",
                    str(path),
                    bpf_filter,
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # tcpdump prints "listening on ..." once the capture is armed.
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "listening" in line, line

    def stop(self) -> list[tuple[bytes, float]]:
        from scapy.utils import rdpcap

        time.sleep(0.1)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        frames = [(bytes(p), float(p.time)) for p in rdpcap(str(self.path))]
        self.path.unlink(missing_ok=True)
        return frames
