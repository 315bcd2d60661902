"""BPF programs, checked with a small classic-BPF interpreter (the instructions we emit) against frames
built by scapy, and checked by the kernel's own verifier through SO_ATTACH_FILTER."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether

from speaker import bpf

# Ancillary loads, SKF_AD_OFF (-0x1000) + SKF_AD_PKTTYPE (4) / SKF_AD_VLAN_TAG_PRESENT (48) from linux/filter.h,
# as the unsigned k of the instruction; packet types from linux/if_packet.h.
AD_PKTTYPE, AD_VLAN_TAG_PRESENT = 0xFFFFF004, 0xFFFFF030
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 1, 2, 3


def run(prog: bpf.Program, frame: bytes, *, pkttype: int = PACKET_HOST, vlan_tagged: bool = False) -> int:
    """Interpret ``prog`` on ``frame`` like the kernel would (out-of-bounds load -> drop).

    ``pkttype`` and ``vlan_tagged`` are the packet's metadata (skb->pkt_type; a VLAN tag the kernel moved out of
    ``frame`` and kept in the skb).
    """
    acc = 0
    pc = 0
    for _ in range(10_000):
        insn = prog[pc]
        if insn.code == bpf.BPF_LD_W_ABS and insn.k in (AD_PKTTYPE, AD_VLAN_TAG_PRESENT):
            acc = pkttype if insn.k == AD_PKTTYPE else int(vlan_tagged)
            pc += 1
        elif insn.code in (bpf.BPF_LD_W_ABS, bpf.BPF_LD_H_ABS, bpf.BPF_LD_B_ABS):
            assert insn.k < 0xFFFFF000, f"unexpected ancillary load {insn.k:#x}"
            size = {bpf.BPF_LD_W_ABS: 4, bpf.BPF_LD_H_ABS: 2, bpf.BPF_LD_B_ABS: 1}[insn.code]
            if insn.k + size > len(frame):
                return 0
            acc = int.from_bytes(frame[insn.k : insn.k + size], "big")
            pc += 1
        elif insn.code == bpf.BPF_JEQ_K:
            pc += 1 + (insn.jt if acc == insn.k else insn.jf)
        elif insn.code == bpf.BPF_RET_K:
            return insn.k
        else:
            raise AssertionError(f"unexpected opcode {insn.code:#x}")
    raise AssertionError("program did not terminate")


def v4(n: int) -> bytes:
    return ipaddress.IPv4Address(0xC0000200 + n).packed  # 192.0.2.n


def v6(n: int) -> bytes:
    return (ipaddress.IPv6Address("2001:db8::") + n).packed


def arp(op: int, psrc: str, pdst: str) -> bytes:
    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:0c:01")
                 / ARP(op=op, hwsrc="02:00:00:00:0c:01", psrc=psrc, pdst=pdst))  # fmt: skip


def ns(target: str) -> bytes:
    return bytes(Ether() / IPv6(src="2001:db8::1", dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt=target))


@given(owned=st.sets(st.integers(1, 254), min_size=1, max_size=40), probe=st.integers(1, 254))
@settings(max_examples=200)
def test_arp_filter_accepts_requests_exactly_for_owned_targets(owned: set[int], probe: int) -> None:
    prog = bpf.arp_program({v4(n) for n in owned})
    accepted = run(prog, arp(1, "198.51.100.1", str(ipaddress.IPv4Address(v4(probe)))))
    assert (accepted > 0) == (probe in owned)


def test_arp_filter_accepts_frames_claiming_an_owned_ip_as_sender_for_conflicts() -> None:
    prog = bpf.arp_program({v4(100)})
    assert run(prog, arp(2, "192.0.2.100", "192.0.2.100")) > 0  # gratuitous reply from someone else
    assert run(prog, arp(2, "192.0.2.7", "192.0.2.1")) == 0  # unrelated reply


def test_arp_filter_drops_non_arp_and_short_frames() -> None:
    prog = bpf.arp_program({v4(100)})
    assert run(prog, bytes(Ether() / IPv6() / ICMPv6EchoRequest())) == 0
    assert run(prog, arp(1, "192.0.2.1", "192.0.2.100")[:30]) == 0


def test_arp_filter_falls_back_to_all_requests_and_replies_beyond_max() -> None:
    owned = {v4(n) for n in range(1, 11)}
    prog = bpf.arp_program(owned, max_ips=5)
    assert len(prog) == len(bpf.arp_program({v4(n) for n in range(1, 101)}, max_ips=5))  # lists no IP
    assert run(prog, arp(1, "192.0.2.1", "203.0.113.9")) > 0
    assert run(prog, arp(2, "192.0.2.1", "203.0.113.9")) > 0
    assert run(prog, arp(3, "192.0.2.1", "203.0.113.9")) == 0


def test_empty_owned_set_drops_everything() -> None:
    assert bpf.arp_program(set()) == bpf.DROP_ALL and bpf.ndp_program(set()) == bpf.DROP_ALL
    assert run(bpf.DROP_ALL, arp(1, "192.0.2.1", "192.0.2.100")) == 0


@given(owned=st.sets(st.integers(1, 2**20), min_size=1, max_size=30), probe=st.integers(1, 2**20))
@settings(max_examples=200)
def test_ndp_filter_accepts_ns_and_na_exactly_for_owned_targets(owned: set[int], probe: int) -> None:
    prog = bpf.ndp_program({v6(n) for n in owned})
    target = str(ipaddress.IPv6Address(v6(probe)))
    assert (run(prog, ns(target)) > 0) == (probe in owned)
    na = bytes(Ether() / IPv6(src=target, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=target))
    assert (run(prog, na) > 0) == (probe in owned)


def test_ndp_filter_drops_ns_and_na_from_a_multicast_source() -> None:
    target = "2001:db8::100"
    for prog in (bpf.ndp_program({v6(0x100)}), bpf.ndp_program({v6(0x100)}, max_ips=0)):
        for src, accepted in (("ff02::1", False), ("ff05::1:3", False), ("2001:db8::1", True), ("::", True)):
            solicitation = Ether() / IPv6(src=src, dst="ff02::1:ff00:100", hlim=255) / ICMPv6ND_NS(tgt=target)
            advert = Ether() / IPv6(src=src, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=target)
            assert (run(prog, bytes(solicitation)) > 0) == accepted, src
            assert (run(prog, bytes(advert)) > 0) == accepted, src


def test_ndp_filter_drops_other_icmpv6_and_arp() -> None:
    prog = bpf.ndp_program({v6(0x100)})
    assert run(prog, bytes(Ether() / IPv6(dst="2001:db8::100") / ICMPv6EchoRequest())) == 0
    assert run(prog, arp(1, "192.0.2.1", "192.0.2.100")) == 0


def test_ndp_filter_falls_back_to_all_ns_na_beyond_max() -> None:
    prog = bpf.ndp_program({v6(n) for n in range(1, 5)}, max_ips=2)
    assert run(prog, ns("2001:db8::9999")) > 0
    assert run(prog, bytes(Ether() / IPv6() / ICMPv6EchoRequest())) == 0


def test_frames_of_other_vlans_and_for_other_hosts_are_dropped_by_every_program() -> None:
    # A packet socket on eth0 gets VLAN 5's frames with the tag stripped, so the bytes look untagged; the kernel
    # marks them PACKET_OTHERHOST, or (DSA conduits) keeps the tag in the metadata (issue 7, item 5).
    request, solicitation = arp(1, "192.0.2.1", "192.0.2.100"), ns("2001:db8::100")
    for prog, frame in (
        (bpf.arp_program({v4(100)}), request),
        (bpf.arp_program({v4(100)}, max_ips=0), request),
        (bpf.ndp_program({v6(0x100)}), solicitation),
        (bpf.ndp_program({v6(0x100)}, max_ips=0), solicitation),
    ):
        for ours in (PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST):
            assert run(prog, frame, pkttype=ours) > 0
        assert run(prog, frame, pkttype=PACKET_OTHERHOST) == 0
        assert run(prog, frame, pkttype=PACKET_BROADCAST, vlan_tagged=True) == 0


def test_programs_for_the_largest_possible_limits_fit_and_one_more_ip_does_not() -> None:
    many4 = [ipaddress.IPv4Address(0x0A000000 + n).packed for n in range(bpf.MAX_ARP_IPS_POSSIBLE + 1)]
    many6 = [v6(n) for n in range(bpf.MAX_NDP_IPS_POSSIBLE + 1)]
    for build, ips, limit in ((bpf.arp_program, many4, bpf.MAX_ARP_IPS_POSSIBLE),
                              (bpf.ndp_program, many6, bpf.MAX_NDP_IPS_POSSIBLE)):  # fmt: skip
        assert len(build(ips[:limit], max_ips=limit)) <= bpf.BPF_MAXINSNS
        assert len(build(ips, max_ips=limit + 1)) > bpf.BPF_MAXINSNS


def test_default_maximum_programs_stay_under_the_instruction_limit() -> None:
    big4 = bpf.arp_program({ipaddress.IPv4Address(0xCB007100 + n).packed for n in range(bpf.DEFAULT_MAX_ARP_IPS)})
    big6 = bpf.ndp_program({v6(n) for n in range(bpf.DEFAULT_MAX_NDP_IPS)})
    assert len(big4) <= bpf.BPF_MAXINSNS and len(big6) <= bpf.BPF_MAXINSNS
    assert run(big4, arp(1, "192.0.2.1", "203.0.113.5")) > 0


def test_pack_rejects_oversized_program() -> None:
    with pytest.raises(ValueError):
        bpf.pack(tuple(bpf.DROP_ALL * (bpf.BPF_MAXINSNS + 1)))


@pytest.mark.root
def test_kernel_accepts_the_largest_default_programs(need_root: None) -> None:
    big4 = bpf.arp_program({ipaddress.IPv4Address(0xCB007100 + n).packed for n in range(bpf.DEFAULT_MAX_ARP_IPS)})
    big6 = bpf.ndp_program({v6(n) for n in range(bpf.DEFAULT_MAX_NDP_IPS)})
    for prog in (big4, big6):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            bpf.attach(sock, prog)
            bpf.attach(sock, prog)  # a replacement, while the old program is still charged
            bpf.attach(sock, bpf.arp_program({v4(1)}, max_ips=0))
        finally:
            sock.close()
