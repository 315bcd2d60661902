"""Small builders of plain Kubernetes dicts for tests that need variants of the captured fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data"
EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers"


def fixture(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def node(
    name: str, labels: dict[str, str] | None = None, *, unavailable: bool = False, ip: str | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [{"type": "NetworkUnavailable", "status": "True" if unavailable else "False"}],
    }
    if ip:
        status["addresses"] = [{"type": "InternalIP", "address": ip}]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}, "status": status}


def service(
    name: str,
    ips: list[str],
    *,
    namespace: str = "default",
    local: bool = False,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    lb_class: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "LoadBalancer", "externalTrafficPolicy": "Local" if local else "Cluster"}
    if lb_class:
        spec["loadBalancerClass"] = lb_class
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, "annotations": annotations or {}},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}},
    }


def endpoints(service_name: str, nodes: dict[str, dict[str, bool]], *, namespace: str = "default") -> dict[str, Any]:
    """`nodes` maps node name to its endpoint's conditions."""
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
            {"addresses": [f"10.244.0.{i + 1}"], "conditions": cond, "nodeName": n}
            for i, (n, cond) in enumerate(nodes.items())
        ],
    }


def pool(name: str, addresses: list[Any], *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system", "labels": labels or {}},
        "spec": {"addresses": addresses, **spec},
    }


def l2adv(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": spec,
    }


READY = {"ready": True, "serving": True, "terminating": False}
TERMINATING_SERVING = {"ready": False, "serving": True, "terminating": True}
NOT_SERVING = {"ready": False, "serving": False, "terminating": True}
