"""The domain model: the few fields of Kubernetes and MetalLB objects that layer-2 announcement depends on.

Objects are small frozen dataclasses built by `l2core.parse` from plain dicts. Keeping only these fields is what
lets a cache of 10,000 Services stay small (see FIELD-NOTES: model objects of the client library cost ~20 KB each).

No I/O, standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from l2core.addresses import AddressRange
from l2core.selectors import LabelSelector

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
SHARED_IP_ANNOTATION = "metallb.io/allow-shared-ip"
SHARED_IP_ANNOTATION_DEPRECATED = "metallb.universe.tf/allow-shared-ip"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # links an EndpointSlice to its Service
METALLB_NAMESPACE = "metallb-system"  # where MetalLB reads its IPAddressPools and L2Advertisements by default


class LabelSemantics(StrEnum):
    """How the exclude label is read.

    PRESENCE is MetalLB's rule (>= 0.14.2): the key being present excludes the node, whatever the value, even
    "false". TRUE_ONLY is the Kubernetes cloud-provider rule: only a value other than "false" excludes.
    """

    PRESENCE = "presence"
    TRUE_ONLY = "true-only"


@dataclass(frozen=True, slots=True)
class EligibilitySettings:
    """How a speaker decides eligibility. Every speaker of one cluster must run with the same settings."""

    label_semantics: LabelSemantics = LabelSemantics.PRESENCE
    ignore_exclude_label: bool = False  # MetalLB's --ignore-exclude-lb
    load_balancer_class: str | None = None  # services with this class are ours; None: only services without one

    def validate(self) -> list[str]:
        errors = []
        if not isinstance(self.label_semantics, LabelSemantics):
            errors.append(f"label semantics must be one of {', '.join(s.value for s in LabelSemantics)}")
        if self.load_balancer_class == "":
            errors.append("load balancer class must not be empty")
        return errors


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    network_unavailable: bool = False
    internal_ips: tuple[str, ...] = ()
    unschedulable: bool = False


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str = "ClusterIP"
    load_balancer_class: str | None = None
    external_traffic_policy_local: bool = False
    ingress_ips: tuple[str, ...] = ()  # canonical text, in status order
    labels: Mapping[str, str] = field(default_factory=dict)
    shared_ip_key: str | None = None  # allow-shared-ip annotation value (current or deprecated name)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    node_name: str | None
    ready: bool | None
    serving: bool | None
    terminating: bool | None

    @property
    def can_serve(self) -> bool:
        """MetalLB's rule (internal/k8s/epslices): ready unset or true, or serving true."""
        return self.ready is None or self.ready or bool(self.serving)


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service_name: str
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.service_name}"


@dataclass(frozen=True, slots=True)
class ServiceAllocation:
    priority: int | None = None
    namespaces: tuple[str, ...] = ()
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()


@dataclass(frozen=True, slots=True)
class IPAddressPool:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ranges: tuple[AddressRange, ...] = ()
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    service_allocation: ServiceAllocation | None = None


@dataclass(frozen=True, slots=True)
class PreferredNodeSelector:
    """A weighted node preference for the election: matching nodes sort first (higher total weight wins)."""

    weight: int
    selector: LabelSelector


@dataclass(frozen=True, slots=True)
class L2Advertisement:
    namespace: str
    name: str
    ip_address_pools: tuple[str, ...] = ()
    ip_address_pool_selectors: tuple[LabelSelector, ...] = ()
    node_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()
    interfaces: tuple[str, ...] = ()
    preferred_node_selectors: tuple[PreferredNodeSelector, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def applies_to_pool(self, pool: IPAddressPool) -> bool:
        """MetalLB: named pools, or pools matching a pool selector; with neither, every pool. Only pools of the
        advertisement's own namespace count (MetalLB reads one namespace; a same-named pool elsewhere is not it)."""
        if pool.namespace != self.namespace:
            return False
        if not self.ip_address_pools and not self.ip_address_pool_selectors:
            return True
        return pool.name in self.ip_address_pools or any(s.matches(pool.labels) for s in self.ip_address_pool_selectors)

    def applies_to_service(self, service: Service) -> bool:
        return not self.service_selectors or any(s.matches(service.labels) for s in self.service_selectors)

    def selects_node(self, node: Node) -> bool:
        return not self.node_selectors or any(s.matches(node.labels) for s in self.node_selectors)

    def preference_weight(self, node: Node) -> int:
        return sum(p.weight for p in self.preferred_node_selectors if p.selector.matches(node.labels))


@dataclass(frozen=True, slots=True)
class Cluster:
    """A full snapshot of what the planner reads. Keys: node name, "ns/name" for the rest."""

    nodes: Mapping[str, Node] = field(default_factory=dict)
    services: Mapping[str, Service] = field(default_factory=dict)
    endpoint_slices: Mapping[str, EndpointSlice] = field(default_factory=dict)
    pools: Mapping[str, IPAddressPool] = field(default_factory=dict)
    advertisements: Mapping[str, L2Advertisement] = field(default_factory=dict)
