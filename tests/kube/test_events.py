"""EventPoster against the API double, with the real kubernetes client."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from l2guard.kube.events import EventPoster, ObjectRef, object_ref
from tests.webhook.apidouble import APIDouble

WEB = ObjectRef("Service", "web", "default", uid="5c6a22f5-0000-4000-8000-000000000001")
NODE = ObjectRef("Node", "worker-2")
MESSAGE = (
    "no eligible node for 192.0.2.100: cp-1 excluded by label node.kubernetes.io/exclude-from-external-load-balancers"
)


def events(double: APIDouble) -> list[dict[str, Any]]:
    with double.store.lock:
        return [copy.deepcopy(o) for p, o in sorted(double.store.objects.items()) if "/events/" in p]


@pytest.fixture
def poster(api: k8s.ApiClient) -> Iterator[EventPoster]:
    p = EventPoster(api, node="worker-1")
    p.start()
    yield p
    p.stop()


def test_an_event_is_created_with_the_reporting_node(double: APIDouble, poster: EventPoster) -> None:
    poster.post(WEB, type="Warning", reason="NoEligibleNode", message=MESSAGE)
    double.wait_for(lambda: poster.posted == 1)
    [event] = events(double)
    assert event["metadata"]["namespace"] == "default"
    assert event["metadata"]["name"].startswith("web.")
    assert event["involvedObject"] == {
        "kind": "Service",
        "name": "web",
        "namespace": "default",
        "apiVersion": "v1",
        "uid": "5c6a22f5-0000-4000-8000-000000000001",
    }
    assert (event["type"], event["reason"], event["message"], event["count"]) == (
        "Warning",
        "NoEligibleNode",
        MESSAGE,
        1,
    )
    assert event["source"] == {"component": "l2guard-speaker", "host": "worker-1"}
    assert (event["reportingComponent"], event["reportingInstance"]) == ("l2guard-speaker", "worker-1")
    assert event["firstTimestamp"] == event["lastTimestamp"]


def test_repeats_update_the_count_of_the_same_event(double: APIDouble, poster: EventPoster) -> None:
    for _ in range(3):
        poster.post(WEB, type="Warning", reason="NoEligibleNode", message=MESSAGE)
    double.wait_for(lambda: poster.updated == 2)
    [event] = events(double)
    assert event["count"] == 3
    assert poster.posted == 1
    assert [m for m, _, _ in double.requests] == ["POST", "PATCH", "PATCH"]


def test_a_different_message_is_a_different_event(double: APIDouble, poster: EventPoster) -> None:
    poster.post(WEB, type="Normal", reason="Announcing", message="announcing 192.0.2.100 from node worker-1 on eth0")
    poster.post(WEB, type="Normal", reason="Announcing", message="announcing 192.0.2.100 from node worker-2 on eth0")
    double.wait_for(lambda: poster.posted == 2)
    assert sorted(e["message"] for e in events(double)) == [
        "announcing 192.0.2.100 from node worker-1 on eth0",
        "announcing 192.0.2.100 from node worker-2 on eth0",
    ]


def test_an_event_about_a_node_goes_to_the_default_namespace(double: APIDouble, poster: EventPoster) -> None:
    poster.post(NODE, type="Warning", reason="IPConflict", message="192.0.2.100 is also claimed by 02:00:00:00:00:09")
    double.wait_for(lambda: poster.posted == 1)
    [event] = events(double)
    assert event["metadata"]["namespace"] == "default"
    assert event["involvedObject"] == {"kind": "Node", "name": "worker-2", "apiVersion": "v1"}


def test_an_event_about_a_metallb_object_names_its_group_version_and_goes_to_its_namespace(
    double: APIDouble, poster: EventPoster
) -> None:
    pool = object_ref("IPAddressPool", "metallb-system/lan", uid="uid-lan")
    poster.post(pool, type="Warning", reason="InvalidObject", message="IPAddressPool metallb-system/lan is invalid")
    double.wait_for(lambda: poster.posted == 1)
    [event] = events(double)
    assert event["metadata"]["namespace"] == "metallb-system"
    assert event["involvedObject"] == {
        "kind": "IPAddressPool",
        "name": "lan",
        "namespace": "metallb-system",
        "apiVersion": "metallb.io/v1beta1",
        "uid": "uid-lan",
    }
    assert object_ref("Node", "worker-1") == ObjectRef("Node", "worker-1", "", api_version="v1")
    assert object_ref("L2Advertisement", "metallb-system/lan").api_version == "metallb.io/v1beta1"


def test_an_expired_event_is_created_again(double: APIDouble, api: k8s.ApiClient, poster: EventPoster) -> None:
    poster.post(WEB, type="Warning", reason="NoEligibleNode", message=MESSAGE)
    double.wait_for(lambda: poster.posted == 1)
    [event] = events(double)
    k8s.CoreV1Api(api).delete_namespaced_event(event["metadata"]["name"], "default", _preload_content=False)
    poster.post(WEB, type="Warning", reason="NoEligibleNode", message=MESSAGE)
    double.wait_for(lambda: poster.posted == 2)
    [again] = events(double)
    assert again["count"] == 1
    assert [m for m, _, s in double.requests[-2:]] == ["PATCH", "POST"]


def test_a_huge_message_is_cut_to_the_api_limit(double: APIDouble, poster: EventPoster) -> None:
    poster.post(WEB, type="Warning", reason="NoEligibleNode", message="é" * 5000)
    double.wait_for(lambda: poster.posted == 1)
    [event] = events(double)
    assert len(event["message"].encode()) <= 1024
    assert event["message"].endswith("...")


def test_the_rate_limit_suppresses_a_flood_and_counts_it(double: APIDouble, api: k8s.ApiClient) -> None:
    poster = EventPoster(api, node="worker-1", burst=5, rate=0.001)
    poster.start()
    try:
        for i in range(50):
            poster.post(WEB, type="Warning", reason="NoEligibleNode", message=f"flood {i}")
        double.wait_for(lambda: poster.posted == 5)
    finally:
        poster.stop()
    assert poster.suppressed == 45
    assert len(events(double)) == 5
    assert [e["message"] for e in sorted(events(double), key=lambda e: e["message"])] == [
        f"flood {i}" for i in range(5)
    ]


def test_a_full_queue_drops_and_never_blocks_the_caller(double: APIDouble, api: k8s.ApiClient) -> None:
    double.hang = 60  # the API server hangs: the worker is stuck in its first write
    poster = EventPoster(api, node="worker-1", burst=1000, queue_size=3, request_timeout=30)
    poster.start()
    try:
        started = time.monotonic()
        for i in range(100):
            poster.post(WEB, type="Warning", reason="NoEligibleNode", message=f"event {i}")
        assert time.monotonic() - started < 5
        # One is with the worker (or still queued), at most three wait: the rest were dropped.
        assert 96 <= poster.dropped <= 97
        assert poster.suppressed == 0
    finally:
        double.stop()
        poster.stop()


def test_failed_writes_are_counted(api: k8s.ApiClient, double: APIDouble) -> None:
    double.stop()
    poster = EventPoster(api, node="worker-1", request_timeout=0.5)
    poster.start()
    try:
        poster.post(WEB, type="Warning", reason="NoEligibleNode", message=MESSAGE)
        double.wait_for(lambda: poster.failed == 1)
    finally:
        poster.stop()
    assert poster.posted == 0


# ----- Events only on change, across restarts too (issue 8, part 6) ---------------------------------------------

ANNOUNCING = "announcing 192.0.2.100 from node worker-1 on all interfaces"
EVENTS_PATH = "/api/v1/namespaces/default/events"


def test_the_same_event_from_the_same_node_has_the_same_name_and_another_node_another(
    double: APIDouble, api: k8s.ApiClient
) -> None:
    names = []
    for node in ("worker-1", "worker-1", "worker-2"):
        double.store.objects.clear()
        p = EventPoster(api, node=node)
        p.start()
        try:
            p.post(WEB, type="Normal", reason="Announcing", message=ANNOUNCING)
            double.wait_for(lambda p=p: p.posted == 1)
        finally:
            p.stop()
        [event] = events(double)
        names.append(event["metadata"]["name"])
    assert names[0] == names[1] != names[2]
    assert re.fullmatch(r"web\.[0-9a-f]{16}", names[0]), names


def test_a_long_object_name_still_gives_a_valid_event_name(double: APIDouble, poster: EventPoster) -> None:
    long = ObjectRef("Service", "a" * 62 + "-" + "b" * 62 + "." + "c" * 126, "default")  # 251 characters
    poster.post(long, type="Normal", reason="Announcing", message=ANNOUNCING)
    double.wait_for(lambda: poster.posted == 1)
    [event] = events(double)
    name = event["metadata"]["name"]
    assert len(name) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name)


def test_a_restarted_poster_finds_its_event_already_there_and_writes_nothing(
    double: APIDouble, api: k8s.ApiClient, poster: EventPoster
) -> None:
    poster.post(WEB, type="Normal", reason="Announcing", message=ANNOUNCING)
    double.wait_for(lambda: poster.posted == 1)
    poster.stop()
    [before] = events(double)
    written = len(double.requests)
    again = EventPoster(api, node="worker-1")  # the same node's speaker, restarted: its dedup cache is empty
    again.start()
    try:
        again.post(WEB, type="Normal", reason="Announcing", message=ANNOUNCING)
        double.wait_for(lambda: again.adopted == 1)
        assert events(double) == [before]  # not modified: the same resourceVersion, count 1
        name = before["metadata"]["name"]
        assert double.requests[written:] == [
            ("POST", EVENTS_PATH, 409),
            ("GET", f"{EVENTS_PATH}/{name}", 200),
            ("GET", EVENTS_PATH, 200),  # no newer Event about the Service
        ]
        assert (again.posted, again.updated) == (0, 0)
        # Adopted into the dedup cache: a real repeat now counts on from the Event found.
        again.post(WEB, type="Normal", reason="Announcing", message=ANNOUNCING)
        double.wait_for(lambda: again.updated == 1)
    finally:
        again.stop()
    [after] = events(double)
    assert after["count"] == 2 and after["metadata"]["name"] == name


def test_a_restarted_poster_says_it_again_when_a_newer_event_about_the_object_came_meanwhile(
    double: APIDouble, api: k8s.ApiClient, poster: EventPoster
) -> None:
    """While worker-1 was down, the IP moved to worker-2 (its Event is the newest about the Service), then back:
    worker-1's old Event is true again, and must not stay older than worker-2's."""
    poster.post(WEB, type="Normal", reason="Announcing", message=ANNOUNCING)
    double.wait_for(lambda: poster.posted == 1)
    poster.stop()
    [old] = events(double)
    path = f"{EVENTS_PATH}/{old['metadata']['name']}"
    double.store.patch(path, {"firstTimestamp": "2026-12-01T15:00:00Z", "lastTimestamp": "2026-12-01T15:00:00Z"})
    other = EventPoster(api, node="worker-2")
    other.start()
    try:
        other.post(WEB, type="Normal", reason="Announcing", message="announcing 192.0.2.100 from node worker-2 on eth0")
        double.wait_for(lambda: other.posted == 1)
    finally:
        other.stop()
    again = EventPoster(api, node="worker-1")
    again.start()
    try:
        again.post(WEB, type="Normal", reason="Announcing", message=ANNOUNCING)
        double.wait_for(lambda: again.updated == 1)
    finally:
        again.stop()
    bumped = double.store.objects[path]
    assert bumped["count"] == 2 and bumped["lastTimestamp"] > "2026-12-01T15:00:00Z"
    assert (again.posted, again.adopted) == (0, 0)
    assert len(events(double)) == 2


def test_the_double_filters_event_lists_by_field_selector(double: APIDouble, poster: EventPoster) -> None:
    poster.post(WEB, type="Normal", reason="Announcing", message=ANNOUNCING)
    poster.post(NODE, type="Warning", reason="IPConflict", message="192.0.2.100 is also claimed by 02:00:00:00:00:09")
    double.wait_for(lambda: poster.posted == 2)
    with k8s.ApiClient(k8s.Configuration(host=double.url)) as client:
        core = k8s.CoreV1Api(client)
        web = core.list_namespaced_event(
            "default", field_selector="involvedObject.kind=Service,involvedObject.name=web"
        )
        not_web = core.list_namespaced_event("default", field_selector="involvedObject.name!=web")
    assert [e.involved_object.name for e in web.items] == ["web"]
    assert [e.involved_object.name for e in not_web.items] == ["worker-2"]


def test_an_identity_names_the_event_so_a_restart_with_a_new_time_in_the_message_finds_it(
    double: APIDouble, api: k8s.ApiClient, poster: EventPoster
) -> None:
    """A message with a time in it ("invalid since ...", the time this process first saw it) is the same Event after
    a restart when its identity is: found and adopted, not posted again; when it is true again after a newer Event
    about the object, the count goes up and the text becomes today's."""
    pool = object_ref("IPAddressPool", "metallb-system/lan", uid="uid-lan")
    identity = "IPAddressPool metallb-system/lan is invalid: bad"
    first = "IPAddressPool metallb-system/lan is invalid since 2026-12-01T16:00:00Z: bad"
    poster.post(pool, type="Warning", reason="InvalidObject", message=first, identity=identity)
    double.wait_for(lambda: poster.posted == 1)
    poster.stop()
    [before] = events(double)
    again = EventPoster(api, node="worker-1")
    again.start()
    try:
        later = "IPAddressPool metallb-system/lan is invalid since 2026-12-01T17:00:00Z: bad"
        again.post(pool, type="Warning", reason="InvalidObject", message=later, identity=identity)
        double.wait_for(lambda: again.adopted == 1)
        assert events(double) == [before] and again.posted == 0
    finally:
        again.stop()
    path = f"/api/v1/namespaces/metallb-system/events/{before['metadata']['name']}"
    double.store.patch(path, {"firstTimestamp": "2026-12-01T15:00:00Z", "lastTimestamp": "2026-12-01T15:00:00Z"})
    other = EventPoster(api, node="worker-1")
    other.start()
    try:
        other.post(pool, type="Normal", reason="ValidAgain", message="IPAddressPool metallb-system/lan is valid again")
        double.wait_for(lambda: other.posted == 1)
    finally:
        other.stop()
    third = EventPoster(api, node="worker-1")
    third.start()
    try:
        latest = "IPAddressPool metallb-system/lan is invalid since 2026-12-01T18:00:00Z: bad"
        third.post(pool, type="Warning", reason="InvalidObject", message=latest, identity=identity)
        double.wait_for(lambda: third.updated == 1)
    finally:
        third.stop()
    bumped = double.store.objects[path]
    assert (bumped["count"], bumped["message"]) == (2, latest)
