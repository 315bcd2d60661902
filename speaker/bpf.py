"""Classic BPF socket filters for the responders' AF_PACKET sockets, built from the owned IP set.

The programs let the kernel drop everything the responder does not need before it reaches Python:
that is what keeps an ARP storm for other IPs from costing the responder CPU. This module only builds
programs (pure functions returning tuples of instructions) and attaches one to a socket; it must not
open sockets, decide ownership or log.

- ARP: accept an Ethernet/IPv4 ARP frame whose target IP *or* sender IP is owned (requests to answer;
  replies and gratuitous frames from other MACs for conflict detection). When the owned set is larger
  than ``max_ips``, fall back to a program that accepts every ARP request and reply.
- NDP: accept an ICMPv6 Neighbor Solicitation or Advertisement (no extension headers) from a source that
  is not multicast (RFC 4291 section 2.7) whose target is owned; beyond ``max_ips`` fall back to every
  NS/NA from a non-multicast source.
- Both first drop frames of other VLANs and frames for other hosts. A packet socket on ``eth0`` also
  receives the frames of VLANs that have no VLAN interface here (issue 7, item 5); answering them answered
  VLAN 5 on the native VLAN. By the time a protocol-bound socket sees such a frame, the kernel has moved the
  tag out of the bytes (offset 12 holds the inner EtherType) and then cleared it, marking the frame
  PACKET_OTHERHOST instead (net/core/dev.c, __netif_receive_skb_core: "Vlan id is non 0 and
  vlan_do_receive() above couldn't find vlan device"). So the programs drop pkt_type PACKET_OTHERHOST
  (which also drops unicast for other MACs, never ours to answer) and frames whose tag is still in the
  metadata (the kernel keeps it on DSA conduits), via the ancillary loads SKF_AD_PKTTYPE and
  SKF_AD_VLAN_TAG_PRESENT (linux/filter.h). Priority-tagged frames (VLAN id 0) belong to the native VLAN;
  the kernel delivers them untagged as broadcast, multicast or host frames, and they are answered.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterable
from typing import NamedTuple

# Instruction classes and modes (linux/filter.h, linux/bpf_common.h).
BPF_LD_H_ABS = 0x28
BPF_LD_W_ABS = 0x20
BPF_LD_B_ABS = 0x30
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06

# Ancillary data loads (linux/filter.h): an absolute load at SKF_AD_OFF + n reads skb metadata, not the frame.
# SKF_AD_OFF is -0x1000; the instruction's k field is unsigned 32-bit, hence the two's complement.
SKF_AD_OFF = 0x1_0000_0000 - 0x1000
SKF_AD_PKTTYPE = 4
SKF_AD_VLAN_TAG_PRESENT = 48
PACKET_OTHERHOST = 3  # linux/if_packet.h

BPF_MAXINSNS = 4096
SO_ATTACH_FILTER = 26

ACCEPT = 0x40000  # snap length: the whole frame
DROP = 0

# A single "== X" chain per IP costs 4 instructions for ARP (target and sender) and 9 for NDP.
# The kernel charges a filter's converted (eBPF) size against net.core.optmem_max, and while a filter is
# replaced the old one stays charged until an RCU grace period ends. Measured with optmem_max=131072: one
# ARP program of 4,006 instructions fits, an NDP program fits up to ~2,350 instructions. The defaults
# keep two programs of a kind within that budget; when the kernel still refuses one (smaller
# optmem_max), the responder attaches the fallback program and retries later (see speaker.responder).
DEFAULT_MAX_ARP_IPS = 400
DEFAULT_MAX_NDP_IPS = 100


class Insn(NamedTuple):
    """One classic BPF instruction (struct sock_filter)."""

    code: int
    jt: int
    jf: int
    k: int


Program = tuple[Insn, ...]


def _ld_h(off: int) -> Insn:
    return Insn(BPF_LD_H_ABS, 0, 0, off)


def _ld_w(off: int) -> Insn:
    return Insn(BPF_LD_W_ABS, 0, 0, off)


def _ld_b(off: int) -> Insn:
    return Insn(BPF_LD_B_ABS, 0, 0, off)


def _jeq(k: int, jt: int, jf: int) -> Insn:
    return Insn(BPF_JEQ_K, jt, jf, k)


def _ret(k: int) -> Insn:
    return Insn(BPF_RET_K, 0, 0, k)


DROP_ALL: Program = (_ret(DROP),)

# Every program starts here: drop frames for other hosts (incl. other VLANs' frames) and still-tagged frames.
_FOR_US_ONLY: Program = (
    _ld_w(SKF_AD_OFF + SKF_AD_PKTTYPE), _jeq(PACKET_OTHERHOST, 2, 0),
    _ld_w(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT), _jeq(0, 1, 0),
    _ret(DROP),
)  # fmt: skip
_ARP_HEAD: Program = (*_FOR_US_ONLY, _ld_h(12), _jeq(0x0806, 1, 0), _ret(DROP))
_NDP_HEAD: Program = (
    *_FOR_US_ONLY,
    _ld_h(12), _jeq(0x86DD, 1, 0), _ret(DROP),
    _ld_b(20), _jeq(58, 1, 0), _ret(DROP),
    _ld_b(22), _jeq(0xFF, 0, 1), _ret(DROP),  # first byte of the IPv6 source: ff00::/8 is multicast
    _ld_b(54), _jeq(135, 2, 0), _jeq(136, 1, 0), _ret(DROP),
)  # fmt: skip

# The largest exact programs that fit (see arp_program, ndp_program). ARP: the head, two loads (target IP,
# sender IP), 2 + 2 instructions per IP and the final drop. NDP: the head, 9 instructions per IP, the drop.
MAX_ARP_IPS_POSSIBLE = (BPF_MAXINSNS - len(_ARP_HEAD) - 3) // 4
MAX_NDP_IPS_POSSIBLE = (BPF_MAXINSNS - len(_NDP_HEAD) - 1) // 9


def arp_program(owned: Iterable[bytes], *, max_ips: int = DEFAULT_MAX_ARP_IPS) -> Program:
    """Filter for an ETH_P_ARP packet socket; ``owned`` holds 4-byte IPv4 addresses.

    Frames are Ethernet II: ARP op at offset 20, sender IP at 28, target IP at 38.
    """
    ips = sorted(set(owned))
    if not ips:
        return DROP_ALL
    if len(ips) > max_ips:
        # Fallback: every ARP request or reply; userspace decides.
        return (*_ARP_HEAD, _ld_h(20), _jeq(1, 2, 0), _jeq(2, 1, 0), _ret(DROP), _ret(ACCEPT))
    prog = list(_ARP_HEAD)
    for offset in (38, 28):  # target IP (requests to answer), then sender IP (conflicts)
        prog.append(_ld_w(offset))
        for ip in ips:
            prog += [_jeq(struct.unpack("!I", ip)[0], 0, 1), _ret(ACCEPT)]
    prog.append(_ret(DROP))
    return tuple(prog)


def ndp_program(owned: Iterable[bytes], *, max_ips: int = DEFAULT_MAX_NDP_IPS) -> Program:
    """Filter for an ETH_P_IPV6 packet socket; ``owned`` holds 16-byte IPv6 addresses.

    Frames are Ethernet II + IPv6 without extension headers: next header at 20, source at 22..38, ICMPv6
    type at 54, NS/NA target at 62..78.
    """
    ips = sorted(set(owned))
    if not ips:
        return DROP_ALL
    prog = list(_NDP_HEAD)
    if len(ips) > max_ips:
        return (*prog, _ret(ACCEPT))
    for ip in ips:
        w = struct.unpack("!4I", ip)
        prog += [
            _ld_w(62), _jeq(w[0], 0, 7),
            _ld_w(66), _jeq(w[1], 0, 5),
            _ld_w(70), _jeq(w[2], 0, 3),
            _ld_w(74), _jeq(w[3], 0, 1),
            _ret(ACCEPT),
        ]  # fmt: skip
    prog.append(_ret(DROP))
    return tuple(prog)


def pack(prog: Program) -> bytes:
    """The array of struct sock_filter for ``prog``."""
    if not 0 < len(prog) <= BPF_MAXINSNS:
        raise ValueError(f"BPF program has {len(prog)} instructions")
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


def attach(sock: socket.socket, prog: Program) -> None:
    """Attach (or replace) ``prog`` on ``sock`` with SO_ATTACH_FILTER. Raises OSError on refusal."""
    raw = pack(prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))  # struct sock_fprog, native alignment
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
