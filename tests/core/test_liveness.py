"""Speaker liveness from Leases: judged by when we observed a change, on our clock, as client-go does."""

from __future__ import annotations

import pytest

from l2core.liveness import LeaseRecord, Liveness, SnapshotVerdict, judge_snapshot, lease_name, node_of_lease


def held(
    rv: str, *, holder: str = "worker-1", renew: str = "2026-12-01T14:00:00.000000Z", duration: int = 6
) -> LeaseRecord:
    return LeaseRecord(holder=holder, renew_time=renew, duration_seconds=duration, resource_version=rv)


def test_lease_names_map_to_node_names_both_ways() -> None:
    assert lease_name("worker-2") == "l2guard-speaker-worker-2"
    assert node_of_lease("l2guard-speaker-worker-2") == "worker-2"
    assert node_of_lease("l2guard-speaker-a.b.example") == "a.b.example"


@pytest.mark.parametrize("name", ["kube-scheduler", "l2guard-speaker-", "l2guard-speaker", "x-l2guard-speaker-a", ""])
def test_a_lease_that_is_no_speakers_maps_to_no_node(name: str) -> None:
    assert node_of_lease(name) is None


def test_a_node_name_too_long_for_a_lease_name_is_refused() -> None:
    assert lease_name("n" * 237) == "l2guard-speaker-" + "n" * 237  # 253 characters: the limit
    with pytest.raises(ValueError, match="at most 237"):
        lease_name("n" * 238)
    with pytest.raises(ValueError, match="empty"):
        lease_name("")


def test_a_lease_first_seen_counts_from_when_it_is_seen() -> None:
    live = Liveness()
    live.observe("worker-1", held("10"), 100.0)
    assert live.alive(100.0) == {"worker-1"}
    assert live.alive(105.9) == {"worker-1"}
    assert live.expires_at("worker-1") == 106.0
    assert live.alive(106.0) == frozenset()  # client-go: valid while observedTime + duration is after now


def test_the_renew_time_in_the_lease_is_never_compared_with_our_clock() -> None:
    # The peer's clock is a year behind ours: its renewTime is far in the past, it is alive anyway.
    live = Liveness()
    live.observe("worker-1", held("10", renew="2025-12-01T14:00:00.000000Z"), 5000.0)
    assert live.alive(5005.0) == {"worker-1"}


def test_only_a_changed_record_restarts_the_clock() -> None:
    live = Liveness()
    live.observe("worker-1", held("10"), 100.0)
    live.observe("worker-1", held("10"), 104.0)  # a re-list of the same record proves nothing
    assert live.expires_at("worker-1") == 106.0
    live.observe("worker-1", held("11", renew="2026-12-01T14:00:02.000000Z"), 104.0)
    assert live.expires_at("worker-1") == 110.0
    assert live.alive(109.0) == {"worker-1"}


@pytest.mark.parametrize(
    "changed",
    [
        held("10", holder="worker-1-pod-b"),
        held("10", renew="2026-12-01T14:00:02.000000Z"),
        held("10", duration=10),
        held("11"),
    ],
    ids=["holder", "renew-time", "duration", "resource-version"],
)
def test_any_field_of_the_record_changing_is_a_renewal(changed: LeaseRecord) -> None:
    live = Liveness()
    live.observe("worker-1", held("10"), 100.0)
    live.observe("worker-1", changed, 105.0)
    assert live.alive(106.5) == {"worker-1"}


def test_the_duration_of_the_record_observed_sets_the_expiry() -> None:
    live = Liveness()
    live.observe("worker-1", held("10", duration=15), 100.0)
    assert live.expires_at("worker-1") == 115.0
    assert live.alive(114.0) == {"worker-1"}


@pytest.mark.parametrize(
    "released",
    [
        held("12", holder=""),
        held("12", duration=1),  # what client-go's release() writes
        LeaseRecord(holder="worker-1", renew_time=None, duration_seconds=None, resource_version="12"),
    ],
    ids=["no-holder", "one-second", "no-duration"],
)
def test_a_released_lease_is_not_alive_at_once(released: LeaseRecord) -> None:
    live = Liveness()
    live.observe("worker-1", held("10"), 100.0)
    live.observe("worker-1", released, 101.0)
    assert live.alive(101.0) == frozenset()
    assert live.expires_at("worker-1") is None


def test_a_deleted_lease_is_not_alive() -> None:
    live = Liveness()
    live.observe("worker-1", held("10"), 100.0)
    live.observe("worker-2", held("20", holder="worker-2"), 100.0)
    live.forget("worker-1")
    live.forget("worker-9")  # never seen: nothing to do
    assert live.alive(101.0) == {"worker-2"}
    assert live.expires_at("worker-1") is None


