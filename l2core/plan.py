"""The planner: from a cluster snapshot to "who announces which IP, and why nobody does".

`Planner` holds the cluster and keeps a `Plan` up to date as objects change. A node change (the common event: a
label goes on, a condition flips) goes through `node_change`, which costs one hash per affected service at most:
each ServicePlan keeps its winner's digest, and a full election re-runs only where the winner itself lost
eligibility. The same function answers "what if" for the webhook on an immutable Plan (through `PlanIndex`), so
the speaker's update and the webhook's warning share one mechanism. Everything else (a Service, its
EndpointSlices) replans that one service; a pool, advertisement or liveness change replans everything.

`plan()` is the one-shot form. `diff()` turns two plans into moves (service, before, after), and `node_changes()`
tells one node which IPs to start and stop announcing (from the plans' announcements, so shared IPs stay).

What an event costs is proportional to what it changes, not to the cluster's size: the Planner hands each Plan the
lookups it keeps as it goes (services by announcer and by selection, `Plan.lookups`), shares the services mapping
of the previous Plan when no service changed, and links its Plans in a history, so that `Plan.replanned_since(older)`
names the services replanned in between (what `diff()` and the speaker's reconcile step visit instead of every
service).

Data flows one way: the planner never calls an announcer, a socket or the API server. No I/O, standard library only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol

from l2core.election import NO_CANDIDATE, Rank, digest_from, elect_top2, election_prefix
from l2core.eligibility import NodeVerdict, Reason, node_wide_reasons
from l2core.model import Cluster, EligibilitySettings, EndpointSlice, IPAddressPool, L2Advertisement, Node, Service

SelectionKey = tuple[str, ...]  # the keys ("ns/name") of the L2Advertisements that apply to a (pool, service)


class Status(StrEnum):
    ANNOUNCED = "announced"
    NOBODY = "nobody"  # ours, has IPs, but no node is eligible
    NOT_OURS = "not-ours"  # another load-balancer class
    NO_IP = "no-ip"  # LoadBalancer still waiting for an address: nothing to announce yet


@dataclass(frozen=True, slots=True)
class Selection:
    """What a set of L2Advertisements decides about nodes, resolved once and shared by all services using it."""

    advertisements: SelectionKey
    nodes: frozenset[str]  # selected by at least one of the advertisements' nodeSelectors
    weights: Mapping[str, int]  # summed preferredNodeSelectors weights; nodes with 0 are omitted
    interfaces: Mapping[str, frozenset[str]]  # restricted interfaces per node; absent: all eligible interfaces


@dataclass(frozen=True, slots=True)
class ServicePlan:
    key: str  # "namespace/name"
    ips: tuple[str, ...]
    status: Status
    announcer: str | None
    pool: str | None  # pool name, when all IPs are in one pool
    service_reasons: frozenset[Reason] = frozenset()
    selection: SelectionKey | None = None  # None when there is no pool to select advertisements for
    local_nodes: frozenset[str] | None = None  # externalTrafficPolicy Local: nodes with a serving endpoint
    load_balancer_class: str | None = None
    pool_advertised: bool = True  # some L2Advertisement applies to the pool (if none selects this service, it is
    # their serviceSelectors that leave it out)
    # The per-(node, ip) hash cache that makes node changes cheap: the announcer's election digest, and the
    # runner-up (NO_CANDIDATE: there is none; None: not known, after it took over or may have changed).
    digest: bytes = field(default=b"", compare=False, repr=False)
    runner_up: Rank | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PlanLookups:
    """A plan's services by announcer and by selection (only non-empty entries)."""

    by_announcer: Mapping[str, frozenset[str]]
    by_selection: Mapping[SelectionKey, frozenset[str]]


def _lookups(services: Mapping[str, ServicePlan]) -> PlanLookups:
    by_announcer: dict[str, set[str]] = {}
    by_selection: dict[SelectionKey, set[str]] = {}
    for key, sp in services.items():
        if sp.announcer is not None:
            by_announcer.setdefault(sp.announcer, set()).add(key)
        if sp.selection is not None:
            by_selection.setdefault(sp.selection, set()).add(key)
    return PlanLookups(
        {k: frozenset(v) for k, v in by_announcer.items()}, {k: frozenset(v) for k, v in by_selection.items()}
    )


