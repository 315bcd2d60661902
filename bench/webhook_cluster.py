"""A synthetic cluster for the webhook benchmark: N nodes, M LoadBalancer services with one endpoint each, one pool,
one L2Advertisement, and a 30 KB Node review with 50 images in its status. Plain dicts; no I/O here."""

from __future__ import annotations

import ipaddress
from typing import Any

EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers"


def cluster_documents(nodes: int = 500, services: int = 10_000) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for i in range(nodes):
        name = f"node-{i:03}"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
                "status": {"addresses": [{"type": "InternalIP", "address": f"10.0.{i // 250}.{i % 250 + 1}"}]},
            }
        )
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    for j in range(services):
        ns, name = f"ns-{j % 50}", f"svc-{j:05}"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": "LoadBalancer"},
                "status": {"loadBalancer": {"ingress": [{"ip": str(ipaddress.IPv4Address(base + j + 1))}]}},
            }
        )
        docs.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-x", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
                "endpoints": [{"nodeName": f"node-{j % nodes:03}", "conditions": {"ready": True}}],
            }
        )
    docs.append(
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "bench", "namespace": "metallb-system"},
            "spec": {"addresses": ["198.18.0.0/16"]},
        }
    )
    docs.append(
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": "bench", "namespace": "metallb-system"},
            "spec": {},
        }
    )
    return docs


def big_node_review(
    template: dict[str, Any], *, name: str, add_label: bool, images: int = 50, value: str = ""
) -> dict[str, Any]:
    """The captured `kubectl label` review, for node `name`, with `images` container images in status (~30 KB)."""
    import copy

    review = copy.deepcopy(template)
    req = review["request"]
    req["name"] = name
    req["uid"] = "bench-0000-0000"
    imgs = [
        {
            "names": [
                f"registry.example.com/team-{k}/service-{k}@sha256:{k:064x}",
                f"registry.example.com/team-{k}/service-{k}:v1.{k}.0",
                f"mirror.example.org/cache/team-{k}/service-{k}@sha256:{k + 1:064x}",
            ],
            "sizeBytes": 100_000_000 + k,
        }
        for k in range(images)
    ]
    for key in ("object", "oldObject"):
        obj = req[key]
        obj["metadata"]["name"] = name
        obj["metadata"]["labels"] = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        obj.setdefault("status", {})["images"] = imgs
    if add_label:
        req["object"]["metadata"]["labels"][EXCLUDE] = value
    else:
        req["object"]["metadata"]["labels"]["example.com/unrelated"] = "yes"
    return review
