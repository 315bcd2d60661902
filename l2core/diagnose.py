"""What would fix an IP that nobody announces: plain-language remedies derived from the verdicts.

Pure: it reads a Plan and returns sentences. `l2guard explain` prints them, and the webhook may reuse them.
No I/O, standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from l2core.eligibility import NodeVerdict, Reason
from l2core.model import EXCLUDE_LABEL, LabelSemantics, Node
from l2core.parse import PoolOverlap
from l2core.plan import Plan, Status
from l2core.policy import Exemption, drain_exemption
from l2core.text import and_more

MAX_NODES_NAMED = 3

_SERVICE_FIX = {
    Reason.IP_IN_NO_POOL: "add an IPAddressPool that contains {ips}, or give the service an address from a pool",
    Reason.IPS_SPAN_SEVERAL_POOLS: "put all of the service's addresses ({ips}) in one IPAddressPool",
    Reason.NO_SERVING_ENDPOINT: "the service has no ready or serving endpoint: check its pods and its selector",
    Reason.SHARED_IP_WITH_SERVICE_SELECTORS: (
        "remove the allow-shared-ip annotation, or the serviceSelectors of the L2Advertisements for pool {pool}"
    ),
}


def _names(nodes: list[str]) -> str:
    return and_more(nodes, MAX_NODES_NAMED)


_DRAINING = {
    Exemption.KARPENTER: "is being disrupted by Karpenter (label value karpenter)",
    Exemption.UNSCHEDULABLE: "is being drained (unschedulable)",
}


def _node_actions(
    reasons: frozenset[Reason], *, semantics: LabelSemantics, drain: Exemption | None = None
) -> list[str]:
    """Sentence parts with a `{nodes}` slot, one per node-level reason. `drain` is `policy.drain_exemption` of the
    node: a node being drained is expected to leave, so its label stays (the webhook refuses to strip it too)."""
    if Reason.EXCLUDED_BY_LABEL in reasons and drain is not None:
        # Nothing else done to a leaving node helps either (a pod there, its speaker, its network).
        return [
            f"node {{nodes}} {_DRAINING[drain]} and is expected to leave: keep its label and let the IP move to "
            "another node"
        ]
    actions = []
    if Reason.EXCLUDED_BY_LABEL in reasons:
        suffix = ' (or set it to "false")' if semantics is LabelSemantics.TRUE_ONLY else ""
        actions.append(f"remove label {EXCLUDE_LABEL} from node {{nodes}}{suffix}")
    if Reason.NETWORK_UNAVAILABLE in reasons:
        actions.append("repair the network of node {nodes} (condition NetworkUnavailable is True)")
    if Reason.SPEAKER_NOT_ALIVE in reasons:
        actions.append("start the speaker on node {nodes}")
    if Reason.NOT_SELECTED in reasons:
        actions.append("select node {nodes} in an L2Advertisement's nodeSelectors")
    if Reason.NO_LOCAL_ENDPOINT in reasons:
        actions.append("run a ready pod of the service on node {nodes}")
    return actions


def refusal(overlaps: Sequence[PoolOverlap]) -> str:
    """The one remedy while pools overlap: MetalLB refuses the whole configuration (and keeps the one it had), so
    no advertisement, label or pool added to it takes effect before the overlap is gone."""
    o = overlaps[0]
    more = f" (and {len(overlaps) - 1} more overlaps)" if len(overlaps) > 1 else ""
    return (
        f"MetalLB refuses the whole configuration: pool {o.pool} entry {o.text} overlaps {o.other_text} of pool "
        f"{o.other} (both hold {o.shared}){more}; make the pools disjoint, nothing else takes effect until then"
    )


def _drain(node: Node | None) -> Exemption | None:
    if node is None:
        return None
    return drain_exemption(node.labels.get(EXCLUDE_LABEL), unschedulable=node.unschedulable)


def fixes(
    plan: Plan,
    key: str,
    *,
    nodes: Mapping[str, Node] | None = None,
    pool_overlaps: Sequence[PoolOverlap] = (),
) -> list[str]:
    """Remedies for a service that nobody announces, most direct first. Empty when the service is announced.
    `nodes` (the plan's cluster nodes) tells draining nodes apart: their label is never to be removed. While
    `pool_overlaps` (from `l2core.parse`) is not empty, every service with an IP gets only `refusal`."""
    sp = plan.services[key]
    if pool_overlaps and sp.status in (Status.ANNOUNCED, Status.NOBODY):
        return [refusal(pool_overlaps)]
    if sp.status is not Status.NOBODY:
        return []
    if sp.service_reasons:
        ips = ", ".join(sp.ips)
        order = list(Reason)
        return [
            _SERVICE_FIX[r].format(ips=ips, pool=sp.pool or "?") for r in sorted(sp.service_reasons, key=order.index)
        ]
    verdicts = plan.verdicts(key)
    if not verdicts:
        return ["the cluster has no nodes"]
    sel = plan.selections.get(sp.selection) if sp.selection is not None else None
    out: list[str] = []
    if sel is not None and not sel.advertisements:
        if sp.pool_advertised:
            out.append(
                f"the L2Advertisements for pool {sp.pool} all have serviceSelectors that leave this service out: "
                "label the service to match one, or add an advertisement for it"
            )
        else:
            out.append(f"create an L2Advertisement for pool {sp.pool}: none announces it")
    if sel is not None and not sel.advertisements:
        # Every node is "not selected"; the missing advertisement is the fix, so rank nodes by what else is wrong.
        verdicts = [NodeVerdict(v.name, v.reasons - {Reason.NOT_SELECTED}) for v in verdicts]
    drains: dict[str, Exemption] = {}  # leaving nodes that the label excludes
    for v in verdicts:
        drain = _drain((nodes or {}).get(v.name))
        if drain is not None and Reason.EXCLUDED_BY_LABEL in v.reasons:
            drains[v.name] = drain
    fewest = min(len(v.reasons) for v in verdicts)
    closest: list[NodeVerdict] = [v for v in verdicts if len(v.reasons) == fewest]
    if any(v.name in drains for v in closest):
        # A closest node is leaving: say so, and rank the nodes that stay, which is where the IP has to go.
        staying = [v for v in verdicts if v.name not in drains]
        fewest = min((len(v.reasons) for v in staying), default=0)
        closest = [v for v in closest if v.name in drains] + [v for v in staying if len(v.reasons) == fewest]
    by_actions: dict[tuple[str, ...], list[str]] = {}
    for v in closest:
        actions = tuple(_node_actions(v.reasons, semantics=plan.settings.label_semantics, drain=drains.get(v.name)))
        by_actions.setdefault(actions, []).append(v.name)
    for actions, names in by_actions.items():
        if not actions:
            continue
        text = " and ".join(actions).format(nodes=_names(names))
        if actions[0].startswith("remove label") and len(actions) == 1 and not plan.settings.ignore_exclude_label:
            text += ", or start the speaker with --ignore-exclude-lb"
        out.append(text)
    return out
