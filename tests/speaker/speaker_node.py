"""Test helper: run one Announcer inside a network namespace and drive it with JSON lines on stdin.

Started as ``ip netns exec NODE python speaker_node.py [options]`` (an AF_PACKET socket binds in the
namespace of the process that creates it, so each node needs its own process). Commands, one per line:

    {"cmd": "set", "desired": {"192.0.2.100": ["eth0"], "2001:db8::100": "all"}}
    {"cmd": "status"}
    {"cmd": "reassert", "ip": "192.0.2.100", "iface": "eth0", "times": 50}
    {"cmd": "stop"}

Each command gets one JSON line back: {"reply": ..., "t_set": <CLOCK_MONOTONIC before set()>, ...}.
Events (conflicts, interface problems) are printed as {"event": ...} lines as they happen. This is test
scaffolding only; it holds no data-plane logic.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

from speaker.announcer import ALL_INTERFACES, Announcer, Event, Status

_out_lock = threading.Lock()


def emit(obj: dict[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()


def status_json(st: Status) -> dict[str, Any]:
    return {
        "announcing": {ip: sorted(v) for ip, v in st.announcing.items()},
        "problems": [{"kind": type(p).__name__, **asdict(p)} for p in st.problems],
        "conflicts": [asdict(c) for c in st.conflicts],
        "groups": {k: sorted(v) for k, v in st.groups.items()},
        "fallback": sorted(st.fallback_filters),
        "counters": dict(st.counters),
    }


def on_event(event: Event) -> None:
    emit({"event": {"kind": type(event).__name__, **asdict(event)}})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exclude", default="^(lo|veth|br-)")
    ap.add_argument("--burst-interval", type=float, default=1.1)
    ap.add_argument("--burst-duration", type=float, default=5.0)
    ap.add_argument("--rescan-interval", type=float, default=10.0)
    ap.add_argument("--refresh-interval", type=float, default=0.0)
    ap.add_argument("--max-arp", type=int, default=400)
    ap.add_argument("--log-json", action="store_true", help="log JSON lines with their fields to stderr")
    args = ap.parse_args()
    if args.log_json:
        from l2guard import logs

        logs.setup("json", "info")
    ann = Announcer(
        exclude=args.exclude,
        burst_interval=args.burst_interval,
        burst_duration=args.burst_duration,
        rescan_interval=args.rescan_interval,
        refresh_interval=args.refresh_interval,
        max_arp_filter_ips=args.max_arp,
        on_event=on_event,
    )
    ann.start()
    emit({"ready": True, "pid_clock": time.monotonic()})
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        cmd = req.get("cmd")
        if cmd == "set":
            desired = {
                ip: (ALL_INTERFACES if where == "all" else frozenset(where)) for ip, where in req["desired"].items()
            }
            t_set = time.monotonic()
            st = ann.set(desired)
            emit({"reply": "set", "t_set": t_set, "t_done": time.monotonic(), "status": status_json(st)})
        elif cmd == "reassert":
            for _ in range(int(req.get("times", 1))):
                ann.reassert(req["ip"], req["iface"])
            emit({"reply": "reassert"})
        elif cmd == "status":
            emit({"reply": "status", "status": status_json(ann.status())})
        elif cmd == "stop":
            break
    ann.stop()
    emit({"reply": "stopped", "counters": ann.counters.by_family(), "status": status_json(ann.status())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
