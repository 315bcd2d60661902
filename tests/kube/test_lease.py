"""LeaseKeeper against the API double, with the real kubernetes client."""

from __future__ import annotations

import copy
import time

import pytest
from kubernetes import client as k8s

from l2guard.kube import errors
from l2guard.kube.lease import LeaseKeeper
from tests.kube.conftest import client_for
from tests.webhook.apidouble import APIDouble

NS = "l2guard-system"
NAME = "l2guard-speaker-worker-1"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{NAME}"
COLLECTION = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


def keeper(api: k8s.ApiClient, **options: float) -> LeaseKeeper:
    return LeaseKeeper(api, name=NAME, namespace=NS, holder="worker-1", **options)  # type: ignore[arg-type]


def stored(double: APIDouble) -> dict:  # type: ignore[type-arg]
    with double.store.lock:
        return copy.deepcopy(double.store.objects[PATH])


def puts(double: APIDouble) -> int:
    return sum(1 for method, path, status in double.requests if method == "PUT" and path == PATH and status == 200)


def test_the_first_renewal_creates_the_lease(double: APIDouble, api: k8s.ApiClient) -> None:
    keeper(api).renew()
    lease = stored(double)
    assert lease["spec"]["holderIdentity"] == "worker-1"
    assert lease["spec"]["leaseDurationSeconds"] == 6
    assert lease["spec"]["renewTime"] == lease["spec"]["acquireTime"]
    assert lease["spec"]["renewTime"].endswith("Z")
    assert double.requests == [("GET", PATH, 404), ("POST", COLLECTION, 201)]