class _Step:
    """One link of a Planner's history of Plans: the services replanned between the Plan holding this step and
    the next Plan (`next`, set once that Plan exists; `everything` after a full replan). A Plan holds only its own
    step, so a history lives as long as its oldest Plan someone keeps. Written by the Planner's thread: `services`
    and `everything` are set before `next`, and a reader stops at the step of a Plan it was handed."""

    __slots__ = ("everything", "next", "services")

    def __init__(self) -> None:
        self.services: frozenset[str] = frozenset()
        self.everything = False
        self.next: _Step | None = None


@dataclass(frozen=True)
class Plan:
    settings: EligibilitySettings
    node_reasons: Mapping[str, frozenset[Reason]]  # node-wide reasons, for every node
    selections: Mapping[SelectionKey, Selection]
    services: Mapping[str, ServicePlan]  # LoadBalancer services only
    # The Planner's lookups, handed over (None: built from `services` on first use, for a Plan made by hand).
    given_lookups: PlanLookups | None = field(default=None, compare=False, repr=False)
    # Where this Plan stands in its Planner's history (None: a Plan made by hand, or the one-shot `plan()`'s).
    step: _Step | None = field(default=None, compare=False, repr=False)

    @cached_property
    def lookups(self) -> PlanLookups:
        return self.given_lookups if self.given_lookups is not None else _lookups(self.services)

    def replanned_since(self, older: Plan) -> frozenset[str] | None:
        """The services whose ServicePlan may differ between `older` and this plan: every key replanned (added,
        changed or removed) in between, when both come from one Planner and `older` is not newer; every other
        service is the same object in both. None when that is not known (another Planner, a Plan made by hand,
        `older` is newer, a full replan happened in between, or more changed than the two plans hold):
        compare everything. Costs one step per Plan made in between."""
        step, target = older.step, self.step
        if step is None or target is None:
            return None
        keys: set[str] = set()
        while step is not target:
            if step.next is None or step.everything:
                return None
            keys |= step.services
            if len(keys) > len(self.services) + len(older.services):  # a walk over both costs less
                return None
            step = step.next
        return frozenset(keys)

    def verdicts(self, key: str) -> list[NodeVerdict]:
        """Every node with every reason that keeps it from announcing this service, sorted by name."""
        sp = self.services[key]
        sel = self.selections.get(sp.selection) if sp.selection is not None else None
        out = []
        for name in sorted(self.node_reasons):
            reasons = set(self.node_reasons[name]) | sp.service_reasons
            if sp.selection is not None and (sel is None or name not in sel.nodes):
                reasons.add(Reason.NOT_SELECTED)
            if sp.local_nodes is not None and name not in sp.local_nodes:
                reasons.add(Reason.NO_LOCAL_ENDPOINT)
            out.append(NodeVerdict(name, frozenset(reasons)))
        return out

    def interfaces_for(self, key: str, node: str) -> frozenset[str] | None:
        """The interfaces `node` must announce this service's IPs on; None means every eligible interface."""
        sp = self.services[key]
        sel = self.selections.get(sp.selection) if sp.selection is not None else None
        return sel.interfaces.get(node) if sel is not None else None

    def announcements(self, node: str) -> dict[str, frozenset[str] | None]:
        """IP -> interfaces (None: all) that `node` must announce. Shared IPs merge their interface sets. Visits
        only the services `node` announces (`lookups`)."""
        out: dict[str, frozenset[str] | None] = {}
        for key in sorted(self.lookups.by_announcer.get(node, ())):
            sp = self.services[key]
            ifaces = self.interfaces_for(key, node)
            for ip in sp.ips:
                if ip in out:
                    prev = out[ip]
                    out[ip] = None if prev is None or ifaces is None else prev | ifaces
                else:
                    out[ip] = ifaces
        return out


@dataclass(frozen=True, slots=True)
class Move:
    service: str
    ips: tuple[str, ...]
    before: str | None
    after: str | None


@dataclass(frozen=True)
class PlanDiff:
    moves: tuple[Move, ...] = ()


def node_changes(old: Plan, new: Plan, node: str) -> tuple[dict[str, frozenset[str] | None], frozenset[str]]:
    """What `node` must start and stop announcing between two plans: (IP -> interfaces, None meaning all, for IPs
    newly announced or announced on other interfaces now; IPs to stop). Computed from each plan's announcements,
    so an IP that another service on this node still holds (a shared IP) is never stopped."""
    before, after = old.announcements(node), new.announcements(node)
    start = {ip: ifaces for ip, ifaces in after.items() if ip not in before or before[ip] != ifaces}
    return start, frozenset(before.keys() - after.keys())


