"""The API calls of the webhook's certificate management: its TLS Secret (get, create, update with the
resourceVersion read) and the caBundle of its Mutating/ValidatingWebhookConfigurations (get, JSON patch), plus the
list+watch table that follows exactly those objects by name.

Every list and watch carries `fieldSelector=metadata.name=NAME`: RBAC can then grant them with `resourceNames`
(Kubernetes docs, "Using RBAC Authorization": a list or watch restricted by resourceName must carry that field
selector). The caBundle goes in with a JSON patch that first tests each webhook's name at its index and the
object's resourceVersion, so a list reordered or an object changed since it was read is refused (HTTP 422, as the
API server answers a failed `test`) instead of patched blindly; like the captured `webhookconfig-cabundle-jsonpatch`.

Requests are raw JSON through `l2guard.kube.rest`; errors come out as `l2guard.kube.errors`. It must not decide
anything (what the Secret holds, when to rotate, what the caBundle should be).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client as k8s

from l2guard.kube.resources import Resource
from l2guard.kube.rest import path, request_json

SECRET = "Secret"
MUTATING = "MutatingWebhookConfiguration"
VALIDATING = "ValidatingWebhookConfiguration"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
PLURALS = {MUTATING: "mutatingwebhookconfigurations", VALIDATING: "validatingwebhookconfigurations"}
JSON_PATCH = "application/json-patch+json"


def secret_path(namespace: str, name: str = "") -> str:
    collection = path("/api/v1/namespaces", namespace, "secrets")
    return path(collection, name) if name else collection


def configuration_path(kind: str, name: str) -> str:
    return path(f"{ADMISSION}/{PLURALS[kind]}", name)  # `path` encodes every other part: the name is the second


def read_secret(api: k8s.ApiClient, namespace: str, name: str, *, timeout: float) -> dict[str, Any]:
    """The Secret; raises NotFound when there is none."""
    return request_json(api, "GET", secret_path(namespace, name), timeout=timeout)


def _encoded(data: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in sorted(data.items())}


def create_secret(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    data: Mapping[str, bytes],
    *,
    labels: Mapping[str, str],
    timeout: float,
) -> dict[str, Any]:
    """Create a kubernetes.io/tls Secret holding `data`; raises Conflict (409 AlreadyExists) when it exists."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "type": "kubernetes.io/tls",
        "data": _encoded(data),
    }
    return request_json(api, "POST", secret_path(namespace), body=body, timeout=timeout)


def update_secret(
    api: k8s.ApiClient, secret: Mapping[str, Any], data: Mapping[str, bytes], *, timeout: float
) -> dict[str, Any]:
    """Replace the data of `secret` (as read: its resourceVersion goes along); raises Conflict when it changed."""
    meta = secret["metadata"]
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "resourceVersion", "labels", "annotations") if k in meta
        },
        "type": secret.get("type", "kubernetes.io/tls"),
        "data": _encoded(data),
    }
    return request_json(api, "PUT", secret_path(meta["namespace"], meta["name"]), body=body, timeout=timeout)


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """The Secret's data, decoded; a value that is not base64 is left out."""
    data = secret.get("data")
    out: dict[str, bytes] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(key, str) and isinstance(value, str):
                try:
                    out[key] = base64.b64decode(value, validate=True)
                except ValueError:
                    continue
    return out


def read_configuration(api: k8s.ApiClient, kind: str, name: str, *, timeout: float) -> dict[str, Any]:
    """A Mutating- or ValidatingWebhookConfiguration; raises NotFound."""
    return request_json(api, "GET", configuration_path(kind, name), timeout=timeout)


def ca_bundles(configuration: Mapping[str, Any]) -> list[tuple[str, bytes | None]]:
    """(webhook name, its caBundle decoded, or None when absent or not base64) for every webhook."""
    out: list[tuple[str, bytes | None]] = []
    webhooks = configuration.get("webhooks")
    for hook in webhooks if isinstance(webhooks, list) else []:
        if not isinstance(hook, Mapping):
            continue
        config = hook.get("clientConfig")
        value = config.get("caBundle") if isinstance(config, Mapping) else None
        decoded: bytes | None = None
        if isinstance(value, str) and value:
            try:
                decoded = base64.b64decode(value, validate=True)
            except ValueError:
                decoded = None
        out.append((str(hook.get("name", "")), decoded))
    return out


def ca_bundle_patch(configuration: Mapping[str, Any], bundle: bytes) -> list[dict[str, Any]]:
    """The JSON patch that sets every webhook's caBundle to `bundle` (none: nothing to change)."""
    encoded = base64.b64encode(bundle).decode()
    ops: list[dict[str, Any]] = []
    for i, (name, current) in enumerate(ca_bundles(configuration)):
        if current != bundle:
            ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": name})
            ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": encoded})
    if ops:
        rv = configuration.get("metadata", {}).get("resourceVersion", "")
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": rv})
    return ops


def inject_ca_bundle(
    api: k8s.ApiClient, configuration: Mapping[str, Any], bundle: bytes, *, timeout: float
) -> dict[str, Any] | None:
    """Set every webhook's caBundle of `configuration` (as read) to `bundle`: the patched object, or None when
    each already held it. Raises Invalid (422) when the object changed since it was read: read it again."""
    ops = ca_bundle_patch(configuration, bundle)
    if not ops:
        return None
    kind = str(configuration.get("kind", ""))
    name = str(configuration.get("metadata", {}).get("name", ""))
    return request_json(
        api, "PATCH", configuration_path(kind, name), body=ops, content_type=JSON_PATCH, timeout=timeout
    )


def named_resources(
    api: k8s.ApiClient, *, namespace: str, secret: str, mutating: str, validating: str
) -> tuple[Resource, ...]:
    """The list+watch table of the Secret and the two configurations, each by name (an empty name: not followed)."""
    core = k8s.CoreV1Api(api)
    admission = k8s.AdmissionregistrationV1Api(api)

    def by_name(call: Callable[..., Any], name: str, *args: Any) -> Callable[..., Any]:
        def listed(**query: Any) -> Any:
            return call(*args, field_selector=f"metadata.name={name}", **query)

        return listed

    table = [Resource(SECRET, "secrets", by_name(core.list_namespaced_secret, secret, namespace))]
    if mutating:
        table.append(
            Resource(MUTATING, PLURALS[MUTATING], by_name(admission.list_mutating_webhook_configuration, mutating))
        )
    if validating:
        table.append(
            Resource(
                VALIDATING, PLURALS[VALIDATING], by_name(admission.list_validating_webhook_configuration, validating)
            )
        )
    return tuple(table)
