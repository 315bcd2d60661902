"""The speaker's reconcile step: a plan in, this node's announcements out (watch -> view -> plan -> announcer).

`Reconciler.reconcile()` takes the current plan and what the control plane knows about the API, and
1. computes what this node announces from the plan (`Plan.announcements`) plus, in contact, the IPs it took over
   from owners that stopped answering its probes (`l2guard.control.probes`), or, while cut off from the API
   (fail-static), keeps what it announced minus the IPs another node claimed meanwhile (`l2core.failstatic`);
2. hands that to the data plane (`Announcer.set()`), unless in dry-run;
3. says it loudly, once: for each service this node reports on (`l2core.reporting.reporter`: the owner, or when
   nobody can announce it, one alive speaker), an Event when its message changes; a WARNING log line whenever a
   service starts having nobody or its reasons change. It visits only what may have changed since the last time
   (`Plan.replanned_since`): the services replanned, the Events the poster held back, and, when what the messages
   read besides the service's own plan changed (node reasons, selections, nodes, alive speakers), the services
   nobody announces and those this node reported on. A plan with no history in common (file mode) is walked
   whole. For each object whose latest version does not parse that this node reports on
   (`l2core.reporting.object_reporter`): a Warning Event on that object once per distinct problem, and a Normal one
   when it is valid again;
4. publishes the result on the status board and in the metrics.

Nothing else decides who announces: the plan does. Data-plane events (conflicts, missing interfaces) arrive on
the announcer's I/O thread through `on_dataplane_event`, which only queues them; `reconcile()` handles them on
the control loop's thread, and asks the data plane to re-assert an IP the plan gives this node when another MAC
claims it (`Announcer.reassert`). This module opens no socket and reads no cluster; the `l2guard speaker` command
wires it to a source, an announcer, an Event poster and the health port.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from l2core.failstatic import held
from l2core.model import Cluster, Node
from l2core.parse import PoolOverlap
from l2core.plan import Plan, Status
from l2core.reporting import (
    ServiceEvent,
    announcing,
    interfaces_missing,
    ip_conflict,
    no_eligible_node,
    object_reporter,
    reporter,
    stale_object,
    valid_again,
)
from l2guard.control.health import Announcement, ApiConnection, Reconcile, SpeakerStatus, StatusBoard
from l2guard.control.metrics import SpeakerMetrics
from l2guard.view import StaleObject
from speaker.announcer import ALL_INTERFACES, AllInterfaces, Conflict, InterfaceProblem
from speaker.announcer import Event as DataPlaneEvent
from speaker.announcer import Status as DataPlaneStatus

log = logging.getLogger(__name__)

Desired = dict[str, frozenset[str] | None]  # ip -> interfaces; None: every eligible interface
# (service key "ns/name", event) -> whether it was taken (posted or logged; False: the rate limit held it back)
Report = Callable[[str, ServiceEvent], bool]
# (kind, key, uid, event) -> the same, for an Event on another object (a stale IPAddressPool, ...)
ObjectReport = Callable[[str, str, str, ServiceEvent], bool]
MAX_QUEUED_EVENTS = 1024  # data-plane events waiting for the control loop; beyond it they are counted, not kept


class DataPlane(Protocol):
    def set(self, desired: Mapping[str, frozenset[str] | AllInterfaces]) -> DataPlaneStatus: ...
    def reassert(self, ip: str, iface: str) -> None: ...


class Probes(Protocol):
    """The probe takeover (`l2guard.control.probes.ProbeLoop`): told each plan, it says what it took over."""

    def follow(self, plan: Plan) -> None: ...
    def held(self) -> Mapping[str, frozenset[str] | None]: ...


@dataclass(frozen=True)
class View:
    """What one reconcile reads: the plan, the nodes and pool overlaps `explain` would show for it, which speakers
    run (None: every node, as in file mode without --alive), and the API state."""

    plan: Plan
    nodes: Mapping[str, Node] = field(default_factory=dict)
    pool_overlaps: tuple[PoolOverlap, ...] = ()
    alive: frozenset[str] | None = None
    synced: bool = True
    cut_off_since: float | None = None  # wall clock; set while the API is unreachable (fail-static)
    live: bool = False  # False in file mode: there is no API to lose
    # Objects whose latest version does not parse, by (kind, key) (`l2guard.view.Snapshot.stale`), and the cluster
    # they were judged in (to tell an object valid again from a deleted one); live mode only.
    stale: Mapping[tuple[str, str], StaleObject] = field(default_factory=dict)
    cluster: Cluster | None = None


class Reconciler:
    def __init__(
        self,
        *,
        node: str,
        dataplane: DataPlane | None,
        board: StatusBoard,
        metrics: SpeakerMetrics,
        report: Report | None = None,
        report_object: ObjectReport | None = None,
        probes: Probes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self._probes = probes
        self._probe_changed = False  # a takeover started or ended since the last reconcile
        self._dataplane = dataplane  # None: dry-run (everything but the packets)
        self._board = board
        self._metrics = metrics
        self._report = report
        self._report_object = report_object
        self._clock = clock
        self._desired: Desired = {}
        self._since: dict[str, float] = {}
        self._contested: set[str] = set()  # IPs another node claimed while we were cut off
        self._reported: dict[str, str] = {}  # service key -> message of the last Event posted about it
        self._nobody: dict[str, str] = {}  # service key -> the WARNING last logged for it
        self._stale_since: dict[tuple[str, str], float] = {}  # stale object -> when this speaker first saw it so
        self._stale_said: dict[tuple[str, str], StaleObject] = {}  # stale object -> the record last reported on
        self._unsaid: set[str] = set()  # services whose Event the poster held back: offered again each time
        self._said: View | None = None  # the View the last `_say_it` read
        self._synced_since: float | None = None
        self._lock = threading.Lock()
        self._queued: list[DataPlaneEvent] = []
        self._dropped = 0
        self._answering: Mapping[str, frozenset[str]] = {}  # ip -> interfaces the data plane answers on

    # ------------------------------------------------------------------ called from the data plane's thread

    def on_dataplane_event(self, event: DataPlaneEvent) -> None:
        """Queue a conflict or interface problem for the next reconcile (never blocks the I/O thread)."""
        with self._lock:
            if len(self._queued) < MAX_QUEUED_EVENTS:
                self._queued.append(event)
            else:
                self._dropped += 1

    def on_probe_change(self) -> None:
        """A probe takeover started or ended (the probe loop's thread): the next poll reconciles."""
        with self._lock:
            self._probe_changed = True

    def pending_events(self) -> bool:
        with self._lock:
            return bool(self._queued) or self._probe_changed

    # ------------------------------------------------------------------ the control loop

    def reconcile(self, view: View) -> Reconcile:
        started = time.perf_counter()
        cut_off = view.cut_off_since is not None
        events = self._take_events()
        planned: frozenset[str] = frozenset()
        if cut_off:
            self._contested.update(e.ip for e in events if isinstance(e, Conflict) and e.ip in self._desired)
            desired: Desired = held(self._desired, self._contested)
        else:
            self._contested.clear()
            desired = dict(view.plan.announcements(self.node))
            planned = frozenset(desired)
            if self._probes is not None and view.synced:
                self._probes.follow(view.plan)
                for ip, where in self._probes.held().items():
                    desired.setdefault(ip, where)  # beside the plan; an IP the plan gives us keeps its interfaces
        if view.synced and self._synced_since is None:
            self._synced_since = self._clock()
        if not view.synced and not cut_off:
            desired = dict(self._desired)  # before the first full sync nothing is known: change nothing
        added = tuple(sorted(ip for ip in desired if ip not in self._desired))
        removed = tuple(sorted(ip for ip in self._desired if ip not in desired))
        self._apply(desired)
        now = self._clock()
        for ip in removed:
            self._since.pop(ip, None)
        for ip in added:
            self._since[ip] = now
        self._desired = desired
        for ip in added:
            log.info("announcing %s", ip, extra={"fields": {"event": "announce", "ip": ip, "node": self.node}})
        for ip in removed:
            log.info("released %s", ip, extra={"fields": {"event": "release", "ip": ip, "node": self.node}})
        self._handle_dataplane_events(events, view.plan, cut_off=cut_off, planned=planned, synced=view.synced)
        for stale_key in view.stale.keys() - self._stale_since.keys():
            self._stale_since[stale_key] = now
        for stale_key in self._stale_since.keys() - view.stale.keys():
            del self._stale_since[stale_key]
        if view.synced and not cut_off:
            self._say_it(view)
            self._say_stale(view)
        done = Reconcile(at=now, duration_s=time.perf_counter() - started, added=added, removed=removed)
        self._publish(view, done)
        self._metrics.observe_reconcile(done.duration_s)
        return done

    def _take_events(self) -> list[DataPlaneEvent]:
        with self._lock:
            self._probe_changed = False
            events, self._queued = self._queued, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning(
                "%d data-plane events dropped: the control loop fell behind",
                dropped,
                extra={"fields": {"event": "dataplane-events-dropped", "count": dropped}},
            )
        return events

    def _apply(self, desired: Desired) -> None:
        if self._dataplane is None:
            return
        status = self._dataplane.set({ip: ALL_INTERFACES if v is None else v for ip, v in desired.items()})
        self._answering = status.announcing

    def _handle_dataplane_events(
        self, events: list[DataPlaneEvent], plan: Plan, *, cut_off: bool, planned: frozenset[str], synced: bool
    ) -> None:
        """`planned`: the IPs the plan gives this node (in contact); others announced are probe takeovers.

        A conflict on a planned IP is kept and re-asserted: the data plane announces the IP once more on that
        interface (rate-limited there), so clients whose neighbour entries another node's claim moved (a runner-up's
        false takeover, issue 9) come back at once instead of when their entry fails NUD, tens of seconds later.
        Cut off from the API this node yields instead, and says nothing more on the wire."""
        if not events:
            return
        ip_service = {ip: key for key, sp in plan.services.items() for ip in sp.ips}
        for event in events:
            key = ip_service.get(event.ip)
            if isinstance(event, Conflict) and not cut_off and event.ip not in planned and event.ip in self._desired:
                continue  # held by a probe takeover: the owner answering is expected, and ends it (the prober hears it)
            if isinstance(event, Conflict):
                yielded = cut_off and event.ip in self._contested
                self._metrics.conflict_handled("yielded" if yielded else "kept")
                if not cut_off and synced and event.ip in planned and self._dataplane is not None:
                    self._dataplane.reassert(event.ip, event.iface)
                if yielded:
                    log.warning(
                        "yielding %s: another node claims it while this one is cut off from the API",
                        event.ip,
                        extra={"fields": {"event": "conflict-yield", "ip": event.ip, "mac": event.mac}},
                    )
                if key is not None:
                    self._post(key, ip_conflict(event.ip, mac=event.mac, iface=event.iface), once=False)
            elif isinstance(event, InterfaceProblem) and event.reason == "missing" and key is not None:
                self._post(key, interfaces_missing([event.ip], self.node, [event.iface]), once=False)

    def _to_visit(self, view: View) -> Iterable[str] | None:
        """The services whose messages may have changed since the last `_say_it` (see the module docstring); None:
        every service."""
        last, self._said = self._said, view
        replanned = view.plan.replanned_since(last.plan) if last is not None else None
        if last is None or replanned is None:
            return None
        keys = set(replanned) | self._unsaid
        old, new = last.plan, view.plan
        selections = old.selections != new.selections  # interfaces, in the Normal Events this node posted
        if selections:
            keys.update(self._reported)
        if (
            selections
            or old.node_reasons != new.node_reasons
            or last.nodes != view.nodes
            or last.pool_overlaps != view.pool_overlaps
            or last.alive != view.alive
        ):
            keys.update(self._nobody)  # their reasons, fixes and reporter read all of these
        return sorted(keys)

    def _say_it(self, view: View) -> None:
        plan = view.plan
        alive = view.alive if view.alive is not None else frozenset(plan.node_reasons)
        keys = self._to_visit(view)
        nobody: dict[str, str] = {} if keys is None else self._nobody
        for key in plan.services if keys is None else keys:
            sp = plan.services.get(key)
            if sp is None:  # deleted
                self._nobody.pop(key, None)
                self._reported.pop(key, None)
                self._unsaid.discard(key)
                continue
            warning = None
            if sp.status is Status.NOBODY:
                warning = no_eligible_node(plan, key, nodes=view.nodes, pool_overlaps=view.pool_overlaps)
                event_message = warning.message
                if self._nobody.get(key) != event_message:
                    log.warning(
                        "no node announces %s",
                        key,
                        extra={"fields": {"event": "no-announcer", "service": key, "reason": event_message}},
                    )
                nobody[key] = event_message
            elif keys is not None:
                nobody.pop(key, None)
            if reporter(sp, alive) != self.node:
                self._reported.pop(key, None)
                self._unsaid.discard(key)
                continue
            if sp.status is Status.ANNOUNCED:
                self._post(key, announcing(sp.ips, self.node, plan.interfaces_for(key, self.node)))
            elif warning is not None:
                self._post(key, warning)
        if keys is None:
            self._nobody = nobody
            for key in [k for k in self._reported if k not in plan.services]:
                del self._reported[key]
            self._unsaid.intersection_update(plan.services)
        # Only the services nobody can announce (0 eligible nodes each): the series stay bounded by what is wrong,
        # not by the cluster's size, and computing every service's verdicts on each reconcile would cost seconds.
        self._metrics.set_eligible_nodes(dict.fromkeys(self._nobody, 0))

    def _say_stale(self, view: View) -> None:
        """A Warning on each stale object this node reports on, once per distinct problem; a Normal one when an
        object it warned about is valid again (not when it was deleted: nobody reads Events of a gone object)."""
        if self._report_object is None:
            return
        alive = view.alive if view.alive is not None else frozenset(view.plan.node_reasons)
        for (kind, key), record in view.stale.items():
            said = self._stale_said.get((kind, key))
            if object_reporter(kind, key, alive) != self.node:
                self._stale_said.pop((kind, key), None)
            elif said is None or (said.problem, said.kept) != (record.problem, record.kept):
                since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._stale_since[(kind, key)]))
                event = stale_object(kind, key, record.problem, kept=record.kept, since=since)
                if self._report_object(kind, key, record.uid, event):
                    self._stale_said[(kind, key)] = record
        for kind, key in self._stale_said.keys() - view.stale.keys():
            record = self._stale_said.pop((kind, key))
            if view.cluster is not None and key in _objects(view.cluster, kind):
                self._report_object(kind, key, record.uid, valid_again(kind, key))

    def _post(self, key: str, event: ServiceEvent, *, once: bool = True) -> None:
        """Post `event` about service `key` if its message differs from the last one posted about it (`once`),
        or always (conflicts: the poster deduplicates and counts repeats). An Event the poster held back (rate
        limit, full queue) is not taken as said: the next reconcile offers it again."""
        if once and self._reported.get(key) == event.message:
            self._unsaid.discard(key)
            return
        taken = self._report(key, event) if self._report is not None else True
        if not once:
            return
        if taken:
            self._reported[key] = event.message
            self._unsaid.discard(key)
        else:
            self._unsaid.add(key)

    def _publish(self, view: View, done: Reconcile) -> None:
        def where(ip: str, wanted: frozenset[str] | None) -> tuple[str, ...]:
            """The interfaces answering for `ip`; in dry-run those the plan names (empty: every interface)."""
            if self._dataplane is not None:
                return tuple(sorted(self._answering.get(ip, ())))
            return () if wanted is None else tuple(sorted(wanted))

        announced = tuple(
            Announcement(ip, where(ip, wanted), self._since.get(ip, done.at))
            for ip, wanted in sorted(self._desired.items())
        )
        self._board.publish(
            SpeakerStatus(
                node=self.node,
                announced=announced,
                synced_since=self._synced_since,
                api=ApiConnection(view.cut_off_since) if view.live else None,
                peers_alive=tuple(sorted(view.alive if view.alive is not None else view.plan.node_reasons)),
                last_reconcile=done,
                dry_run=self._dataplane is None,
            )
        )
        self._metrics.set_announced(len(self._desired))
        if view.live:
            self._metrics.set_api_connected(view.cut_off_since is None)


def _objects(cluster: Cluster, kind: str) -> Mapping[str, object]:
    """The cluster's objects of `kind` (a view kind name) by key."""
    by_kind: dict[str, Mapping[str, object]] = {
        "Node": cluster.nodes,
        "Service": cluster.services,
        "EndpointSlice": cluster.endpoint_slices,
        "IPAddressPool": cluster.pools,
        "L2Advertisement": cluster.advertisements,
    }
    return by_kind.get(kind, {})
