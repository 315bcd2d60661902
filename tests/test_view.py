"""The cluster view's snapshots: a snapshot with the pools and advertisements of a live read (issue 7, item 4)."""

from __future__ import annotations

import copy
import json
import logging
import threading
from typing import Any

import pytest

from l2core.model import EligibilitySettings
from l2guard.view import ClusterView
from tests.kube.scripts import speaker_lease
from tests.webhook.conftest import API, api_documents, pool_object


def test_with_config_replaces_pools_and_advertisements_and_keeps_the_rest() -> None:
    view = ClusterView(EligibilitySettings())
    view.load(api_documents())
    cached = view.snapshot
    ads = json.loads((API / "list-l2advertisements.json").read_text())["items"]
    broken = pool_object("broken", ["not an address"])

    live = cached.with_config([pool_object("a", ["198.51.100.0/24"]), broken], [])

    # The live pools only (the invalid one dropped, as the cache drops it), no advertisement, the same nodes.
    assert set(live.cluster.pools) == {"metallb-system/a"}
    assert [r.text for r in live.cluster.pools["metallb-system/a"].ranges] == ["198.51.100.0/24"]
    assert dict(live.advertisements) == {}
    assert live.cluster.nodes is cached.cluster.nodes and live.cluster.services is cached.cluster.services
    # The cached snapshot is unchanged, and the live one parses advertisements as the cache does.
    assert set(cached.cluster.pools) == {"metallb-system/lan"}
    assert cached.with_config([], ads).advertisements == cached.advertisements


# ----- speaker liveness from Leases (issue 8, part 1) -----------------------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def live_view(clock: Clock, leases: list[dict[str, Any]]) -> ClusterView:
    """A view fed as the source feeds it: every kind listed, the leases as given."""
    view = ClusterView(EligibilitySettings(), clock=clock)
    for doc in api_documents():
        assert isinstance(doc, dict)
        view.replace_kind(doc["kind"].removesuffix("List"), doc["items"])
    view.replace_kind("Lease", leases)
    return view


def announcer(view: ClusterView) -> str | None:
    return view.snapshot.plan.services["default/web"].announcer


def test_without_any_speaker_lease_every_node_counts_as_alive() -> None:
    """The webhook beside MetalLB's own speaker: MetalLB's leases (`speaker-worker-1`) are no l2guard speaker's."""
    metallb = json.loads((API / "list-leases.json").read_text())["items"]
    view = live_view(Clock(), metallb)
    assert view.synced and view.snapshot.alive is None
    assert announcer(view) == "worker-1"  # as with no liveness at all (cp-1 is excluded by its label)


def test_only_speakers_with_an_alive_lease_announce() -> None:
    view = live_view(Clock(), [speaker_lease("worker-2", "10")])
    assert view.snapshot.alive == {"worker-2"}
    assert announcer(view) == "worker-2"  # worker-1 would win, but no speaker runs there


def test_a_lease_not_renewed_expires_on_tick_and_the_ip_moves() -> None:
    clock = Clock()
    view = live_view(clock, [speaker_lease("worker-1", "10"), speaker_lease("worker-2", "11")])
    assert announcer(view) == "worker-1"
    assert view.tick() == 6.0  # both leases were first seen now, for 6 s
    clock.now += 4
    view.apply([("Lease", "MODIFIED", speaker_lease("worker-2", "12"))])  # worker-2 renews, worker-1 does not
    assert view.tick() == 2.0
    clock.now += 2
    assert view.tick() == 4.0  # worker-1 expired; worker-2's renewal runs until 4 s from now
    assert view.snapshot.alive == {"worker-2"}
    assert announcer(view) == "worker-2"


def test_a_released_lease_is_not_alive_at_once_and_a_deleted_one_is_forgotten() -> None:
    clock = Clock()
    view = live_view(clock, [speaker_lease("worker-1", "10"), speaker_lease("worker-2", "11")])
    view.apply([("Lease", "MODIFIED", speaker_lease("worker-1", "12", holder="", duration=1))])
    assert view.snapshot.alive == {"worker-2"} and announcer(view) == "worker-2"
    # All speaker leases deleted: back to "no speaker lease at all", every node alive.
    view.apply([("Lease", "DELETED", speaker_lease(n, "13")) for n in ("worker-1", "worker-2")])
    assert view.snapshot.alive is None and announcer(view) == "worker-1"


def test_a_frozen_view_keeps_its_alive_set_and_a_thaw_gives_every_lease_a_full_duration() -> None:
    clock = Clock()
    view = live_view(clock, [speaker_lease("worker-1", "10"), speaker_lease("worker-2", "11")])
    view.freeze()
    clock.now += 60
    assert view.tick() is None
    assert view.snapshot.alive == {"worker-1", "worker-2"}
    view.thaw()
    assert view.snapshot.alive == {"worker-1", "worker-2"}
    assert view.tick() == 6.0


def test_a_relist_without_a_lease_forgets_it() -> None:
    view = live_view(Clock(), [speaker_lease("worker-1", "10"), speaker_lease("worker-2", "11")])
    view.replace_kind("Lease", [speaker_lease("worker-2", "11")])
    assert view.snapshot.alive == {"worker-2"}


# ----- one bad edit never withdraws IPs (issue 8, part 1) -------------------------------------------------------


