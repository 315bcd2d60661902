"""The webhook answering from the live cluster view (the list+watch source against the API double replaying
captured responses), and reading pools and advertisements live for their reviews (issue 7, item 4)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from l2core.model import EligibilitySettings
from l2guard.view import ClusterView
from tests.kube.scripts import LEASES, NODES, POOLS, leases_list, scripts, source, speaker_lease
from tests.kube.test_client import kubeconfig
from webhook.app import MUTATE_NODE, VALIDATE_POOL
from webhook.cli import build
from webhook.settings import WebhookSettings, add_arguments, from_args

from .apidouble import APIDouble, Reply, list_reply, watch_reply
from .conftest import API, PKI, captured, pool_object


def _exclude_worker_1(serve, replies: dict[tuple[str, bool], list[Reply]]) -> list[str]:  # type: ignore[no-untyped-def]
    """The warnings of the review that puts the exclude label on worker-1, answered from the live view."""
    view = ClusterView(EligibilitySettings())
    replies[(NODES, True)] = [watch_reply(hold=5)]  # stay on the first list: worker-1 owns default/web
    replies[(NODES, False)] = [list_reply("list-nodes.json")]
    with APIDouble(replies) as double:
        src = source(double, view)
        running = serve(WebhookSettings(), view=view)
        assert running.health.get("/readyz").status_code == 503
        src.start()
        try:
            double.wait_for(lambda: view.synced)
            assert running.health.get("/readyz").status_code == 200
            resp = running.review(MUTATE_NODE, captured("node-label-exclude-empty"))["response"]
        finally:
            src.stop()
    return list(resp["warnings"])


def test_webhook_answers_from_the_live_view(serve) -> None:  # type: ignore[no-untyped-def]
    warnings = _exclude_worker_1(serve, scripts())  # no l2guard speaker lease: every node counts as alive
    assert warnings[1] == "LoadBalancer 192.0.2.100 (default/web) moves from worker-1 to worker-2"


def test_the_webhook_warnings_count_only_speakers_that_run(serve) -> None:  # type: ignore[no-untyped-def]
    """worker-2 would take the IP over, but only worker-1's speaker holds a lease: nobody is left to announce."""
    replies = scripts()
    replies[(LEASES, False)] = [leases_list(speaker_lease("worker-1", "900"))]
    warnings = _exclude_worker_1(serve, replies)
    assert warnings[1] == "LoadBalancer 192.0.2.100 (default/web) will have NO announcing node"


def _pools_with(*pools: dict[str, Any]) -> Reply:
    """The captured pool list (pool `lan`) with more pools in it, as the API server lists them after their create."""
    body = json.loads((API / "list-ipaddresspools.json").read_text())
    body["items"].extend(pools)
    return Reply(body=json.dumps(body).encode())


def _create_pool(name: str, addresses: list[str]) -> dict[str, Any]:
    review = captured("ipaddresspool-create")
    review["request"]["name"] = name
    review["request"]["object"]["metadata"]["name"] = name
    review["request"]["object"]["spec"]["addresses"] = addresses
    return review


def _live_config_scripts(live_pools: Reply) -> dict[tuple[str, bool], list[Reply]]:
    """The cache lists the captured pools once and its watch never delivers anything more (it lags); every later
    pools list, the webhook's live reads, answers `live_pools`."""
    replies = scripts()
    replies[(NODES, False)] = [list_reply("list-nodes.json")]
    replies[(NODES, True)] = [watch_reply(hold=5)]
    replies[(POOLS, False)] = [list_reply("list-ipaddresspools.json"), live_pools]
    replies[(POOLS, True)] = [watch_reply(hold=5)]
    return replies


def test_a_pool_created_a_moment_ago_is_seen_although_the_watch_lags(serve) -> None:  # type: ignore[no-untyped-def]
    """Found against a real API server: pool A (198.51.100.0/24) and at once pool B (198.51.100.128/25) admitted B
    in 3-12 of 100 tries, because the watched cache had not seen A yet."""
    view = ClusterView(EligibilitySettings())
    pool_a = pool_object("a", ["198.51.100.0/24"])
    with APIDouble(_live_config_scripts(_pools_with(pool_a))) as double:
        src = source(double, view)
        running = serve(WebhookSettings(), view=view, read_config=src.read_config)
        src.start()
        try:
            double.wait_for(lambda: view.synced)
            assert "metallb-system/a" not in view.snapshot.cluster.pools  # the cache lags: it has not seen A
            resp = running.review(VALIDATE_POOL, _create_pool("b", ["198.51.100.128/25"]))["response"]
        finally:
            src.stop()
    assert resp["allowed"] is False and "warnings" not in resp
    assert "overlaps 198.51.100.0/24 of pool metallb-system/a" in resp["status"]["message"], resp
    # Two pools lists: the cache's, then the review's live read, which names no resourceVersion (a consistent read).
    assert [(w, rv, status) for p, w, rv, status in double.log if p == POOLS and not w] == [
        (False, None, 200),
        (False, None, 200),
    ]
    assert 'l2guard_webhook_config_reads_total{result="live"} 1.0' in running.metrics.render().decode()


