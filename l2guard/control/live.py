"""The speaker's live mode: the cluster through the Kubernetes adapter, liveness through Leases, Events posted.

`LiveState` owns the pieces that talk to the API server (built from `l2guard.kube`): the list+watch source feeding
the shared cluster view (`l2guard.view.ClusterView`, which holds the speakers' Leases too), this node's Lease
keeper, and the Event poster. `poll()` turns the view's latest snapshot and the connection state into the
reconcile step's `View`, and decides fail-static: once synced, a speaker whose watches or lease renewals have
been failing for a grace period (one renewal interval, and at most half of what a lease has left after one) is
cut off; it freezes the peers' liveness (a stale view must not judge them dead) and keeps announcing what it
announced until it is back in contact: until the watches and renewals work again and every resource that failed
has been listed again into the view; then it thaws and plans once.

Unless in dry-run, it also owns the writer of MetalLB's ServiceL2Status objects (`l2guard.kube.l2status`), offered
what this node announces with each new synced View while in contact (`l2core.l2status.wanted`).

It also passes this speaker's MACs to its Lease (an annotation written with the renewals) and reads the peers' back
from the Lease events (`peer_macs()`), for the probe takeover (`l2guard.control.probes`).

It decides nothing about who announces: the planner does, in the view.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from l2core.l2status import wanted
from l2core.liveness import lease_name, node_of_lease
from l2core.probing import MACS_ANNOTATION, parse_macs
from l2core.reporting import ServiceEvent
from l2guard.control.metrics import SpeakerMetrics
from l2guard.control.reconcile import View
from l2guard.kube.client import make_api_client
from l2guard.kube.events import EventPoster, ObjectRef, object_ref
from l2guard.kube.l2status import L2StatusWriter
from l2guard.kube.lease import LeaseKeeper
from l2guard.kube.resources import resources
from l2guard.kube.source import Event, KubeSource, SourceStatus
from l2guard.view import ClusterView

log = logging.getLogger(__name__)


class _Waking:
    """The view as the source's sink, waking the control loop after every change it applies. It notes the MACs
    the speakers publish on their Leases on the way (node -> MACs, replaced whole: readers take the reference)."""

    def __init__(self, view: ClusterView, wake: threading.Event) -> None:
        self._view, self._wake = view, wake
        self.macs: Mapping[str, frozenset[str]] = {}

    def _note_macs(self, events: Sequence[Event], *, relist: bool) -> None:
        macs = {} if relist else dict(self.macs)
        for kind, event_type, raw in events:
            meta = raw.get("metadata") if kind == "Lease" else None
            name = meta.get("name") if isinstance(meta, Mapping) else None
            node = node_of_lease(name) if isinstance(name, str) else None
            if node is None or not isinstance(meta, Mapping):
                continue
            annotations = meta.get("annotations")
            found = parse_macs(annotations.get(MACS_ANNOTATION) if isinstance(annotations, Mapping) else None)
            if event_type == "DELETED" or not found:
                macs.pop(node, None)
            else:
                macs[node] = found
        self.macs = macs

    def replace_kind(self, kind: str, items: Sequence[Mapping[str, Any]]) -> None:
        if kind == "Lease":
            self._note_macs([(kind, "ADDED", raw) for raw in items], relist=True)
        self._view.replace_kind(kind, items)
        self._wake.set()

    def apply(self, events: Sequence[Event]) -> object:
        if any(kind == "Lease" for kind, _, _ in events):
            self._note_macs(events, relist=False)
        changed = self._view.apply(events)
        self._wake.set()
        return changed

    def tick(self) -> float | None:
        delay = self._view.tick()
        self._wake.set()  # an expiry may have changed the alive set; the loop skips unchanged snapshots
        return delay


DEBOUNCE = 0.05  # seconds: within a burst (a rollout, a re-list), at most one reconcile per DEBOUNCE (control_loop)
POLL = 0.5  # seconds between checks of the connection state when nothing happens
STATUS_FLUSH = 2.0  # seconds a stopping speaker gives the deletion of its ServiceL2Status objects


class LiveState:
    mode = "live"
    wait = POLL
    debounce = DEBOUNCE

    def __init__(
        self,
        *,
        node: str,
        namespace: str,
        kubeconfig: str,
        metallb_namespace: str,
        view: ClusterView,
        lease_duration: int,
        lease_renew_interval: float,
        metrics: SpeakerMetrics,
        wake: threading.Event,
        l2_status: bool = False,
        clock: Callable[[], float] = time.time,
        lease_annotations: Mapping[str, str] | None = None,
    ) -> None:
        api = make_api_client(kubeconfig)  # KubeconfigError (one line) when there is no usable configuration
        self._node = node
        self._view = view
        self._metrics = metrics
        self._clock = clock
        self._duration = lease_duration
        self._sink = _Waking(view, wake)
        self.source = KubeSource(
            self._sink,
            resources(api, metallb_namespace=metallb_namespace, namespace=namespace),
            on_relist=metrics.watch_restarted,
        )
        self.lease = LeaseKeeper(
            api,
            name=lease_name(node),
            namespace=namespace,
            holder=node,
            duration=lease_duration,
            renew_interval=lease_renew_interval,
            annotations=lease_annotations,
        )
        self.poster = EventPoster(api, node=node)
        # MetalLB keeps them in its speaker's namespace, which is MetalLB's: where tools written for it look.
        self.statuses = L2StatusWriter(api, node=node, namespace=metallb_namespace) if l2_status else None
        self._cut_off_since: float | None = None
        self._down_since: float | None = None  # monotonic: since when the source or the lease is failing
        self._frozen = False  # the view's liveness is frozen (contact lost)
        self._grace = max(0.0, min(lease_renew_interval, (lease_duration - lease_renew_interval) / 2))
        self._was_connected = False
        self._seen: tuple[int, float | None] | None = None  # (snapshot version, cut-off) of the last View

    def start(self) -> None:
        self.poster.start()
        if self.statuses is not None:
            self.statuses.start()
        self.lease.start()
        self.source.start()

    def stop(self) -> None:
        """After the data plane stopped answering: release the lease at once, so that the next node takes over
        without waiting for it to expire, then end the watches and the poster."""
        self.lease.stop()
        try:
            self.lease.release()
        except Exception as exc:  # the API may be gone: the lease then expires on its own
            log.warning("could not release the lease: %s", exc, extra={"fields": {"event": "lease-release-failed"}})
        if self.statuses is not None:  # this node announces nothing now: its status objects go (bounded)
            self.statuses.offer({})
            self.statuses.stop(flush=STATUS_FLUSH)
        self.source.stop()
        self.poster.stop()

    def peer_macs(self) -> Mapping[str, frozenset[str]]:
        """Node -> the MACs its speaker publishes on its Lease (only speakers that publish some)."""
        return self._sink.macs

    def report(self, key: str, event: ServiceEvent) -> bool:
        """Hand an Event about Service `key` to the poster (never blocks) and count it: posted, or held back by the
        rate limit or a full queue (the poster decides that at once, in `post`)."""
        namespace, _, name = key.partition("/")
        return self._post(ObjectRef("Service", name, namespace), event)

    def report_object(self, kind: str, key: str, uid: str, event: ServiceEvent) -> bool:
        """As `report`, for an Event on the object `kind` `key` (a stale IPAddressPool: metallb.io/v1beta1, in its
        namespace), with its uid when known."""
        return self._post(object_ref(kind, key, uid=uid), event)

    def _post(self, obj: ObjectRef, event: ServiceEvent) -> bool:
        held_before = self.poster.suppressed + self.poster.dropped
        self.poster.post(
            obj, type=event.type.value, reason=event.reason, message=event.message, identity=event.identity
        )
        if self.poster.suppressed + self.poster.dropped > held_before:
            self._metrics.event_suppressed(event.type.value)
            return False
        self._metrics.event_posted(event.type.value)
        return True

    def _connected(self, source: SourceStatus) -> bool:
        """The watches work, every resource that failed has been listed again into the view, and the last renewal
        succeeded, within the lease duration."""
        lease = self.lease.state()
        if lease.last_renewed is not None:
            self._metrics.lease_renewed(lease.last_renewed)
        fresh = (
            lease.failures == 0
            and lease.last_renewed is not None
            and time.monotonic() - lease.last_renewed < self._duration
        )
        return source.connected and fresh

    def poll(self) -> View | None:
        """The View to reconcile, or None when neither the snapshot nor the connection state changed.

        Losing contact freezes the peers' liveness at once: a hung API server keeps the watches open and silent,
        and a view that merely stopped seeing renewals must not judge every speaker (this one included) dead. The
        announcements are held (fail-static) only after the grace period; contact back within it thaws and
        changes nothing else. Back in contact means re-listed too: the source is connected only once every
        resource that failed has a fresh list in the view (the Leases above all: thawing on leases from before the
        cut-off could judge live peers dead, or dead ones alive), and only then is the view thawed and planned from,
        once."""
        source = self.source.status()
        connected = self._connected(source)
        now = time.monotonic()
        if connected:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now
            if self._was_connected:
                self._view.freeze()
                self._frozen = True
        out_of_contact = self._down_since is not None and now - self._down_since >= self._grace
        if connected and self._cut_off_since is not None:
            log.warning(
                "back in contact with the API server after %.0f s; planning from the view again",
                self._clock() - self._cut_off_since,
                extra={"fields": {"event": "api-reconnected"}},
            )
            self._cut_off_since = None
        elif out_of_contact and self._was_connected and self._cut_off_since is None:
            log.warning(
                "cut off from the API server: announcing the last known state (fail-static)",
                extra={"fields": {"event": "api-cut-off", "reason": self._why_not_connected()}},
            )
            self._cut_off_since = self._clock()
        if connected and self._frozen:
            self._view.thaw()
            self._frozen = False
        # Read after the thaw: the first View back in contact holds the re-listed objects and the peers judged
        # afresh, so it is the only one planned, never the snapshot held while cut off.
        snap = self._view.snapshot
        # Acting on a synced view is what fail-static protects, whether or not the first renewal had landed yet.
        self._was_connected |= snap.synced and source.connected
        self._metrics.set_config_stale(bool(snap.stale))
        seen = (snap.version, self._cut_off_since)
        if seen == self._seen:
            return None
        self._seen = seen
        if self.statuses is not None and snap.synced and self._cut_off_since is None:
            self.statuses.offer(wanted(snap.plan, self._node))
        return View(
            snap.plan,
            nodes=snap.cluster.nodes,
            alive=snap.alive,
            synced=snap.synced,
            cut_off_since=self._cut_off_since,
            live=True,
            stale=snap.stale,
            cluster=snap.cluster,
        )

    def _why_not_connected(self) -> str:
        source = self.source.status()
        if source.failing:
            name, reason = next(iter(sorted(source.failing.items())))
            return f"{name}: {reason}"
        if source.relisting:
            return f"{min(source.relisting)}: re-listing"
        return f"lease renewal failing: {self.lease.state().last_error or 'no renewal yet'}"
