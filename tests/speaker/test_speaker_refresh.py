"""The periodic refresh's schedule (speaker/refresh.py), pure: no sockets, no clock. The expectations are literal
or counted here from the keys, never taken from the code under test."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speaker.refresh import RefreshSchedule, after, share, slots_for


def keys(n: int) -> list[tuple[str, str]]:
    # 198.51.100.0/24 has 256 addresses; more pairs take a second interface. Sorted as the announcer sorts them.
    return sorted((f"eth{i // 256}", f"198.51.{100 + (i // 256) % 3}.{i % 256}") for i in range(n))


def test_slots_are_the_interval_in_tenths_of_a_second() -> None:
    assert slots_for(5.0) == 50
    assert slots_for(60.0) == 600
    assert slots_for(3600.0) == 36000
    assert slots_for(0.01) == 1


def test_ten_ips_over_four_slots_go_out_two_three_two_three() -> None:
    assert [share(10, 4, t) for t in range(4)] == [2, 3, 2, 3]


def test_three_ips_over_ten_slots_go_out_one_at_a_time_and_never_twice_per_cycle() -> None:
    assert [share(3, 10, t) for t in range(10)] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]


def test_after_wraps_around_and_never_repeats_within_one_call() -> None:
    ks = [("eth0", "192.0.2.1"), ("eth0", "192.0.2.2"), ("eth0", "192.0.2.3")]
    assert after(ks, None, 2) == [("eth0", "192.0.2.1"), ("eth0", "192.0.2.2")]
    assert after(ks, ("eth0", "192.0.2.2"), 2) == [("eth0", "192.0.2.3"), ("eth0", "192.0.2.1")]
    assert after(ks, ("eth0", "192.0.2.3"), 9) == ks
    assert after(ks, ("eth0", "192.0.2.25"), 1) == [("eth0", "192.0.2.3")]  # a key gone since: its successor
    assert after([], None, 3) == []


def test_ten_thousand_ips_over_sixty_seconds_never_send_more_than_seventeen_in_a_tick() -> None:
    """10,000 pairs, 60 s, ticks of 0.1 s: 600 slots, ceil(10000 / 600) = 17 per tick at most, and every pair exactly
    once per cycle, for three cycles."""
    ks = keys(10_000)
    schedule = RefreshSchedule(60.0)
    for _cycle in range(3):
        sent: Counter[tuple[str, str]] = Counter()
        most = 0
        for _tick in range(600):
            due = schedule.tick(ks)
            most = max(most, len(due))
            sent.update(due)
        assert most == 17
        assert len(sent) == 10_000 and set(sent.values()) == {1}


@given(n=st.integers(0, 700), slots=st.integers(1, 300))
def test_any_spread_stays_within_the_ceiling_and_covers_every_ip_once_per_cycle(n: int, slots: int) -> None:
    ks = keys(n)
    schedule = RefreshSchedule(slots * 0.1)
    assert schedule.slots == slots
    sent: Counter[tuple[str, str]] = Counter()
    for _ in range(slots):
        due = schedule.tick(ks)
        assert len(due) <= -(-n // slots)  # ceil(n / slots)
        sent.update(due)
    assert sent == Counter(ks)


def test_a_pair_added_mid_cycle_does_not_shift_the_others_turn() -> None:
    """Four pairs over four ticks, one per tick; after the second tick a pair sorting first is added: the third tick
    still sends the third of the original pairs, the fourth sends the fourth and (five over four ticks: shares 1, 1,
    1, 2) wraps around to the new one, and the next cycle starts after it."""
    a, b, c, d = (("eth0", f"192.0.2.{i}") for i in (11, 12, 13, 14))
    new = ("eth0", "192.0.2.10")
    schedule = RefreshSchedule(0.4)
    assert [schedule.tick([a, b, c, d]) for _ in range(2)] == [[a], [b]]
    grown = [new, a, b, c, d]
    assert [schedule.tick(grown) for _ in range(2)] == [[c], [d, new]]
    assert [schedule.tick(grown) for _ in range(4)] == [[a], [b], [c], [d, new]]


def test_nothing_owned_sends_nothing() -> None:
    schedule = RefreshSchedule(1.0)
    assert [schedule.tick([]) for _ in range(20)] == [[]] * 20


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_the_schedule_refuses_an_interval_that_is_not_positive(interval: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        RefreshSchedule(interval)
