"""One raw JSON request to the API server through the `kubernetes` client's configured ApiClient (host, TLS,
credentials, connection pool), for writes whose body must go out exactly as built.

Why not the typed methods (`CoordinationV1Api.replace_namespaced_lease` and friends): since kubernetes 33 they
validate a dict body into the pydantic model (V1Lease, CoreV1Event) and serialize that again, which rewrites
MicroTime fields as `isoformat()` (`...+00:00` instead of client-go's `...Z`), drops fields the model does not
know, and builds model objects on every renewal. Responses come back as plain dicts, never model objects.

Errors come out as `l2guard.kube.errors`. It must not retry, log or decide anything.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from l2guard.kube.errors import TRANSLATED, KubeError, translate

MAX_RESPONSE = 4 * 1024 * 1024  # bytes; a single Lease or Event is a few KB


def path(*parts: str) -> str:
    """An API path from fixed segments and names (each name percent-encoded, as the generated client does)."""
    return "/".join(quote(part, safe="") if i % 2 else part for i, part in enumerate(parts))


def request_json(
    api: k8s.ApiClient,
    method: str,
    resource_path: str,
    *,
    body: dict[str, Any] | list[Any] | None = None,
    content_type: str = "application/json",
    query: list[tuple[str, str]] | None = None,
    timeout: float,
) -> dict[str, Any]:
    """`method` on `resource_path` (with the `query` parameters) with `body` as JSON; the response object. `timeout`
    bounds each attempt (urllib3 retries a failed connection up to 3 times, each bounded)."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        _, url, headers, payload, _ = api.param_serialize(
            method=method,
            resource_path=resource_path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=timeout)
        data = resp.read()  # type: ignore[no-untyped-call]  # the client is untyped
        if not 200 <= resp.status <= 299:
            raise ApiException(http_resp=resp)
    except TRANSLATED as exc:
        raise translate(exc) from exc
    if len(data) > MAX_RESPONSE:
        raise KubeError(f"{method} {resource_path}: response of {len(data)} bytes is larger than {MAX_RESPONSE}")
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise KubeError(f"{method} {resource_path}: the response is not JSON ({exc})") from exc
    if not isinstance(answer, dict):
        raise KubeError(f"{method} {resource_path}: the response is not a JSON object")
    return answer
