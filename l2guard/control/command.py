"""`l2guard speaker`: one per node (a DaemonSet). Reads the cluster, decides with the same core as the webhook and
`explain`, and answers ARP/NDP for exactly the IPs its node wins.

State source:
- file mode (`--cluster-state FILE...`, the same input as `explain`, with `--alive` as there): the files are
  re-read when their content changes (checked every `--poll-interval` seconds), and each change is planned from
  scratch, as `explain` plans it;
- live mode (in-cluster config or `--kubeconfig`): the list+watch source feeds the shared view, this node's Lease
  is kept and the peers' Leases say who runs, Events go to the API server (`l2guard.control.live`).

`--dry-run` (shadow mode) does everything but the packets: it computes, logs and serves on the health port what it
would announce. Every flag has an environment twin (`--node-name` <-> `L2GUARD_NODE_NAME`, filled from the
downward API in the DaemonSet). Bad settings, unreadable files and missing privileges end with one line and exit
2; SIGTERM and SIGINT stop announcing first, then (live mode) release the lease so the next node takes over at
once, then end the process with status 0.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, TextIO

from l2core.model import EligibilitySettings
from l2core.parse import build_cluster
from l2core.plan import plan
from l2core.probing import (
    DEFAULT_PROBE_BUDGET,
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_PROBE_MISSES,
    MACS_ANNOTATION,
    format_macs,
)
from l2core.reporting import ServiceEvent
from l2guard import logs
from l2guard.control.health import HealthServer, SpeakerStatus, StatusBoard
from l2guard.control.metrics import SpeakerMetrics
from l2guard.control.probes import ProbeLoop
from l2guard.control.reconcile import ObjectReport, Reconciler, View
from l2guard.listen import BindError
from l2guard.loader import MAX_INPUT_BYTES, InputError, load_documents
from l2guard.options import port_problem
from l2guard.settings import (
    CLUSTER_FLAGS,
    ELIGIBILITY_FLAGS,
    LOG_FLAGS,
    SHARED,
    Option,
    SharedSettings,
    add_options,
    add_shared_arguments,
    read_options,
    read_shared,
)
from speaker import packets
from speaker.announcer import DEFAULT_BURST_DURATION, DEFAULT_BURST_INTERVAL, Announcer
from speaker.announcer import Event as DataPlaneEvent
from speaker.interfaces import DEFAULT_EXCLUDE, eligible_for_all, scan_links
from speaker.metrics import SpeakerCollector
from speaker.prober import Prober
from speaker.refresh import MAX_INTERVAL as REFRESH_MAX
from speaker.refresh import MIN_INTERVAL as REFRESH_MIN
from speaker.responder import raw_socket_problem

log = logging.getLogger(__name__)

PROG = "l2guard speaker"
EXIT_USAGE = 2

OPTIONS: tuple[Option, ...] = (
    Option("--node-name", "str", "", "this node's name (in the DaemonSet: the downward API's spec.nodeName)"),
    Option("--alive", "str", "", "file mode: nodes whose speaker runs, comma-separated (default: every node)"),
    SHARED["--namespace"],
    Option("--health-address", "str", "0.0.0.0", "address of the health port"),
    Option("--health-port", "int", 7473, "plain-HTTP port for /healthz, /readyz, /status and /metrics"),
    Option("--lease-duration", "int", 6, "seconds a speaker's Lease lasts without renewal (at least 2)"),
    Option("--lease-renew-interval", "float", 2.0, "seconds between Lease renewals"),
    Option(
        "--exclude-interfaces",
        "str",
        DEFAULT_EXCLUDE,
        "regular expression of interface names never used for 'all interfaces' (CNI and virtual devices)",
    ),
    Option("--burst-interval", "float", DEFAULT_BURST_INTERVAL, "seconds between takeover announcements"),
    Option("--burst-duration", "float", DEFAULT_BURST_DURATION, "seconds a takeover burst lasts"),
    Option(
        "--refresh-interval",
        "float",
        0.0,
        f"seconds between re-announcements of every owned IP, spread over the interval "
        f"({REFRESH_MIN:.0f}-{REFRESH_MAX:.0f}; 0: off, the default)",
    ),
    Option("--poll-interval", "float", 1.0, "file mode: seconds between checks of the cluster-state files"),
    Option("--dry-run", "bool", False, "shadow mode: compute, log and serve what would be announced; send nothing"),
    Option(
        "--probe",
        "bool",
        True,
        "probe the owners this node is runner-up for on the wire and take their IPs over when they stop answering "
        "(--no-probe: failover only when a lease expires)",
    ),
    Option("--probe-interval", "float", DEFAULT_PROBE_INTERVAL, "seconds between two probes of one owner"),
    Option("--probe-misses", "int", DEFAULT_PROBE_MISSES, "consecutive unanswered probes before a takeover"),
    Option("--probe-budget", "float", DEFAULT_PROBE_BUDGET, "probes per second this speaker sends at most"),
)


@dataclass(frozen=True)
class SpeakerSettings:
    shared: SharedSettings
    node_name: str
    alive: frozenset[str] | None
    namespace: str
    health_address: str
    health_port: int
    lease_duration: int
    lease_renew_interval: float
    exclude_interfaces: str
    burst_interval: float
    burst_duration: float
    refresh_interval: float
    poll_interval: float
    dry_run: bool
    probe: bool = True
    probe_interval: float = DEFAULT_PROBE_INTERVAL
    probe_misses: int = DEFAULT_PROBE_MISSES
    probe_budget: float = DEFAULT_PROBE_BUDGET

    @property
    def eligibility(self) -> EligibilitySettings:
        return self.shared.eligibility


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "speaker",
        help="announce this node's LoadBalancer IPs (ARP/NDP), as a DaemonSet or from a cluster-state file",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_options(p, OPTIONS)
    add_shared_arguments(p, ELIGIBILITY_FLAGS + CLUSTER_FLAGS + LOG_FLAGS)
    p.set_defaults(run=run)


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> tuple[SpeakerSettings | None, list[str]]:
    shared, problems = read_shared(args, environ, ELIGIBILITY_FLAGS + CLUSTER_FLAGS + LOG_FLAGS)
    values, own = read_options(args, environ, OPTIONS)
    problems += own
    if not values["node_name"]:
        problems.append("--node-name is required (L2GUARD_NODE_NAME; in the DaemonSet from spec.nodeName)")
    if (p := port_problem("--health-port", values["health_port"])) is not None:
        problems.append(p)
    if not 2 <= values["lease_duration"] <= 3600:
        problems.append("--lease-duration must be between 2 and 3600 seconds")
    for flag in ("--lease-renew-interval", "--burst-interval", "--poll-interval"):
        dest = flag.lstrip("-").replace("-", "_")
        if not 0.01 <= values[dest] <= 3600:
            problems.append(f"{flag} must be between 0.01 and 3600 seconds")
    if not 0 <= values["burst_duration"] <= 3600:
        problems.append("--burst-duration must be between 0 and 3600 seconds")
    if values["refresh_interval"] != 0 and not REFRESH_MIN <= values["refresh_interval"] <= REFRESH_MAX:
        problems.append(
            f"--refresh-interval must be 0 (off) or between {REFRESH_MIN:.0f} and {REFRESH_MAX:.0f} seconds"
        )
    if not 0.05 <= values["probe_interval"] <= 60:
        problems.append("--probe-interval must be between 0.05 and 60 seconds")
    if not 1 <= values["probe_misses"] <= 100:
        problems.append("--probe-misses must be between 1 and 100")
    if not 1 <= values["probe_budget"] <= 10000:
        problems.append("--probe-budget must be between 1 and 10000 probes per second")
    if values["lease_renew_interval"] >= values["lease_duration"]:
        problems.append("--lease-renew-interval must be shorter than --lease-duration")
    try:
        re.compile(values["exclude_interfaces"])
    except re.error as exc:
        problems.append(f"--exclude-interfaces is not a regular expression: {exc}")
    alive = frozenset(n.strip() for n in values["alive"].split(",") if n.strip()) if values["alive"] else None
    if problems:
        return None, problems
    return (
        SpeakerSettings(
            shared=shared,
            node_name=values["node_name"],
            alive=alive,
            namespace=values["namespace"],
            health_address=values["health_address"],
            health_port=values["health_port"],
            lease_duration=values["lease_duration"],
            lease_renew_interval=values["lease_renew_interval"],
            exclude_interfaces=values["exclude_interfaces"],
            burst_interval=values["burst_interval"],
            burst_duration=values["burst_duration"],
            refresh_interval=values["refresh_interval"],
            poll_interval=values["poll_interval"],
            dry_run=bool(values["dry_run"]),
            probe=bool(values["probe"]),
            probe_interval=values["probe_interval"],
            probe_misses=values["probe_misses"],
            probe_budget=values["probe_budget"],
        ),
        [],
    )


class FileState:
    """The cluster-state files, re-read when their content changes. `poll()` returns a new View, or None when
    nothing changed; a file that stops parsing keeps the last good view (one bad edit never withdraws IPs). There
    is no API to post Events to: `report()` logs them, at their level."""

    mode = "file"
    debounce = 0.0
    report_object = None  # no object is kept stale: a file that does not read keeps the whole last good view

    def __init__(self, settings: SpeakerSettings) -> None:
        self._settings = settings
        self.wait = settings.poll_interval
        self._digest = b""
        self._refused = b""
        self.problem: str | None = None  # why the last read was refused, while it is

    def _digest_now(self) -> bytes:
        """The files' content digest, each read up to the loader's limit (a larger or endless file is refused)."""
        h = hashlib.sha256()
        for name in self._settings.shared.cluster_state:
            with open(name, "rb") as fh:
                data = fh.read(MAX_INPUT_BYTES + 1)
            if len(data) > MAX_INPUT_BYTES:
                raise InputError(f"{name}: larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB; refused")
            h.update(data)
        return h.digest()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def peer_macs(self) -> Mapping[str, frozenset[str]]:
        """No Leases in file mode: the probes learn the owners' MACs from the wire only."""
        return {}

    def report(self, key: str, event: ServiceEvent) -> bool:
        level = logging.WARNING if event.type.value == "Warning" else logging.INFO
        log.log(
            level,
            "event on %s: %s",
            key,
            event.message,
            extra={"fields": {"event": "service-event", "service": key, "reason": event.reason}},
        )
        return True

    def poll(self) -> View | None:
        """A new View when the files changed and read well; None when unchanged, or unreadable (logged once per
        distinct problem: the last good view stays)."""
        try:
            return self.read()
        except (InputError, OSError) as exc:
            reason = str(exc)
            if reason != self.problem:
                log.warning(
                    "cluster state unreadable, keeping the last good one: %s",
                    reason,
                    extra={"fields": {"event": "cluster-state-stale", "reason": reason}},
                )
            self.problem = reason
            return None

    def read(self) -> View | None:
        """As `poll()`, but raising InputError or OSError for unreadable files (the first read, at start)."""
        digest = self._digest_now()
        if digest in (self._digest, self._refused):
            return None  # unchanged, or the same content that was refused already
        try:
            docs = load_documents(self._settings.shared.cluster_state)
        except InputError:
            self._refused = digest
            raise
        self._digest, self._refused, self.problem = digest, b"", None
        parsed = build_cluster(docs, metallb_namespace=self._settings.shared.metallb_namespace)
        for problem in parsed.problems:
            log.warning(
                "cluster state object skipped: %s",
                problem,
                extra={"fields": {"event": "cluster-state-problem", "reason": str(problem)}},
            )
        alive = self._settings.alive
        return View(
            plan(parsed.cluster, self._settings.eligibility, alive=alive),
            nodes=parsed.cluster.nodes,
            pool_overlaps=tuple(parsed.pool_overlaps),
            alive=alive,
        )