def diff(old: Plan, new: Plan) -> PlanDiff:
    """Services whose announcer or IPs changed, old -> new (added services have before=None, removed after=None).
    Visits only the services replanned in between when the plans say which (`Plan.replanned_since`)."""
    moves = []
    replanned = new.replanned_since(old)
    keys = old.services.keys() | new.services.keys() if replanned is None else replanned
    for key in sorted(keys):
        a = old.services.get(key)
        b = new.services.get(key)
        before = a.announcer if a else None
        after = b.announcer if b else None
        a_ips = a.ips if a else ()
        b_ips = b.ips if b else ()
        if before == after and (a_ips == b_ips or before is None):
            continue  # nothing announced changed hands
        if a_ips != b_ips and before is not None and after is not None:
            moves.append(Move(key, a_ips, before, None))
            moves.append(Move(key, b_ips, None, after))
        else:
            moves.append(Move(key, b_ips or a_ips, before, after))
    return PlanDiff(tuple(moves))


def plan(cluster: Cluster, settings: EligibilitySettings, *, alive: Iterable[str] | None = None) -> Plan:
    """The one-shot planner: the plan for every LoadBalancer service of `cluster`."""
    return Planner(cluster, settings, alive=alive).plan


class Planner:
    """Keeps a Plan current under object changes. Pure: no I/O, no clock, no logging; callers own the events."""

    def __init__(self, cluster: Cluster, settings: EligibilitySettings, *, alive: Iterable[str] | None = None) -> None:
        self.settings = settings
        self._nodes: dict[str, Node] = dict(cluster.nodes)
        self._services: dict[str, Service] = dict(cluster.services)
        self._pools: dict[str, IPAddressPool] = dict(cluster.pools)
        self._ads: dict[str, L2Advertisement] = dict(cluster.advertisements)
        self._alive: frozenset[str] | None = frozenset(alive) if alive is not None else None
        self._slices_by_service: dict[str, dict[str, EndpointSlice]] = {}
        self._slice_owner: dict[str, str] = {}
        for slice_key, eps in cluster.endpoint_slices.items():
            self._index_slice(slice_key, eps)
        self._plan: Plan | None = None
        self.prefixes: dict[str, Any] = {}
        self.node_reasons: dict[str, frozenset[Reason]] = {}
        self._ok: set[str] = set()
        self._ranges: list[tuple[int, int, int, str]] = []
        self.selections: dict[SelectionKey, Selection] = {}
        self.bases: dict[SelectionKey, frozenset[str]] = {}
        self.by_selection: dict[SelectionKey, set[str]] = {}
        self.by_announcer: dict[str, set[str]] = {}
        self.services: dict[str, ServicePlan] = {}
        # Since the last Plan was made: the services replanned, or everything (a full replan). The last Plan and
        # the step of the history the next one links from.
        self._replanned: set[str] = set()
        self._everything = True
        self._last: Plan | None = None
        self._step = _Step()
        self._rebuild()

    # ----- public API -------------------------------------------------------------------------------------------

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = self._next_plan()
        return self._plan

    def _next_plan(self) -> Plan:
        """A Plan of the current state. Costs what changed since the last one: the services mapping is shared when
        no service was replanned, and only the lookups' entries of the announcers and selections of replanned
        services are rebuilt."""
        last, replanned = self._last, self._replanned
        if last is None or self._everything:
            services: Mapping[str, ServicePlan] = dict(self.services)
            lookups = PlanLookups(
                {k: frozenset(v) for k, v in self.by_announcer.items() if v},
                {k: frozenset(v) for k, v in self.by_selection.items() if v},
            )
        else:
            services = dict(self.services) if replanned else last.services
            lookups = self._lookups_after(last, replanned)
        step, self._step = self._step, _Step()
        step.services, step.everything = frozenset(replanned), self._everything
        step.next = self._step  # last: what a reader follows
        self._last = Plan(
            self.settings,
            dict(self.node_reasons),
            dict(self.selections),
            services,
            given_lookups=lookups,
            step=self._step,
        )
        self._replanned, self._everything = set(), False
        return self._last

    def _lookups_after(self, last: Plan, replanned: Collection[str]) -> PlanLookups:
        """`last`'s lookups with the entries of every announcer and selection a replanned service had or has
        taken from the live indexes."""
        announcers: set[str] = set()
        selections: set[SelectionKey] = set()
        for key in replanned:
            for sp in (last.services.get(key), self.services.get(key)):
                if sp is not None:
                    if sp.announcer is not None:
                        announcers.add(sp.announcer)
                    if sp.selection is not None:
                        selections.add(sp.selection)
        before = last.lookups
        if not announcers and not selections:
            return before
        return PlanLookups(
            _refreshed(before.by_announcer, self.by_announcer, announcers),
            _refreshed(before.by_selection, self.by_selection, selections),
        )

    def upsert_node(self, node: Node) -> PlanDiff:
        return self._node_changed(node.name, node)

    def delete_node(self, name: str) -> PlanDiff:
        return self._node_changed(name, None)

    def upsert_service(self, service: Service) -> PlanDiff:
        self._services[service.key] = service
        return self._replan_services([service.key])

    def delete_service(self, key: str) -> PlanDiff:
        self._services.pop(key, None)
        return self._replan_services([key])

    def upsert_endpoint_slice(self, key: str, eps: EndpointSlice) -> PlanDiff:
        old_service = self._slice_owner.get(key)
        self._unindex_slice(key)
        self._index_slice(key, eps)
        return self._replan_services({eps.service_key, *([old_service] if old_service else [])})

    def delete_endpoint_slice(self, key: str) -> PlanDiff:
        old_service = self._slice_owner.get(key)
        self._unindex_slice(key)
        return self._replan_services([old_service] if old_service else [])

    def replace_config(
        self, pools: Mapping[str, IPAddressPool], advertisements: Mapping[str, L2Advertisement]
    ) -> PlanDiff:
        """Pools or advertisements changed: every selection may change, so replan everything."""
        self._pools = dict(pools)
        self._ads = dict(advertisements)
        return self._full_replan()

    def set_alive(self, alive: Iterable[str] | None) -> PlanDiff:
        """Speaker liveness changed (None: unknown, every node alive). Only the nodes whose liveness flipped are
        replanned, through the incremental node path: a lease expiring costs what a label change costs, not a
        full replan (seconds at 10,000 services)."""
        new = frozenset(alive) if alive is not None else None
        flipped = [n for n in self._nodes if self._is_alive(n) != (new is None or n in new)]
        old = self.plan
        self._alive = new
        for name in sorted(flipped):
            self._node_changed(name, self._nodes[name])
        return diff(old, self.plan)

    # ----- full build -------------------------------------------------------------------------------------------

    def _full_replan(self) -> PlanDiff:
        old = self.plan
        self._rebuild()
        return diff(old, self.plan)

    def _rebuild(self) -> None:
        self._plan = None
        self._everything = True
        self.prefixes = {name: election_prefix(name) for name in self._nodes}
        self.node_reasons = {
            name: node_wide_reasons(node, self.settings, alive=self._is_alive(name))
            for name, node in self._nodes.items()
        }
        self._ok = {name for name, reasons in self.node_reasons.items() if not reasons}
        self._ranges = sorted(
            ((rng.version, rng.first, rng.last, key) for key, pool in self._pools.items() for rng in pool.ranges)
        )
        self.selections = {}
        self.bases = {}
        self.by_selection = {}
        self.by_announcer = {}
        self.services = {}
        for key in self._services:
            self._plan_service(key)

    def _is_alive(self, name: str) -> bool:
        return self._alive is None or name in self._alive

    # ----- selections -------------------------------------------------------------------------------------------

    def _selection(self, key: SelectionKey) -> Selection:
        sel = self.selections.get(key)
        if sel is None:
            ads = [self._ads[k] for k in key]
            nodes = []
            weights = {}
            interfaces = {}
            for node in self._nodes.values():
                selecting = [ad for ad in ads if ad.selects_node(node)]
                if not selecting:
                    continue
                nodes.append(node.name)
                weight = sum(ad.preference_weight(node) for ad in selecting)
                if weight:
                    weights[node.name] = weight
                if all(ad.interfaces for ad in selecting):
                    interfaces[node.name] = frozenset(i for ad in selecting for i in ad.interfaces)
            sel = Selection(key, frozenset(nodes), weights, interfaces)
            self.selections[key] = sel
            self.bases[key] = frozenset(sel.nodes & self._ok)
        return sel

    # ----- one service ------------------------------------------------------------------------------------------

    def _pool_of(self, ip: str) -> str | None:
        addr = ipaddress.ip_address(ip)
        value, version = int(addr), addr.version
        for v, first, last, key in self._ranges:
            if v == version and first <= value <= last:
                return key
        return None

    def _serving(self, key: str) -> tuple[bool, frozenset[str]]:
        any_serving = False
        local = set()
        for eps in self._slices_by_service.get(key, {}).values():
            for ep in eps.endpoints:
                if ep.can_serve:
                    any_serving = True
                    if ep.node_name:
                        local.add(ep.node_name)
        return any_serving, frozenset(local)

    def _plan_service(self, key: str) -> None:
        self._replanned.add(key)
        old = self.services.pop(key, None)
        if old is not None:
            if old.selection is not None:
                self.by_selection.get(old.selection, set()).discard(key)
            if old.announcer is not None:
                self.by_announcer.get(old.announcer, set()).discard(key)
        svc = self._services.get(key)
        if svc is None or svc.type != "LoadBalancer":
            return
        if svc.load_balancer_class != self.settings.load_balancer_class:
            self.services[key] = ServicePlan(
                key, svc.ingress_ips, Status.NOT_OURS, None, None, load_balancer_class=svc.load_balancer_class
            )
            return
        if not svc.ingress_ips:
            self.services[key] = ServicePlan(key, (), Status.NO_IP, None, None)
            return

        reasons: set[Reason] = set()
        pool_keys = {self._pool_of(ip) for ip in svc.ingress_ips}
        pool_key: str | None = None
        if None in pool_keys:
            reasons.add(Reason.IP_IN_NO_POOL)
        elif len(pool_keys) > 1:
            reasons.add(Reason.IPS_SPAN_SEVERAL_POOLS)
        else:
            pool_key = next(iter(pool_keys))

        selection: SelectionKey | None = None
        for_pool: list[L2Advertisement] = []
        if pool_key is not None:
            pool = self._pools[pool_key]
            for_pool = [ad for ad in self._ads.values() if ad.applies_to_pool(pool)]
            selection = tuple(sorted(ad.key for ad in for_pool if ad.applies_to_service(svc)))
            if svc.shared_ip_key and any(ad.service_selectors for ad in for_pool):
                reasons.add(Reason.SHARED_IP_WITH_SERVICE_SELECTORS)

        any_serving, local = self._serving(key)
        if not any_serving:
            reasons.add(Reason.NO_SERVING_ENDPOINT)
        local_nodes = local if svc.external_traffic_policy_local else None

        announcer: str | None = None
        digest = b""
        runner_up: Rank | None = None
        if selection is not None:
            sel = self._selection(selection)
            self.by_selection.setdefault(selection, set()).add(key)
            if not reasons:
                candidates = self.bases[selection]
                if local_nodes is not None:
                    candidates = candidates & local_nodes
                winner, runner_up = elect_top2(
                    candidates, svc.ingress_ips[0], weights=sel.weights, prefixes=self.prefixes
                )
                announcer, digest = winner.node, winner.digest
                if announcer is not None:
                    self.by_announcer.setdefault(announcer, set()).add(key)
        pool_name = self._pools[pool_key].name if pool_key else None
        self.services[key] = ServicePlan(
            key=key,
            ips=svc.ingress_ips,
            status=Status.ANNOUNCED if announcer else Status.NOBODY,
            announcer=announcer,
            pool=pool_name,
            service_reasons=frozenset(reasons),
            selection=selection,
            local_nodes=local_nodes,
            pool_advertised=bool(for_pool),
            digest=digest,
            runner_up=runner_up,
        )

    def _replan_services(self, keys: Iterable[str]) -> PlanDiff:
        old = self.plan
        for key in keys:
            self._plan_service(key)
        self._plan = None
        new = self.plan
        return diff(old, new)

    # ----- endpoint index ---------------------------------------------------------------------------------------

    def _index_slice(self, slice_key: str, eps: EndpointSlice) -> None:
        self._slices_by_service.setdefault(eps.service_key, {})[slice_key] = eps
        self._slice_owner[slice_key] = eps.service_key

    def _unindex_slice(self, slice_key: str) -> None:
        service = self._slice_owner.pop(slice_key, None)
        if service is not None:
            self._slices_by_service.get(service, {}).pop(slice_key, None)

    # ----- the incremental node path ----------------------------------------------------------------------------

    def _node_changed(self, name: str, node: Node | None) -> PlanDiff:
        change = node_change(self, name, node, advertisements=self._ads, alive=self._is_alive(name))
        self._apply(change)
        return PlanDiff(change.moves)

    def _apply(self, change: NodeChange) -> None:
        name = change.name
        if change.node is None:
            self._nodes.pop(name, None)
            self.node_reasons.pop(name, None)
            self.prefixes.pop(name, None)
        else:
            self._nodes[name] = change.node
            self.prefixes.setdefault(name, election_prefix(name))
            assert change.reasons is not None
            self.node_reasons[name] = change.reasons
        if change.now_ok:
            self._ok.add(name)
        else:
            self._ok.discard(name)
        self.selections.update(change.selections)
        for sel_key, sel in self.selections.items():
            base = self.bases[sel_key]
            self.bases[sel_key] = base | {name} if change.now_ok and name in sel.nodes else base - {name}
        self._replanned.update(change.services)
        for svc_key, sp in change.services.items():
            old = self.services[svc_key]
            if old.announcer is not None:
                self.by_announcer[old.announcer].discard(svc_key)
            if sp.announcer is not None:
                self.by_announcer.setdefault(sp.announcer, set()).add(svc_key)
            self.services[svc_key] = sp
        self._plan = None


