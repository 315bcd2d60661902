"""The live cluster view: the real `kubernetes` client against the API double replaying captured list/watch
responses (chunked watch streams, BOOKMARK, the 410 ERROR event, the HTTP 410 list), then the webhook answering
from that view, and reading pools and advertisements live for their reviews."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes import client as k8s

from l2core.model import EXCLUDE_LABEL, EligibilitySettings
from l2core.plan import Status, plan
from webhook.app import MUTATE_NODE, VALIDATE_POOL
from webhook.kube import LIVE_MAX_PAGES, KubeSource, SourceError, resources
from webhook.metrics import Metrics
from webhook.settings import WebhookSettings
from webhook.view import ClusterView

from .apidouble import APIDouble, Reply, list_reply, too_old_list, watch_reply
from .conftest import API, captured, pool_object

NODES = "/api/v1/nodes"
SERVICES = "/api/v1/services"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
POOLS = "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools"
ADS = "/apis/metallb.io/v1beta1/namespaces/metallb-system/l2advertisements"


def _scripts(*, services_fail_first: bool = False) -> dict[tuple[str, bool], list[Reply]]:
    services = [list_reply("list-services.json")]
    if services_fail_first:
        services.insert(0, Reply(status=500, body=b'{"kind":"Status","code":500,"message":"etcd timeout"}'))
    return {
        (NODES, False): [list_reply("list-nodes.json"), too_old_list(), list_reply("list-nodes-after.json")],
        (NODES, True): [watch_reply("watch-nodes.jsonl"), watch_reply("watch-too-old.jsonl"), watch_reply()],
        (SERVICES, False): services,
        (SERVICES, True): [watch_reply()],
        (SLICES, False): [list_reply("list-endpointslices.json")],
        (SLICES, True): [watch_reply("watch-endpointslices.jsonl"), watch_reply()],
        (POOLS, False): [list_reply("list-ipaddresspools.json")],
        (POOLS, True): [watch_reply()],
        (ADS, False): [list_reply("list-l2advertisements.json")],
        (ADS, True): [watch_reply()],
    }


def _source(double: APIDouble, view: ClusterView, metrics: Metrics | None = None) -> KubeSource:
    config = k8s.Configuration(host=double.url)
    api = k8s.ApiClient(config)
    return KubeSource(view, resources(api, "metallb-system"), metrics=metrics, backoff=(0.01, 0.05), watch_timeout=5)


def test_list_watch_follows_events_and_relists_after_410() -> None:
    view = ClusterView(EligibilitySettings())
    metrics = Metrics()
    with APIDouble(_scripts(services_fail_first=True)) as double:
        source = _source(double, view, metrics)
        source.start()
        try:
            double.wait_for(
                lambda: (
                    view.synced
                    and set(view.snapshot.cluster.nodes) == {"cp-1", "worker-2"}
                    and any(p == NODES and w and rv == "944" for p, w, rv, _ in double.log)
                )
            )
            snap = view.snapshot
        finally:
            source.stop()
    nodes_requests = [(w, rv, status) for p, w, rv, status in double.log if p == NODES]
    # list, watch from the list's version, re-watch from the BOOKMARK's version, ERROR 410 -> re-list, which
    # answers 410 once (list-too-old) -> re-list again, then watch from the new list's version.
    assert nodes_requests[:6] == [
        (False, None, 200),
        (True, "306", 200),
        (True, "313", 200),
        (False, None, 410),
        (False, None, 200),
        (True, "944", 200),
    ]
    assert source.relists["nodes"] == 2
    worker2 = snap.cluster.nodes["worker-2"]
    assert worker2.labels[EXCLUDE_LABEL] == "true" and worker2.network_unavailable
    assert EXCLUDE_LABEL not in snap.cluster.nodes["cp-1"].labels
    # The endpoint on worker-1 turned ready=false but still serving (the watch event), and worker-1 is gone.
    endpoints = snap.cluster.endpoint_slices["default/web-abc12"].endpoints
    assert [e.ready for e in endpoints] == [False, False]
    # cp-1 lost its label, worker-2 is excluded and NetworkUnavailable, worker-1 is gone: cp-1 announces, and the
    # incrementally maintained plan equals a fresh one-shot plan of the same objects.
    web = snap.plan.services["default/web"]
    assert (web.status, web.announcer) == (Status.ANNOUNCED, "cp-1")
    assert snap.plan.services == plan(snap.cluster, EligibilitySettings()).services
    # The services list failed once (HTTP 500) and was retried after a back-off.
    assert [s for p, w, _, s in double.log if p == SERVICES and not w][:2] == [500, 200]
    assert 'l2guard_webhook_watch_errors_total{resource="services"} 1.0' in metrics.render().decode()


def test_webhook_answers_from_the_live_view(serve) -> None:  # type: ignore[no-untyped-def]
    view = ClusterView(EligibilitySettings())
    scripts = _scripts()
    scripts[(NODES, True)] = [watch_reply(hold=5)]  # stay on the first list: worker-1 owns default/web
    scripts[(NODES, False)] = [list_reply("list-nodes.json")]
    with APIDouble(scripts) as double:
        source = _source(double, view)
        running = serve(WebhookSettings(), view=view)
        assert running.health.get("/readyz").status_code == 503
        source.start()
        try:
            double.wait_for(lambda: view.synced)
            assert running.health.get("/readyz").status_code == 200
            resp = running.review(MUTATE_NODE, captured("node-label-exclude-empty"))["response"]
        finally:
            source.stop()
    assert resp["warnings"][1] == "LoadBalancer 192.0.2.100 (default/web) moves from worker-1 to worker-2"


def test_an_unexpected_exception_backs_off_and_relists_instead_of_killing_the_watch(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Found in review: only known errors were caught, so any surprise from the client library ended that
    resource's thread for good while /readyz kept saying synced."""
    view = ClusterView(EligibilitySettings())
    metrics = Metrics()
    real_list = KubeSource._list
    surprises: list[str] = []

    def flaky_list(self, res):  # type: ignore[no-untyped-def]
        if res.name == "services" and not surprises:
            surprises.append(res.name)
            raise TypeError("a surprise from deep inside the client")
        return real_list(self, res)

    monkeypatch.setattr(KubeSource, "_list", flaky_list)
    with APIDouble(_scripts()) as double:
        source = _source(double, view, metrics)
        source.start()
        try:
            double.wait_for(lambda: view.synced and "default/web" in view.snapshot.cluster.services)
        finally:
            source.stop()
    assert surprises == ["services"]
    assert 'l2guard_webhook_watch_errors_total{resource="services"} 1.0' in metrics.render().decode()


