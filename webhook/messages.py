"""The exact texts the webhook shows: node-policy warnings and denials, pool-validation warnings and denials.

Pure functions from the core's decisions to strings. docs/webhook.md quotes these texts; keep them in step. The
response builder (`webhook.review`) enforces the 120-character and 5-line limits, but the texts are written to fit
so that nothing important is cut: the subject (node, service, IP) comes first.
"""

from __future__ import annotations

from collections.abc import Sequence

from l2core.model import EXCLUDE_LABEL
from l2core.plan import Move
from l2core.policy import ALLOW_EXCLUDE_ANNOTATION, Action, Exemption, Impact, Ineffective, NodeDecision
from l2core.problems import Problem
from l2core.validate import Note

SERVICES_NAMED = 3
DENY_IPS_NAMED = 10
OVERRIDE = f"{ALLOW_EXCLUDE_ANNOTATION}=true"

EXEMPTION_TEXT = {
    Exemption.KARPENTER: "the value is karpenter (Karpenter is disrupting the node)",
    Exemption.UNSCHEDULABLE: "the node is unschedulable (a drain is in progress)",
    Exemption.ANNOTATION: f"the node is annotated {OVERRIDE}",
    Exemption.EXEMPT_REQUESTER: "the requester is exempt",
    Exemption.NODE_OUT_OF_SCOPE: "the node is outside the policy's node selector",
    Exemption.REQUESTER_OUT_OF_SCOPE: "the requester is outside the policy's user/group scope",
}


def _ips(move: Move) -> str:
    return ",".join(move.ips)


def move_text(move: Move) -> str:
    """`LoadBalancer 192.0.2.100 (default/web) will have NO announcing node` or `... moves from cp-1 to worker-2`."""
    subject = f"LoadBalancer {_ips(move)} ({move.service})"
    if move.after is None:
        return f"{subject} will have NO announcing node"
    if move.before is None:
        return f"{subject} will be announced by {move.after}"
    return f"{subject} moves from {move.before} to {move.after}"


def impact_lines(impact: Impact) -> list[str]:
    """At most three services (those losing their IP first), then `and N more`."""
    ordered = [*impact.losing, *impact.moving]
    lines = [move_text(m) for m in ordered[:SERVICES_NAMED]]
    if len(ordered) > SERVICES_NAMED:
        lines.append(f"and {len(ordered) - SERVICES_NAMED} more (run l2guard explain for the full picture)")
    return lines


def impact_summary(node: str, impact: Impact | None) -> str:
    if impact is None:
        return f"node {node} will stop announcing LoadBalancer IPs; impact unknown (cluster view not synced yet)"
    if not impact.moves:
        return f"node {node} excluded from LoadBalancer announcements; it announces no IP now, nothing moves"
    lost, moved = len(impact.losing), len(impact.moving)
    parts = []
    if lost:
        parts.append("1 service loses its IP" if lost == 1 else f"{lost} services lose their IPs")
    if moved:
        parts.append("1 moves to another node" if moved == 1 else f"{moved} move to another node")
    return f"node {node} excluded from LoadBalancer announcements: {', '.join(parts)}"


def ineffective_text(node: str, why: Ineffective, value: str | None) -> str:
    if why is Ineffective.IGNORED_BY_SETTING:
        return f"node {node}: the announcer ignores the exclude label (--ignore-exclude-lb); no LoadBalancer IP moves"
    if why is Ineffective.FALSE_UNDER_TRUE_ONLY:
        return (
            f"node {node}: label value {value!r} does not exclude under true-only semantics; no LoadBalancer IP moves"
        )
    return f"node {node} was already excluded by the label; this change moves no LoadBalancer IP"


def node_warnings(decision: NodeDecision) -> list[str]:
    """The warning lines for a node decision (never empty when the policy triggered)."""
    node = decision.node
    if decision.action is Action.ALLOW:
        return []
    if decision.ineffective is not None:
        return [ineffective_text(node, decision.ineffective, decision.value)]
    if decision.action is Action.STRIP:
        lines = [
            f"l2guard removed label {EXCLUDE_LABEL} from node {node}",
            f"to keep it: kubectl annotate node {node} {OVERRIDE}, then label it again",
        ]
        if decision.impact is not None and decision.impact.moves:
            first = decision.impact.moves[0]
            more = len(decision.impact.moves) - 1
            tail = f" and {more} more" if more else ""
            lines.append(f"it would have affected {_ips(first)} ({first.service}){tail}")
        return lines
    lines = [impact_summary(node, decision.impact)]
    if decision.impact is not None:
        lines.extend(impact_lines(decision.impact))
    if decision.exemption is not None:
        verb = "stripped" if decision.mode.value == "strip" else "denied"
        lines.append(f"not {verb}: {EXEMPTION_TEXT[decision.exemption]}")
    return lines


def deny_message(decision: NodeDecision) -> str:
    node = decision.node
    head = f"l2guard denied label {EXCLUDE_LABEL} on node {node}"
    impact = decision.impact
    if impact is None:
        what = "its LoadBalancer IPs would stop being announced here (cluster view not synced, impact unknown)"
    elif not impact.moves:
        what = "it announces no LoadBalancer IP now, but would be excluded from announcing any"
    else:
        named = [f"{_ips(m)} ({m.service}) -> {m.after or 'NOBODY'}" for m in impact.moves[:DENY_IPS_NAMED]]
        more = len(impact.moves) - DENY_IPS_NAMED
        what = "affected: " + ", ".join(named) + (f" and {more} more" if more > 0 else "")
    return f"{head}: {what}. To exclude it anyway: kubectl annotate node {node} {OVERRIDE}, then label it again"


def note_text(note: Note) -> str:
    return f"{note.obj}: {note.message}"


def problems_message(kind: str, problems: Sequence[Problem]) -> str:
    return f"invalid {kind}: " + "; ".join(str(p) for p in problems)


NOT_SYNCED_CONFIG = "cluster view not synced yet: overlap with other pools and usage were not checked"
INTERNAL_ERROR_NODE = "l2guard internal error; the request was allowed unchecked (see the webhook log)"
INTERNAL_ERROR_CONFIG = "l2guard internal error while validating; retry, or see the webhook log"
