"""The responder's decisions without root: which frames a Port answers, how, and which ones it flags as conflicts.

The sockets are the I/O seam; here they are plain recorders of what would be sent (the namespace tests prove the
same rules with real kernels and real clients). Frames are built by scapy and the replies read back by scapy."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from speaker.metrics import Counters
from speaker.responder import Port

OURS = "02:00:00:00:00:01"
OTHER_NODE = "02:00:00:00:00:07"
CLIENT = "02:00:00:00:00:09"
VIP4, VIP6 = "192.0.2.100", "2001:db8::100"
SN_GROUP, SN_MAC = "ff02::1:ff00:100", "33:33:ff:00:01:00"


class Recorder:
    """Stands in for a packet socket: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, frame: bytes) -> int:
        self.sent.append(frame)
        return len(frame)


@pytest.fixture
def port() -> Any:
    conflicts: list[tuple[Any, ...]] = []
    mac = bytes.fromhex(OURS.replace(":", ""))
    p = Port(
        "eth0",
        2,
        mac=mac,
        counters=Counters(),
        local_macs=lambda: frozenset({mac}),
        on_conflict=lambda *a: conflicts.append(a),
        on_error=lambda *a: None,
    )
    p.v4 = {socket.inet_aton(VIP4): VIP4}
    p.v6 = {socket.inet_pton(socket.AF_INET6, VIP6): VIP6}
    p.arp_sock, p.ndp_sock = Recorder(), Recorder()
    p.conflicts = conflicts
    return p


def arp(port: Any, frame: Any) -> list[Any]:
    before = len(port.arp_sock.sent)
    port.handle_arp(bytes(frame))
    return [Ether(f) for f in port.arp_sock.sent[before:]]


def ndp(port: Any, frame: Any) -> list[Any]:
    before = len(port.ndp_sock.sent)
    port.handle_ndp(bytes(frame))
    return [Ether(f) for f in port.ndp_sock.sent[before:]]


@pytest.mark.parametrize("dst", ["ff:ff:ff:ff:ff:ff", OURS])
def test_broadcast_and_unicast_requests_get_a_unicast_reply_from_the_vip(port: Any, dst: str) -> None:
    (reply,) = arp(port, Ether(dst=dst, src=CLIENT) / ARP(op=1, hwsrc=CLIENT, psrc="192.0.2.9", pdst=VIP4))
    assert (reply.dst, reply.src) == (CLIENT, OURS)
    assert (reply[ARP].op, reply[ARP].psrc, reply[ARP].hwsrc, reply[ARP].pdst) == (2, VIP4, OURS, "192.0.2.9")


def test_a_unicast_probe_for_another_nodes_mac_is_not_answered(port: Any) -> None:
    assert arp(port, Ether(dst=OTHER_NODE, src=CLIENT) / ARP(op=1, hwsrc=CLIENT, psrc="192.0.2.9", pdst=VIP4)) == []


def test_requests_for_ips_we_do_not_own_are_not_answered(port: Any) -> None:
    frame = Ether(dst="ff:ff:ff:ff:ff:ff", src=CLIENT) / ARP(op=1, hwsrc=CLIENT, psrc="192.0.2.9", pdst="192.0.2.101")
    assert arp(port, frame) == []


@pytest.mark.parametrize("op", [1, 2])  # a gratuitous request, and a reply
def test_another_mac_claiming_our_ip_is_a_conflict(port: Any, op: int) -> None:
    frame = Ether(dst="ff:ff:ff:ff:ff:ff", src=OTHER_NODE) / ARP(op=op, hwsrc=OTHER_NODE, psrc=VIP4, pdst=VIP4)
    assert arp(port, frame) == []
    ((ip, iface, family, mac),) = port.conflicts
    assert (ip, iface, family, mac) == (VIP4, "eth0", "ipv4", bytes.fromhex(OTHER_NODE.replace(":", "")))


def test_multicast_ns_gets_a_solicited_override_na_from_the_vip(port: Any) -> None:
    ns = (
        Ether(dst=SN_MAC, src=CLIENT)
        / IPv6(src="2001:db8::9", dst=SN_GROUP, hlim=255)
        / ICMPv6ND_NS(tgt=VIP6)
        / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT)
    )
    (na,) = ndp(port, ns)
    assert (na.dst, na[IPv6].src, na[IPv6].dst, na[IPv6].hlim) == (CLIENT, VIP6, "2001:db8::9", 255)
    assert (na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].O, na[ICMPv6ND_NA].tgt) == (1, 1, VIP6)
    assert na[ICMPv6NDOptDstLLAddr].lladdr == OURS


def test_a_dad_probe_is_defended_with_an_na_to_all_nodes(port: Any) -> None:
    dad = Ether(dst=SN_MAC, src=CLIENT) / IPv6(src="::", dst=SN_GROUP, hlim=255) / ICMPv6ND_NS(tgt=VIP6)
    (na,) = ndp(port, dad)
    assert (na[IPv6].src, na[IPv6].dst, na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].O) == (VIP6, "ff02::1", 0, 1)


def test_nud_to_our_mac_is_answered_and_nud_to_another_mac_is_not(port: Any) -> None:
    def nud(dst: str) -> Any:
        return Ether(dst=dst, src=CLIENT) / IPv6(src="2001:db8::9", dst=VIP6, hlim=255) / ICMPv6ND_NS(tgt=VIP6)

    assert len(ndp(port, nud(OURS))) == 1
    assert ndp(port, nud(OTHER_NODE)) == []


def test_an_unsolicited_na_from_another_mac_is_a_conflict(port: Any) -> None:
    na = (
        Ether(dst="33:33:00:00:00:01", src=OTHER_NODE)
        / IPv6(src=VIP6, dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(tgt=VIP6, R=0, S=0, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=OTHER_NODE)
    )
    assert ndp(port, na) == []
    assert [(c[0], c[2]) for c in port.conflicts] == [(VIP6, "ipv6")]


@pytest.mark.parametrize("source", ["ff02::1", "ff02::1:ff00:9", "ff05::2"])
def test_an_ns_or_na_from_a_multicast_source_is_neither_answered_nor_a_conflict(port: Any, source: str) -> None:
    # RFC 4291 section 2.7: a multicast address is never a source; the NA would go "unicast" to a group.
    ns = (
        Ether(dst=SN_MAC, src=CLIENT)
        / IPv6(src=source, dst=SN_GROUP, hlim=255)
        / ICMPv6ND_NS(tgt=VIP6)
        / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT)
    )
    assert ndp(port, ns) == []
    na = (
        Ether(dst="33:33:00:00:00:01", src=OTHER_NODE)
        / IPv6(src=source, dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(tgt=VIP6, R=0, S=0, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=OTHER_NODE)
    )
    assert ndp(port, na) == []
    assert port.conflicts == []
    ns[IPv6].src = "2001:db8::9"  # the control: the same NS from a unicast source is answered
    assert len(ndp(port, ns)) == 1