# ----- live reads of pools and advertisements (issue 7, item 4) --------------------------------------------------


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
    scripts = _scripts()
    scripts[(NODES, False)] = [list_reply("list-nodes.json")]
    scripts[(NODES, True)] = [watch_reply(hold=5)]
    scripts[(POOLS, False)] = [list_reply("list-ipaddresspools.json"), live_pools]
    scripts[(POOLS, True)] = [watch_reply(hold=5)]
    return scripts


def _page(pools: list[dict[str, Any]], more: str) -> Reply:
    body = json.loads((API / "list-ipaddresspools.json").read_text())
    body["items"] = pools
    body["metadata"]["continue"] = more
    return Reply(body=json.dumps(body).encode())


def test_the_live_read_follows_pages_and_gives_up_past_its_bound() -> None:
    pages = [_page([pool_object("a", ["198.51.100.0/25"])], "next"), _page([pool_object("b", ["203.0.113.0/24"])], "")]
    endless = [_page([pool_object("a", ["198.51.100.0/25"])], "next")]  # the last reply repeats: always one more
    for script, expected in ((pages, ["a", "b"]), (endless, None)):
        scripts = {(POOLS, False): script, (ADS, False): [list_reply("list-l2advertisements.json")]}
        with APIDouble(scripts) as double:
            source = _source(double, ClusterView(EligibilitySettings()))
            try:
                if expected is None:
                    with pytest.raises(SourceError, match="more than 1000 objects"):
                        asyncio.run(source.read_config(5.0))
                else:
                    pools, ads = asyncio.run(source.read_config(5.0))
                    assert [p["metadata"]["name"] for p in pools] == expected
                    assert [a["metadata"]["name"] for a in ads] == ["lan"]
            finally:
                source.stop()
        pool_lists = [p for p, _, _, _ in double.log if p == POOLS]
        assert len(pool_lists) == (2 if expected else LIVE_MAX_PAGES)


def test_a_pool_created_a_moment_ago_is_seen_although_the_watch_lags(serve) -> None:  # type: ignore[no-untyped-def]
    """Found against a real API server: pool A (198.51.100.0/24) and at once pool B (198.51.100.128/25) admitted B
    in 3-12 of 100 tries, because the watched cache had not seen A yet."""
    view = ClusterView(EligibilitySettings())
    pool_a = pool_object("a", ["198.51.100.0/24"])
    with APIDouble(_live_config_scripts(_pools_with(pool_a))) as double:
        source = _source(double, view)
        running = serve(WebhookSettings(), view=view, read_config=source.read_config)
        source.start()
        try:
            double.wait_for(lambda: view.synced)
            assert "metallb-system/a" not in view.snapshot.cluster.pools  # the cache lags: it has not seen A
            resp = running.review(VALIDATE_POOL, _create_pool("b", ["198.51.100.128/25"]))["response"]
        finally:
            source.stop()
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
    scripts = _live_config_scripts(failing)
    scripts[(POOLS, False)].append(hanging)
    with APIDouble(scripts) as double:
        source = _source(double, view)
        running = serve(WebhookSettings(), view=view, read_config=source.read_config)
        source.start()
        try:
            double.wait_for(lambda: view.synced)
            after_500 = running.review(VALIDATE_POOL, _create_pool("b", ["198.51.100.128/25"]))["response"]
            # The client's 10 s timeout is the bound that catches a review waiting on the hung read.
            after_hang = running.review(VALIDATE_POOL, _create_pool("c", ["192.0.2.96/28"]))["response"]
        finally:
            source.stop()
    assert after_500["allowed"] is True
    assert after_500["warnings"] == [
        "validated against the cached pools: live read failed: HTTP 500: Internal Server Error",
        "IPAddressPool metallb-system/b: no L2Advertisement announces this pool",
    ]
    # The cache still denies what it can see: c overlaps the cached pool lan.
    assert after_hang["allowed"] is False
    assert "overlaps 192.0.2.100-192.0.2.120 of pool metallb-system/lan" in after_hang["status"]["message"]
    assert after_hang["warnings"] == ["validated against the cached pools: live read failed: no answer within 1.2 s"]
    assert 'l2guard_webhook_config_reads_total{result="fallback"} 2.0' in running.metrics.render().decode()