def test_a_failed_live_read_is_answered_from_the_cache_with_a_warning(serve) -> None:  # type: ignore[no-untyped-def]
    """The API server answers the live read with HTTP 500, then hangs: each review is still answered, against the
    cache (which holds pool `lan` only), and says so in a warning."""
    view = ClusterView(EligibilitySettings())
    failing = Reply(status=500, body=b'{"kind":"Status","code":500,"message":"etcd timeout"}')
    hanging = Reply(body=b"{}", delay=30)  # ended when the double stops
    replies = _live_config_scripts(failing)
    replies[(POOLS, False)].append(hanging)
    with APIDouble(replies) as double:
        src = source(double, view)
        running = serve(WebhookSettings(), view=view, read_config=src.read_config)
        src.start()
        try:
            double.wait_for(lambda: view.synced)
            after_500 = running.review(VALIDATE_POOL, _create_pool("b", ["198.51.100.128/25"]))["response"]
            # The client's 10 s timeout is the bound that catches a review waiting on the hung read.
            after_hang = running.review(VALIDATE_POOL, _create_pool("c", ["192.0.2.96/28"]))["response"]
        finally:
            src.stop()
    assert after_500["allowed"] is True
    assert after_500["warnings"] == [
        "validated against the cached pools: live read failed: HTTP 500: etcd timeout",
        "IPAddressPool metallb-system/b: no L2Advertisement announces this pool",
    ]
    # The cache still denies what it can see: c overlaps the cached pool lan.
    assert after_hang["allowed"] is False
    assert "overlaps 192.0.2.100-192.0.2.120 of pool metallb-system/lan" in after_hang["status"]["message"]
    assert after_hang["warnings"] == ["validated against the cached pools: live read failed: no answer within 1.2 s"]
    assert 'l2guard_webhook_config_reads_total{result="fallback"} 2.0' in running.metrics.render().decode()


def test_an_invalid_pool_edit_keeps_the_last_good_pool_and_is_exported_as_stale(serve) -> None:  # type: ignore[no-untyped-def]
    """The watch delivers pool `lan` edited into an invalid one: the webhook still plans with the last good `lan`
    (worker-1 keeps announcing the IP), and /metrics counts one stale object."""
    bad = pool_object("lan", ["not an address"])
    bad["metadata"]["resourceVersion"] = "950"
    edit = Reply(events=[json.dumps({"type": "MODIFIED", "object": bad}).encode()], headers=watch_reply().headers)
    replies = scripts()
    replies[(POOLS, True)] = [edit, watch_reply(hold=5)]
    replies[(NODES, True)] = [watch_reply(hold=5)]  # stay on the first list: worker-1 owns default/web
    replies[(NODES, False)] = [list_reply("list-nodes.json")]
    view = ClusterView(EligibilitySettings())
    with APIDouble(replies) as double:
        src = source(double, view)
        running = serve(WebhookSettings(), view=view)
        src.start()
        try:
            double.wait_for(lambda: view.synced and bool(view.snapshot.stale))
            metrics = running.health.get("/metrics").text
        finally:
            src.stop()
    assert "l2guard_webhook_stale_objects 1.0" in metrics
    assert view.snapshot.plan.services["default/web"].announcer == "worker-1"


def test_the_webhook_keeps_its_speaker_liveness_while_the_lease_watch_fails(pki: PKI, tmp_path: Path) -> None:
    """The process's own wiring (webhook.cli.build): the lease watch fails right after the list. Renewals are then
    missed, not absent: the view freezes who was alive instead of judging every speaker dead after 2 s."""
    replies = scripts()
    replies[(LEASES, False)] = [
        leases_list(*(speaker_lease(n, "900", duration=2) for n in ("worker-1", "worker-2"))),
        Reply(status=500, body=b'{"kind":"Status","code":500,"message":"etcd timeout"}'),  # every re-list fails
    ]
    replies[(LEASES, True)] = [Reply(status=500, body=b'{"kind":"Status","code":500,"message":"etcd timeout"}')]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with APIDouble(replies) as double:
        argv = ["--cert-file", str(pki.cert_file), "--key-file", str(pki.key_file)]
        argv += ["--kubeconfig", str(kubeconfig(tmp_path, double.url))]
        server, src, _ = build(from_args(parser.parse_args(argv), {}))
        view = server.state.view
        src.start()
        try:
            double.wait_for(lambda: view.synced and src.status().errors["leases"] >= 1)
            time.sleep(3)  # past the leases' 2 s (a frozen view must not judge them expired)
            alive = view.snapshot.alive
            errors = src.status().errors["leases"]
        finally:
            src.stop()
    assert errors >= 1
    assert alive == {"worker-1", "worker-2"}
    assert 'l2guard_webhook_watch_errors_total{resource="leases"}' in server.state.metrics.render().decode()


def test_the_webhook_reads_the_speakers_leases_from_the_shared_namespace(pki: PKI, tmp_path: Path) -> None:
    """The manifests may run the speakers in a namespace of their own: the shared `--namespace` (as the speaker and
    explain take it) says where their Leases are; it was hard-coded to l2guard-system."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with APIDouble({}) as double:
        double.store.seed("list-nodes.json", "list-services.json", "list-endpointslices.json")
        argv = ["--cert-file", str(pki.cert_file), "--key-file", str(pki.key_file), "--namespace", "l2guard-speakers"]
        argv += ["--kubeconfig", str(kubeconfig(tmp_path, double.url))]
        server, src, _ = build(from_args(parser.parse_args(argv), {}))
        src.start()
        try:
            double.wait_for(lambda: server.state.view.synced)
        finally:
            src.stop()
    paths = {path for _, path, _ in double.requests}
    assert "/apis/coordination.k8s.io/v1/namespaces/l2guard-speakers/leases" in paths, paths
    assert not any("/namespaces/l2guard-system/" in p for p in paths), paths
