"""Builders of plain Kubernetes dicts for tests that need variants of the captured fixtures.

Everything goes through the real parsers afterwards (`cluster()`), so a builder can never hide a parsing bug. Prefer
the captured payloads in `tests/data/` where they fit; these exist for the cases no capture covers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from l2core.model import EXCLUDE_LABEL, Cluster
from l2core.parse import build_cluster

DATA = Path(__file__).resolve().parent / "data"
EXCLUDE = EXCLUDE_LABEL

READY = {"ready": True, "serving": True, "terminating": False}
TERMINATING_SERVING = {"ready": False, "serving": True, "terminating": True}
NOT_SERVING = {"ready": False, "serving": False, "terminating": True}


def fixture(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def node(
    name: str, labels: Mapping[str, str] | None = None, *, ip: str | None = None, unavailable: bool = False
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [{"type": "NetworkUnavailable", "status": "True" if unavailable else "False"}],
    }
    if ip:
        status["addresses"] = [{"type": "InternalIP", "address": ip}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": status,
    }


def excluded(name: str, value: str = "") -> dict[str, Any]:
    return node(name, {EXCLUDE_LABEL: value})


def service(
    name: str,
    ips: str | Sequence[str],
    *,
    namespace: str = "default",
    local: bool = False,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    lb_class: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "LoadBalancer", "externalTrafficPolicy": "Local" if local else "Cluster"}
    if lb_class:
        spec["loadBalancerClass"] = lb_class
    addresses = [ips] if isinstance(ips, str) else list(ips)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
        },
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in addresses]}},
    }


def endpoints(
    service_name: str, nodes: Mapping[str, Mapping[str, bool]] | Sequence[str], *, namespace: str = "default"
) -> dict[str, Any]:
    """An EndpointSlice with one endpoint per node: `nodes` maps node name to conditions, or lists ready nodes."""
    conditions = nodes if isinstance(nodes, Mapping) else dict.fromkeys(nodes, READY)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-eps",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [f"10.244.0.{i + 1}"], "conditions": dict(cond), "nodeName": n}
            for i, (n, cond) in enumerate(conditions.items())
        ],
    }


def pool(
    name: str,
    *addresses: Any,
    namespace: str = "metallb-system",
    labels: Mapping[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"addresses": list(addresses), **spec},
    }


def advertisement(name: str, *, namespace: str = "metallb-system", **spec: Any) -> dict[str, Any]:
    """An L2Advertisement; `spec` takes the API's own field names (ipAddressPools, nodeSelectors, ...)."""
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def cluster(*docs: dict[str, Any]) -> Cluster:
    parsed = build_cluster(list(docs))
    assert not parsed.problems, parsed.problems
    return parsed.cluster
