"""The cluster view's snapshots: a snapshot with the pools and advertisements of a live read (issue 7, item 4)."""

from __future__ import annotations

import json

from l2core.model import EligibilitySettings
from l2guard.view import ClusterView
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
