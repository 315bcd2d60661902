"""A one-shot read of the cluster for `l2guard explain --live`: every kind of the resource table listed once,
speaker Leases included, with the API server's clock at the moment the Leases were listed.

Each kind is one consistent list (paged with `limit`/`continue`, without a resourceVersion: a quorum read, see
`KubeSource.read_config`); the kinds are listed one after the other, so two kinds may be a moment apart, as with
`kubectl get nodes,svc,...`. The read is bounded: at most MAX_PAGES pages of PAGE_SIZE objects per kind, each page at
most `LIVE_MAX_PAGE_BYTES`, `max_bytes` (MAX_BYTES) of answers and `timeout` seconds for everything (each list gets
what is left of both, and a list that would exceed the bytes left fails naming them).

The Leases are listed last, and the Date header of their list is returned as `server_time`: the time liveness is
judged at (`l2core.liveness.judge_snapshot`), on the API server's clock rather than this machine's.

It must not decide anything (what is alive, what is announced): it returns the objects as the API server has them.
Every failure is a `l2guard.kube.errors.KubeError` naming the resource.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from kubernetes import client as k8s

from l2guard.kube.errors import KubeError, NotFound, one_line
from l2guard.kube.resources import ADVERTISEMENT, LEASE, POOL, resources
from l2guard.kube.source import read_list

READ_TIMEOUT = 30.0  # seconds for the whole read
PAGE_SIZE = 500  # objects per page, as kubectl's --chunk-size
MAX_PAGES = 100  # per kind: 50,000 objects (a 10,000-service cluster has about as many EndpointSlices)
MAX_BYTES = 256 * 1024 * 1024  # all answers together (10,000 services and their slices: ~100 MB with managedFields)


@dataclass(frozen=True)
class ClusterRead:
    # One typed list per cluster kind ({"kind": "NodeList", "apiVersion": "v1", "items": [...]}), the shape
    # `kubectl get -o json` and the file loader read.
    documents: list[dict[str, Any]]
    leases: list[Mapping[str, Any]]  # every Lease in the speakers' namespace (other leases too)
    server_time: float | None  # POSIX seconds: the Lease list's Date header; None when absent or unreadable


def _http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def read_cluster(
    api: k8s.ApiClient,
    *,
    metallb_namespace: str,
    namespace: str,
    timeout: float = READ_TIMEOUT,
    max_bytes: int = MAX_BYTES,
) -> ClusterRead:
    """List every kind of the resource table once (the MetalLB kinds in `metallb_namespace`, the Leases in
    `namespace`). Raises KubeError, its reason prefixed with the resource, for the first list that fails."""
    deadline = time.monotonic() + timeout
    budget = max_bytes
    documents: list[dict[str, Any]] = []
    leases: list[Mapping[str, Any]] = []
    server_time = None
    for res in resources(api, metallb_namespace=metallb_namespace, namespace=namespace):
        try:
            listed = read_list(res, deadline, page_size=PAGE_SIZE, max_pages=MAX_PAGES, max_bytes=budget)
        except KubeError as exc:
            hint = " (is MetalLB installed?)" if isinstance(exc, NotFound) and res.kind in (POOL, ADVERTISEMENT) else ""
            reason = exc.reason if exc.reason.startswith(f"list {res.name}") else f"list {res.name}: {exc.reason}"
            raise type(exc)(reason + hint, status=exc.status) from exc
        except Exception as exc:  # a surprise from the client library: still a failed read, one line
            raise KubeError(one_line(f"list {res.name}: {type(exc).__name__}: {exc}")) from exc
        budget -= listed.size
        if res.kind == LEASE:
            leases = listed.items
            server_time = _http_date(listed.date)
        else:
            documents.append({"kind": f"{res.kind}List", "apiVersion": listed.api_version, "items": listed.items})
    return ClusterRead(documents, leases, server_time)