class StateSource(Protocol):
    """Where the reconcile loop's View comes from: the files (FileState) or the cluster (live.LiveState)."""

    mode: str
    wait: float  # seconds between polls when nothing wakes the loop
    debounce: float  # seconds at least between two reconciles of a burst (see control_loop)

    @property
    def report_object(self) -> ObjectReport | None:
        """Where Events on other objects than Services go (stale ones); None: there are none to post."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def poll(self) -> View | None: ...
    def report(self, key: str, event: ServiceEvent) -> bool: ...
    def peer_macs(self) -> Mapping[str, frozenset[str]]: ...  # node -> the MACs its speaker publishes


def run(args: argparse.Namespace, *, out: TextIO, err: TextIO, environ: dict[str, str] | None = None) -> int:
    settings, problems = settings_from(args, dict(os.environ) if environ is None else environ)
    if settings is None:
        for problem in problems:
            err.write(f"{PROG}: {problem}\n")
        return EXIT_USAGE
    logs.setup(settings.shared.log_format, settings.shared.log_level)
    wake = threading.Event()
    first: View | None = None
    state: StateSource
    if settings.shared.cluster_state:
        files = FileState(settings)
        try:
            first = files.read()
        except (InputError, OSError) as exc:
            err.write(f"{PROG}: cannot read the cluster state: {exc}\n")
            return EXIT_USAGE
        assert first is not None  # the first read always sees a change
        if settings.alive is not None and (unknown := sorted(settings.alive - first.plan.node_reasons.keys())):
            err.write(f"{PROG}: --alive names node(s) not in the cluster state: {', '.join(unknown)}\n")
            return EXIT_USAGE
        state = files
    else:
        from l2guard.control.live import LiveState
        from l2guard.kube.client import KubeconfigError
        from l2guard.view import ClusterView

        if settings.alive is not None:
            err.write(f"{PROG}: --alive is for file mode; in the cluster, the speakers' Leases say who runs\n")
            return EXIT_USAGE
        try:
            state = LiveState(
                node=settings.node_name,
                namespace=settings.namespace,
                kubeconfig=settings.shared.kubeconfig,
                metallb_namespace=settings.shared.metallb_namespace,
                view=ClusterView(settings.eligibility),
                lease_duration=settings.lease_duration,
                lease_renew_interval=settings.lease_renew_interval,
                metrics=(metrics := SpeakerMetrics()),
                wake=wake,
                l2_status=not settings.dry_run,  # a shadow beside MetalLB's speaker must not rewrite its objects
                lease_annotations=_mac_annotation(settings),
            )
        except (KubeconfigError, ValueError) as exc:  # ValueError: a node name no Lease name can hold
            err.write(f"{PROG}: {exc}\n")
            return EXIT_USAGE
        return _serve(settings, state, None, wake=wake, metrics=metrics, err=err)
    return _serve(settings, state, first, wake=wake, metrics=SpeakerMetrics(), err=err)


def _mac_annotation(settings: SpeakerSettings) -> dict[str, str]:
    """The Lease annotation with this node's MACs (its "all interfaces" links), for the runner-ups that start after
    this node announced (`l2core.probing`); none when probing is off, in dry-run, or the links cannot be read."""
    if not settings.probe or settings.dry_run:
        return {}
    try:
        links = scan_links()
    except Exception as exc:  # netlink refused: the probes still learn from the wire
        log.warning("cannot read the links to publish their MACs: %s", exc, extra={"fields": {"event": "scan-failed"}})
        return {}
    names = eligible_for_all(links, re.compile(settings.exclude_interfaces))
    macs = format_macs(packets.mac_str(links[n].mac) for n in names)
    return {MACS_ANNOTATION: macs} if macs else {}


def control_loop(
    state: StateSource,
    reconciler: Reconciler,
    first: View | None,
    *,
    wake: threading.Event,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
    on_first_sync: Callable[[], None] | None = None,
) -> None:
    """Reconcile `first` (if any), then every new View the state source has, until `stop` is set: the loop sleeps
    until `wake` is set (a change arrived, a data-plane event was queued) or `state.wait` seconds passed, and polls.
    A View is reconciled when it is new, or when data-plane events wait. The caller starts the state source before
    and stops it after.

    Debounce on the leading edge: a change that comes `state.debounce` seconds or more after the last reconcile
    began is planned at once; one that comes sooner (the rest of a burst: a rollout, a re-list) waits until then,
    with whatever else arrives meanwhile. A lone label change thus reaches the data plane without waiting, and a
    burst is still reconciled at most once per `state.debounce` (polls that find nothing new do not count).

    `on_first_sync` is called once, after the first reconcile of a synced View."""
    view = first
    synced = False

    def reconcile(v: View) -> None:
        nonlocal synced
        reconciler.reconcile(v)
        if v.synced and not synced:
            synced = True
            if on_first_sync is not None:
                on_first_sync()

    if view is not None:
        reconcile(view)
    reconciled = -math.inf  # on `clock` (monotonic): when the poll of the last reconcile began
    while not stop.is_set():
        if wake.wait(state.wait) and state.debounce:
            stop.wait(max(0.0, reconciled + state.debounce - clock()))
        wake.clear()
        if stop.is_set():
            break
        polled = clock()
        changed = state.poll()
        view = changed or view
        if view is not None and (changed is not None or reconciler.pending_events()):
            reconciled = polled
            reconcile(view)


def freeze_the_cache() -> None:
    """Leave the objects alive now (the listed cache: ~135,000 for 500 nodes and 10,000 services) out of the
    garbage collector's full collections from now on (`gc.freeze`): the cache lives as long as the process (what of
    it is replaced later is still freed by its reference count), and a full collection over it took 76-110 ms on a
    loaded 2-core machine (docs/benchmarks.md, Reaction), a pause any event landing then would wait for. Objects
    made later are collected as before."""
    gc.collect()
    gc.freeze()


def _serve(
    settings: SpeakerSettings,
    state: StateSource,
    first: View | None,
    *,
    wake: threading.Event,
    metrics: SpeakerMetrics,
    err: TextIO,
) -> int:
    board = StatusBoard(SpeakerStatus(node=settings.node_name, dry_run=settings.dry_run))
    stop = threading.Event()

    def on_dataplane_event(event: DataPlaneEvent) -> None:  # on the announcer's I/O thread: queue and wake
        reconciler.on_dataplane_event(event)
        wake.set()

    announcer = None
    if not settings.dry_run:
        announcer = Announcer(
            exclude=settings.exclude_interfaces,
            burst_interval=settings.burst_interval,
            burst_duration=settings.burst_duration,
            refresh_interval=settings.refresh_interval,
            on_event=on_dataplane_event,
        )
        metrics.registry.register(SpeakerCollector(announcer.counters))
    probes: ProbeLoop | None = None
    prober: Prober | None = None
    if announcer is not None and settings.probe:
        prober = Prober(
            on_heard=lambda owner: probes.on_heard(owner) if probes else None, exclude=settings.exclude_interfaces
        )

        def on_probe_change() -> None:  # on the probe loop's or the prober's thread: queue and wake
            reconciler.on_probe_change()
            wake.set()

        probes = ProbeLoop(
            node=settings.node_name,
            prober=prober,
            interval=settings.probe_interval,
            misses=settings.probe_misses,
            budget=settings.probe_budget,
            metrics=metrics,
            on_change=on_probe_change,
            report=state.report,
            peer_macs=state.peer_macs,
        )
    reconciler = Reconciler(
        node=settings.node_name,
        dataplane=announcer,
        board=board,
        metrics=metrics,
        report=state.report,
        report_object=state.report_object,
        probes=probes,
    )
    health = HealthServer(board, metrics.registry, host=settings.health_address, port=settings.health_port)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping on %s", signal.Signals(signum).name, extra={"fields": {"event": "stop"}})
        stop.set()
        wake.set()

    if announcer is not None and (problem := raw_socket_problem()) is not None:
        err.write(f"{PROG}: {problem}; or use --dry-run\n")
        return EXIT_USAGE
    try:
        health.start()
        if announcer is not None:
            announcer.start()
        if prober is not None and probes is not None:
            prober.start()
            probes.start()
    except BindError as exc:
        flag = "--health-address" if exc.address_unavailable else "--health-port"
        err.write(f"{PROG}: {exc} (set another with {flag})\n")
        return EXIT_USAGE
    except (OSError, RuntimeError) as exc:
        health.stop()
        err.write(f"{PROG}: cannot start: {exc}\n")
        return EXIT_USAGE
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info(
        "speaker started",
        extra={"fields": {"event": "start", "node": settings.node_name, "port": health.port, "mode": state.mode}},
    )
    try:
        state.start()
        control_loop(state, reconciler, first, wake=wake, stop=stop, on_first_sync=freeze_the_cache)
    finally:
        if prober is not None and probes is not None:
            probes.stop()  # no takeover while shutting down
            prober.stop()
        if announcer is not None:
            announcer.stop()  # stop answering first: the next node takes over with its own burst
        state.stop()  # live mode: then release the lease at once
        health.stop()
        # Only now: a second SIGTERM or Ctrl-C during the shutdown must not skip the release.
        for s, handler in previous.items():
            signal.signal(s, handler)
    log.info("speaker stopped", extra={"fields": {"event": "stopped", "node": settings.node_name}})
    return 0
