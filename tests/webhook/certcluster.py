"""The cluster of the certificate tests in the API double: the captured cluster lists, and the two webhook
configurations as the manifests name them, derived from the captured ValidatingWebhookConfiguration (applied
without caBundle); readers of the stored Secret and caBundles."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from .apidouble import API, APIDouble

SECRETS = "/api/v1/namespaces/l2guard-system/secrets"
SECRET = f"{SECRETS}/l2guard-webhook-tls"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
MUTATING = f"{ADMISSION}/mutatingwebhookconfigurations/l2guard"
VALIDATING = f"{ADMISSION}/validatingwebhookconfigurations/l2guard"
CLUSTER = ("list-nodes.json", "list-services.json", "list-endpointslices.json")
CLUSTER += ("list-ipaddresspools.json", "list-l2advertisements.json")


def validating() -> dict[str, Any]:
    """The captured ValidatingWebhookConfiguration (applied without caBundle), named as the manifests name it."""
    obj = json.loads((API / "webhookconfig-get.json").read_text())
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"):
        obj["metadata"].pop(key)
    obj["metadata"]["name"] = "l2guard"
    second = copy.deepcopy(obj["webhooks"][0])
    second["name"] = "l2advertisements.l2guard.io"
    second["clientConfig"]["service"]["path"] = "/validate-metallb-io-v1beta1-l2advertisement"
    second["rules"][0]["resources"] = ["l2advertisements"]
    obj["webhooks"].append(second)
    return dict(obj)


def mutating() -> dict[str, Any]:
    """The same capture turned into the node MutatingWebhookConfiguration."""
    obj = validating()
    obj["kind"] = "MutatingWebhookConfiguration"
    hook = obj["webhooks"][0]
    hook["name"] = "nodes.l2guard.io"
    hook["clientConfig"]["service"]["path"] = "/mutate-v1-node"
    hook["rules"] = [
        {
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["nodes", "nodes/status"],
        }
    ]
    hook["reinvocationPolicy"] = "Never"
    obj["webhooks"] = [hook]
    return dict(obj)


def cluster_double() -> APIDouble:
    double = APIDouble({})
    double.store.seed(*CLUSTER)
    double.store.put(mutating())
    double.store.put(validating())
    return double


def stored_secret(double: APIDouble) -> dict[str, bytes]:
    with double.store.lock:
        secret = copy.deepcopy(double.store.objects[SECRET])
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def bundles(double: APIDouble, path: str) -> list[bytes | None]:
    with double.store.lock:
        obj = copy.deepcopy(double.store.objects[path])
    out = []
    for hook in obj["webhooks"]:
        value = hook["clientConfig"].get("caBundle")
        out.append(base64.b64decode(value) if value else None)
    return out
