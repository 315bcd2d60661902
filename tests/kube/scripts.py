"""Scripted API double replies for the list+watch source: the captured lists and watch streams of the five
cluster kinds, and helpers to derive pool lists from the captured one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from l2guard.kube.resources import KINDS, resources
from l2guard.kube.source import KubeSource, Sink
from tests.webhook.apidouble import APIDouble, Reply, list_reply, too_old_list, watch_reply

API_DATA = Path(__file__).resolve().parents[1] / "data" / "api"
NODES = "/api/v1/nodes"
SERVICES = "/api/v1/services"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
POOLS = "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools"
ADS = "/apis/metallb.io/v1beta1/namespaces/metallb-system/l2advertisements"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/l2guard-system/leases"


def scripts(*, services_fail_first: bool = False) -> dict[tuple[str, bool], list[Reply]]:
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
        # The captured leases are MetalLB's (`speaker-worker-1`), no l2guard speaker's: liveness stays unknown.
        (LEASES, False): [list_reply("list-leases.json")],
        (LEASES, True): [watch_reply()],
    }


def quiet_scripts() -> dict[tuple[str, bool], list[Reply]]:
    """The captured lists, answered the same every time, with quiet watches; the speakers' Leases are the double's
    stored objects (listed and watched), for tests that run speakers or explain against one steady cluster."""
    script = scripts()
    script[(NODES, False)] = [list_reply("list-nodes.json")]
    script[(NODES, True)] = [watch_reply()]
    del script[(LEASES, False)], script[(LEASES, True)]
    return script


def source(double: APIDouble, sink: Sink, *, kinds: tuple[str, ...] = KINDS, **options: Any) -> KubeSource:
    api = k8s.ApiClient(k8s.Configuration(host=double.url))
    table = resources(api, metallb_namespace="metallb-system", namespace="l2guard-system", kinds=kinds)
    return KubeSource(sink, table, backoff=(0.01, 0.05), watch_timeout=5, **options)


def pool_object(name: str, addresses: list[str]) -> dict[str, Any]:
    """The captured pool `lan` (from the captured list) renamed, with other addresses and a fresh uid."""
    pool = copy.deepcopy(json.loads((API_DATA / "list-ipaddresspools.json").read_text())["items"][0])
    pool["metadata"].update(name=name, uid=f"uid-{name}")
    pool["spec"]["addresses"] = addresses
    return dict(pool)


def pools_page(pools: list[dict[str, Any]], more: str) -> Reply:
    body = json.loads((API_DATA / "list-ipaddresspools.json").read_text())
    body["items"] = pools
    body["metadata"]["continue"] = more
    return Reply(body=json.dumps(body).encode())


def speaker_lease(node: str, rv: str, *, holder: str | None = None, duration: int = 6) -> dict[str, Any]:
    """The captured Lease create response, renamed for `node`'s speaker, at resourceVersion `rv`."""
    lease = json.loads((API_DATA / "lease-create-response.json").read_text())
    lease["metadata"].update(name=f"l2guard-speaker-{node}", namespace="l2guard-system", resourceVersion=rv)
    lease["spec"].update(holderIdentity=node if holder is None else holder, leaseDurationSeconds=duration)
    return dict(lease)


def leases_list(*leases: dict[str, Any]) -> Reply:
    """The captured Lease list holding these leases instead of MetalLB's."""
    body = json.loads((API_DATA / "list-leases.json").read_text())
    body["items"] = list(leases)
    return Reply(body=json.dumps(body).encode())
