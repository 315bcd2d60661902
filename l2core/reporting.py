"""Say it loudly, once: which speaker reports on a service, and the texts of the Events it posts.

Every speaker computes the same plan, so every speaker could post the same Event; only one must. `reporter` names
it: the service's announcer, or when nobody announces it, the first alive speaker in election hash order for the
service's first IP (sha256(node + "#" + ip), ascending, as `l2core.election` ranks candidates, without weights).
Every speaker with the same view and the same live peers agrees on it, and a different node tends to report each
unannounced service, so the reporting load spreads. An object whose latest version does not parse (a stale pool,
kept at its last valid version by the cluster view) is reported by `object_reporter`: the first alive speaker in
the same hash order for the object's kind and key (sha256(node + "#" + kind + "/" + key)), since no node owns it.

The texts come from the functions `l2guard explain` prints: node reasons from `eligibility.REASON_TEXT` and
remedies from `diagnose.fixes`, word for word, so an Event and `explain` cannot disagree. Every message is bounded
to the 1 KiB (in UTF-8) that events.k8s.io/v1 allows in `note` (kubernetes pkg/apis/events/validation:
NOTE_LENGTH_LIMIT 1024), and names at most `diagnose.MAX_NODES_NAMED` nodes per group, then "and K more".

This module decides what to say, not when: deduplication and rate limits belong to the Event poster, and the
WARNING log line for a service with nobody to the caller. Pure: no I/O, no clock, no logging, standard library only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from l2core.diagnose import MAX_NODES_NAMED, fixes
from l2core.election import digest_from, election_prefix
from l2core.eligibility import REASON_TEXT, Reason
from l2core.model import Node
from l2core.parse import PoolOverlap
from l2core.plan import Plan, ServicePlan, Status
from l2core.text import and_more

NOTE_LIMIT = 1024  # bytes of UTF-8: events.k8s.io/v1 Event.note, "maximal length of the note is 1kB"
CUT = "…"


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class ServiceEvent:
    """One Event about a Service (or, from `stale_object` and `valid_again`, about another object): `reason` is
    the short CamelCase word Kubernetes shows in the REASON column (at most 128 characters), `message` the
    sentence (at most NOTE_LIMIT bytes). `identity`, when set, is what the Event is the same as across restarts
    instead of the message: the message without the parts a restarted speaker sees anew (a time)."""

    type: EventType
    reason: str
    message: str
    identity: str = ""


def reporter(sp: ServicePlan, alive: Collection[str]) -> str | None:
    """The one node whose speaker reports on this service: its announcer; when nobody announces it, the alive
    speaker whose election digest for the first IP is smallest. None when the service is not ours, has no IP
    yet, or no speaker is alive. Costs one hash per alive speaker, and only for a service nobody announces."""
    if sp.status is Status.ANNOUNCED:
        return sp.announcer
    if sp.status is not Status.NOBODY or not sp.ips or not alive:
        return None
    ip = sp.ips[0]
    return min(alive, key=lambda node: digest_from(election_prefix(node), ip))


def object_reporter(kind: str, key: str, alive: Collection[str]) -> str | None:
    """The one node whose speaker reports on the object `kind` `key` ("IPAddressPool", "metallb-system/lan"): the
    alive speaker whose digest sha256(node + "#" + kind + "/" + key) is smallest; None when no speaker is alive."""
    if not alive:
        return None
    subject = f"{kind}/{key}"
    return min(alive, key=lambda node: digest_from(election_prefix(node), subject))


def bounded(text: str, limit: int = NOTE_LIMIT) -> str:
    """`text` if its UTF-8 form fits in `limit` bytes; otherwise cut (never inside a character) to end in '…'."""
    data = text.encode()
    if len(data) <= limit:
        return text
    head = data[: limit - len(CUT.encode())].decode(errors="ignore")
    return head + CUT


def _ips(ips: Sequence[str]) -> str:
    return ", ".join(ips)


def _where(interfaces: Collection[str] | None) -> str:
    return "all interfaces" if interfaces is None else and_more(sorted(interfaces), MAX_NODES_NAMED)


def announcing(ips: Sequence[str], node: str, interfaces: Collection[str] | None) -> ServiceEvent:
    """Normal: `announcing 192.0.2.100 from node worker-2 on eth0`; `interfaces` None means all of them."""
    return ServiceEvent(
        EventType.NORMAL, "Announcing", bounded(f"announcing {_ips(ips)} from node {node} on {_where(interfaces)}")
    )


def _rejections(plan: Plan, key: str) -> str:
    """Why no node qualifies: the service's own reasons, or the nodes grouped by identical reasons, the groups
    closest to eligible (fewest reasons) first."""
    sp = plan.services[key]
    order = list(Reason)
    if sp.service_reasons:
        return "; ".join(REASON_TEXT[r] for r in sorted(sp.service_reasons, key=order.index))
    groups: dict[tuple[Reason, ...], list[str]] = {}
    for v in plan.verdicts(key):
        groups.setdefault(tuple(v.sorted_reasons()), []).append(v.name)
    if not groups:
        return "the cluster has no nodes"
    ranked = sorted(groups.items(), key=lambda kv: (len(kv[0]), [order.index(r) for r in kv[0]]))
    return "; ".join(
        f"{and_more(names, MAX_NODES_NAMED)} {', '.join(REASON_TEXT[r] for r in reasons)}" for reasons, names in ranked
    )


def no_eligible_node(
    plan: Plan,
    key: str,
    *,
    nodes: Mapping[str, Node] | None = None,
    pool_overlaps: Sequence[PoolOverlap] = (),
) -> ServiceEvent:
    """Warning for a service nobody announces: `no eligible node for IPS: WHY (FIXES)`, with the reasons explain
    shows and the remedies `diagnose.fixes` gives (same `nodes` and `pool_overlaps` as explain passes)."""
    sp = plan.services[key]
    why = _rejections(plan, key)
    remedies = [f for f in fixes(plan, key, nodes=nodes, pool_overlaps=pool_overlaps) if f != why]
    text = f"no eligible node for {_ips(sp.ips)}: {why}" + (f" ({'; '.join(remedies)})" if remedies else "")
    return ServiceEvent(EventType.WARNING, "NoEligibleNode", bounded(text))


def ip_conflict(ip: str, *, mac: str, iface: str) -> ServiceEvent:
    """Warning: another MAC answered for an IP this node announces (the data plane's conflict detection)."""
    return ServiceEvent(EventType.WARNING, "IPConflict", bounded(f"{ip} is also claimed by {mac} on {iface}"))


def interfaces_missing(ips: Sequence[str], node: str, missing: Collection[str]) -> ServiceEvent:
    """Warning: the winning node lacks interfaces the L2Advertisements ask for, so the IPs go unannounced there."""
    names = and_more(sorted(missing), MAX_NODES_NAMED)
    return ServiceEvent(
        EventType.WARNING,
        "InterfaceMissing",
        bounded(
            f"{_ips(ips)} not announced on {names}: node {node} has no such interface (create it, or change the "
            "interfaces of the L2Advertisements that select the node)"
        ),
    )


def _kubectl_edit(kind: str, key: str) -> str:
    namespace, _, name = key.rpartition("/")
    return f"kubectl edit {kind.lower()} {name}" + (f" -n {namespace}" if namespace else "")


def stale_object(kind: str, key: str, problem: str, *, kept: bool, since: str) -> ServiceEvent:
    """Warning on an object whose latest version does not parse: what is wrong, what is used instead since when
    (`since`: a time as the caller writes it, say RFC 3339), and the fix. `kept`: a last valid version is still used
    (else nothing is)."""
    what = (
        "its last valid version is still in use" if kept else "it has no valid version to fall back on and is ignored"
    )
    problem = problem.replace(f"{kind} {key}: ", "")  # the parser's problems name the object: it is named once
    fix = f"{problem}; {what} (correct the object: {_kubectl_edit(kind, key)})"
    text = f"{kind} {key} is invalid since {since}: {fix}"
    # `since` is when this speaker first saw it invalid: a restarted one sees it anew, and must not say it again.
    return ServiceEvent(EventType.WARNING, "InvalidObject", bounded(text), identity=f"{kind} {key} is invalid: {fix}")


def valid_again(kind: str, key: str) -> ServiceEvent:
    """Normal, after `stale_object`: the object parses again and its current version is in use."""
    return ServiceEvent(
        EventType.NORMAL, "ValidAgain", bounded(f"{kind} {key} is valid again: its current version is in use")
    )
