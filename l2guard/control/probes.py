"""Probe takeover in the speaker: the runner-up checks each owner it backs up on the wire, and takes over the IPs it
backs up for an owner that stopped answering, long before that owner's lease expires.

`ProbeLoop` drives the decisions of `l2core.probing` with the clock and the data plane's prober
(`speaker.prober`):
- `follow(plan)` (the control loop, after each plan) recomputes the watched owners and hands their VIPs to the
  prober; owners no longer watched are forgotten, and so is a takeover of theirs;
- its thread probes each owner once per probe period (spread over the period; the period stretched to keep the
  speaker within its probe budget), and counts a probe unanswered by the next one as missed;
- before an owner was ever heard (this node started after its takeover burst), each period goes to the MACs the
  owner publishes on its Lease instead (`peer_macs`, live mode); an owner never heard even there is reported as
  silent (the self-test), and nothing is taken over from it;
- the prober's `on_heard(owner)` (its I/O thread) resets the owner's misses and ends a takeover at once;
- a takeover or a yield logs a line, counts in the metrics, posts an Event on each service concerned (Warning:
  `node X stopped answering ARP for 192.0.2.100; worker-2 took over`) and wakes the control loop, whose next
  reconcile announces `held()` beside the plan.

The election does not change here: the plan still says X owns the IPs, and when X's lease expires every speaker
agrees. This module opens no socket and reads no cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from l2core.plan import Plan
from l2core.probing import (
    Change,
    Interfaces,
    ProbeState,
    RunnerUps,
    Watch,
    after_answer,
    after_tick,
    answering_again,
    not_answering,
    probe_period,
    silent,
    watches,
)
from l2core.reporting import ServiceEvent
from l2guard.control.metrics import SpeakerMetrics
from speaker import packets
from speaker.prober import Target

log = logging.getLogger(__name__)

Report = Callable[[str, ServiceEvent], bool]
# Services an owner's takeover posts its Event on (sorted by key): an owner of 500 services is one incident, and the
# log line gives the count; the poster's rate limit would hold most of them back anyway.
MAX_EVENT_SERVICES = 10


class ProberPort(Protocol):
    """What the loop needs from the data plane's prober."""

    def set_targets(self, targets: Mapping[str, Target]) -> None: ...
    def probe(self, owner: str) -> bool: ...
    def ask(self, owner: str, candidates: Iterable[bytes]) -> bool: ...


