"""Pure ARP and NDP frame code: parsers and builders for Ethernet frames, by hand with struct and slicing.

This module is the hot path's packet logic. It must not open sockets, log, keep state, or import scapy
(scapy is only used by the tests to check these frames). Every function takes and returns ``bytes``
(complete Ethernet II frames, without FCS) or small immutable tuples, and never raises on malformed
input: parsers return ``None`` instead.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETHERTYPE_ARP = b"\x08\x06"
ETHERTYPE_IPV6 = b"\x86\xdd"
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ZERO_IP4 = b"\x00" * 4
UNSPECIFIED_IP6 = b"\x00" * 16
ALL_NODES_IP6 = ipaddress.IPv6Address("ff02::1").packed
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"

ICMPV6_NS = 135
ICMPV6_NA = 136
IPPROTO_ICMPV6 = 58
NDP_OPT_SLLA = 1
NDP_OPT_TLLA = 2
NA_FLAG_SOLICITED = 0x40
NA_FLAG_OVERRIDE = 0x20

MIN_FRAME_LEN = 60  # Ethernet minimum without FCS; ARP frames are padded to it.

# htype=Ethernet(1), ptype=IPv4, hlen=6, plen=4: the fixed part of every Ethernet/IPv4 ARP packet.
_ARP_FIXED = b"\x00\x01\x08\x00\x06\x04"
_ARP_REQUEST_HDR = _ARP_FIXED + b"\x00\x01"
_ARP_REPLY_HDR = _ARP_FIXED + b"\x00\x02"
_ARP_PAD = b"\x00" * (MIN_FRAME_LEN - 42)


class ArpPacket(NamedTuple):
    """An Ethernet/IPv4 ARP packet as seen on the wire (addresses as raw bytes)."""

    eth_dst: bytes
    eth_src: bytes
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes


class NdpPacket(NamedTuple):
    """An ICMPv6 Neighbor Solicitation or Advertisement (addresses as raw bytes).

    ``lladdr`` is the source link-layer option of an NS or the target link-layer option of an NA,
    or ``None`` when absent. ``flags`` is the R/S/O byte of an NA (0 for an NS).
    """

    eth_dst: bytes
    eth_src: bytes
    src: bytes
    dst: bytes
    type: int
    flags: int
    target: bytes
    lladdr: bytes | None


# --------------------------------------------------------------------------------------------------- helpers


def mac_bytes(mac: str) -> bytes:
    """``"02:00:5e:00:00:01"`` -> 6 bytes. Raises ValueError on anything else."""
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def mac_str(mac: bytes) -> str:
    """6 bytes -> ``"02:00:5e:00:00:01"``."""
    return ":".join(f"{b:02x}" for b in mac)


def solicited_node_address(ip6: bytes) -> bytes:
    """The solicited-node multicast address ff02::1:ffXX:XXXX of a 16-byte IPv6 address (RFC 4291)."""
    return b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + ip6[13:16]


def multicast_mac(group6: bytes) -> bytes:
    """The Ethernet address 33:33:xx:xx:xx:xx of an IPv6 multicast group (RFC 2464)."""
    return b"\x33\x33" + group6[12:16]


def solicited_node_mac(ip6: bytes) -> bytes:
    """The Ethernet address of the solicited-node group of ``ip6``."""
    return b"\x33\x33\xff" + ip6[13:16]


def _ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def icmpv6_checksum(src: bytes, dst: bytes, *, message: bytes) -> int:
    """ICMPv6 checksum over the pseudo-header and ``message`` (whose checksum field must be zero)."""
    pseudo = src + dst + struct.pack("!I3xB", len(message), IPPROTO_ICMPV6)
    return (~_ones_complement_sum(pseudo + message)) & 0xFFFF


def icmpv6_checksum_ok(src: bytes, dst: bytes, *, message: bytes) -> bool:
    """True when ``message`` (checksum field filled in) verifies against the pseudo-header."""
    pseudo = src + dst + struct.pack("!I3xB", len(message), IPPROTO_ICMPV6)
    return _ones_complement_sum(pseudo + message) == 0xFFFF


# ------------------------------------------------------------------------------------------------------- ARP


def build_arp_request(mac: bytes, spa: bytes, *, tpa: bytes, eth_dst: bytes = BROADCAST_MAC) -> bytes:
    """A "who has ``tpa``? tell ``spa``" request from ``mac`` (broadcast unless ``eth_dst`` is given)."""
    return eth_dst + mac + ETHERTYPE_ARP + _ARP_REQUEST_HDR + mac + spa + ZERO_MAC + tpa + _ARP_PAD


def build_garp_request(mac: bytes, vip: bytes) -> bytes:
    """Gratuitous ARP, request form: op=1, sender IP = target IP = VIP, target MAC zero, broadcast.

    This is the form Linux always accepts as an override of an existing neighbour entry.
    """
    return BROADCAST_MAC + mac + ETHERTYPE_ARP + _ARP_REQUEST_HDR + mac + vip + ZERO_MAC + vip + _ARP_PAD


def build_garp_reply(mac: bytes, vip: bytes) -> bytes:
    """Gratuitous ARP, reply form: op=2, sender IP = target IP = VIP, target MAC broadcast, broadcast."""
    return BROADCAST_MAC + mac + ETHERTYPE_ARP + _ARP_REPLY_HDR + mac + vip + BROADCAST_MAC + vip + _ARP_PAD


def parse_arp(frame: bytes) -> ArpPacket | None:
    """Parse an Ethernet/IPv4 ARP frame; ``None`` if it is anything else or truncated."""
    if len(frame) < 42 or frame[12:14] != ETHERTYPE_ARP or frame[14:20] != _ARP_FIXED:
        return None
    op = (frame[20] << 8) | frame[21]
    return ArpPacket(frame[0:6], frame[6:12], op, frame[22:28], frame[28:32], frame[32:38], frame[38:42])


def is_arp_request(frame: bytes) -> bool:
    """True for a well-formed Ethernet/IPv4 ARP request (op=1)."""
    return len(frame) >= 42 and frame[12:22] == ETHERTYPE_ARP + _ARP_REQUEST_HDR


def make_arp_reply(frame: bytes, mac: bytes) -> bytes | None:
    """The reply ``mac`` should send to the ARP request ``frame``; ``None`` if ``frame`` is not a request
    that deserves an answer (not a request, or a gratuitous request whose sender IP equals its target).

    The caller decides whether it owns the target IP and whether the frame was addressed to it.
    """
    if not is_arp_request(frame):
        return None
    spa, tpa = frame[28:32], frame[38:42]
    if spa == tpa:
        return None
    sha = frame[22:28]
    return sha + mac + ETHERTYPE_ARP + _ARP_REPLY_HDR + mac + tpa + sha + spa + _ARP_PAD


# ------------------------------------------------------------------------------------------------------- NDP


def _ipv6_header(src: bytes, dst: bytes, *, payload_len: int) -> bytes:
    # version 6, traffic class 0, flow label 0, next header ICMPv6, hop limit 255 (required by RFC 4861)
    return struct.pack("!IHBB", 0x60000000, payload_len, IPPROTO_ICMPV6, 255) + src + dst


def _icmpv6_frame(eth_dst: bytes, eth_src: bytes, *, src: bytes, dst: bytes, body: bytes) -> bytes:
    """``body`` is the ICMPv6 message with a zero checksum at bytes 2..4."""
    csum = icmpv6_checksum(src, dst, message=body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    return eth_dst + eth_src + ETHERTYPE_IPV6 + _ipv6_header(src, dst, payload_len=len(body)) + body


def build_ns(mac: bytes, src: bytes, *, target: bytes, dst: bytes | None = None, eth_dst: bytes | None = None) -> bytes:
    """A Neighbor Solicitation for ``target``.

    Multicast to the solicited-node group by default; pass ``dst``/``eth_dst`` for a unicast (NUD) probe.
    With ``src`` = :: it is a DAD probe, which carries no source link-layer option.
    """
    if dst is None:
        dst = solicited_node_address(target)
    if eth_dst is None:
        eth_dst = multicast_mac(dst) if dst[0] == 0xFF else BROADCAST_MAC
    opts = b"" if src == UNSPECIFIED_IP6 else bytes((NDP_OPT_SLLA, 1)) + mac
    body = bytes((ICMPV6_NS, 0, 0, 0)) + b"\x00\x00\x00\x00" + target + opts
    return _icmpv6_frame(eth_dst, mac, src=src, dst=dst, body=body)


def build_na(
    mac: bytes,
    vip: bytes,
    *,
    dst: bytes,
    eth_dst: bytes,
    solicited: bool,
    override: bool = True,
) -> bytes:
    """A Neighbor Advertisement "``vip`` is at ``mac``", sent from ``vip`` itself (ndisc6 requires that)."""
    flags = (NA_FLAG_SOLICITED if solicited else 0) | (NA_FLAG_OVERRIDE if override else 0)
    body = bytes((ICMPV6_NA, 0, 0, 0, flags, 0, 0, 0)) + vip + bytes((NDP_OPT_TLLA, 1)) + mac
    return _icmpv6_frame(eth_dst, mac, src=vip, dst=dst, body=body)


def build_unsolicited_na(mac: bytes, vip: bytes) -> bytes:
    """The takeover announcement: NA to ff02::1, Solicited=0, Override=1, target link-layer option."""
    return build_na(mac, vip, dst=ALL_NODES_IP6, eth_dst=ALL_NODES_MAC, solicited=False, override=True)


def parse_ndp(frame: bytes, *, verify_checksum: bool = True) -> NdpPacket | None:
    """Parse an Ethernet/IPv6 frame carrying an NS or NA with no extension headers.

    Returns ``None`` unless the frame is a valid NS/NA per RFC 4861 section 7.1.1/7.1.2: hop limit 255,
    ICMP code 0, length >= 24, no zero-length option, a multicast target never, a correct checksum
    (unless ``verify_checksum`` is false), and no source link-layer option on a DAD probe. A multicast
    IPv6 source is never valid either (RFC 4291 section 2.7; the Linux kernel drops such packets in
    ip6_rcv_core): answering one would send a "unicast" NA to a group.
    """
    if len(frame) < 78 or frame[12:14] != ETHERTYPE_IPV6:
        return None
    if frame[14] >> 4 != 6 or frame[20] != IPPROTO_ICMPV6 or frame[21] != 255:
        return None
    plen = (frame[18] << 8) | frame[19]
    if plen < 24 or 54 + plen > len(frame):
        return None
    icmp = frame[54 : 54 + plen]
    kind = icmp[0]
    if kind not in (ICMPV6_NS, ICMPV6_NA) or icmp[1] != 0:
        return None
    src, dst, target = frame[22:38], frame[38:54], icmp[8:24]
    if target[0] == 0xFF or src[0] == 0xFF:
        return None
    if verify_checksum and not icmpv6_checksum_ok(src, dst, message=icmp):
        return None
    lladdr: bytes | None = None
    want = NDP_OPT_SLLA if kind == ICMPV6_NS else NDP_OPT_TLLA
    pos = 24
    while pos + 2 <= plen:
        olen = icmp[pos + 1] * 8
        if olen == 0 or pos + olen > plen:
            return None
        if icmp[pos] == want and olen >= 8 and lladdr is None:
            lladdr = icmp[pos + 2 : pos + 8]
        pos += olen
    if kind == ICMPV6_NS and src == UNSPECIFIED_IP6 and lladdr is not None:
        return None
    flags = icmp[4] if kind == ICMPV6_NA else 0
    return NdpPacket(frame[0:6], frame[6:12], src, dst, kind, flags, target, lladdr)


def make_na_reply(ns: NdpPacket, mac: bytes) -> bytes | None:
    """The NA that answers the Neighbor Solicitation ``ns`` for its target, from ``mac``.

    - A DAD probe (source ::) gets an NA to ff02::1 with Solicited=0, Override=1 (defending the address).
    - Any other NS gets a unicast NA to its source, Solicited=1, Override=1, sent to the source
      link-layer option's MAC (or the frame's Ethernet source when the option is absent, as in NUD).
    Returns ``None`` if ``ns`` is not an NS. The caller decides whether it owns the target.
    """
    if ns.type != ICMPV6_NS:
        return None
    if ns.src == UNSPECIFIED_IP6:
        return build_na(mac, ns.target, dst=ALL_NODES_IP6, eth_dst=ALL_NODES_MAC, solicited=False)
    eth_dst = ns.lladdr if ns.lladdr is not None else ns.eth_src
    return build_na(mac, ns.target, dst=ns.src, eth_dst=eth_dst, solicited=True)