def _refreshed(
    frozen: Mapping[Any, frozenset[str]], live: Mapping[Any, Collection[str]], keys: Iterable[Any]
) -> dict[Any, frozenset[str]]:
    """A copy of `frozen` with the entries of `keys` taken from `live` (dropped where empty)."""
    out = dict(frozen)
    for key in keys:
        members = live.get(key)
        if members:
            out[key] = frozenset(members)
        else:
            out.pop(key, None)
    return out


class NodeChangeContext(Protocol):
    """What `node_change` reads: a plan's services, selections and node reasons, plus lookups over them. The
    `Planner` provides it from its live state; `PlanIndex` from an immutable Plan."""

    @property
    def settings(self) -> EligibilitySettings: ...
    @property
    def services(self) -> Mapping[str, ServicePlan]: ...
    @property
    def selections(self) -> Mapping[SelectionKey, Selection]: ...
    @property
    def node_reasons(self) -> Mapping[str, frozenset[Reason]]: ...
    @property
    def bases(self) -> Mapping[SelectionKey, frozenset[str]]: ...  # selected nodes without node-wide reasons
    @property
    def by_selection(self) -> Mapping[SelectionKey, Collection[str]]: ...
    @property
    def by_announcer(self) -> Mapping[str, Collection[str]]: ...
    @property
    def prefixes(self) -> Mapping[str, Any]: ...  # node -> election_prefix(node)


