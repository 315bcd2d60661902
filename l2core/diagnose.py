"""What would fix an IP that nobody announces: plain-language remedies derived from the verdicts.

Pure: it reads a Plan and returns sentences. `l2guard explain` prints them, and the webhook may reuse them.
No I/O, standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence

from l2core.eligibility import NodeVerdict, Reason
from l2core.model import EXCLUDE_LABEL, LabelSemantics
from l2core.parse import PoolOverlap
from l2core.plan import Plan, Status
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


def _node_actions(reasons: frozenset[Reason], *, semantics: LabelSemantics) -> list[str]:
    """Sentence parts with a `{nodes}` slot, one per node-level reason."""
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


def fixes(plan: Plan, key: str, *, pool_overlaps: Sequence[PoolOverlap] = ()) -> list[str]:
    """Remedies for a service that nobody announces, most direct first. Empty when the service is announced.
    While `pool_overlaps` (from `l2core.parse`) is not empty, every service with an IP gets only `refusal`."""
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
    fewest = min(len(v.reasons) for v in verdicts)
    closest: list[NodeVerdict] = [v for v in verdicts if len(v.reasons) == fewest]
    by_actions: dict[tuple[str, ...], list[str]] = {}
    for v in closest:
        actions = tuple(_node_actions(v.reasons, semantics=plan.settings.label_semantics))
        by_actions.setdefault(actions, []).append(v.name)
    for actions, nodes in by_actions.items():
        if not actions:
            continue
        text = " and ".join(actions).format(nodes=_names(nodes))
        if actions[0].startswith("remove label") and len(actions) == 1 and not plan.settings.ignore_exclude_label:
            text += ", or start the speaker with --ignore-exclude-lb"
        out.append(text)
    return out
