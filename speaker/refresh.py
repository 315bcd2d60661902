"""The periodic refresh's schedule: which owned (interface, IP) pairs get their announcement in this tick.

Switches age their forwarding tables (300 s is the common default, IEEE 802.1D 7.9.2) and some clients keep
stale neighbour entries; MetalLB users asked for periodic gratuitous ARP (metallb/metallb#2910). With a refresh
interval, every owned pair is announced again once per interval, with the same frames as one step of the
takeover burst. So that 10,000 IPs never go out at once, the interval is cut into `slots` ticks and each tick
sends its share: over one cycle of `slots` ticks, tick t sends the pairs at positions floor(t*n/slots) up to
floor((t+1)*n/slots) of the sorted pairs, which is at most ceil(n/slots) per tick and every pair exactly once
per cycle. The position is a cursor over the sorted keys (the last key sent), not an index, so a pair added or
removed mid-cycle shifts nothing: the others keep their turn, and a new pair is reached within one cycle (a
cycle in which the number of pairs changed may send one of them twice, or once less: never a burst).

Pure: no clock, no sockets. The announcer's I/O thread calls `RefreshSchedule.tick()` once per tick
(`TICK` seconds apart) with its owned pairs, already sorted, and sends what it returns.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

TICK = 0.1  # seconds between refresh ticks: fine enough to spread, coarse enough to cost nothing when idle
# The --refresh-interval bounds. Below 5 s a refresh would repeat the default takeover burst (5 s long) and the
# kernel ignores an update within `locktime` (1 s, arp(7)) of the previous one anyway; above an hour it refreshes
# nothing a switch (300 s) or a client (the kernel's gc_stale_time, 60 s) still remembers.
MIN_INTERVAL = 5.0
MAX_INTERVAL = 3600.0

Key = tuple[str, str]  # (interface, IP)


def slots_for(interval: float, tick: float = TICK) -> int:
    """The number of ticks in one refresh interval (at least 1)."""
    return max(1, round(interval / tick))


def share(n: int, slots: int, t: int) -> int:
    """How many of `n` pairs tick `t` (0 <= t < slots) of a cycle sends: the shares of one cycle add up to `n`,
    and none is larger than ceil(n / slots)."""
    return (t + 1) * n // slots - t * n // slots


def after(keys: Sequence[Key], last: Key | None, count: int) -> list[Key]:
    """The `count` keys of sorted `keys` that follow `last` (from the start if None), wrapping around; never
    more than len(keys)."""
    if not keys or count <= 0:
        return []
    start = 0 if last is None else bisect.bisect_right(keys, last)
    count = min(count, len(keys))
    taken = list(keys[start : start + count])
    if len(taken) < count:
        taken += keys[: count - len(taken)]
    return taken


class RefreshSchedule:
    """The refresh's position: the tick within the cycle and the last key sent. `tick(keys)` returns the keys
    due in this tick and advances by one tick (a late tick is not made up: the cycle stretches instead of
    bursting)."""

    def __init__(self, interval: float, *, tick: float = TICK) -> None:
        if not interval > 0 or not tick > 0:
            raise ValueError("the refresh interval and tick must be positive")
        self.slots = slots_for(interval, tick)
        self._t = 0
        self._last: Key | None = None

    def tick(self, keys: Sequence[Key]) -> list[Key]:
        """The sorted `keys` due now."""
        due = after(keys, self._last, share(len(keys), self.slots, self._t))
        if due:
            self._last = due[-1]
        self._t = (self._t + 1) % self.slots
        return due
