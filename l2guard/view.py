"""The cluster view: the latest immutable snapshot of nodes, services, slices, pools and advertisements, with the
planner's plan and the index the impact analysis needs. The webhook, the speaker and `explain --live` consume it.

Writers (the file loader, or the list+watch source's applier thread, for which the view is the sink) change
objects and publish a new `Snapshot`; readers (admission requests on the event loop, the speaker's reconcile loop)
take `view.snapshot`, a single reference read, and never wait for a writer. The plan is kept current by one live
`l2core.plan.Planner` (a full replan of 10k services takes ~1.5 s; events are applied incrementally), and each
published snapshot's `PlanIndex` is warmed by the writer so that the first request after an update does not pay
for it. Publishing costs what changed, not the cluster's size: a store is copied into its frozen view only when an
event changed it (a Node event copies the 500 nodes, not the 10,000 services), and the plan shares what did not
change with the previous one (`l2core.plan.Planner`).

Speaker liveness: the view also holds the speakers' Leases (`l2guard-speaker-<node>` in our namespace, the kind
"Lease") in an `l2core.liveness.Liveness`, observed on the view's monotonic clock (`clock`, injected), and gives
the planner the speakers whose lease is alive (`Planner.set_alive`), so that the webhook's warnings and the
speaker's election count only speakers that run. The snapshot says which (`Snapshot.alive`). Rule when no speaker
Lease exists at all (the webhook deployed beside MetalLB's own speaker, or before any l2guard speaker started):
every node counts as alive, as if liveness were unknown; once one speaker Lease exists, only alive leases count
(a released lease, written by a speaker that stopped cleanly, counts as not alive, it does not fall back).
Expiries happen without any event: `tick()` (the source's applier calls it when idle, or the owner does)
re-judges at the clock's now and returns the seconds until the next expiry. `freeze()`/`thaw()` keep the alive
set while the owner is cut off from the API server (fail-static; see `Liveness.freeze`).

One bad edit never withdraws IPs: an object that stops parsing (a pool edited into an invalid one) keeps its last
valid version in the plan, as MetalLB keeps its last good configuration, and is recorded as stale in the snapshot
(`Snapshot.stale`: kind, key, the problem, since when on the view's clock, its uid), with one WARNING log line per
change of its problem; the speaker posts the Event on the object (`l2guard.control.reconcile`). A later valid
version clears it; a DELETE still deletes. An object that never parsed has nothing to keep and is recorded the
same way (`kept=False`).

This module knows neither the kubernetes client nor HTTP nor the webhook: events arrive as plain dicts, with the
kind as its Kubernetes name ("Node", ...).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from l2core.liveness import LeaseRecord, Liveness, node_of_lease
from l2core.model import (
    METALLB_NAMESPACE,
    Cluster,
    EligibilitySettings,
    EndpointSlice,
    IPAddressPool,
    L2Advertisement,
    Node,
    Service,
)
from l2core.parse import (
    ParsedCluster,
    build_cluster,
    parse_advertisement,
    parse_endpoint_slice,
    parse_node,
    parse_pool,
)
from l2core.parse import parse_service as _parse_service
from l2core.plan import Plan, PlanIndex, Planner
from l2core.policy import Impact
from l2core.problems import Problem

log = logging.getLogger(__name__)

MAX_PROBLEM_TEXT = 500  # characters of an object's problems kept in its stale record
# The log field naming a stale object, by kind (the shared vocabulary); other kinds use "object".
_LOG_FIELD = {"Node": "node", "Service": "service", "IPAddressPool": "pool"}


class Kind(StrEnum):
    NODE = "Node"
    SERVICE = "Service"
    ENDPOINT_SLICE = "EndpointSlice"
    POOL = "IPAddressPool"
    ADVERTISEMENT = "L2Advertisement"
    LEASE = "Lease"  # speaker liveness (coordination.k8s.io/v1), in our namespace


CLUSTER_KINDS = (Kind.NODE, Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.POOL, Kind.ADVERTISEMENT)
ALL_KINDS = tuple(Kind)


@dataclass(frozen=True, slots=True)
class StaleObject:
    """An object whose latest version does not parse: the plan keeps its last valid version (if any)."""

    kind: str  # "IPAddressPool", ...
    key: str  # "metallb-system/lan"; a Node's name
    problem: str  # why the latest version is refused, one line
    since: float  # when it was first seen invalid, on the view's clock
    kept: bool  # a last valid version stays in the plan (False: it never parsed, nothing is planned for it)
    uid: str = ""  # metadata.uid of the invalid version, when it has one (for the Event on the object)


@dataclass(frozen=True)
class Snapshot:
    cluster: Cluster
    plan: Plan
    index: PlanIndex
    synced: bool
    version: int
    # The nodes whose speaker lease is alive, as the plan was made with; None when no speaker lease exists at all
    # (every node counts as alive: see the module docstring) or in file mode.
    alive: frozenset[str] | None = None
    # Objects whose latest version does not parse, by (kind, key); the gauge of stale objects is its length.
    stale: Mapping[tuple[str, str], StaleObject] = field(default_factory=lambda: MappingProxyType({}))
    # Impacts already computed on this snapshot, by (node, labels, NetworkUnavailable): a loop re-adding the label
    # costs one analysis per snapshot, not one per attempt. Dies with the snapshot; bounded by the caller.
    impacts: dict[tuple[Any, ...], Impact] = field(default_factory=dict, compare=False, repr=False)

    @property
    def advertisements(self) -> Mapping[str, L2Advertisement]:
        return self.cluster.advertisements

    def with_config(self, pools: Iterable[Mapping[str, Any]], advertisements: Iterable[Mapping[str, Any]]) -> Snapshot:
        """This snapshot with its pools and advertisements replaced by these raw objects (a live read of the
        MetalLB namespace), parsed exactly as the cache parses them. The plan and index stay the cache's:
        replanning can cost seconds, and config validation reads the cluster objects, not the plan."""
        c = self.cluster
        cluster = Cluster(
            c.nodes,
            c.services,
            c.endpoint_slices,
            MappingProxyType(_parse_all(Kind.POOL, pools)),
            MappingProxyType(_parse_all(Kind.ADVERTISEMENT, advertisements)),
        )
        return replace(self, cluster=cluster, impacts={})


def _warm(index: PlanIndex) -> PlanIndex:
    _ = index.ok_nodes, index.by_announcer, index.by_selection, index.bases
    return index


def _key(raw: Mapping[str, Any]) -> str | None:
    meta = raw.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        return None
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if isinstance(ns, str) and ns else str(meta["name"])


class ClusterView:
    """The current snapshot, and the one writer API that replaces it. Writers are normally one thread (the source's
    applier, or the file loader before serving); a lock serializes them with the few calls other threads make
    (`freeze`/`thaw` from the owner's failure handling, `wait_newer` from readers)."""

    def __init__(
        self,
        settings: EligibilitySettings,
        *,
        kinds: Iterable[str] = ALL_KINDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`kinds`: what the live source lists; the view is synced once each of them has been listed (leave Lease
        out when nothing lists leases). `clock`: the monotonic clock lease renewals are observed on."""
        self.settings = settings
        self.kinds = frozenset(Kind(k) for k in kinds)
        self._clock = clock
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self._nodes: dict[str, Node] = {}
        self._services: dict[str, Service] = {}
        self._slices: dict[str, EndpointSlice] = {}
        self._pools: dict[str, IPAddressPool] = {}
        self._ads: dict[str, L2Advertisement] = {}
        self._listed: set[Kind] = set()
        self._liveness = Liveness()
        self._lease_nodes: set[str] = set()  # nodes whose speaker lease exists (held or released)
        self._alive: frozenset[str] | None = None  # what the planner was told
        self._stale: dict[tuple[str, str], StaleObject] = {}
        # The frozen copy of each store the last snapshot got, and the stores changed since (copied at publish).
        self._frozen: dict[Kind, Mapping[str, Any]] = {kind: MappingProxyType({}) for kind in CLUSTER_KINDS}
        self._changed: set[Kind] = set()
        self._planner: Planner | None = None
        self._version = 0
        empty = Planner(Cluster(), settings)
        self._snapshot = Snapshot(Cluster(), empty.plan, _warm(PlanIndex(empty.plan)), synced=False, version=0)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def synced(self) -> bool:
        return self._snapshot.synced

    def wait_newer(self, version: int, timeout: float) -> Snapshot:
        """The current snapshot once its version is above `version`, or after `timeout` seconds whatever it is:
        how a consumer such as the speaker's reconcile loop sleeps until the view changes."""
        with self._published:
            self._published.wait_for(lambda: self._snapshot.version > version, timeout)
            return self._snapshot

    # ----- file mode ------------------------------------------------------------------------------------------

    def load(
        self,
        documents: Iterable[object],
        *,
        metallb_namespace: str = METALLB_NAMESPACE,
        alive: Iterable[str] | None = None,
    ) -> ParsedCluster:
        """Replace everything with these documents (file mode) and mark the view synced. Pools and advertisements
        outside `metallb_namespace` are left out, as the live mode (which lists only that namespace) and MetalLB
        do; the result says what was left out and why. `alive`: the nodes whose speaker runs, as `--alive` gives
        them (None: every node; file mode reads no Leases)."""
        parsed = build_cluster(documents, metallb_namespace=metallb_namespace)
        c = parsed.cluster
        with self._lock:
            self._nodes, self._services = dict(c.nodes), dict(c.services)
            self._slices, self._pools, self._ads = dict(c.endpoint_slices), dict(c.pools), dict(c.advertisements)
            self._changed.update(CLUSTER_KINDS)
            self._listed = set(ALL_KINDS)
            self._alive = frozenset(alive) if alive is not None else None
            self._planner = Planner(self._cluster(), self.settings, alive=self._alive)
            self._publish()
        return parsed

    # ----- live mode ------------------------------------------------------------------------------------------

    def replace_kind(self, kind: str, items: Iterable[Mapping[str, Any]]) -> None:
        """A full list of one kind (initial list or re-list after 410 Gone). The view becomes synced once every
        kind has been listed; until then nothing is planned."""
        kind = Kind(kind)
        if kind is Kind.LEASE:
            with self._lock:
                self._replace_leases(items, self._clock())
                self._listed.add(kind)
                self._start_planner()
                self._publish()
            return
        store: dict[str, Any] = {}
        invalid: dict[str, tuple[str, str]] = {}  # key -> (problem, uid)
        for raw in items:
            parsed, problems = _parse(kind, raw)
            if parsed is not None:
                store[parsed[0]] = parsed[1]
                invalid.pop(parsed[0], None)
            elif (key := _key(raw)) is not None:
                invalid[key] = (_problem_text(problems), _uid(raw))
        with self._lock:
            old = self._store(kind)
            now = self._clock()
            for key, (problem, uid) in invalid.items():
                if key not in store and key in old:
                    store[key] = old[key]  # keep the last valid version
                self._mark_stale(kind, key, problem, kept=key in store, now=now, uid=uid)
            for kind_key in [k for k in self._stale if k[0] == kind and k[1] not in invalid]:
                self._clear_stale(kind, kind_key[1], deleted=kind_key[1] not in store)
            if self._planner is not None:
                self._apply_replace(kind, old, store)
            old.clear()
            old.update(store)
            self._changed.add(kind)
            self._listed.add(kind)
            self._start_planner()
            self._publish()

    def apply(self, events: Iterable[tuple[str, str, Mapping[str, Any]]]) -> int:
        """Apply watch events (kind, ADDED|MODIFIED|DELETED, object) in order and publish once. Returns how many
        changed something. An object that does not parse keeps its last valid version and is recorded as stale
        (see the module docstring)."""
        changed = 0
        with self._lock:
            config_changed = False
            leases_changed = False
            now = self._clock()
            for name, event_type, raw in events:
                kind = Kind(name)
                if kind is Kind.LEASE:
                    leases_changed |= self._lease_event(event_type, raw, now)
                    continue
                key = _key(raw)
                if key is None:
                    continue
                store = self._store(kind)
                if event_type == "DELETED":
                    changed += self._clear_stale(kind, key, deleted=True)
                    if store.pop(key, None) is None:
                        continue
                    self._changed.add(kind)
                    if self._planner is not None:
                        config_changed |= self._planner_delete(kind, key)
                else:
                    parsed, problems = _parse(kind, raw)
                    if parsed is None:
                        problem = _problem_text(problems)
                        changed += self._mark_stale(kind, key, problem, kept=key in store, now=now, uid=_uid(raw))
                        continue
                    changed += self._clear_stale(kind, key)
                    if store.get(key) == parsed[1]:
                        continue
                    store[key] = parsed[1]
                    self._changed.add(kind)
                    if self._planner is not None:
                        config_changed |= self._planner_upsert(kind, key, parsed[1])
                changed += 1
            if config_changed and self._planner is not None:
                self._planner.replace_config(self._pools, self._ads)
            if leases_changed and self._judge_alive(now):
                changed += 1
            if changed:
                self._publish()
        return changed

    def tick(self) -> float | None:
        """Re-judge speaker liveness at the clock's now (a lease expires without any event) and publish if the
        alive set changed. Returns the seconds until the next expiry, when to call again if no event comes first
        (None: no alive lease will expire, or frozen). The source's applier calls it; the owner may too."""
        with self._lock:
            now = self._clock()
            if self._judge_alive(now):
                self._publish()
            expiry = self._liveness.next_expiry(now)
        return None if expiry is None else max(0.0, expiry - now)

    def freeze(self) -> None:
        """Cut off from the API server: keep the alive set as it is now until `thaw()` (fail-static)."""
        with self._lock:
            self._liveness.freeze(self._clock())

    def thaw(self) -> None:
        """Back in contact: every known lease gets a full duration from now to show a renewal."""
        with self._lock:
            now = self._clock()
            self._liveness.thaw(now)
            if self._judge_alive(now):
                self._publish()

    # ----- stale objects (under the lock) ------------------------------------------------------------------------

    def _mark_stale(self, kind: Kind, key: str, problem: str, *, kept: bool, now: float, uid: str = "") -> bool:
        """Record `key` as stale; True (and one WARNING) when that is news or its problem changed."""
        seen = self._stale.get((kind, key))
        if seen is not None and (seen.problem, seen.kept, seen.uid) == (problem, kept, uid):
            return False
        since = seen.since if seen is not None else now
        self._stale[(kind, key)] = StaleObject(kind.value, key, problem, since, kept, uid)
        what = "keeping its last valid version" if kept else "it has no valid version to keep"
        fields = {"event": "object-stale", "kind": kind.value, _LOG_FIELD.get(kind.value, "object"): key}
        log.warning(
            "%s %s is invalid, %s: %s",
            kind.value,
            key,
            what,
            problem,
            extra={"fields": fields | {"reason": problem}},
        )
        return True

    def _clear_stale(self, kind: Kind, key: str, *, deleted: bool = False) -> bool:
        """Forget that `key` was stale (valid again, or deleted); True when it was."""
        if self._stale.pop((kind, key), None) is None:
            return False
        fields = {"event": "object-stale-cleared", "kind": kind.value, _LOG_FIELD.get(kind.value, "object"): key}
        log.info("%s %s is %s", kind.value, key, "deleted" if deleted else "valid again", extra={"fields": fields})
        return True

    # ----- liveness (under the lock) ----------------------------------------------------------------------------

    def _lease_event(self, event_type: str, raw: Mapping[str, Any], now: float) -> bool:
        lease = lease_record(raw)
        if lease is None:
            return False
        node, record = lease
        if event_type == "DELETED":
            self._liveness.forget(node)
            self._lease_nodes.discard(node)
        else:
            self._liveness.observe(node, record, now)
            self._lease_nodes.add(node)
        return True

    def _replace_leases(self, items: Iterable[Mapping[str, Any]], now: float) -> None:
        seen: set[str] = set()
        for raw in items:
            lease = lease_record(raw)
            if lease is not None:
                self._liveness.observe(lease[0], lease[1], now)
                seen.add(lease[0])
        for node in self._lease_nodes - seen:
            self._liveness.forget(node)
        self._lease_nodes = seen
        self._judge_alive(now)

    def _judge_alive(self, now: float) -> bool:
        """Tell the planner who is alive now; True when that changed."""
        alive = self._liveness.alive(now) if self._lease_nodes else None
        if alive == self._alive:
            return False
        self._alive = alive
        if self._planner is not None:
            self._planner.set_alive(alive)
        return True

    def _start_planner(self) -> None:
        if self._planner is None and self._listed >= self.kinds:
            self._planner = Planner(self._cluster(), self.settings, alive=self._alive)

    # ----- internals ------------------------------------------------------------------------------------------

    def _store(self, kind: Kind) -> dict[str, Any]:
        stores: dict[Kind, dict[str, Any]] = {
            Kind.NODE: self._nodes,
            Kind.SERVICE: self._services,
            Kind.ENDPOINT_SLICE: self._slices,
            Kind.POOL: self._pools,
            Kind.ADVERTISEMENT: self._ads,
        }
        return stores[kind]

    def _cluster(self) -> Cluster:
        return Cluster(self._nodes, self._services, self._slices, self._pools, self._ads)

    def _frozen_cluster(self) -> Cluster:
        """The stores as immutable mappings: a fresh copy of each store changed since the last call, the last copy
        of the others (copy on write, per store)."""
        for kind in self._changed:
            self._frozen[kind] = MappingProxyType(dict(self._store(kind)))
        self._changed.clear()
        f = self._frozen
        return Cluster(
            nodes=f[Kind.NODE],
            services=f[Kind.SERVICE],
            endpoint_slices=f[Kind.ENDPOINT_SLICE],
            pools=f[Kind.POOL],
            advertisements=f[Kind.ADVERTISEMENT],
        )

    def _planner_upsert(self, kind: Kind, key: str, obj: Any) -> bool:
        planner = self._planner
        assert planner is not None
        if kind is Kind.NODE:
            planner.upsert_node(obj)
        elif kind is Kind.SERVICE:
            planner.upsert_service(obj)
        elif kind is Kind.ENDPOINT_SLICE:
            planner.upsert_endpoint_slice(key, obj)
        else:
            return True  # pools and advertisements: one replace_config per batch
        return False

    def _planner_delete(self, kind: Kind, key: str) -> bool:
        planner = self._planner
        assert planner is not None
        if kind is Kind.NODE:
            planner.delete_node(key)
        elif kind is Kind.SERVICE:
            planner.delete_service(key)
        elif kind is Kind.ENDPOINT_SLICE:
            planner.delete_endpoint_slice(key)
        else:
            return True
        return False

    def _apply_replace(self, kind: Kind, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        config = False
        for key in old.keys() - new.keys():
            config |= self._planner_delete(kind, key)
        for key, obj in new.items():
            if old.get(key) != obj:
                config |= self._planner_upsert(kind, key, obj)
        if config and self._planner is not None:
            pools = new if kind is Kind.POOL else self._pools
            ads = new if kind is Kind.ADVERTISEMENT else self._ads
            self._planner.replace_config(pools, ads)

    def _publish(self) -> None:
        """Under the lock: replace the snapshot and wake `wait_newer`."""
        self._published.notify_all()
        self._version += 1
        if self._planner is None:
            self._snapshot = Snapshot(
                self._frozen_cluster(),
                self._snapshot.plan,
                self._snapshot.index,
                synced=False,
                version=self._version,
                alive=self._alive,
                stale=MappingProxyType(dict(self._stale)),
            )
            return
        plan = self._planner.plan
        self._snapshot = Snapshot(
            self._frozen_cluster(),
            plan,
            _warm(PlanIndex(plan)),
            synced=True,
            version=self._version,
            alive=self._alive,
            stale=MappingProxyType(dict(self._stale)),
        )


def _uid(raw: Mapping[str, Any]) -> str:
    meta = raw.get("metadata")
    uid = meta.get("uid") if isinstance(meta, Mapping) else None
    return uid if isinstance(uid, str) else ""


def _parse(kind: Kind, raw: Mapping[str, Any]) -> tuple[tuple[str, Any] | None, list[Problem]]:
    """(key, object) for a valid object of `kind`, else None; and the parser's problems."""
    if kind is Kind.NODE:
        node, problems = parse_node(raw)
        return ((node.name, node) if node else None), problems
    if kind is Kind.SERVICE:
        svc, problems = _parse_service(raw)
        return ((svc.key, svc) if svc else None), problems
    if kind is Kind.ENDPOINT_SLICE:
        eps, problems = parse_endpoint_slice(raw)
        return ((f"{eps.namespace}/{eps.name}", eps) if eps else None), problems
    if kind is Kind.POOL:
        pool, problems = parse_pool(raw)
        return ((f"{pool.namespace}/{pool.name}", pool) if pool else None), problems
    ad, problems = parse_advertisement(raw)
    return ((ad.key, ad) if ad else None), problems


def _parse_all(kind: Kind, items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """key -> object for the valid objects of a full list of `kind` (the later of two with one key wins)."""
    store: dict[str, Any] = {}
    for raw in items:
        obj, _ = _parse(kind, raw)
        if obj is not None:
            store[obj[0]] = obj[1]
    return store


def _problem_text(problems: list[Problem]) -> str:
    """One line for a stale record and its log line: the problems joined, bounded."""
    text = " ".join("; ".join(str(p) for p in problems).split()) or "does not parse"
    return text if len(text) <= MAX_PROBLEM_TEXT else text[: MAX_PROBLEM_TEXT - 3] + "..."


def lease_record(raw: Mapping[str, Any]) -> tuple[str, LeaseRecord] | None:
    """(node, record) for a speaker's Lease; None for any other Lease (the namespace holds others too)."""
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    node = node_of_lease(name) if isinstance(name, str) else None
    if node is None or not isinstance(meta, Mapping):
        return None
    spec = raw.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    holder, renew, duration = spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds")
    rv = meta.get("resourceVersion")
    return node, LeaseRecord(
        holder=holder if isinstance(holder, str) else "",
        renew_time=renew if isinstance(renew, str) else None,
        duration_seconds=duration if isinstance(duration, int) and not isinstance(duration, bool) else None,
        resource_version=rv if isinstance(rv, str) else "",
    )
