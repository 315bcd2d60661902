"""Node eligibility for announcing a LoadBalancer IP, with every reason a node is rejected.

Reasons are a closed set (`Reason`). They come in three scopes:
- node-wide (the exclude label, NetworkUnavailable, speaker not alive): the same for every service;
- per service and node (not selected by an L2Advertisement, no serving local endpoint);
- per service (no serving endpoint at all, allow-shared-ip with serviceSelectors, no pool / several pools),
  which every node carries for that service.

The label rule follows MetalLB >= 0.14.2 (`internal/k8s/nodes.IsNodeExcludedFromBalancers`): the label's presence
excludes a node whatever its value, unless the speaker runs with --ignore-exclude-lb (0.14.4). The Kubernetes
cloud-provider rule ("false" includes) is offered as `LabelSemantics.TRUE_ONLY`.

No I/O, standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from l2core.model import EXCLUDE_LABEL, EligibilitySettings, LabelSemantics, Node


class Reason(StrEnum):
    EXCLUDED_BY_LABEL = "excluded-by-label"
    NETWORK_UNAVAILABLE = "network-unavailable"
    NOT_SELECTED = "not-selected-by-l2advertisement"
    SPEAKER_NOT_ALIVE = "speaker-not-alive"
    NO_LOCAL_ENDPOINT = "no-serving-local-endpoint"
    NO_SERVING_ENDPOINT = "no-serving-endpoint"
    SHARED_IP_WITH_SERVICE_SELECTORS = "shared-ip-with-service-selectors"
    IP_IN_NO_POOL = "ip-in-no-pool"
    IPS_SPAN_SEVERAL_POOLS = "ips-span-several-pools"


REASON_TEXT: Mapping[Reason, str] = {
    Reason.EXCLUDED_BY_LABEL: f"excluded by label {EXCLUDE_LABEL}",
    Reason.NETWORK_UNAVAILABLE: "condition NetworkUnavailable is True",
    Reason.NOT_SELECTED: "not selected by any L2Advertisement for this pool and service",
    Reason.SPEAKER_NOT_ALIVE: "speaker not alive on this node",
    Reason.NO_LOCAL_ENDPOINT: "no serving endpoint on this node (externalTrafficPolicy: Local)",
    Reason.NO_SERVING_ENDPOINT: "the service has no serving endpoint at all",
    Reason.SHARED_IP_WITH_SERVICE_SELECTORS: "allow-shared-ip cannot be combined with L2Advertisement serviceSelectors",
    Reason.IP_IN_NO_POOL: "the IP is in no IPAddressPool",
    Reason.IPS_SPAN_SEVERAL_POOLS: "the service's IPs span several IPAddressPools",
}


def label_excludes(labels: Mapping[str, str], settings: EligibilitySettings) -> bool:
    """Whether these node labels exclude the node from announcing, under the given settings."""
    if settings.ignore_exclude_label or EXCLUDE_LABEL not in labels:
        return False
    if settings.label_semantics is LabelSemantics.TRUE_ONLY:
        return labels[EXCLUDE_LABEL].strip().lower() != "false"
    return True


def node_wide_reasons(node: Node, settings: EligibilitySettings, *, alive: bool) -> frozenset[Reason]:
    reasons = set()
    if label_excludes(node.labels, settings):
        reasons.add(Reason.EXCLUDED_BY_LABEL)
    if node.network_unavailable:
        reasons.add(Reason.NETWORK_UNAVAILABLE)
    if not alive:
        reasons.add(Reason.SPEAKER_NOT_ALIVE)
    return frozenset(reasons)


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    name: str
    reasons: frozenset[Reason]

    @property
    def eligible(self) -> bool:
        return not self.reasons

    def sorted_reasons(self) -> list[Reason]:
        order = list(Reason)
        return sorted(self.reasons, key=order.index)
