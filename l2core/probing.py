"""Probe takeover: which owners a speaker watches on the wire, how often, and when it takes over or yields.

The planner keeps each IP's runner-up. A speaker that is runner-up for IPs owned by node X watches X: every probe
period it sends one ARP request (IPv4) or Neighbor Solicitation (IPv6) for one of X's VIPs, unicast to X's MAC,
and after `misses` consecutive unanswered probes it announces the IPs it backs up for X at once, without waiting
for X's lease to expire. When X answers again (a lost probe, a busy node), it yields. The election never changes
here: these IPs are held *beside* the plan, and once X's lease expires the plan gives them to this node anyway.

- `watches(plan, node)`: the owners `node` backs up, one `Watch` each (one probe per owner node, not per IP).
- `probe_period(owners, ...)`: the interval, stretched so that all probes stay within the speaker's budget.
- `ProbeState` with `after_tick` and `after_answer`: one owner's state machine; each returns the new state and the
  `Change` (TAKEOVER, YIELD or None) for the caller to act on.
- `not_answering`: the Warning Event text (`node X stopped answering ARP for 192.0.2.100; worker-2 took over`).
- `format_macs` / `parse_macs`: the annotation `l2guard.io/macs` each speaker writes on its own Lease with the
  renewals it makes anyway: its interfaces' MACs, the candidates a runner-up probes before it has heard the owner
  on the wire (after a restart it missed the owner's takeover burst). A candidate is never trusted for a
  takeover: misses count only once the owner answered from one MAC, on one link.

Timeline with the defaults (period 0.3 s, 3 misses): a probe is due every period; at each tick the probe sent one
period earlier counts as missed unless an answer came, so the owner dies at t0 and the third missed probe is
counted between t0 + 3 periods and t0 + 4 periods (0.9-1.2 s). A yield takes one answer: within one period of the
owner answering again (the next probe).

Pure: no I/O, no clock (`now` is never needed: the caller ticks), no logging, standard library only. It must not
import the data plane (`speaker/`) or decide who owns an IP (the plan does).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from l2core.election import Rank, digest_from, elect_top2, election_prefix
from l2core.plan import Plan, Selection, SelectionKey, ServicePlan, Status
from l2core.reporting import EventType, ServiceEvent, bounded

# Defaults, and why:
# - 0.3 s: with 3 misses an owner that dies is detected in 0.9-1.2 s, so the client-visible failover (detection,
#   then the takeover burst) stays well under the 2 s target; shorter periods buy little against the ~0.1 s a
#   client needs after the gratuitous ARP, and cost more probes; longer ones (0.5 s: 1.5-2.0 s) miss the target.
# - 3 misses: a takeover needs three probes lost in a row; at 1% loss that is one in a million probes
#   (~ once in 3.5 days per watched owner at 3.3 probes/s), and at the benchmarks' 20% loss each false takeover
#   ends within one period, when the owner answers the next probe.
# - 100 probes/s: a speaker backs up at most every other node. In a 50-node cluster with 1,000 services a speaker
#   backs up 10-24 owners (bench/bench_speaker_probes.py --cost), at most 80 probes/s at 0.3 s: 100/s keeps them all
#   at the full rate (50/s, the example, would stretch the period to 0.48 s and detection to 1.9 s); with
#   10,000 services (49 owners) the period becomes 0.49 s. Cost: 100 ARP frames of 60 bytes and their answers,
#   12 KB/s, unicast; each owner answers at most (nodes - 1) / interval probes per second.
DEFAULT_PROBE_INTERVAL = 0.3
DEFAULT_PROBE_MISSES = 3
DEFAULT_PROBE_BUDGET = 100.0

Interfaces = frozenset[str] | None  # None: every eligible interface

MACS_ANNOTATION = "l2guard.io/macs"  # on the speaker's own Lease: "02:00:00:00:0a:01,02:00:00:00:0b:01"
MAX_PUBLISHED_MACS = 16  # read at most this many from a peer's annotation (a node has a few interfaces)
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@dataclass(frozen=True, slots=True)
class Watch:
    """One owner node this node backs up: the VIP probed (an IPv4 one when it has any: ARP needs no source
    address), the IPs this node takes over when the owner stops answering (IP -> the interfaces this node would
    announce them on, None: all), and the services they belong to (sorted), for the Events."""

    owner: str
    target: str
    takeover: Mapping[str, Interfaces]
    services: tuple[str, ...]

    @property
    def protocol(self) -> str:
        """What the probe speaks: "ARP" or "NDP" (for log lines and the Event text)."""
        return "NDP" if ":" in self.target else "ARP"


def runner_up(plan: Plan, key: str, *, kept: RunnerUps | None = None) -> str | None:
    """The node that would announce service `key` if its announcer left: the runner-up the planner kept while it is
    still a candidate, or else (the planner forgets it when the owner changes, and keeps a stale one when the
    runner-up itself leaves: "caught on use", l2core.plan) the winner among the other candidates, kept in `kept`
    across plans so that a long-running speaker does not elect again what nothing changed."""
    sp = plan.services[key]
    if sp.status is not Status.ANNOUNCED or sp.announcer is None or not sp.ips:
        return None
    return (kept if kept is not None else RunnerUps()).elect(plan, key)


class RunnerUps:
    """The runner-ups the planner lost track of, elected here and kept. The planner forgets a service's runner-up
    when its owner changes (`ServicePlan.runner_up` None); they add up with every node that leaves, and electing
    each again costs a hash per candidate (about 1 ms at 500 nodes) on every plan: 19 s for 10,000 services.

    Kept per service with the ServicePlan, the Selection and the selection's eligible candidates it was elected
    among: the same objects next time mean the same answer at no cost; when only the candidates changed since the
    last plan, the nodes that left and joined are compared with the kept runner-up (one hash each) unless the
    kept one itself left. Anything else is elected again. Pure; one instance per speaker, used from one thread."""

    def __init__(self) -> None:
        self._bases: dict[SelectionKey, frozenset[str]] = {}  # per selection: its eligible candidates, last plan
        self._previous: dict[SelectionKey, frozenset[str]] = {}  # ... and the plan before
        self._kept: dict[str, tuple[ServicePlan, Selection, frozenset[str], Rank]] = {}
        self._plan: Plan | None = None

    def _start(self, plan: Plan) -> None:
        """A new plan: each selection's candidates, the same object as before when they did not change."""
        if plan is self._plan:
            return
        self._plan = plan
        reasons = plan.node_reasons
        bases = {}
        for sel_key, sel in plan.selections.items():
            base = frozenset(n for n in sel.nodes if n in reasons and not reasons[n])
            old = self._bases.get(sel_key)
            bases[sel_key] = old if old == base else base
        self._previous, self._bases = self._bases, bases
        for key in [k for k in self._kept if k not in plan.services]:
            del self._kept[key]

    def elect(self, plan: Plan, key: str) -> str | None:
        self._start(plan)
        sp = plan.services[key]
        sel = plan.selections.get(sp.selection) if sp.selection is not None else None
        if sel is None or sp.selection is None or sp.announcer is None:
            return None
        base = self._bases[sp.selection]
        known = sp.runner_up
        if known is not None and (
            known.node is None
            or (
                known.node in base
                and (sp.local_nodes is None or known.node in sp.local_nodes)
                and sel.weights.get(known.node, 0) == known.weight
            )
        ):
            return known.node  # nodes that join are compared with it by the planner; only a leave makes it stale
        kept = self._kept.get(key)
        if kept is not None and kept[0] is sp and kept[1] is sel and kept[2] is base:
            return kept[3].node
        rank = None
        if (
            kept is not None
            and kept[2] is self._previous.get(sp.selection)
            and kept[0].announcer == sp.announcer
            and kept[0].ips[:1] == sp.ips[:1]
            and kept[0].local_nodes == sp.local_nodes
            and kept[1].weights == sel.weights
        ):
            rank = _patched(kept[3], sp, left=kept[2] - base, joined=base - kept[2], weights=sel.weights)
        if rank is None:
            rank = _elect_runner_up(sp, base, sel.weights)
        self._kept[key] = (sp, sel, base, rank)
        return rank.node


