"""The planner: from a cluster snapshot to "who announces which IP, and why nobody does".

`Planner` holds the cluster and keeps a `Plan` up to date as objects change. A node change (the common event: a
label goes on, a condition flips) costs one hash per affected service at most, because the planner caches the
winner's digest per service and only re-runs a full election where the winner itself lost eligibility.
Everything else (a Service, its EndpointSlices) replans that one service; a pool, advertisement or liveness
change replans everything.

`plan()` is the one-shot form, and `diff()` turns two plans into moves, from which each node derives the IPs it
starts and stops announcing.

Data flows one way: the planner never calls an announcer, a socket or the API server. No I/O, standard library only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from l2core.election import elect_with_digest, election_digest
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

    @property
    def election_ip(self) -> str | None:
        return self.ips[0] if self.ips else None


@dataclass(frozen=True)
class Plan:
    settings: EligibilitySettings
    node_reasons: Mapping[str, frozenset[Reason]]  # node-wide reasons, for every node
    selections: Mapping[SelectionKey, Selection]
    services: Mapping[str, ServicePlan]  # LoadBalancer services only

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
        """IP -> interfaces (None: all) that `node` must announce. Shared IPs merge their interface sets."""
        out: dict[str, frozenset[str] | None] = {}
        for sp in self.services.values():
            if sp.announcer != node:
                continue
            ifaces = self.interfaces_for(sp.key, node)
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

    def for_node(self, node: str) -> tuple[frozenset[str], frozenset[str]]:
        """(IPs to start announcing, IPs to stop announcing) on `node`. An IP that another of its services still
        holds is not stopped: callers that need exactness should prefer `Plan.announcements` before and after."""
        start: set[str] = set()
        stop: set[str] = set()
        for m in self.moves:
            if m.after == node and m.before != node:
                start.update(m.ips)
            if m.before == node and m.after != node:
                stop.update(m.ips)
        return frozenset(start), frozenset(stop - start)


def diff(old: Plan, new: Plan) -> PlanDiff:
    """Services whose announcer or IPs changed, old -> new (added services have before=None, removed after=None)."""
    moves = []
    for key in sorted(old.services.keys() | new.services.keys()):
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
        self._encoded: dict[str, bytes] = {}
        self._node_reasons: dict[str, frozenset[Reason]] = {}
        self._ok: set[str] = set()
        self._ranges: list[tuple[int, int, int, str]] = []
        self._selections: dict[SelectionKey, Selection] = {}
        self._bases: dict[SelectionKey, frozenset[str]] = {}
        self._by_selection: dict[SelectionKey, set[str]] = {}
        self._plans: dict[str, ServicePlan] = {}
        self._owner_digest: dict[str, bytes] = {}
        self._rebuild()

    # ----- public API -------------------------------------------------------------------------------------------

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = Plan(self.settings, dict(self._node_reasons), dict(self._selections), dict(self._plans))
        return self._plan

    @property
    def cluster(self) -> Cluster:
        slices = {k: s for per in self._slices_by_service.values() for k, s in per.items()}
        return Cluster(dict(self._nodes), dict(self._services), slices, dict(self._pools), dict(self._ads))

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
        self._alive = frozenset(alive) if alive is not None else None
        return self._full_replan()

    def replace_settings(self, settings: EligibilitySettings) -> PlanDiff:
        self.settings = settings
        return self._full_replan()

    # ----- full build -------------------------------------------------------------------------------------------

    def _full_replan(self) -> PlanDiff:
        old = self.plan
        self._rebuild()
        return diff(old, self.plan)

    def _rebuild(self) -> None:
        self._plan = None
        self._encoded = {name: name.encode() for name in self._nodes}
        self._node_reasons = {
            name: node_wide_reasons(node, self.settings, alive=self._is_alive(name))
            for name, node in self._nodes.items()
        }
        self._ok = {name for name, reasons in self._node_reasons.items() if not reasons}
        self._ranges = sorted(
            ((rng.version, rng.first, rng.last, key) for key, pool in self._pools.items() for rng in pool.ranges)
        )
        self._selections = {}
        self._bases = {}
        self._by_selection = {}
        self._plans = {}
        self._owner_digest = {}
        for key in self._services:
            self._plan_service(key)

    def _is_alive(self, name: str) -> bool:
        return self._alive is None or name in self._alive

    # ----- selections -------------------------------------------------------------------------------------------

    def _selection(self, key: SelectionKey) -> Selection:
        sel = self._selections.get(key)
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
            self._selections[key] = sel
            self._bases[key] = sel.nodes & self._ok
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
        old = self._plans.pop(key, None)
        if old is not None and old.selection is not None:
            self._by_selection.get(old.selection, set()).discard(key)
        self._owner_digest.pop(key, None)
        svc = self._services.get(key)
        if svc is None or svc.type != "LoadBalancer":
            return
        if svc.load_balancer_class != self.settings.load_balancer_class:
            self._plans[key] = ServicePlan(
                key, svc.ingress_ips, Status.NOT_OURS, None, None, load_balancer_class=svc.load_balancer_class
            )
            return
        if not svc.ingress_ips:
            self._plans[key] = ServicePlan(key, (), Status.NO_IP, None, None)
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
        if selection is not None:
            sel = self._selection(selection)
            self._by_selection.setdefault(selection, set()).add(key)
            if not reasons:
                candidates = self._bases[selection]
                if local_nodes is not None:
                    candidates = candidates & local_nodes
                announcer, digest = elect_with_digest(
                    candidates, svc.ingress_ips[0], weights=sel.weights, encoded=self._encoded
                )
                if announcer is not None:
                    self._owner_digest[key] = digest
        pool_name = self._pools[pool_key].name if pool_key else None
        self._plans[key] = ServicePlan(
            key=key,
            ips=svc.ingress_ips,
            status=Status.ANNOUNCED if announcer else Status.NOBODY,
            announcer=announcer,
            pool=pool_name,
            service_reasons=frozenset(reasons),
            selection=selection,
            local_nodes=local_nodes,
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
        old_plan = self.plan
        effect = self._evaluate_node(name, node)
        self._apply(effect)
        return effect.diff(old_plan, self.plan)

    def preview_node(self, name: str, node: Node | None) -> PlanDiff:
        """What `upsert_node(node)` (or `delete_node(name)` when node is None) would move, without changing
        anything: the webhook's impact analysis. Same mechanism and cost as the real update."""
        effect = self._evaluate_node(name, node)
        old = self.plan
        new_services = {k: effect.plans.get(k, old.services[k]) for k in effect.changed if k in old.services}
        return effect.diff(old, replace(old, services={**old.services, **new_services}))

    def _evaluate_node(self, name: str, node: Node | None) -> _NodeEffect:
        """Everything a node change does, computed without mutating the planner."""
        reasons = node_wide_reasons(node, self.settings, alive=self._is_alive(name)) if node is not None else None
        now_ok = reasons is not None and not reasons
        encoded = {**self._encoded, name: name.encode()} if node is not None else self._encoded
        effect = _NodeEffect(name, node, reasons, now_ok)
        for key, old_sel in self._selections.items():
            was_in = name in self._bases[key]
            sel = self._reselect(old_sel, name, node)
            is_in = now_ok and name in sel.nodes
            base = self._bases[key] | {name} if is_in else self._bases[key] - {name}
            if sel is not old_sel:
                effect.selections[key] = sel
            if base != self._bases[key]:
                effect.bases[key] = base
            weight = sel.weights.get(name, 0)
            if not was_in and not is_in:
                continue
            if was_in and is_in and old_sel.weights.get(name, 0) == weight:
                continue
            for svc_key in self._by_selection.get(key, ()):
                self._reconsider(effect, svc_key, sel, base, is_in=is_in, weight=weight, encoded=encoded)
        return effect

    def _apply(self, effect: _NodeEffect) -> None:
        name = effect.name
        if effect.node is None:
            self._nodes.pop(name, None)
            self._node_reasons.pop(name, None)
            self._encoded.pop(name, None)
        else:
            self._nodes[name] = effect.node
            self._encoded[name] = name.encode()
            assert effect.reasons is not None
            self._node_reasons[name] = effect.reasons
        if effect.now_ok:
            self._ok.add(name)
        else:
            self._ok.discard(name)
        self._selections.update(effect.selections)
        self._bases.update(effect.bases)
        self._plans.update(effect.plans)
        for key, digest in effect.digests.items():
            if digest is None:
                self._owner_digest.pop(key, None)
            else:
                self._owner_digest[key] = digest
        self._plan = None

    def _reselect(self, sel: Selection, name: str, node: Node | None) -> Selection:
        ads = [self._ads[k] for k in sel.advertisements]
        selecting = [ad for ad in ads if node is not None and ad.selects_node(node)]
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

    def _reconsider(
        self,
        effect: _NodeEffect,
        key: str,
        sel: Selection,
        base: frozenset[str],
        *,
        is_in: bool,
        weight: int,
        encoded: Mapping[str, bytes],
    ) -> None:
        """Node `name` changed eligibility or weight for this service's selection; record a new owner if it moves.

        Other nodes are unchanged, so: if `name` owned the IP, re-run the election; otherwise `name` can only take
        over by beating the current owner, which costs one hash."""
        name = effect.name
        sp = self._plans[key]
        if sp.service_reasons:
            return
        if sp.local_nodes is not None and name not in sp.local_nodes:
            return
        ip = sp.ips[0]
        if sp.announcer == name:
            candidates = base & sp.local_nodes if sp.local_nodes is not None else base
            owner, digest = elect_with_digest(candidates, ip, weights=sel.weights, encoded=encoded)
        elif is_in:
            digest = election_digest(name, ip)
            if sp.announcer is not None:
                owner_key = (-sel.weights.get(sp.announcer, 0), self._owner_digest[key])
                if owner_key <= (-weight, digest):
                    return
            owner = name
        else:
            return
        effect.digests[key] = digest if owner is not None else None
        if owner != sp.announcer:
            effect.plans[key] = replace(sp, announcer=owner, status=Status.ANNOUNCED if owner else Status.NOBODY)
            effect.changed.append(key)


@dataclass
class _NodeEffect:
    """The consequences of one node change, computed by `Planner._evaluate_node` before anything is applied."""

    name: str
    node: Node | None
    reasons: frozenset[Reason] | None
    now_ok: bool
    selections: dict[SelectionKey, Selection] = field(default_factory=dict)
    bases: dict[SelectionKey, frozenset[str]] = field(default_factory=dict)
    plans: dict[str, ServicePlan] = field(default_factory=dict)
    digests: dict[str, bytes | None] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)

    def diff(self, old: Plan, new: Plan) -> PlanDiff:
        """The moves among the changed services only: diffing all 10,000 would cost more than the change."""
        if not self.changed:
            return PlanDiff()
        return diff(
            replace(old, services={k: old.services[k] for k in self.changed if k in old.services}),
            replace(new, services={k: new.services[k] for k in self.changed if k in new.services}),
        )
