"""MetalLB's ServiceL2Status objects in the core (l2core/l2status.py): which ones a node should have, and the writes
MetalLB's reconcile (internal/k8s/controllers/layer2_status_controller.go) would make to get there. Expectations
are literal."""

from __future__ import annotations

from typing import Any

from l2core.l2status import (
    Create,
    Delete,
    L2Status,
    Observed,
    WriteStatus,
    observed_from,
    status_from,
    wanted,
    writes,
)
from l2core.model import EligibilitySettings
from l2core.parse import build_cluster
from l2core.plan import plan
from tests.builders import advertisement, endpoints, fixture, node, pool, service

WEB = L2Status("worker-1", "web", "default", ())
WEB_ETH0 = L2Status("worker-1", "web", "default", ("eth0",))


def one_owner(**ad: Any) -> Any:
    """worker-1 is the only node, so it announces both services; db has no address yet (nothing to announce)."""
    docs = [
        node("worker-1"),
        service("web", "192.0.2.100"),
        endpoints("web", ["worker-1"]),
        service("db", []),
        pool("lan", "192.0.2.100-192.0.2.120"),
        advertisement("lan", ipAddressPools=["lan"], **ad),
    ]
    parsed = build_cluster(docs)
    assert parsed.problems == ()
    return plan(parsed.cluster, EligibilitySettings())


def test_the_announcing_node_wants_one_status_per_service_with_no_interfaces_when_all_are_used() -> None:
    assert wanted(one_owner(), "worker-1") == {"default/web": WEB}
    assert wanted(one_owner(), "worker-2") == {}


def test_interfaces_restricted_by_the_l2advertisement_are_listed_sorted() -> None:
    assert wanted(one_owner(interfaces=["eth1", "eth0"]), "worker-1") == {
        "default/web": L2Status("worker-1", "web", "default", ("eth0", "eth1"))
    }


def test_the_status_body_is_metallbs_json_with_interfaces_omitted_when_empty() -> None:
    assert WEB.body() == {"node": "worker-1", "serviceName": "web", "serviceNamespace": "default"}
    assert WEB_ETH0.body() == {
        "node": "worker-1",
        "serviceName": "web",
        "serviceNamespace": "default",
        "interfaces": [{"name": "eth0"}],
    }
    assert WEB.labels() == {
        "metallb.io/node": "worker-1",
        "metallb.io/service-name": "web",
        "metallb.io/service-namespace": "default",
    }


def test_the_captured_objects_read_back_as_they_were_written() -> None:
    created = observed_from(fixture("api/servicel2status-create.json"))
    assert created == Observed("l2-wd78c", "worker-1", "web", "default", None)
    updated = observed_from(fixture("api/servicel2status-status-update.json"))
    assert updated == Observed("l2-wd78c", "worker-1", "web", "default", WEB_ETH0)


def test_objects_without_the_three_labels_or_with_a_foreign_status_shape() -> None:
    assert observed_from({"metadata": {"name": "l2-x", "labels": {"metallb.io/node": "worker-1"}}}) is None
    assert observed_from({"metadata": {"labels": WEB.labels()}}) is None
    assert status_from({"node": "worker-1", "serviceName": "web"}) is None
    assert status_from({"node": "w", "serviceName": "s", "serviceNamespace": "n", "interfaces": [{"nom": 1}]}) is None


def mine(name: str, status: L2Status | None = WEB) -> Observed:
    return Observed(name, "worker-1", "web", "default", status)


def theirs(name: str, node: str = "worker-2") -> Observed:
    return Observed(name, node, "web", "default", L2Status(node, "web", "default"))


def test_nothing_there_is_created() -> None:
    assert writes({"default/web": WEB}, [], "worker-1") == [Create(WEB)]


def test_a_matching_object_needs_no_write() -> None:
    assert writes({"default/web": WEB}, [mine("l2-a")], "worker-1") == []


def test_an_object_created_without_its_status_or_with_other_interfaces_gets_its_status_written() -> None:
    assert writes({"default/web": WEB}, [mine("l2-a", None)], "worker-1") == [WriteStatus("l2-a", WEB)]
    assert writes({"default/web": WEB_ETH0}, [mine("l2-a")], "worker-1") == [WriteStatus("l2-a", WEB_ETH0)]


def test_the_new_owner_deletes_the_old_owners_object_and_creates_its_own() -> None:
    assert writes({"default/web": WEB}, [theirs("l2-old")], "worker-1") == [
        Delete("l2-old", "default/web", "worker-2"),
        Create(WEB),
    ]


def test_the_owner_keeps_its_first_object_and_deletes_the_redundant_ones() -> None:
    observed = [mine("l2-c"), theirs("l2-b"), mine("l2-a", None)]
    assert writes({"default/web": WEB}, observed, "worker-1") == [
        Delete("l2-b", "default/web", "worker-2"),
        Delete("l2-c", "default/web", "worker-1"),
        WriteStatus("l2-a", WEB),
    ]


def test_a_node_that_no_longer_announces_deletes_only_its_own_objects() -> None:
    observed = [mine("l2-a"), theirs("l2-b"), Observed("l2-c", "worker-1", "db", "shop", None)]
    assert writes({}, observed, "worker-1") == [
        Delete("l2-a", "default/web", "worker-1"),
        Delete("l2-c", "shop/db", "worker-1"),
    ]
    assert writes({}, [theirs("l2-b")], "worker-1") == []
