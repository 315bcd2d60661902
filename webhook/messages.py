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
from webhook.review import MAX_MESSAGE_CHARS, MAX_WARNING_CHARS, MAX_WARNINGS

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


def _middle(text: str, room: int) -> str:
    """`text` shortened to `room` characters by an ellipsis in the middle, which keeps both ends recognisable."""
    if len(text) <= room:
        return text
    if room < 3:
        return text[:room]
    head = (room - 1) // 2
    return text[:head] + "…" + text[len(text) - (room - 1 - head) :]


def _fit(template: str, **parts: str) -> str:
    """Fill `template` so the line fits MAX_WARNING_CHARS by shortening the named parts (longest first), never
    the verdict around them: `will have NO announcing node` must survive a long namespace."""
    values = dict(parts)
    while len(line := template.format(**values)) > MAX_WARNING_CHARS:
        longest = max(values, key=lambda k: len(values[k]))
        excess = len(line) - MAX_WARNING_CHARS
        if len(values[longest]) <= 8:
            break  # nothing sensible left to shorten; the response builder cuts the tail
        values[longest] = _middle(values[longest], max(8, len(values[longest]) - excess))
    return line


def move_text(move: Move) -> str:
    """`LoadBalancer 192.0.2.100 (default/web) will have NO announcing node` or `... moves from cp-1 to worker-2`.
    Long IP lists and service names are shortened in the middle so the verdict stays whole."""
    ips = move.ips[0] + (f" +{len(move.ips) - 1}" if len(move.ips) > 1 else "")
    if move.after is None:
        return _fit("LoadBalancer {ips} ({svc}) will have NO announcing node", ips=ips, svc=move.service)
    if move.before is None:
        return _fit(
            "LoadBalancer {ips} ({svc}) will be announced by {after}", ips=ips, svc=move.service, after=move.after
        )
    return _fit(
        "LoadBalancer {ips} ({svc}) moves from {before} to {after}",
        ips=ips,
        svc=move.service,
        before=move.before,
        after=move.after,
    )


def impact_lines(impact: Impact, *, budget: int = SERVICES_NAMED + 1) -> list[str]:
    """At most three services named (those losing their IP first), then `and N more`, in at most `budget` lines."""
    ordered = [*impact.losing, *impact.moving]
    if len(ordered) <= min(SERVICES_NAMED, budget):
        return [move_text(m) for m in ordered]
    shown = max(min(SERVICES_NAMED, budget - 1), 0)
    lines = [move_text(m) for m in ordered[:shown]]
    lines.append(f"and {len(ordered) - shown} more (run l2guard explain for the full picture)")
    return lines


def impact_summary(node: str, impact: Impact | None) -> str:
    if impact is None:
        return _fit(
            "node {node} will stop announcing LoadBalancer IPs; impact unknown (cluster view not synced yet)", node=node
        )
    if not impact.moves:
        return _fit(
            "node {node} excluded from LoadBalancer announcements; it announces no IP now, nothing moves", node=node
        )
    lost, moved = len(impact.losing), len(impact.moving)
    parts = []
    if lost:
        parts.append("1 service loses its IP" if lost == 1 else f"{lost} services lose their IPs")
    if moved:
        # Counted like the losses, in services: "1 service moves", never a bare "1 moves" next to "1 service".
        parts.append("1 service moves to another node" if moved == 1 else f"{moved} services move to another node")
    return _fit("node {node} excluded from LoadBalancer announcements: " + ", ".join(parts), node=node)


def ineffective_text(node: str, why: Ineffective, value: str | None) -> str:
    if why is Ineffective.IGNORED_BY_SETTING:
        return _fit(
            "node {node}: the announcer ignores the exclude label (--ignore-exclude-lb); no LoadBalancer IP moves",
            node=node,
        )
    if why is Ineffective.FALSE_UNDER_TRUE_ONLY:
        return _fit(
            "node {node}: label value {value} does not exclude under true-only semantics; no LoadBalancer IP moves",
            node=node,
            value=repr(value),
        )
    return _fit("node {node} was already excluded by the label; this change moves no LoadBalancer IP", node=node)


