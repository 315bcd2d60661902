"""Which network interfaces the speaker may announce on: link scans, eligibility rules, link events.

Eligible for "all interfaces": up with carrier, BROADCAST, not loopback, not NOARP, not enslaved to a
bridge or bond, a 6-byte MAC, and a name that does not match the exclude regex (CNI and virtual
devices by default). An interface named explicitly by the control plane skips only the regex.

This module reads links through netlink (pyroute2 for dumps, a raw NETLINK_ROUTE socket for change
events). It must not open packet sockets, decide IP ownership or read Kubernetes.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_NOARP = 0x80
IFF_SLAVE = 0x800
IFF_LOWER_UP = 0x10000
RTMGRP_LINK = 0x1

DEFAULT_EXCLUDE = (
    r"^(cni|veth|flannel|cali|cilium|lxc|kube-ipvs|kube-bridge|kube-dummy|docker|vxlan|tunl|tun|tap|"
    r"virbr|genev|nodelocaldns|weave|vethwe|datapath|br-|wg|nerdctl|podman|ovs-|ovn|antrea|gre|gretap|"
    r"erspan|ip6tnl|ip6gre|sit|dummy|nlmon|ifb)"
)


@dataclass(frozen=True, slots=True)
class Link:
    """One network interface as the kernel reports it."""

    name: str
    index: int
    _: KW_ONLY
    flags: int
    mac: bytes
    master: int | None = None

    def usable(self) -> bool:
        """True when ARP/NDP on this link makes sense, regardless of its name."""
        f = self.flags
        return (
            f & IFF_UP != 0
            and f & IFF_LOWER_UP != 0
            and f & IFF_BROADCAST != 0
            and f & (IFF_LOOPBACK | IFF_NOARP | IFF_SLAVE) == 0
            and self.master is None
            and len(self.mac) == 6
            and self.mac != b"\x00" * 6
        )

    def why_unusable(self) -> str | None:
        """A short reason this link is not usable, or ``None`` if it is."""
        f = self.flags
        if f & IFF_UP == 0:
            return "down"
        if f & IFF_LOWER_UP == 0:
            return "no carrier"
        if f & IFF_LOOPBACK:
            return "loopback"
        if f & IFF_BROADCAST == 0:
            return "no BROADCAST"
        if f & IFF_NOARP:
            return "NOARP"
        if f & IFF_SLAVE or self.master is not None:
            return "enslaved"
        if len(self.mac) != 6 or self.mac == b"\x00" * 6:
            return "no Ethernet address"
        return None


def eligible_for_all(links: Mapping[str, Link], exclude: re.Pattern[str]) -> frozenset[str]:
    """Names of the links that "all interfaces" means: usable and not matching ``exclude``."""
    return frozenset(n for n, link in links.items() if link.usable() and not exclude.search(n))


def _link_from_msg(msg: Any) -> Link | None:
    name = msg.get("ifname")
    addr = msg.get("address")
    if not isinstance(name, str):
        return None
    try:
        mac = bytes.fromhex(addr.replace(":", "")) if isinstance(addr, str) else b""
    except ValueError:
        mac = b""
    master = msg.get("IFLA_MASTER")
    return Link(name, int(msg["index"]), flags=int(msg["flags"]), mac=mac, master=int(master) if master else None)


def scan_links() -> dict[str, Link]:
    """Dump all links of the current network namespace, by name."""
    from pyroute2 import IPRoute  # type: ignore[import-untyped]  # lazily: slow to import, untyped

    with IPRoute() as ipr:
        links = (_link_from_msg(m) for m in ipr.get_links())
        return {link.name: link for link in links if link is not None}


def open_link_events() -> socket.socket:
    """A non-blocking netlink socket that becomes readable on every link change (RTMGRP_LINK).

    Callers only need to drain it and rescan; the messages themselves are not parsed.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, RTMGRP_LINK))
    except OSError:
        sock.close()
        raise
    return sock