class PlanIndex:
    """`NodeChangeContext` over one immutable Plan: the lookups are built lazily, once per plan, and never change,
    so request threads may share one index without locks."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    @property
    def settings(self) -> EligibilitySettings:
        return self.plan.settings

    @property
    def services(self) -> Mapping[str, ServicePlan]:
        return self.plan.services

    @property
    def selections(self) -> Mapping[SelectionKey, Selection]:
        return self.plan.selections

    @property
    def node_reasons(self) -> Mapping[str, frozenset[Reason]]:
        return self.plan.node_reasons

    @cached_property
    def ok_nodes(self) -> frozenset[str]:
        return frozenset(name for name, reasons in self.plan.node_reasons.items() if not reasons)

    @cached_property
    def bases(self) -> Mapping[SelectionKey, frozenset[str]]:
        ok = self.ok_nodes
        return {key: sel.nodes & ok for key, sel in self.plan.selections.items()}

    @property
    def by_selection(self) -> Mapping[SelectionKey, Collection[str]]:
        return self.plan.lookups.by_selection

    @property
    def by_announcer(self) -> Mapping[str, Collection[str]]:
        return self.plan.lookups.by_announcer

    @cached_property
    def prefixes(self) -> Mapping[str, Any]:
        return {name: election_prefix(name) for name in self.plan.node_reasons}


@dataclass
class NodeChange:
    """The consequences of one node change: new node-wide reasons, changed selections and service plans, moves."""

    name: str
    node: Node | None  # None: the node is deleted
    reasons: frozenset[Reason] | None
    now_ok: bool  # eligible as far as node-wide reasons go
    selections: dict[SelectionKey, Selection] = field(default_factory=dict)
    services: dict[str, ServicePlan] = field(default_factory=dict)
    moves: tuple[Move, ...] = ()


def node_change(
    ctx: NodeChangeContext,
    name: str,
    node: Node | None,
    *,
    advertisements: Mapping[str, L2Advertisement],
    alive: bool | None = None,
) -> NodeChange:
    """What replacing node `name` by `node` (None: deleting it) does to the plan, without replanning the world.

    Equals the difference between two full plans (property-tested). Other nodes are unchanged, so only services of
    a selection whose candidates or weights this node enters, leaves or changes can move: where the node got
    weaker, only the services it announces (a full election among the rest); where it got stronger, every service
    of the selection, at one hash each against the owner's kept digest. `advertisements` are the ones the plan was
    built from; `alive` defaults to the speaker liveness the plan already has for this node (unknown: alive)."""
    old_reasons = ctx.node_reasons.get(name)
    if alive is None:
        alive = old_reasons is None or Reason.SPEAKER_NOT_ALIVE not in old_reasons
    reasons = node_wide_reasons(node, ctx.settings, alive=alive) if node is not None else None
    change = NodeChange(name, node, reasons, now_ok=reasons is not None and not reasons)
    prefixes: Mapping[str, Any] = ctx.prefixes
    if name not in prefixes:
        prefixes = {**prefixes, name: election_prefix(name)}
    moves: list[Move] = []
    for key, old_sel in ctx.selections.items():
        sel = _reselect(old_sel, name, node, advertisements)
        if sel is not old_sel:
            change.selections[key] = sel
        old_base = ctx.bases[key]
        was_in = name in old_base
        is_in = change.now_ok and name in sel.nodes
        old_weight, weight = old_sel.weights.get(name, 0), sel.weights.get(name, 0)
        if not was_in and not is_in:
            continue
        if was_in and is_in and old_weight == weight:
            continue
        base = old_base | {name} if is_in else old_base - {name}
        stronger = is_in and (not was_in or weight > old_weight)
        if stronger:
            candidates: Iterable[str] = _not_outranked(
                ctx.services, ctx.by_selection.get(key, ()), name, weight, sel.weights, prefixes[name]
            )
        else:
            candidates = [k for k in ctx.by_announcer.get(name, ()) if ctx.services[k].selection == key]
        for svc_key in candidates:
            sp = _reconsider(
                ctx.services[svc_key], name, base, sel.weights, is_in=is_in, stronger=stronger, prefixes=prefixes
            )
            if sp is not None:
                change.services[svc_key] = sp
                if sp.announcer != ctx.services[svc_key].announcer:
                    moves.append(Move(svc_key, sp.ips, ctx.services[svc_key].announcer, sp.announcer))
    change.moves = tuple(sorted(moves, key=lambda m: m.service))
    return change


def _reselect(sel: Selection, name: str, node: Node | None, advertisements: Mapping[str, L2Advertisement]) -> Selection:
    """`sel` with node `name`'s membership, weight and interfaces recomputed; `sel` itself when nothing changed."""
    selecting = (
        [advertisements[k] for k in sel.advertisements if k in advertisements and advertisements[k].selects_node(node)]
        if node is not None
        else []
    )
    nodes = sel.nodes | {name} if selecting else sel.nodes - {name}
    weight = sum(ad.preference_weight(node) for ad in selecting) if node is not None else 0
    weights = dict(sel.weights)
    if weight:
        weights[name] = weight
    else:
        weights.pop(name, None)
    interfaces = dict(sel.interfaces)
    if selecting and all(ad.interfaces for ad in selecting):
        interfaces[name] = frozenset(i for ad in selecting for i in ad.interfaces)
    else:
        interfaces.pop(name, None)
    if nodes == sel.nodes and weights == sel.weights and interfaces == sel.interfaces:
        return sel
    return Selection(sel.advertisements, nodes, weights, interfaces)