def _candidates(sp: ServicePlan, nodes: Iterable[str]) -> list[str]:
    local = sp.local_nodes
    return sorted(n for n in nodes if n != sp.announcer and (local is None or n in local))


def _patched(
    rank: Rank, sp: ServicePlan, *, left: frozenset[str], joined: frozenset[str], weights: Mapping[str, int]
) -> Rank | None:
    """The runner-up after `left` left and `joined` joined the candidates, from the kept one; None when the kept
    one left (elect again)."""
    if rank.node is not None and rank.node in left:
        return None
    best = rank
    for name in _candidates(sp, joined):
        weight = weights.get(name, 0)
        other = Rank(name, weight, digest_from(election_prefix(name), sp.ips[0]))
        if best.node is None or other.key < best.key:
            best = other
    return best


def _elect_runner_up(sp: ServicePlan, base: frozenset[str], weights: Mapping[str, int]) -> Rank:
    candidates = _candidates(sp, base)
    winner, _ = elect_top2(candidates, sp.ips[0], weights=weights, prefixes={n: election_prefix(n) for n in candidates})
    return winner


def _ip_order(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return (addr.version, int(addr))


def watches(plan: Plan, node: str, *, kept: RunnerUps | None = None) -> dict[str, Watch]:
    """Owner -> Watch for every node whose announced IPs `node` is runner-up for. An IP `node` announces already
    (a shared IP another service gives it) is not taken over; services with more than one IP are taken over whole,
    as the election moves them. Cost: one pass over the services, plus an election for those whose runner-up the
    planner no longer knows (once, with `kept`: see RunnerUps)."""
    kept = kept if kept is not None else RunnerUps()
    mine = plan.announcements(node)
    takeover: dict[str, dict[str, Interfaces]] = {}
    services: dict[str, list[str]] = {}
    for key, sp in plan.services.items():
        owner = sp.announcer
        if owner is None or owner == node or runner_up(plan, key, kept=kept) != node:
            continue
        where = plan.interfaces_for(key, node)
        ips = takeover.setdefault(owner, {})
        for ip in sp.ips:
            if ip in mine:
                continue
            if ip in ips:
                prev = ips[ip]
                ips[ip] = None if prev is None or where is None else prev | where
            else:
                ips[ip] = where
        services.setdefault(owner, []).append(key)
    out = {}
    for owner, ips in sorted(takeover.items()):
        if not ips:
            continue
        target = min(ips, key=_ip_order)  # IPv4 sorts first: version 4 < 6
        out[owner] = Watch(owner, target, dict(sorted(ips.items())), tuple(sorted(services[owner])))
    return out


def probe_period(owners: int, *, interval: float, budget: float) -> float:
    """Seconds between two probes of one owner: `interval`, stretched when `owners` probes per `interval` would
    exceed `budget` probes per second (the cost then grows with the cluster's size no more)."""
    if owners <= 0 or budget <= 0:
        return interval
    return max(interval, owners / budget)


class Change(StrEnum):
    TAKEOVER = "takeover"  # the owner stopped answering: announce the IPs backed up for it
    YIELD = "yield"  # the owner answers again: stop announcing them
    SILENT = "silent"  # never heard, not even at the MACs it publishes: report it, take nothing over


@dataclass(frozen=True, slots=True)
class ProbeState:
    """One watched owner: consecutive unanswered probes, whether a probe is out (sent, not answered yet), whether
    this node holds the owner's IPs, and whether the owner was ever heard (a self-test failure is an owner that
    has not answered since). `asked` counts the probes sent, before the owner was ever heard, to the MACs it
    publishes (candidates: maybe not on this link, so their silence takes nothing over); `silent` is set once
    that many reached the misses allowed (reported)."""

    misses: int = 0
    pending: bool = False
    taken_over: bool = False
    answered_once: bool = False
    asked: int = 0
    silent: bool = False


def after_tick(state: ProbeState, *, misses: int, sent: bool, asked: bool = False) -> tuple[ProbeState, Change | None]:
    """A probe period ended: the probe still pending counts as missed; `sent` says whether the next one went out
    to the owner's MAC heard on the wire (False: none known yet, or the link refused it: nothing is pending,
    nothing counts). The owner is taken over at the `misses`-th consecutive miss. `asked`: instead, probes went
    to the MACs the owner publishes; an owner never heard after `misses` of those is SILENT (once)."""
    counted = state.misses + 1 if state.pending else state.misses
    new = replace(state, misses=counted, pending=sent)
    if counted >= misses and not state.taken_over:
        return replace(new, taken_over=True), Change.TAKEOVER
    if asked and not sent and not state.answered_once:
        new = replace(new, asked=state.asked + 1)
        if new.asked > misses and not state.silent:  # the first round only starts the count, as `pending` does
            return replace(new, silent=True), Change.SILENT
    return new, None


def after_answer(state: ProbeState) -> tuple[ProbeState, Change | None]:
    """The owner answered (a probe reply, or any frame from it claiming one of its VIPs): the misses start over,
    and a takeover ends at once."""
    new = ProbeState(answered_once=True)
    return new, Change.YIELD if state.taken_over else None


def not_answering(watch: Watch, node: str) -> ServiceEvent:
    """Warning about a service whose owner stopped answering the probes of `node`, which took its IPs over."""
    return ServiceEvent(
        EventType.WARNING,
        "OwnerNotAnswering",
        bounded(f"node {watch.owner} stopped answering {watch.protocol} for {watch.target}; {node} took over"),
    )


def silent(watch: Watch, node: str, macs: Iterable[str]) -> ServiceEvent:
    """Warning from the self-test: the owner never answered `node`'s probes, not even at the MACs it publishes."""
    return ServiceEvent(
        EventType.WARNING,
        "OwnerNotAnswering",
        bounded(
            f"node {watch.owner} does not answer {watch.protocol} for {watch.target} at its MACs "
            f"{', '.join(sorted(macs))}; {node} takes nothing over (is its speaker running, on the right interface?)"
        ),
    )


def answering_again(watch: Watch, node: str) -> ServiceEvent:
    """Normal: the owner answers again, and `node` handed its IPs back."""
    return ServiceEvent(
        EventType.NORMAL,
        "OwnerAnswering",
        bounded(f"node {watch.owner} answers {watch.protocol} for {watch.target} again; {node} yielded"),
    )


def format_macs(macs: Iterable[str]) -> str:
    """The annotation value for this node's MACs: sorted, lower case, comma-separated, at most MAX_PUBLISHED_MACS."""
    return ",".join(sorted({m.lower() for m in macs})[:MAX_PUBLISHED_MACS])


def parse_macs(value: object) -> frozenset[str]:
    """A peer's annotation read back: the well-formed unicast MACs it lists (at most MAX_PUBLISHED_MACS, the rest
    and anything malformed ignored; any other value: none)."""
    if not isinstance(value, str):
        return frozenset()
    out = set()
    for part in value[: 18 * MAX_PUBLISHED_MACS].split(",")[:MAX_PUBLISHED_MACS]:
        mac = part.strip().lower()
        if _MAC.fullmatch(mac) and not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00":
            out.add(mac)
    return frozenset(out)
