"""Small cluster builders for the policy and validation tests (plain dicts through the real parsers)."""

from __future__ import annotations

from typing import Any

from l2core.model import EXCLUDE_LABEL, Cluster
from l2core.parse import build_cluster


def node(
    name: str, *, labels: dict[str, str] | None = None, ip: str | None = None, unavailable: bool = False
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if ip:
        status["addresses"] = [{"type": "InternalIP", "address": ip}]
    if unavailable:
        status["conditions"] = [{"type": "NetworkUnavailable", "status": "True"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": status,
    }


def excluded(name: str, value: str = "") -> dict[str, Any]:
    return node(name, labels={EXCLUDE_LABEL: value})


def service(
    name: str, ip: str, *, ns: str = "default", local: bool = False, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "LoadBalancer"}
    if local:
        spec["externalTrafficPolicy"] = "Local"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
    }


def slice_(service_name: str, nodes: list[str], *, ns: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-x",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "endpoints": [{"nodeName": n, "conditions": {"ready": True}} for n in nodes],
    }


def pool(
    name: str, *addresses: str, ns: str = "metallb-system", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"addresses": list(addresses)},
    }


def advertisement(
    name: str,
    *,
    pools: list[str] | None = None,
    node_selectors: list[Any] | None = None,
    preferred: list[Any] | None = None,
    ns: str = "metallb-system",
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if pools is not None:
        spec["ipAddressPools"] = pools
    if node_selectors is not None:
        spec["nodeSelectors"] = node_selectors
    if preferred is not None:
        spec["preferredNodeSelectors"] = preferred
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def cluster(*docs: dict[str, Any]) -> Cluster:
    parsed = build_cluster(list(docs))
    assert not parsed.problems, parsed.problems
    return parsed.cluster