def test_a_pool_edited_into_an_invalid_one_keeps_announcing_from_its_last_good_version(caplog) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    view = live_view(clock, [])
    assert announcer(view) == "worker-1"
    good = view.snapshot.cluster.pools["metallb-system/lan"]
    clock.now += 5
    bad = pool_object("lan", ["not an address"])
    with caplog.at_level(logging.WARNING, logger="l2guard.view"):
        assert view.apply([("IPAddressPool", "MODIFIED", bad)]) == 1
        assert view.apply([("IPAddressPool", "MODIFIED", bad)]) == 0  # the same problem again: no news
    snap = view.snapshot
    assert snap.cluster.pools["metallb-system/lan"] is good
    assert announcer(view) == "worker-1"
    assert snap.plan.services["default/web"].ips == ("192.0.2.100",)
    (stale,) = snap.stale.values()
    assert (stale.kind, stale.key, stale.since, stale.kept) == ("IPAddressPool", "metallb-system/lan", 1005.0, True)
    assert stale.uid == "uid-lan"  # for the Event on the pool itself
    assert "not an address" in stale.problem
    # One WARNING, naming the pool in a structured field, not in key=value text.
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.fields["pool"] == "metallb-system/lan" and record.fields["event"] == "object-stale"  # type: ignore[attr-defined]
    assert "=" not in record.getMessage().split(":")[0]
    # A later valid edit clears it and is planned.
    view.apply([("IPAddressPool", "MODIFIED", pool_object("lan", ["192.0.2.96/27"]))])
    assert view.snapshot.stale == {}
    assert [r.text for r in view.snapshot.cluster.pools["metallb-system/lan"].ranges] == ["192.0.2.96/27"]
    assert announcer(view) == "worker-1"


def test_a_relist_with_an_invalid_pool_keeps_the_last_good_version_too() -> None:
    view = live_view(Clock(), [])
    view.replace_kind("IPAddressPool", [pool_object("lan", ["not an address"])])
    assert announcer(view) == "worker-1"
    assert set(view.snapshot.stale) == {("IPAddressPool", "metallb-system/lan")}
    view.replace_kind("IPAddressPool", [])  # gone from the list: deleted, no longer stale
    assert view.snapshot.stale == {} and announcer(view) is None


def test_a_delete_still_deletes_a_stale_object() -> None:
    view = live_view(Clock(), [])
    view.apply([("IPAddressPool", "MODIFIED", pool_object("lan", ["not an address"]))])
    view.apply([("IPAddressPool", "DELETED", pool_object("lan", ["not an address"]))])
    assert view.snapshot.stale == {}
    assert "metallb-system/lan" not in view.snapshot.cluster.pools
    assert announcer(view) is None


def test_an_object_that_never_parsed_is_reported_with_nothing_kept() -> None:
    view = live_view(Clock(), [])
    view.apply([("IPAddressPool", "ADDED", pool_object("new", ["not an address"]))])
    stale = view.snapshot.stale[("IPAddressPool", "metallb-system/new")]
    assert not stale.kept
    assert "metallb-system/new" not in view.snapshot.cluster.pools


def test_a_waiting_reader_wakes_when_a_newer_snapshot_is_published() -> None:
    view = live_view(Clock(), [])
    seen = view.snapshot.version
    assert view.wait_newer(seen, 0.01).version == seen  # nothing new: back after the timeout with the same one
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.append(view.wait_newer(seen, 10.0).version))
    reader.start()
    view.apply([("IPAddressPool", "MODIFIED", pool_object("lan", ["192.0.2.96/27"]))])
    reader.join(10)
    assert got == [seen + 1]


def test_file_mode_takes_the_alive_speakers_as_given() -> None:
    view = ClusterView(EligibilitySettings())
    view.load(api_documents(), alive=["worker-2"])
    assert view.snapshot.alive == {"worker-2"}
    assert announcer(view) == "worker-2"  # worker-1 would win, but its speaker is not in the list
    view.load(api_documents())
    assert view.snapshot.alive is None and announcer(view) == "worker-1"


# ----- publishing costs what changed (issue 8, reaction benchmark) -------------------------------------------------


def listed(kind: str) -> list[dict[str, Any]]:
    """The captured list of `kind` ("Node", ...)."""
    for doc in api_documents():
        assert isinstance(doc, dict)
        if doc["kind"] == f"{kind}List":
            items: list[dict[str, Any]] = doc["items"]
            return items
    raise AssertionError(kind)


def test_a_published_snapshot_never_changes_and_a_node_event_shares_the_stores_it_did_not_touch() -> None:
    view = live_view(Clock(), [])
    before = view.snapshot
    worker2 = copy.deepcopy(next(n for n in listed("Node") if n["metadata"]["name"] == "worker-2"))
    worker2["metadata"]["labels"]["example.com/team"] = "blue"
    assert view.apply([("Node", "MODIFIED", worker2)]) == 1
    after = view.snapshot
    assert after.version > before.version
    assert after.cluster.nodes["worker-2"].labels["example.com/team"] == "blue"
    assert "example.com/team" not in before.cluster.nodes["worker-2"].labels  # the earlier snapshot is as it was
    # Not copied again: the stores the event did not change, and the plan's services (nothing was replanned).
    for name in ("services", "endpoint_slices", "pools", "advertisements"):
        assert getattr(after.cluster, name) is getattr(before.cluster, name), name
    assert after.plan.services is before.plan.services
    with pytest.raises(TypeError):
        after.cluster.nodes["worker-9"] = after.cluster.nodes["worker-2"]  # type: ignore[index]

    web = next(s for s in listed("Service") if s["metadata"]["name"] == "web")
    view.apply([("Service", "DELETED", web)])
    gone = view.snapshot
    assert "default/web" not in gone.cluster.services and "default/web" not in gone.plan.services
    assert "default/web" in after.cluster.services and "default/web" in after.plan.services
    assert gone.cluster.nodes is after.cluster.nodes
    assert gone.plan.replanned_since(before.plan) == {"default/web"}
