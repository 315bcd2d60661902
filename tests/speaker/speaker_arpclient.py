"""Test and benchmark client: crafted ARP requests from a raw socket inside the client namespace.

Run as ``ip netns exec CLIENT python speaker_arpclient.py MODE ...``; prints one JSON object.

- ``probe``: send N requests for TARGET (optionally to a given Ethernet destination) and report which
  MACs answered. Used to prove the responder ignores unicast probes meant for another node's MAC.
- ``latency``: paced requests at RATE/s, one outstanding at a time; reply latency percentiles.
- ``load``: paced requests at RATE/s, each from a unique source MAC so replies match requests even
  when many are in flight; reports sent/answered.
- ``flood``: requests for IPs nobody owns at RATE/s (bounded by count and time); reports frames sent.

All loops are bounded in count and time. Addresses are documentation ranges only. Test scaffolding:
no data-plane logic lives here (frames come from speaker.packets).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from speaker import packets as P

PACKET_IGNORE_OUTGOING = 23


def open_sock(iface: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(P.ETH_P_ARP))
    s.setsockopt(263, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.bind((iface, P.ETH_P_ARP))
    return s


def iface_mac(iface: str) -> bytes:
    with open(f"/sys/class/net/{iface}/address") as f:
        return P.mac_bytes(f.read().strip())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def pace(t_next: float) -> None:
    """Sleep until t_next (perf_counter seconds), spinning for the last 200 µs."""
    while True:
        left = t_next - time.perf_counter()
        if left <= 0:
            return
        if left > 0.0003:
            time.sleep(left - 0.0002)


def cmd_probe(a: argparse.Namespace) -> dict[str, object]:
    s = open_sock(a.iface)
    mac = iface_mac(a.iface)
    tpa = socket.inet_aton(a.target)
    spa = socket.inet_aton(a.source)
    dst = P.mac_bytes(a.dst) if a.dst else P.BROADCAST_MAC
    macs: dict[str, int] = {}
    s.settimeout(0.05)
    for _ in range(a.count):
        s.send(P.build_arp_request(mac, spa, tpa=tpa, eth_dst=dst))
        deadline = time.monotonic() + a.wait
        while time.monotonic() < deadline:
            try:
                f = s.recv(2048)
            except TimeoutError:
                continue
            arp = P.parse_arp(f)
            if arp and arp.op == 2 and arp.spa == tpa and arp.tpa == spa:
                key = P.mac_str(arp.sha)
                macs[key] = macs.get(key, 0) + 1
    return {"sent": a.count, "replies": sum(macs.values()), "macs": macs}


def cmd_latency(a: argparse.Namespace) -> dict[str, object]:
    s = open_sock(a.iface)
    mac = iface_mac(a.iface)
    tpa = socket.inet_aton(a.target)
    spa = socket.inet_aton(a.source)
    req = P.build_arp_request(mac, spa, tpa=tpa)
    lat: list[float] = []
    lost = 0
    period = 1.0 / a.rate
    start = time.perf_counter() + 0.01
    end_by = time.monotonic() + a.max_seconds
    s.setblocking(False)
    for i in range(a.count):
        if time.monotonic() > end_by:
            break
        pace(start + i * period)
        try:  # a late reply to the previous request must not be taken for this one
            while s.recv(2048):
                pass
        except BlockingIOError:
            pass
        t0 = time.perf_counter()
        s.send(req)
        deadline = t0 + min(a.timeout, period * 0.95)
        got = False
        while (left := deadline - time.perf_counter()) > 0:
            # Block rather than spin: a spinning client takes one of the two cores from the responder it measures.
            if not select.select([s], [], [], left)[0]:
                break
            try:
                f = s.recv(2048)
            except BlockingIOError:
                continue
            if f[20:22] == b"\x00\x02" and f[28:32] == tpa and f[38:42] == spa:
                lat.append((time.perf_counter() - t0) * 1e6)
                got = True
                break
        if not got:  # censored: counted at the wait limit, so percentiles stay honest lower bounds
            lost += 1
            lat_late = (deadline - t0) * 1e6
            lat.append(lat_late)
    return {
        "target": a.target,
        "rate": a.rate,
        "sent": len(lat),
        "answered": len(lat) - lost,
        "lost": lost,
        "p50_us": round(pct(lat, 0.50), 1),
        "p90_us": round(pct(lat, 0.90), 1),
        "p99_us": round(pct(lat, 0.99), 1),
        "max_us": round(max(lat), 1) if lat else None,
        "wait_limit_us": round(min(a.timeout, period * 0.95) * 1e6),
    }


def cmd_load(a: argparse.Namespace) -> dict[str, object]:
    s = open_sock(a.iface)
    tpa = socket.inet_aton(a.target)
    spa = socket.inet_aton(a.source)
    n = int(a.rate * a.duration)
    answered: set[int] = set()
    stop = threading.Event()

    def receiver() -> None:
        s2 = open_sock(a.iface)
        s2.settimeout(0.05)
        while not stop.is_set():
            try:
                f = s2.recv(2048)
            except TimeoutError:
                continue
            if f[20:22] == b"\x00\x02" and f[28:32] == tpa and f[32:34] == b"\x02\xee":
                answered.add(int.from_bytes(f[34:38], "big"))
        s2.close()

    th = threading.Thread(target=receiver, daemon=True)
    th.start()
    time.sleep(0.05)
    period = 1.0 / a.rate
    start = time.perf_counter()
    end_by = time.monotonic() + a.duration * 3 + 2
    sent = 0
    for i in range(n):
        if time.monotonic() > end_by:
            break
        pace(start + i * period)
        sha = b"\x02\xee" + i.to_bytes(4, "big")
        s.send(P.build_arp_request(sha, spa, tpa=tpa))
        sent += 1
    elapsed = time.perf_counter() - start
    time.sleep(a.settle)
    stop.set()
    th.join(2)
    return {
        "sent": sent,
        "answered": len(answered),
        "lost": sent - len(answered),
        "seconds": round(elapsed, 3),
    }


def cmd_ns(a: argparse.Namespace) -> dict[str, object]:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(P.ETH_P_IPV6))
    s.setsockopt(263, PACKET_IGNORE_OUTGOING, 1)
    s.bind((a.iface, P.ETH_P_IPV6))
    s.settimeout(0.05)
    mac = iface_mac(a.iface)
    target = socket.inet_pton(socket.AF_INET6, a.target)
    src = socket.inet_pton(socket.AF_INET6, a.source)
    ipdst = socket.inet_pton(socket.AF_INET6, a.ipdst) if a.ipdst else None
    eth_dst = P.mac_bytes(a.dst) if a.dst else None
    frame = P.build_ns(mac, src, target=target, dst=ipdst, eth_dst=eth_dst)
    replies: list[str] = []
    for _ in range(a.count):
        s.send(frame)
        deadline = time.monotonic() + a.wait
        while time.monotonic() < deadline:
            try:
                f = s.recv(2048)
            except TimeoutError:
                continue
            pkt = P.parse_ndp(f)
            if pkt and pkt.type == P.ICMPV6_NA and pkt.target == target:
                replies.append(f.hex())
    return {"sent": a.count, "replies": replies}


def cmd_flood(a: argparse.Namespace) -> dict[str, object]:
    s = open_sock(a.iface)
    sha = P.mac_bytes("02:ff:00:00:00:01")
    spa = socket.inet_aton("198.51.100.1")
    # Targets nobody owns: 203.0.113.1 .. 203.0.113.250, prebuilt.
    frames = [P.build_arp_request(sha, spa, tpa=bytes((203, 0, 113, 1 + i % 250))) for i in range(250)]
    n = int(a.rate * a.duration)
    batch = max(1, int(a.rate / 1000))  # frames per 1 ms slot
    start = time.perf_counter()
    end_by = time.monotonic() + a.duration + 2
    sent = 0
    slot = 0
    while sent < n and time.monotonic() < end_by:
        pace(start + slot * 0.001)
        for _ in range(min(batch, n - sent)):
            try:
                s.send(frames[sent % 250])
            except OSError:
                break
            sent += 1
        slot += 1
    return {"sent": sent, "seconds": round(time.perf_counter() - start, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["probe", "latency", "load", "flood", "ns"])
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--target", default="192.0.2.100")
    ap.add_argument("--source", default="192.0.2.1")
    ap.add_argument("--dst", default=None, help="Ethernet destination (default broadcast)")
    ap.add_argument("--ipdst", default=None, help="IPv6 destination of an NS (default solicited-node)")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--wait", type=float, default=0.3)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=0.005)
    ap.add_argument("--settle", type=float, default=0.3)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    a = ap.parse_args()
    fn = {"probe": cmd_probe, "latency": cmd_latency, "load": cmd_load, "flood": cmd_flood, "ns": cmd_ns}[a.mode]
    print(json.dumps(fn(a)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
