"""Refresh spread benchmark: how the periodic refresh (speaker/refresh.py) spreads 10,000 owned IPs over the
interval, and what one tick costs the announcer's I/O thread.

Run:  .venv/bin/python bench/bench_refresh.py [--ips 10000] [--interval 60] [--cycles 3]

Counted, not timed: the most and the mean pairs per 0.1 s tick over whole cycles, and how often each pair came
(every pair once per cycle). Timed: the CPU time of one tick (the schedule's cursor step), as a ratio to a baseline
measured in the same process: sorting the owned pairs once, which the announcer does on every change of what it
owns anyway. The naive alternative, every IP at once each interval, is shown as the burst it would be. Frames per
pair and tick: 2 for IPv4 (a gratuitous ARP request and reply), 1 for IPv6. This is a script, not a timed test.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speaker.refresh import TICK, RefreshSchedule


def pairs(n: int) -> list[tuple[str, str]]:
    """n (interface, IP) pairs, half IPv4 (192.0.2.0/24, one interface per 256) and half IPv6 (2001:db8::/32), sorted
    as the announcer sorts them."""
    out = []
    for i in range(n):
        ip = f"192.0.2.{(i // 2) % 256}" if i % 2 == 0 else f"2001:db8::{i:x}"
        out.append((f"eth{i // 512}", ip))
    return sorted(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ips", type=int, default=10_000)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--cycles", type=int, default=3)
    args = ap.parse_args()
    keys = pairs(args.ips)
    schedule = RefreshSchedule(args.interval)
    per_tick: list[int] = []
    sent: Counter[tuple[str, str]] = Counter()
    tick_cpu: list[float] = []
    for _ in range(schedule.slots * args.cycles):
        start = time.perf_counter()
        due = schedule.tick(keys)
        tick_cpu.append(time.perf_counter() - start)
        per_tick.append(len(due))
        sent.update(due)
    sort_cpu = []
    for _ in range(20):
        shuffled = list(reversed(keys))
        start = time.perf_counter()
        sorted(shuffled)
        sort_cpu.append(time.perf_counter() - start)
    v4 = sum(1 for _, ip in keys if ":" not in ip)
    frames_all_at_once = 2 * v4 + (len(keys) - v4)
    ceiling = math.ceil(args.ips / schedule.slots)
    tick_median = statistics.median(tick_cpu)
    sort_median = statistics.median(sort_cpu)
    print(f"{args.ips} pairs, interval {args.interval:g} s, {schedule.slots} ticks of {TICK} s, {args.cycles} cycles")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| pairs per tick: most (ceiling ceil(n/slots) = {ceiling}) | {max(per_tick)} |")
    print(f"| pairs per tick: mean | {statistics.fmean(per_tick):.2f} |")
    print(f"| times each pair was refreshed in {args.cycles} cycles | {sorted(set(sent.values()))} |")
    print(f"| frames per second on the LAN, spread | {frames_all_at_once / args.interval:.0f} |")
    print(f"| frames in one go, every IP at once (the naive refresh) | {frames_all_at_once} |")
    print(f"| baseline: sorting the {args.ips} pairs once (median) | {sort_median * 1e3:.2f} ms (1.00) |")
    print(f"| one tick (median / max) | {tick_median * 1e6:.1f} us / {max(tick_cpu) * 1e6:.1f} us "
          f"({tick_median / sort_median:.4f} x baseline) |")  # fmt: skip
    print(f"| I/O thread time per second for the refresh | {tick_median / TICK * 1e3:.3f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
