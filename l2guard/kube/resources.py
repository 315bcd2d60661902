"""The one resource table: what the adapter lists and watches, and where.

Nodes, Services and EndpointSlices cluster-wide; IPAddressPools and L2Advertisements (metallb.io/v1beta1) in the
MetalLB namespace; Leases (coordination.k8s.io/v1, the speakers' liveness) in our own namespace. Each entry names
the object kind as the consumer knows it (`kind`, the Kubernetes kind name, e.g. "Node"), a resource name for logs
and metrics, and the client's list function, which also watches (`watch=True`).

It must not make API calls itself (`resources()` only builds the table) or know what consumes the objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

NODE = "Node"
SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
POOL = "IPAddressPool"
ADVERTISEMENT = "L2Advertisement"
LEASE = "Lease"
KINDS = (NODE, SERVICE, ENDPOINT_SLICE, POOL, ADVERTISEMENT, LEASE)
# The apiVersion of each kind's objects, as an Event's involvedObject names it.
API_VERSIONS = {
    NODE: "v1",
    SERVICE: "v1",
    ENDPOINT_SLICE: "discovery.k8s.io/v1",
    POOL: "metallb.io/v1beta1",
    ADVERTISEMENT: "metallb.io/v1beta1",
    LEASE: "coordination.k8s.io/v1",
}
DEFAULT_NAMESPACE = "l2guard-system"  # where the speakers' Leases live unless the settings say otherwise


@dataclass(frozen=True)
class Resource:
    kind: str  # the Kubernetes kind of the objects, one of KINDS
    name: str  # the resource (plural) name, for logs and metrics
    call: Callable[..., Any]  # a list function of the client: call(**query) -> urllib3 response


def resources(
    api: k8s.ApiClient, *, metallb_namespace: str, namespace: str, kinds: tuple[str, ...] = KINDS
) -> tuple[Resource, ...]:
    """The table, for the `kinds` asked for (default: all of them), in the order of KINDS. `namespace` is where
    the speakers' Leases live."""
    core = k8s.CoreV1Api(api)
    discovery = k8s.DiscoveryV1Api(api)
    custom = k8s.CustomObjectsApi(api)
    coordination = k8s.CoordinationV1Api(api)

    def crd(plural: str) -> Callable[..., Any]:
        def call(**query: Any) -> Any:
            return custom.list_namespaced_custom_object("metallb.io", "v1beta1", metallb_namespace, plural, **query)

        return call

    def leases(**query: Any) -> Any:
        return coordination.list_namespaced_lease(namespace, **query)

    table = (
        Resource(NODE, "nodes", core.list_node),
        Resource(SERVICE, "services", core.list_service_for_all_namespaces),
        Resource(ENDPOINT_SLICE, "endpointslices", discovery.list_endpoint_slice_for_all_namespaces),
        Resource(POOL, "ipaddresspools", crd("ipaddresspools")),
        Resource(ADVERTISEMENT, "l2advertisements", crd("l2advertisements")),
        Resource(LEASE, "leases", leases),
    )
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"no such resource kind: {', '.join(sorted(unknown))}")
    return tuple(r for r in table if r.kind in kinds)