def test_next_expiry_is_the_earliest_future_expiry() -> None:
    live = Liveness()
    assert live.next_expiry(0.0) is None
    live.observe("a", held("1", holder="a"), 100.0)  # expires 106
    live.observe("b", held("2", holder="b", duration=10), 98.0)  # expires 108
    live.observe("c", held("3", holder=""), 100.0)  # released
    assert live.next_expiry(100.0) == 106.0
    assert live.next_expiry(106.0) == 108.0  # "a" is already dead at 106
    assert live.next_expiry(108.0) is None


def test_a_frozen_view_keeps_the_peers_judged_alive_at_the_freeze() -> None:
    live = Liveness()
    live.observe("a", held("1", holder="a"), 100.0)  # expires 106
    live.observe("b", held("2", holder="b"), 97.0)  # expires 103
    live.freeze(102.0)
    assert live.alive(200.0) == {"a", "b"}  # long past both expiries: a stale view judges nobody dead
    assert live.next_expiry(200.0) is None
    live.freeze(150.0)  # already frozen: still the set of the first freeze
    assert live.alive(200.0) == {"a", "b"}


def test_a_frozen_view_ignores_what_arrives_until_it_thaws() -> None:
    live = Liveness()
    live.observe("a", held("1", holder="a"), 100.0)
    live.freeze(101.0)
    live.observe("c", held("9", holder="c"), 102.0)
    live.forget("a")
    assert live.alive(103.0) == {"a"}
    live.thaw(104.0)
    assert live.alive(104.0) == {"c"}


def test_thawing_gives_every_held_lease_a_full_duration_from_the_thaw() -> None:
    live = Liveness()
    live.observe("a", held("1", holder="a"), 100.0)
    live.observe("b", held("2", holder=""), 100.0)  # released before the cut-off: stays released
    live.freeze(101.0)
    live.thaw(300.0)  # the renewals "a" made while we were cut off were missed, not absent
    assert live.alive(300.0) == {"a"}
    assert live.expires_at("a") == 306.0
    assert live.alive(306.0) == frozenset()


def test_thawing_an_unfrozen_view_changes_nothing() -> None:
    live = Liveness()
    live.observe("a", held("1", holder="a"), 100.0)
    live.thaw(105.0)
    assert live.expires_at("a") == 106.0


# ----- one snapshot (explain --live) ------------------------------------------------------------------------------

SERVER_NOW = 1_000_000.0  # the API server's clock, POSIX seconds


def test_a_snapshot_judges_each_lease_by_renew_time_plus_duration_on_the_server_clock() -> None:
    leases = {
        "fresh": held("1", holder="fresh"),  # renewed 2 s ago, 6 s lease: 4 s left
        "stale": held("2", holder="stale"),  # renewed 10 s ago: expired 4 s ago
        "edge": held("3", holder="edge"),  # renewed exactly 6 s ago: expired now
        "released": held("4", holder="", duration=1),
        "unreadable": held("5", holder="unreadable"),  # a renewTime the caller could not parse
    }
    renewed = {"fresh": SERVER_NOW - 2, "stale": SERVER_NOW - 10, "edge": SERVER_NOW - 6, "released": SERVER_NOW}
    verdicts = judge_snapshot(leases, renewed, SERVER_NOW)
    assert verdicts == {
        "fresh": SnapshotVerdict(True, "alive", 4.0),
        "stale": SnapshotVerdict(False, "expired", 4.0),
        "edge": SnapshotVerdict(False, "expired", 0.0),
        "released": SnapshotVerdict(False, "released", None),
        "unreadable": SnapshotVerdict(False, "no-renew-time", None),
    }


def test_a_snapshot_without_server_time_counts_every_held_lease_alive_as_liveness_does_at_first_sight() -> None:
    leases = {"a": held("1", holder="a"), "b": held("2", holder="")}
    assert judge_snapshot(leases, {}, None) == {
        "a": SnapshotVerdict(True, "held", None),
        "b": SnapshotVerdict(False, "released", None),
    }


def test_a_lease_already_expired_at_the_freeze_stays_expired_after_the_thaw() -> None:
    """A SIGKILLed speaker's Lease stays held; thawing restarted its clock too, so after every API hiccup the dead
    node counted as alive for a full duration and took IPs back (found in review)."""
    live = Liveness()
    live.observe("dead", held("1", holder="dead"), 0.0)  # expires 6
    live.observe("me", held("2", holder="me"), 99.0)  # expires 105
    live.freeze(100.0)
    live.thaw(102.0)
    assert live.alive(102.5) == {"me"}
    assert live.expires_at("me") == 108.0  # alive at the freeze: its missed renewals count