def _not_outranked(
    services: Mapping[str, ServicePlan],
    keys: Iterable[str],
    name: str,
    weight: int,
    weights: Mapping[str, int],
    prefix: Any,
) -> Iterator[str]:
    """`keys` without the announced services where node `name`, joining or heavier at `weight`, ranks behind both
    the owner and a kept runner-up other than itself: `_reconsider` would change nothing there. This is the hot loop
    of a node joining (one hash for every service of the selection), so it compares raw values inline and leaves
    every other case, rare, to `_reconsider`."""
    copy = prefix.copy
    if not weights:  # the common case: no preferred nodes, every weight 0; the same tests, fewer steps
        announced = Status.ANNOUNCED
        for key in keys:
            sp = services[key]
            if sp.status is not announced or sp.announcer == name:
                yield key
                continue
            try:
                data = sp.ips[0].encode()  # = election._utf8(ip) for text that encodes
            except UnicodeEncodeError:
                yield key
                continue
            h = copy()
            h.update(data)
            digest = h.digest()
            if digest >= sp.digest:  # behind the owner
                runner = sp.runner_up
                if runner is None:
                    continue  # none is kept: it stays unknown
                if runner.node is not None and runner.node != name and (runner.weight > 0 or digest >= runner.digest):
                    continue  # behind the runner-up too
            yield key
        return
    for key in keys:
        sp = services[key]
        owner, runner, ip = sp.announcer, sp.runner_up, sp.ips[0] if sp.ips else ""
        if sp.status is Status.ANNOUNCED and owner is not None and owner != name and ip.isascii():
            if runner is not None and (runner.node is None or runner.node == name):
                yield key  # no runner-up, or it is this node: `_reconsider` decides
                continue
            h = copy()
            h.update(ip.encode())  # = election._utf8(ip) for ASCII text
            digest = h.digest()
            owner_weight = weights.get(owner, 0) if weights else 0
            behind_owner = weight < owner_weight or (weight == owner_weight and digest >= sp.digest)
            # Behind the runner-up too, or none is kept (then it stays unknown).
            behind_runner = (
                runner is None or weight < runner.weight or (weight == runner.weight and digest >= runner.digest)
            )
            if behind_owner and behind_runner:
                continue
        yield key