def node_warnings(decision: NodeDecision) -> list[str]:
    """The warning lines for a node decision (never empty when the policy triggered)."""
    node = decision.node
    if decision.action is Action.ALLOW:
        return []
    if decision.ineffective is not None:
        return [ineffective_text(node, decision.ineffective, decision.value)]
    if decision.action is Action.STRIP:
        lines = [
            _fit("l2guard removed the exclude label from node {node}", node=node),
            # The command is the one line worth copying: it is never shortened (node names are at most 253).
            f"to keep the label: kubectl annotate node {node} {OVERRIDE}",
            "then label the node again",
        ]
        if decision.impact is not None and decision.impact.moves:
            first = decision.impact.moves[0]
            more = len(decision.impact.moves) - 1
            tail = f" and {more} more" if more else ""
            lines.append(_fit("it would have affected {ips} ({svc})" + tail, ips=_ips(first), svc=first.service))
        return lines
    # Summary first, the reason strip/deny did not act (if any) second: both must survive the line limit, so the
    # service lines get what is left.
    lines = [impact_summary(node, decision.impact)]
    exemption = []
    if decision.exemption is not None:
        verb = "stripped" if decision.mode.value == "strip" else "denied"
        exemption = [f"not {verb}: {EXEMPTION_TEXT[decision.exemption]}"]
    if decision.impact is not None:
        lines.extend(impact_lines(decision.impact, budget=MAX_WARNINGS - 1 - len(exemption)))
    return [*lines, *exemption]


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
    """`invalid IPAddressPool ns/name: spec.addresses[1]: ...; spec.addresses[4]: ...; and N more problems`.

    The object is named once, and the problems that do not fit the response's message limit are counted rather
    than cut off mid-way, so the count survives: it is the core's own count (the list arrives capped) plus those
    left out here. Cost is bounded by the limit, not by the number of problems."""
    listed = [p for p in problems if not p.omitted]
    hidden = sum(p.omitted for p in problems)
    objects = {p.obj for p in listed}
    subject = objects.pop() if len(objects) == 1 and listed and listed[0].obj else ""
    head = f"invalid {subject or kind}: "
    room = MAX_MESSAGE_CHARS - len(head) - len("; and 99999999 more problems")
    parts: list[str] = []
    for p in listed:
        part = ": ".join(x for x in (p.path, p.message) if x) if subject else str(p)
        if parts and len(part) + 2 > room:
            break
        if len(part) > room:  # the first problem alone is too long: shown shortened, never dropped
            part = part[: max(room - 1, 0)] + "…"
        parts.append(part)
        room -= len(part) + 2
    hidden += len(listed) - len(parts)
    if hidden:
        parts.append(f"and {hidden} more problem{'s' if hidden > 1 else ''}")
    return head + "; ".join(parts)


NOT_SYNCED_CONFIG = "cluster view not synced yet: overlap with other pools and usage were not checked"
# {error} is the exception's type name, so the warning names the failure (MemoryError, RecursionError, ...).
INTERNAL_ERROR_NODE = "l2guard internal error ({error}); the request was allowed unchecked (see the webhook log)"
INTERNAL_ERROR_CONFIG = "l2guard internal error while validating ({error}); retry, or see the webhook log"
TOO_SLOW_NODE = "l2guard could not decide within {seconds} s; the request was allowed unchecked (see the webhook log)"
TOO_SLOW_CONFIG = (
    "l2guard: validation took too long (over {seconds} s), so the object was not admitted; retry, or split it into "
    "smaller objects"
)


def cache_fallback(reason: str) -> str:
    """A pool or advertisement review decided on the watched cache because the live read failed (issue 7, item 4)."""
    return f"validated against the cached pools: live read failed: {reason}"
