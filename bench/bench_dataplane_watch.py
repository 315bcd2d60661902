"""Benchmark helper, run inside the client namespace: timestamps (CLOCK_MONOTONIC) of the first gratuitous
ARP from a given MAC and of the kernel neighbour entry for the VIP flipping to that MAC.

Reads "arm" lines on stdin; for each, waits (at most --timeout s) and prints one JSON line
{"garp": t, "flip": t} (null for what did not happen). Bounded; no data-plane logic here.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time

RTMGRP_NEIGH = 0x4
RTM_NEWNEIGH = 28


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vip", required=True)
    ap.add_argument("--mac", required=True)
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    mac = bytes.fromhex(a.mac.replace(":", ""))
    vip = socket.inet_aton(a.vip)
    arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    arp.bind(("eth0", 0x0806))
    arp.setblocking(False)
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    nl.bind((0, RTMGRP_NEIGH))
    nl.setblocking(False)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "arm":
            break
        for s in (arp, nl):  # drop anything stale
            try:
                while s.recv(65536):
                    pass
            except BlockingIOError:
                pass
        print(json.dumps({"armed": True}), flush=True)
        garp = flip = None
        deadline = time.monotonic() + a.timeout
        while (garp is None or flip is None) and time.monotonic() < deadline:
            ready, _, _ = select.select([arp, nl], [], [], max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            if arp in ready:
                try:
                    while True:
                        f = arp.recv(2048)
                        if garp is None and f[6:12] == mac and f[28:32] == vip == f[38:42]:
                            garp = now
                except BlockingIOError:
                    pass
            if nl in ready:
                try:
                    while True:
                        m = nl.recv(65536)
                        if flip is None and int.from_bytes(m[4:6], "little") == RTM_NEWNEIGH and vip in m and mac in m:
                            flip = now
                except BlockingIOError:
                    pass
        print(json.dumps({"garp": garp, "flip": flip}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