def _reconsider(
    sp: ServicePlan,
    name: str,
    base: frozenset[str],
    weights: Mapping[str, int],
    *,
    is_in: bool,
    stronger: bool,
    prefixes: Mapping[str, Any],
) -> ServicePlan | None:
    """The service's new plan when node `name` entered, left or changed weight among its candidates; None when
    nothing about its election changed. All other nodes are as they were, which is what makes the shortcuts sound:

    - the owner left: the kept runner-up takes over (re-checked: still a candidate, same weight);
    - the owner got weaker: the runner-up takes over if it now ranks first;
    - another node joined or got stronger: one hash, compared with the owner and the runner-up.
    Where the runner-up is not known, the election runs again among the candidates."""
    if sp.service_reasons or sp.status not in (Status.ANNOUNCED, Status.NOBODY):
        return None
    if sp.local_nodes is not None and name not in sp.local_nodes:
        return None
    weight = weights.get(name, 0) if is_in else 0
    if sp.announcer == name:
        if stronger:
            return None  # the owner only got heavier: still first
        candidates = base & sp.local_nodes if sp.local_nodes is not None else base
        runner = sp.runner_up
        known = runner is not None and (
            not candidates
            if runner.node is None
            else runner.node in candidates and weights.get(runner.node, 0) == runner.weight
        )
        if is_in and runner is not None and known and (runner.node is None or (-weight, sp.digest) < runner.key):
            return None  # still first: only its weight changed
        if known and runner is not None and not is_in:
            return _with_owner(sp, runner, runner_up=None if runner.node is not None else NO_CANDIDATE)
        if known and runner is not None and runner.node is not None:  # got weaker and the runner-up now leads
            return _with_owner(sp, runner, runner_up=None)
        winner, second = elect_top2(candidates, sp.ips[0], weights=weights, prefixes=prefixes)
        return _with_owner(sp, winner, runner_up=second)
    if not is_in:
        return None  # a node that was not the owner got weaker or left; a stale runner-up is caught on use
    # The hot loop when a node joins: every service of the selection gets here, so compare raw values first.
    digest = digest_from(prefixes[name], sp.ips[0])
    if sp.announcer is None:
        return _with_owner(sp, Rank(name, weight, digest), runner_up=NO_CANDIDATE)
    owner_weight = weights.get(sp.announcer, 0)
    if weight > owner_weight or (weight == owner_weight and digest < sp.digest):
        return _with_owner(sp, Rank(name, weight, digest), runner_up=Rank(sp.announcer, owner_weight, sp.digest))
    runner = sp.runner_up
    if runner is None:
        return None
    if runner.node == name:
        # The kept runner-up itself is back or heavier. It is still second only if it ranks no worse than when it
        # was kept (others may have passed it meanwhile): otherwise the runner-up is unknown.
        if (-weight, digest) == runner.key:
            return None
        return replace(sp, runner_up=Rank(name, weight, digest) if (-weight, digest) < runner.key else None)
    if runner.node is None or weight > runner.weight or (weight == runner.weight and digest < runner.digest):
        return replace(sp, runner_up=Rank(name, weight, digest))
    return None


def _with_owner(sp: ServicePlan, owner: Rank, *, runner_up: Rank | None) -> ServicePlan:
    return replace(
        sp,
        announcer=owner.node,
        status=Status.ANNOUNCED if owner.node else Status.NOBODY,
        digest=owner.digest,
        runner_up=runner_up,
    )
