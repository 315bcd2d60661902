"""Test helper: crafted frames from the client (tagged requests, spoofed claims), and a bare responder on a node.

Run inside a namespace (``ip netns exec NS python speaker_crafted.py MODE ...``); prints JSON lines.

- ``probe IFACE NODE_MAC CASE...``: for each CASE ``name:vlan`` (vlan ``-`` for untagged, else 0..4094) send
  one ARP who-has for VIP4 and one NS for VIP6, tagged with ``Dot1Q(vlan=...)`` when asked, each from its own
  source address (192.0.2.(50+i), 2001:db8::(50+i)) so a reply names the request it answers. An AF_PACKET
  socket on IFACE collects every frame from NODE_MAC until the untagged cases have been answered (or 10 s
  pass) and prints ``{"replies": [{"kind", "to", "tagged"}...], "sources": {name: [ip4, ip6]}}``.
- ``claims IFACE N [VLAN] [FIRST]``: N gratuitous ARP requests claiming VIP4, each from its own spoofed MAC
  (02:cc:00:00:00:00 + FIRST + i), tagged with ``Dot1Q(vlan=VLAN)`` unless VLAN is ``-``, as fast as the
  socket takes them. Prints ``{"sent": N}``.
- ``port IFACE``: a :class:`speaker.responder.Port` owning VIP4 and VIP6 on IFACE with a filter that
  accepts every frame, so only the responder's own user-space checks decide. Prints ``{"ready": true}``,
  answers until stdin closes, then prints its counters.

Frames are built and read by scapy (never by the code under test). Bounded in count and time; documentation
addresses only. Test scaffolding: no data-plane logic lives here.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

VIP4 = "192.0.2.100"
VIP6 = "2001:db8::100"
SOL_PACKET = 263
PACKET_AUXDATA = 8
ETH_P_ALL = 0x0003


def iface_mac(iface: str) -> str:
    with open(f"/sys/class/net/{iface}/address") as f:
        return f.read().strip()


def probe(iface: str, node_mac: str, cases: list[str]) -> dict[str, object]:
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import ARP, Dot1Q, Ether

    mac = iface_mac(iface)
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    rx.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    rx.bind((iface, ETH_P_ALL))
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.bind((iface, 0))
    sources: dict[str, list[str]] = {}
    waiting: set[str] = set()
    for i, case in enumerate(cases):
        name, vlan = case.split(":")
        ip4, ip6 = f"192.0.2.{50 + i}", f"2001:db8::{50 + i:x}"
        sources[name] = [ip4, ip6]
        tag = [] if vlan == "-" else [Dot1Q(vlan=int(vlan))]
        if vlan == "-":
            waiting |= {ip4, ip6}
        arp = ARP(op=1, hwsrc=mac, psrc=ip4, pdst=VIP4)
        ns = IPv6(src=ip6, dst="ff02::1:ff00:100", hlim=255) / ICMPv6ND_NS(tgt=VIP6) / ICMPv6NDOptSrcLLAddr(lladdr=mac)
        for eth_dst, payload in (("ff:ff:ff:ff:ff:ff", arp), ("33:33:ff:00:01:00", ns)):
            frame = Ether(dst=eth_dst, src=mac)
            for t in tag:
                frame = frame / t
            tx.send(bytes(frame / payload))
    replies: list[dict[str, object]] = []
    deadline = time.monotonic() + 10.0
    grace: float | None = None
    rx.settimeout(0.05)
    while time.monotonic() < (deadline if grace is None else min(deadline, grace)):
        try:
            data, anc, _, _ = rx.recvmsg(2048, socket.CMSG_SPACE(20))
        except TimeoutError:
            continue
        pkt = Ether(data)
        if pkt.src != node_mac:
            continue
        tagged = pkt.haslayer(Dot1Q) or any(
            lvl == SOL_PACKET and typ == PACKET_AUXDATA and struct.unpack_from("=I", d)[0] & (1 << 4)
            for lvl, typ, d in anc
        )
        if pkt.haslayer(ARP) and pkt[ARP].op == 2 and pkt[ARP].psrc == VIP4:
            reply = {"kind": "arp-reply", "to": pkt[ARP].pdst, "tagged": bool(tagged)}
        elif pkt.haslayer(ICMPv6ND_NA) and pkt[ICMPv6ND_NA].tgt == VIP6:
            reply = {"kind": "na", "to": pkt[IPv6].dst, "tagged": bool(tagged)}
        else:
            continue
        replies.append(reply)
        waiting.discard(str(reply["to"]))
        if not waiting and grace is None:
            grace = time.monotonic() + 0.3  # anything answering the earlier tagged frames came first anyway
    return {"replies": replies, "sources": sources}


def claims(iface: str, count: int, *, vlan: int | None = None, first: int = 0) -> dict[str, object]:
    from scapy.layers.l2 import ARP, Dot1Q, Ether

    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    tx.bind((iface, 0))
    spoofed = "02:cc:00:00:00:00"
    claim = ARP(op=1, hwsrc=spoofed, psrc=VIP4, hwdst="00:00:00:00:00:00", pdst=VIP4)
    eth = Ether(dst="ff:ff:ff:ff:ff:ff", src=spoofed)
    template = bytes(eth / claim if vlan is None else eth / Dot1Q(vlan=vlan) / claim)
    sha = len(template) - len(bytes(claim)) + 8  # the ARP sender MAC follows the 8-byte fixed part
    for i in range(min(count, 1 << 24)):
        mac = (0x02CC00000000 + first + i).to_bytes(6, "big")
        tx.send(template[:6] + mac + template[12:sha] + mac + template[sha + 6 :])
    return {"sent": count}


def port(iface: str) -> int:
    from speaker import bpf
    from speaker.metrics import Counters
    from speaker.responder import Port

    mac = bytes.fromhex(iface_mac(iface).replace(":", ""))
    counters = Counters()
    p = Port(
        iface,
        socket.if_nametoindex(iface),
        mac=mac,
        counters=counters,
        local_macs=lambda: frozenset({mac}),
        on_conflict=lambda *a: None,
        on_error=lambda *a: None,
    )
    p.update("ipv4", [VIP4])
    p.update("ipv6", [VIP6])
    accept_all = (bpf.Insn(bpf.BPF_RET_K, 0, 0, bpf.ACCEPT),)
    assert p.arp_sock is not None and p.ndp_sock is not None
    for sock in (p.arp_sock, p.ndp_sock):
        bpf.attach(sock, accept_all)
    sel = selectors.DefaultSelector()
    sel.register(p.arp_sock, selectors.EVENT_READ, p.read_arp)
    sel.register(p.ndp_sock, selectors.EVENT_READ, p.read_ndp)
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + 60.0
    done = False
    while not done and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            if key.data is None:
                done = not sys.stdin.readline()
            else:
                key.data()
    p.close()
    print(json.dumps({"counters": counters.summary()}), flush=True)
    return 0


def main() -> int:
    mode, iface, *rest = sys.argv[1:]
    if mode == "probe":
        print(json.dumps(probe(iface, rest[0], rest[1:])), flush=True)
        return 0
    if mode == "claims":
        vlan = None if len(rest) < 2 or rest[1] == "-" else int(rest[1])
        first = int(rest[2]) if len(rest) > 2 else 0
        print(json.dumps(claims(iface, int(rest[0]), vlan=vlan, first=first)), flush=True)
        return 0
    return port(iface)


if __name__ == "__main__":
    sys.exit(main())