class ProbeLoop:
    def __init__(
        self,
        *,
        node: str,
        prober: ProberPort,
        interval: float,
        misses: int,
        budget: float,
        metrics: SpeakerMetrics,
        on_change: Callable[[], None],
        report: Report | None = None,
        peer_macs: Callable[[], Mapping[str, frozenset[str]]] = dict,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self._prober = prober
        self._interval = interval
        self._misses = misses
        self._budget = budget
        self._metrics = metrics
        self._on_change = on_change
        self._report = report
        self._peer_macs = peer_macs
        self._clock = clock
        self._lock = threading.Lock()  # everything below; held across a probe and its bookkeeping
        self._plan: Plan | None = None
        self._kept = RunnerUps()  # runner-ups the planner forgot, elected once (follow() runs on one thread)
        self._watches: dict[str, Watch] = {}
        self._states: dict[str, ProbeState] = {}
        self._due: dict[str, float] = {}
        self._period = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the control loop's side

    def follow(self, plan: Plan) -> None:
        """Watch the owners `plan` makes this node the runner-up of (recomputed only when the plan changed)."""
        with self._lock:
            if plan is self._plan:
                return
            self._plan = plan
            new = watches(plan, self.node, kept=self._kept)
            if new == self._watches:
                return
            gone = [o for o in self._watches if o not in new]
            self._watches = new
            for owner in gone:
                self._states.pop(owner, None)
                self._due.pop(owner, None)
            now = self._clock()
            self._period = probe_period(len(new), interval=self._interval, budget=self._budget)
            fresh = [o for o in new if o not in self._states]
            for i, owner in enumerate(sorted(fresh)):
                self._states[owner] = ProbeState()
                self._due[owner] = now + self._period * (i + 1) / (len(fresh) + 1)  # spread over one period
            targets = {o: Target(w.target, frozenset(w.takeover)) for o, w in new.items()}
            self._metrics.set_probing(len(new), self._period)
            self._metrics.set_not_answering(self._not_answering())
        self._prober.set_targets(targets)
        self._wake.set()

    def held(self) -> dict[str, Interfaces]:
        """The IPs taken over from owners that stopped answering: IP -> interfaces (None: all)."""
        with self._lock:
            out: dict[str, Interfaces] = {}
            for owner, state in self._states.items():
                if state.taken_over:
                    out.update(self._watches[owner].takeover)
            return out

    # ------------------------------------------------------------------ the prober's side (its I/O thread)

    def on_heard(self, owner: str) -> None:
        with self._lock:
            state = self._states.get(owner)
            if state is None:
                return
            self._states[owner], change = after_answer(state)
            watch = self._watches[owner]
            if state.silent:  # the self-test's report ends: it answers after all
                self._metrics.set_not_answering(self._not_answering())
        if change is not None:
            self._changed(watch, change)

    # ------------------------------------------------------------------ the probing thread

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="l2guard-probes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            changes = self.tick()
            for watch, change in changes:
                self._changed(watch, change)
            with self._lock:
                next_due = min(self._due.values(), default=self._clock() + 1.0)
            self._wake.wait(max(0.0, min(1.0, next_due - self._clock())))
            self._wake.clear()

    def tick(self) -> list[tuple[Watch, Change]]:
        """Probe every owner whose probe is due; returns the takeovers this caused (the caller reports them). The
        lock is held across the probe and the state update, so an answer arriving within microseconds is
        applied after the probe it answers is recorded as pending."""
        out = []
        macs = self._peer_macs()
        with self._lock:
            now = self._clock()
            for owner, due in sorted(self._due.items()):
                if due > now:
                    continue
                sent = self._prober.probe(owner)
                asked = False
                if sent:
                    self._metrics.probe_sent()
                elif owner in macs:
                    asked = self._prober.ask(owner, [packets.mac_bytes(m) for m in macs[owner]])
                state, change = after_tick(self._states[owner], misses=self._misses, sent=sent, asked=asked)
                self._states[owner] = state
                # Next due one period after this one was due (no drift), but never in the past after a stall.
                self._due[owner] = max(due + self._period, now + self._period / 2)
                if change is not None:
                    out.append((self._watches[owner], change))
        return out

    # ------------------------------------------------------------------ saying it

    def _not_answering(self) -> frozenset[str]:
        return frozenset(o for o, s in self._states.items() if s.taken_over or s.silent)

    def _changed(self, watch: Watch, change: Change) -> None:
        fields = {
            "node": watch.owner,
            "ip": watch.target,
            "count": len(watch.takeover),
        }
        if change is Change.SILENT:
            macs = sorted(self._peer_macs().get(watch.owner, ()))
            log.warning(
                "node %s does not answer %s for %s at its MACs %s; taking nothing over",
                watch.owner,
                watch.protocol,
                watch.target,
                ", ".join(macs),
                extra={"fields": {"event": "probe-silent", **fields}},
            )
            event = silent(watch, self.node, macs)
        elif change is Change.TAKEOVER:
            log.warning(
                "node %s stopped answering %s for %s; taking over %d IPs",
                watch.owner,
                watch.protocol,
                watch.target,
                len(watch.takeover),
                extra={"fields": {"event": "probe-takeover", **fields}},
            )
            self._metrics.probe_takeover()
            event = not_answering(watch, self.node)
        else:
            log.info(
                "node %s answers %s for %s again; yielding %d IPs",
                watch.owner,
                watch.protocol,
                watch.target,
                len(watch.takeover),
                extra={"fields": {"event": "probe-yield", **fields}},
            )
            self._metrics.probe_yield()
            event = answering_again(watch, self.node)
        with self._lock:
            self._metrics.set_not_answering(self._not_answering())
        self._on_change()
        if self._report is not None:
            for key in watch.services[:MAX_EVENT_SERVICES]:
                self._report(key, event)
