"""The client's errors, raised by real HTTP against the API double, translate into l2guard.kube.errors."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client as k8s

from l2guard.kube import errors
from tests.kube.conftest import client_for
from tests.webhook.apidouble import APIDouble, Reply, too_old_list

LEASES = "/apis/coordination.k8s.io/v1/namespaces/l2guard-system/leases"
NODES = "/api/v1/nodes"


def call(fn: object, *args: object, **kwargs: object) -> errors.KubeError:
    try:
        fn(*args, _preload_content=False, **kwargs)  # type: ignore[operator]
    except errors.TRANSLATED as exc:
        return errors.translate(exc)
    raise AssertionError("the call succeeded")


def lease(name: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {"holderIdentity": "worker-1", "leaseDurationSeconds": 6}}


def test_a_missing_object_is_not_found(api: k8s.ApiClient) -> None:
    err = call(k8s.CoordinationV1Api(api).read_namespaced_lease, "l2guard-speaker-worker-9", "l2guard-system")
    assert type(err) is errors.NotFound
    assert err.status == 404
    assert err.reason == 'HTTP 404: leases.coordination.k8s.io "l2guard-speaker-worker-9" not found'


def test_a_stale_resource_version_is_a_conflict(api: k8s.ApiClient) -> None:
    coord = k8s.CoordinationV1Api(api)
    coord.create_namespaced_lease("l2guard-system", lease("l2guard-speaker-worker-1"), _preload_content=False)
    stale = lease("l2guard-speaker-worker-1")
    stale["metadata"] = {"name": "l2guard-speaker-worker-1", "resourceVersion": "1"}
    err = call(coord.replace_namespaced_lease, "l2guard-speaker-worker-1", "l2guard-system", stale)
    assert type(err) is errors.Conflict
    assert err.reason == (
        'HTTP 409: Operation cannot be fulfilled on leases.coordination.k8s.io "l2guard-speaker-worker-1": the '
        "object has been modified; please apply your changes to the latest version and try again"
    )


def test_creating_an_existing_object_is_a_conflict(api: k8s.ApiClient) -> None:
    coord = k8s.CoordinationV1Api(api)
    coord.create_namespaced_lease("l2guard-system", lease("l2guard-speaker-worker-1"), _preload_content=False)
    err = call(coord.create_namespaced_lease, "l2guard-system", lease("l2guard-speaker-worker-1"))
    assert type(err) is errors.Conflict
    assert err.reason == 'HTTP 409: leases.coordination.k8s.io "l2guard-speaker-worker-1" already exists'


def test_an_expired_resource_version_is_gone() -> None:
    with APIDouble({(NODES, False): [too_old_list()]}) as double:
        err = call(k8s.CoreV1Api(client_for(double)).list_node, resource_version="1", resource_version_match="Exact")
    assert type(err) is errors.Gone
    assert err.status == 410
    assert err.reason.startswith("HTTP 410: ")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, errors.Invalid),
        (401, errors.Forbidden),
        (403, errors.Forbidden),
        (422, errors.Invalid),
        (429, errors.ServerError),
        (500, errors.ServerError),
        (503, errors.ServerError),
    ],
)
def test_error_statuses_map_to_their_class_with_the_status_message(status: int, kind: type) -> None:
    body = json.dumps({"kind": "Status", "status": "Failure", "message": "the\nmessage", "code": status}).encode()
    with APIDouble({(NODES, False): [Reply(status=status, body=body)]}) as double:
        err = call(k8s.CoreV1Api(client_for(double)).list_node)
    assert type(err) is kind
    assert err.reason == f"HTTP {status}: the message"


def test_a_body_that_is_no_status_gives_the_http_reason() -> None:
    with APIDouble({(NODES, False): [Reply(status=403, body=b"<html>nope</html>")]}) as double:
        err = call(k8s.CoreV1Api(client_for(double)).list_node)
    assert type(err) is errors.Forbidden
    assert err.reason == "HTTP 403: Forbidden"


def test_a_huge_status_message_is_one_bounded_line() -> None:
    body = json.dumps({"kind": "Status", "message": "x\n" * 100_000, "code": 500}).encode()
    with APIDouble({(NODES, False): [Reply(status=500, body=body)]}) as double:
        err = call(k8s.CoreV1Api(client_for(double)).list_node)
    assert "\n" not in err.reason
    assert len(err.reason) == errors.MAX_REASON
    assert err.reason.endswith("...")


def test_a_stopped_server_is_unreachable() -> None:
    with APIDouble({}) as double:
        api = client_for(double)
    err = call(k8s.CoreV1Api(api).list_node)
    assert type(err) is errors.Unreachable
    assert err.status == 0
    assert "Connection refused" in err.reason


def test_a_hung_server_is_unreachable_after_the_timeout() -> None:
    with APIDouble({(NODES, False): [Reply(body=b"{}", delay=60)]}) as double:
        started = time.monotonic()
        err = call(k8s.CoreV1Api(client_for(double)).list_node, _request_timeout=0.3)
        assert time.monotonic() - started < 10
    assert type(err) is errors.Unreachable
    assert "timed out" in err.reason
