"""The cluster view's snapshots: a snapshot with the pools and advertisements of a live read (issue 7, item 4)."""

from __future__ import annotations

import json
from typing import Any

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
