"""The ServiceL2Status writer (l2guard/kube/l2status.py) against the API double, with the real kubernetes client:
MetalLB's object shape on the wire, writes only on change, and a quiet idle writer when the CRD is absent."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from l2core.l2status import L2Status
from l2guard.kube.l2status import L2StatusWriter
from tests.webhook.apidouble import API, APIDouble, Reply

NS = "metallb-system"
COLLECTION = f"/apis/metallb.io/v1beta1/namespaces/{NS}/servicel2statuses"
KIND = ("apis/metallb.io/v1beta1", "servicel2statuses")
WEB = L2Status("worker-1", "web", "default")
WEB_ETH0 = L2Status("worker-1", "web", "default", ("eth0",))
LABELS = {"metallb.io/node": "worker-1", "metallb.io/service-name": "web", "metallb.io/service-namespace": "default"}


def objects(double: APIDouble) -> list[dict[str, Any]]:
    with double.store.lock:
        return [copy.deepcopy(o) for p, o in sorted(double.store.objects.items()) if p.startswith(COLLECTION + "/")]


def requests(double: APIDouble) -> list[tuple[str, str, int]]:
    return [(m, p.removeprefix(COLLECTION), s) for m, p, s in list(double.requests) if p.startswith(COLLECTION)]


def settle(double: APIDouble, seconds: float = 0.5) -> list[tuple[str, str, int]]:
    """The requests once none came for `seconds` (a bound of 10 s catches a writer that never stops)."""
    deadline = time.monotonic() + 10
    seen = -1
    while len(double.requests) != seen:
        assert time.monotonic() < deadline, requests(double)
        seen = len(double.requests)
        time.sleep(seconds)
    return requests(double)


@pytest.fixture
def writer(api: k8s.ApiClient) -> Iterator[L2StatusWriter]:
    w = L2StatusWriter(api, node="worker-1", namespace=NS, recheck=0.3)
    w.start()
    yield w
    w.stop()


def test_the_owner_creates_metallbs_object_then_writes_its_status_through_the_subresource(
    double: APIDouble, writer: L2StatusWriter
) -> None:
    writer.offer({"default/web": WEB_ETH0})
    double.wait_for(lambda: writer.writes == 2)
    [obj] = objects(double)
    name = obj["metadata"]["name"]
    assert name.startswith("l2-") and len(name) == 8
    assert obj["metadata"]["generateName"] == "l2-" and obj["metadata"]["namespace"] == NS
    assert obj["metadata"]["labels"] == LABELS
    assert obj["status"] == {
        "node": "worker-1",
        "serviceName": "web",
        "serviceNamespace": "default",
        "interfaces": [{"name": "eth0"}],
    }
    assert [(m, p) for m, p, _ in settle(double)] == [("GET", ""), ("POST", ""), ("PATCH", f"/{name}/status")]
    writer.offer({"default/web": WEB_ETH0})  # the same again: not even a list
    assert len(settle(double)) == 3


def test_an_unchanged_offer_sends_nothing_and_a_resync_only_lists(double: APIDouble, api: k8s.ApiClient) -> None:
    writer = L2StatusWriter(api, node="worker-1", namespace=NS, resync=0.3)
    writer.start()
    try:
        writer.offer({"default/web": WEB})
        double.wait_for(lambda: writer.writes == 2)
        before = len(requests(double))
        for _ in range(3):
            writer.offer({"default/web": WEB})
        time.sleep(1.0)  # about three resyncs (0.3 s): each lists, none writes
        later = requests(double)[before:]
        assert 1 <= len(later) <= 5 and {m for m, _, _ in later} == {"GET"}, later
        assert writer.writes == 2 and writer.failed == 0
    finally:
        writer.stop()


def test_a_changed_status_is_one_patch_and_a_release_one_delete(double: APIDouble, writer: L2StatusWriter) -> None:
    writer.offer({"default/web": WEB_ETH0})
    double.wait_for(lambda: writer.writes == 2)
    [obj] = objects(double)
    writer.offer({"default/web": WEB})
    double.wait_for(lambda: writer.writes == 3)
    [changed] = objects(double)
    assert changed["metadata"]["name"] == obj["metadata"]["name"]
    assert changed["status"] == {"node": "worker-1", "serviceName": "web", "serviceNamespace": "default"}
    writer.offer({})
    double.wait_for(lambda: writer.writes == 4)
    assert objects(double) == []
    assert [m for m, _, _ in settle(double) if m != "GET"] == ["POST", "PATCH", "PATCH", "DELETE"]


def test_the_new_owner_deletes_the_old_owners_object_and_creates_its_own(
    double: APIDouble, writer: L2StatusWriter
) -> None:
    old = double.store.put(
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "ServiceL2Status",
            "metadata": {"name": "l2-old00", "namespace": NS, "labels": LABELS | {"metallb.io/node": "worker-2"}},
        }
    )
    assert "status" not in old
    writer.offer({"default/web": WEB})
    double.wait_for(lambda: writer.writes == 3)
    [obj] = objects(double)
    assert obj["metadata"]["name"] != "l2-old00" and obj["status"]["node"] == "worker-1"


def test_without_the_crd_one_info_line_no_writes_and_it_starts_once_installed(
    double: APIDouble, writer: L2StatusWriter, caplog: pytest.LogCaptureFixture
) -> None:
    double.store.missing.add(KIND)
    with caplog.at_level(logging.INFO, logger="l2guard.kube.l2status"):
        writer.offer({"default/web": WEB})
        double.wait_for(lambda: writer.installed is False)
        for n in range(5):  # changes while absent list nothing more than the periodic check does
            writer.offer({"default/web": WEB_ETH0 if n % 2 else WEB})
        time.sleep(1.0)  # about three checks (0.3 s)
        absent = requests(double)
        assert absent and all((m, s) == ("GET", 404) for m, _, s in absent), absent
        assert len(absent) <= 6, absent
        lines = [r for r in caplog.records if r.name == "l2guard.kube.l2status"]
        assert [r.levelname for r in lines] == ["INFO"]
        assert lines[0].getMessage().startswith("no ServiceL2Status resource (metallb.io/v1beta1) in the cluster")
        double.store.missing.discard(KIND)
        double.wait_for(lambda: writer.writes == 2)
    [obj] = objects(double)
    assert obj["status"]["node"] == "worker-1" and "interfaces" not in obj["status"]  # the last offer: WEB
    assert "ServiceL2Status resource found" in caplog.text
    assert writer.failed == 0


def test_the_double_keeps_the_status_on_object_writes_and_changes_only_it_on_status_writes(
    double: APIDouble,
) -> None:
    body = {"apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2Status"}
    created = double.store.put(body | {"metadata": {"name": "l2-abcde", "namespace": NS}, "status": WEB.body()})
    assert "status" not in created  # dropped on create
    path = f"{COLLECTION}/l2-abcde"
    double.store.patch(path, {"metadata": {"labels": LABELS}, "status": WEB.body()})
    assert "status" not in double.store.objects[path]
    assert double.store.objects[path]["metadata"]["labels"] == LABELS


def test_missing_rbac_rules_are_one_warning_and_a_rare_retry(
    double: APIDouble, writer: L2StatusWriter, caplog: pytest.LogCaptureFixture
) -> None:
    """Two 403s on the list (the speaker's ServiceAccount lacks the rule), then it works: one WARNING for both, and
    each retry waits `recheck` (0.3 s here), not the 5 s of a transient failure."""
    denied = Reply(status=403, body=json.dumps(forbidden()).encode())
    double.once[(COLLECTION, False)] = [denied, denied]
    with caplog.at_level(logging.INFO, logger="l2guard.kube.l2status"):
        writer.offer({"default/web": WEB})
        double.wait_for(lambda: writer.writes == 2, timeout=4)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in warnings] == [
        "ServiceL2Status list failed: HTTP 403: servicel2statuses.metallb.io is forbidden: User "
        '"system:serviceaccount:l2guard-system:l2guard-speaker" cannot list resource "servicel2statuses" in API '
        'group "metallb.io" in the namespace "metallb-system"'
    ]
    assert writer.failed == 2


def forbidden() -> dict[str, Any]:
    """The API server's 403 Status (the captured 409's shape, with the RBAC denial's reason and message)."""
    body: dict[str, Any] = json.loads((API / "lease-update-conflict.json").read_text())
    body.update(
        code=403,
        reason="Forbidden",
        message='servicel2statuses.metallb.io is forbidden: User "system:serviceaccount:l2guard-system:'
        'l2guard-speaker" cannot list resource "servicel2statuses" in API group "metallb.io" in the namespace '
        '"metallb-system"',
        details={"group": "metallb.io", "kind": "servicel2statuses"},
    )
    return body


def test_an_object_someone_else_deletes_or_changes_is_repaired_at_once_through_the_watch(
    double: APIDouble, writer: L2StatusWriter
) -> None:
    """The writer's resync is 5 minutes here: only the watch of its own objects can bring it back this fast (a
    split view: another speaker that briefly believed it owned the service deleted this one's object)."""
    writer.offer({"default/web": WEB})
    double.wait_for(lambda: writer.writes == 2)
    [obj] = objects(double)
    double.store.delete(f"{COLLECTION}/{obj['metadata']['name']}")
    double.wait_for(lambda: writer.writes == 4)  # created again, and its status written
    [again] = objects(double)
    assert again["metadata"]["name"] != obj["metadata"]["name"] and again["status"] == WEB.body()
    where = f"{COLLECTION}/{again['metadata']['name']}/status"
    double.store.patch(where, {"status": {"interfaces": [{"name": "eth9"}]}})
    double.wait_for(lambda: writer.writes == 5)
    [repaired] = objects(double)
    assert repaired["status"] == WEB.body()
    assert [m for m, _, _ in settle(double) if m != "GET"] == ["POST", "PATCH", "POST", "PATCH", "PATCH"]