def test_later_renewals_update_the_renew_time_with_the_read_resource_version(
    double: APIDouble, api: k8s.ApiClient
) -> None:
    k = keeper(api)
    k.renew()
    created = stored(double)
    time.sleep(0.01)  # renewTime has microseconds; make sure the wall clock moved
    k.renew()
    renewed = stored(double)
    assert double.requests[-1] == ("PUT", PATH, 200)
    assert renewed["spec"]["renewTime"] > created["spec"]["renewTime"]
    assert renewed["spec"]["acquireTime"] == created["spec"]["acquireTime"]
    assert int(renewed["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_the_loop_renews_every_interval_until_stopped(double: APIDouble, api: k8s.ApiClient) -> None:
    k = keeper(api, duration=2, renew_interval=0.1)
    k.start()
    try:
        double.wait_for(lambda: puts(double) >= 3)
    finally:
        k.stop()
    state = k.state()
    assert state.failures == 0
    assert state.last_renewed is not None
    after_stop = len(double.requests)
    time.sleep(0.5)  # five intervals: a loop still running would have renewed
    assert len(double.requests) == after_stop


def test_a_conflict_rereads_and_retries_once(double: APIDouble, api: k8s.ApiClient) -> None:
    k = keeper(api)
    k.renew()
    # Another writer (a second client) updates the lease: the keeper's resourceVersion is stale now.
    other = k8s.CoordinationV1Api(api)
    lease = stored(double)
    lease["metadata"]["labels"] = {"written-by": "someone-else"}
    other.replace_namespaced_lease(NAME, NS, lease, _preload_content=False)
    k.renew()
    assert double.requests[-3:] == [("PUT", PATH, 409), ("GET", PATH, 200), ("PUT", PATH, 200)]
    assert stored(double)["metadata"]["labels"] == {"written-by": "someone-else"}
    assert k.state().failures == 0


def test_a_deleted_lease_is_created_again(double: APIDouble, api: k8s.ApiClient) -> None:
    k = keeper(api)
    k.renew()
    k8s.CoordinationV1Api(api).delete_namespaced_lease(NAME, NS, _preload_content=False)
    k.renew()
    assert double.requests[-3:] == [("PUT", PATH, 404), ("GET", PATH, 404), ("POST", COLLECTION, 201)]
    assert stored(double)["spec"]["holderIdentity"] == "worker-1"


def test_release_leaves_the_lease_expired_for_peers(double: APIDouble, api: k8s.ApiClient) -> None:
    k = keeper(api)
    k.renew()
    before = stored(double)
    k.release()
    released = stored(double)
    # What a peer reads (client-go's rule, and l2core.liveness): no holder, a 1-second duration, a changed record.
    assert "holderIdentity" not in released["spec"]
    assert released["spec"]["leaseDurationSeconds"] == 1
    assert released["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    assert double.requests[-1][0] == "PATCH"


def test_renewing_after_a_release_takes_the_lease_again(double: APIDouble, api: k8s.ApiClient) -> None:
    k = keeper(api)
    k.renew()
    k.release()
    k.renew()
    lease = stored(double)
    assert lease["spec"]["holderIdentity"] == "worker-1"
    assert lease["spec"]["leaseDurationSeconds"] == 6
    assert lease["spec"]["leaseTransitions"] == 1


def test_releasing_a_missing_lease_is_no_error(api: k8s.ApiClient) -> None:
    keeper(api).release()


def test_renewals_fail_when_the_api_server_goes_away() -> None:
    with APIDouble({}) as double:
        k = keeper(client_for(double), duration=2, renew_interval=0.1, request_timeout=0.5)
        k.start()
        double.wait_for(lambda: puts(double) >= 1)
        double.stop()
        last_good = k.state().last_renewed
        try:
            double.wait_for(lambda: k.state().failures >= 2)
        finally:
            k.stop()
    state = k.state()
    assert state.last_renewed is not None
    assert last_good is not None
    assert state.last_renewed - last_good < 1  # at most the renewal in flight when the double stopped
    assert time.monotonic() - state.last_renewed > 0.1  # the renewal age grows
    assert "unreachable" in state.last_error


def test_a_hung_api_server_does_not_block_a_renewal_past_the_timeout(double: APIDouble, api: k8s.ApiClient) -> None:
    k = keeper(api, request_timeout=0.3)
    double.hang = 60
    started = time.monotonic()
    with pytest.raises(errors.Unreachable, match="timed out"):
        k.renew()
    assert time.monotonic() - started < 10
    assert k.state().failures == 1
    assert k.state().last_renewed is None


def test_stop_returns_while_the_api_server_hangs(double: APIDouble, api: k8s.ApiClient) -> None:
    k = keeper(api, request_timeout=0.3)
    double.hang = 60
    k.start()
    time.sleep(0.1)  # let the loop's first call reach the hung double
    started = time.monotonic()
    k.stop()
    assert time.monotonic() - started < 10


def test_a_duration_not_longer_than_the_interval_is_refused(api: k8s.ApiClient) -> None:
    with pytest.raises(ValueError, match="shorter than the duration"):
        keeper(api, duration=2, renew_interval=2)


def test_a_lease_with_a_broken_spec_is_taken_over(double: APIDouble, api: k8s.ApiClient) -> None:
    k = keeper(api)
    k.renew()
    with double.store.lock:  # another writer left nonsense (the real API server would have validated it)
        double.store.objects[PATH]["spec"] = {"holderIdentity": "worker-7", "leaseTransitions": "many"}
        double.store.objects[PATH]["metadata"]["resourceVersion"] = "999999"
    k.renew()
    spec = stored(double)["spec"]
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"], spec["leaseTransitions"]) == ("worker-1", 6, 1)


def test_annotations_ride_on_the_renewals_without_writes_of_their_own(double: APIDouble, api: k8s.ApiClient) -> None:
    macs = {"l2guard.io/macs": "02:00:00:00:0a:01"}
    LeaseKeeper(api, name=NAME, namespace=NS, holder="worker-1", annotations=macs).renew()
    assert stored(double)["metadata"]["annotations"] == macs
    with double.store.lock:  # someone else annotates the Lease meanwhile: kept
        double.store.objects[PATH]["metadata"]["annotations"]["team"] = "net"
    restarted = LeaseKeeper(api, name=NAME, namespace=NS, holder="worker-1", annotations=macs)
    restarted.renew()
    restarted.renew()
    assert stored(double)["metadata"]["annotations"] == {**macs, "team": "net"}
    assert [m for m, _, _ in double.requests] == ["GET", "POST", "GET", "PUT", "PUT"]
