"""The declarative announcer: the control plane says which IPs to own where, the data plane does it.

``Announcer.set({"192.0.2.100": ALL_INTERFACES, "2001:db8::100": frozenset({"eth0"})})`` makes this node
answer ARP/NDP for exactly those IPs on those interfaces, send a takeover burst for every newly owned
(IP, interface) pair, and stop answering released ones at once. ``set()`` is idempotent and thread-safe;
it returns a :class:`Status` with what is announced now, which requested interfaces are missing or
unusable, recent conflicts and counters. Conflicts and interface problems are also pushed to an
optional ``on_event`` callback, so the control plane can turn them into Kubernetes Events.

All sockets belong to one I/O thread (selectors); ``set()`` hands the new desired state to it and waits
until it is applied. Link changes (netlink events, plus a periodic rescan) re-resolve "all interfaces".
With a ``refresh_interval``, the I/O thread also announces every owned (IP, interface) pair again once per
interval, spread over it (:mod:`speaker.refresh`). ``reassert(ip, iface)`` queues one more such announcement of an
owned pair, when the control plane decides to answer another MAC's claim (at most once per second per pair).

This module must not read Kubernetes, parse frames (see :mod:`speaker.packets`) or import scapy.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import logging
import re
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Generic, TypeVar

from l2core.addresses import parse_ip
from speaker import bpf
from speaker.interfaces import DEFAULT_EXCLUDE, Link, eligible_for_all, open_link_events, scan_links
from speaker.metrics import Counters, Family
from speaker.refresh import TICK, RefreshSchedule
from speaker.responder import Port

log = logging.getLogger(__name__)


class AllInterfaces(enum.Enum):
    """Sentinel type: announce on every eligible interface."""

    ALL = "all"

    def __repr__(self) -> str:
        return "ALL_INTERFACES"


ALL_INTERFACES = AllInterfaces.ALL
Desired = Mapping[str, "frozenset[str] | AllInterfaces"]
_StrSet = set[str]  # the class below has a method named ``set``

DEFAULT_BURST_INTERVAL = 1.1
DEFAULT_BURST_DURATION = 5.0
DEFAULT_RESCAN_INTERVAL = 10.0
SET_TIMEOUT = 10.0
MAX_RECENT_CONFLICTS = 64
# Conflicts are always counted (the conflicts metric, in the responder). Reporting them (a log line and an
# on_event callback) is limited twice: per (ip, iface, mac) at most once a CONFLICT_REPORT_INTERVAL (a claim
# repeated within it is reported once at its end, so the control plane always hears the last one), and
# for all conflicts together at most CONFLICT_REPORT_BURST per CONFLICT_REPORT_WINDOW, then one line says
# how many were suppressed. The per-MAC limit alone let 4,096 spoofed MACs write 85,000 lines in 10 s.
CONFLICT_REPORT_INTERVAL = 1.0
CONFLICT_REPORT_WINDOW = 5.0
CONFLICT_REPORT_BURST = 20
MAX_CONFLICT_KEYS = 4096  # per-MAC table size; cleared beyond it (the global limit still holds)
# Re-assertions (`Announcer.reassert`): at most one per (ip, iface) per REASSERT_INTERVAL, so two nodes that both
# believe they own an IP answer each other's claims at most once a second each (the kernel's ARP `locktime` is 1 s
# by default, arp(7); a gratuitous request overrides it anyway). One asked for within the interval goes out at its
# end, so the owner has the last word after the other's last claim. The table of last re-assertions holds at most
# MAX_REASSERT_KEYS pairs (cleared beyond it); at most MAX_QUEUED_REASSERTS requests wait for the I/O thread (beyond
# it they are dropped: the next claim asks again). Their log lines are limited like the conflicts'; every one is
# counted in the reasserts metric.
REASSERT_INTERVAL = 1.0
MAX_REASSERT_KEYS = 4096
MAX_QUEUED_REASSERTS = 1024


K = TypeVar("K")


class TrailingLimit(Generic[K]):
    """At most one pass per key per ``interval`` seconds; a key refused within the interval passes once at its end
    (the trailing edge: the last of a stream is never lost, and a stream still passes at most once an interval).
    The callers pass the clock and call ``due()`` at ``deadline()``. At most ``max_keys`` keys are remembered
    (cleared beyond it) and at most ``max_keys`` wait for their trailing edge (refused beyond it)."""

    def __init__(self, *, interval: float, max_keys: int) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[K, float] = {}
        self._later: set[K] = set()
        self._heap: list[tuple[float, int, K]] = []  # (due, seq, key); seq keeps keys from being compared
        self._seq = 0

    def allow(self, key: K, now: float) -> bool:
        """True if ``key`` may pass at ``now`` (recorded); otherwise it waits for the end of its interval."""
        last = self._last.get(key)
        if last is not None and now < last + self.interval:
            if key not in self._later and len(self._later) < self.max_keys:
                self._later.add(key)
                self._seq += 1
                heapq.heappush(self._heap, (last + self.interval, self._seq, key))
            return False
        if last is None and len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        return True

    def due(self, now: float) -> list[K]:
        """The keys whose trailing edge has come (each may pass now), in the order they fell due."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            _, _, key = heapq.heappop(self._heap)
            self._later.discard(key)
            out.append(key)
        return out

    def deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None


@dataclass(frozen=True, slots=True)
class Conflict:
    """Another MAC claimed an IP we own, on ``iface``."""

    ip: str
    iface: str
    _: KW_ONLY
    family: Family
    mac: str
    at: float  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class InterfaceProblem:
    """A requested interface for ``ip`` is ``missing`` from this node or exists but is unusable."""

    ip: str
    iface: str
    _: KW_ONLY
    reason: str  # "missing", "down", "no carrier", "enslaved", "NOARP", ...


@dataclass(frozen=True, slots=True)
class SocketProblem:
    """An IP could not be announced on ``iface`` because a socket or group join failed."""

    ip: str
    iface: str
    _: KW_ONLY
    reason: str


Event = Conflict | InterfaceProblem | SocketProblem


@dataclass(frozen=True)
class Status:
    """A snapshot of what the announcer does right now."""

    desired: Mapping[str, frozenset[str] | AllInterfaces] = field(default_factory=dict)
    announcing: Mapping[str, frozenset[str]] = field(default_factory=dict)  # ip -> interfaces answering
    problems: tuple[InterfaceProblem | SocketProblem, ...] = ()
    conflicts: tuple[Conflict, ...] = ()  # most recent last, bounded
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)  # iface -> solicited-node groups
    fallback_filters: frozenset[str] = frozenset()  # "iface/ipv4" whose BPF matches all ARP/NDP
    counters: Mapping[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> dict[str, frozenset[str]]:
        """ip -> requested interfaces that do not exist on this node."""
        out: dict[str, set[str]] = {}
        for p in self.problems:
            if isinstance(p, InterfaceProblem) and p.reason == "missing":
                out.setdefault(p.ip, set()).add(p.iface)
        return {ip: frozenset(v) for ip, v in out.items()}


class ReportLimit:
    """At most ``burst`` reports per ``window`` seconds, counting the refused ones; the callers pass the clock.

    The shape of the kernel's printk rate limit (lib/ratelimit.c): a window opens at the first report, lets
    ``burst`` through and refuses the rest; the owner prints the refused count once the window is over.
    """

    def __init__(self, *, window: float, burst: int) -> None:
        self.window = window
        self.burst = burst
        self.suppressed = 0
        self._start: float | None = None
        self._passed = 0

    def allow(self, now: float) -> bool:
        """True if a report at ``now`` may go out; otherwise it is counted in ``suppressed``."""
        if self._start is None or now - self._start >= self.window:
            self._start, self._passed = now, 0
        if self._passed < self.burst:
            self._passed += 1
            return True
        self.suppressed += 1
        return False

    def due(self, now: float) -> bool:
        """True when reports were suppressed and their window is over: time for the summary."""
        return self.suppressed > 0 and self._start is not None and now - self._start >= self.window

    def deadline(self) -> float | None:
        """When the summary of the suppressed reports falls due, if any are waiting."""
        return self._start + self.window if self.suppressed and self._start is not None else None

    def take_suppressed(self) -> int:
        """The number refused since the last call, reset to zero."""
        n, self.suppressed = self.suppressed, 0
        return n


def normalize_ip(ip: str) -> str:
    """Canonical text form of an IPv4/IPv6 address, read as the core reads it (Go's rules: no spaces or zone ids,
    an IPv4-mapped address is its IPv4 address); raises ValueError for anything else (incl. prefixes)."""
    parsed = parse_ip(ip)
    if parsed is None:
        raise ValueError(f"not an IP address: {ip!r}")
    return str(parsed)


def normalize(desired: Desired) -> dict[str, frozenset[str] | AllInterfaces]:
    """Validate and canonicalize a desired mapping; raises ValueError/TypeError on bad input."""
    out: dict[str, frozenset[str] | AllInterfaces] = {}
    for ip, where in desired.items():
        key = normalize_ip(ip)
        if where is ALL_INTERFACES:
            out[key] = ALL_INTERFACES
        elif isinstance(where, (frozenset, set, list, tuple)):
            names = frozenset(where)
            if not all(isinstance(n, str) and n for n in names):
                raise TypeError(f"interfaces for {ip} must be non-empty strings")
            out[key] = names
        else:
            raise TypeError(f"interfaces for {ip} must be ALL_INTERFACES or a frozenset of names")
    return out


class Announcer:
    """Owns the ARP/NDP responders of this node. Start it, ``set()`` it, ``stop()`` it."""

    def __init__(
        self,
        *,
        exclude: str | re.Pattern[str] = DEFAULT_EXCLUDE,
        burst_interval: float = DEFAULT_BURST_INTERVAL,
        burst_duration: float = DEFAULT_BURST_DURATION,
        rescan_interval: float = DEFAULT_RESCAN_INTERVAL,
        refresh_interval: float = 0.0,
        max_arp_filter_ips: int = bpf.DEFAULT_MAX_ARP_IPS,
        max_ndp_filter_ips: int = bpf.DEFAULT_MAX_NDP_IPS,
        on_event: Callable[[Event], None] | None = None,
        counters: Counters | None = None,
        scan: Callable[[], dict[str, Link]] = scan_links,
    ) -> None:
        if burst_interval <= 0 or burst_duration < 0 or not 0 < rescan_interval <= 10.0:
            raise ValueError("need burst_interval > 0, burst_duration >= 0, 0 < rescan_interval <= 10 s")
        if not refresh_interval >= 0:
            raise ValueError("need refresh_interval >= 0 (0: no refresh)")
        # Exact filters grow by 4 (ARP) and 9 (NDP) instructions per IP; past BPF_MAXINSNS they cannot exist.
        if (
            not 0 <= max_arp_filter_ips <= bpf.MAX_ARP_IPS_POSSIBLE
            or not 0 <= max_ndp_filter_ips <= bpf.MAX_NDP_IPS_POSSIBLE
        ):
            raise ValueError(
                f"filter limits must be 0..{bpf.MAX_ARP_IPS_POSSIBLE} (ARP) and 0..{bpf.MAX_NDP_IPS_POSSIBLE} (NDP)"
            )
        self._exclude = re.compile(exclude) if isinstance(exclude, str) else exclude
        self._burst_interval = burst_interval
        self._burst_duration = burst_duration
        self._rescan_interval = rescan_interval
        self._refresh = RefreshSchedule(refresh_interval) if refresh_interval else None
        self._max_arp = max_arp_filter_ips
        self._max_ndp = max_ndp_filter_ips
        self._on_event = on_event
        self.counters = counters if counters is not None else Counters()
        self._scan = scan

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: dict[str, frozenset[str] | AllInterfaces] | None = None
        self._reasserts: list[tuple[str, str]] = []  # (ip, iface) asked for by reassert(), for the I/O thread
        self._requested_gen = 0
        self._applied_gen = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._status = Status()

        # Everything below belongs to the I/O thread.
        self._desired: dict[str, frozenset[str] | AllInterfaces] = {}
        self._links: dict[str, Link] = {}
        self._local_macs: frozenset[bytes] = frozenset()
        self._ports: dict[str, Port] = {}
        self._sel: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._events_sock: socket.socket | None = None
        self._bursts: list[tuple[float, int, str, str, float]] = []  # (due, seq, ip, iface, started)
        self._burst_seq = 0
        self._burst_started: dict[tuple[str, str], float] = {}
        self._next_rescan = 0.0
        self._next_refresh = 0.0
        self._owned: list[tuple[str, str]] = []  # sorted (iface, ip) pairs answered now, for the refresh
        self._owned_pairs: frozenset[tuple[str, str]] = frozenset()  # the same, to look up
        self._conflicts: deque[Conflict] = deque(maxlen=MAX_RECENT_CONFLICTS)
        self._conflict_last: TrailingLimit[tuple[str, str, Family, bytes]] = TrailingLimit(
            interval=CONFLICT_REPORT_INTERVAL, max_keys=MAX_CONFLICT_KEYS
        )
        self._conflict_limit = ReportLimit(window=CONFLICT_REPORT_WINDOW, burst=CONFLICT_REPORT_BURST)
        self._problems: tuple[InterfaceProblem | SocketProblem, ...] = ()
        self._socket_problems: dict[tuple[str, str], str] = {}
        self._reasserted: TrailingLimit[tuple[str, str]] = TrailingLimit(
            interval=REASSERT_INTERVAL, max_keys=MAX_REASSERT_KEYS
        )
        self._reassert_limit = ReportLimit(window=CONFLICT_REPORT_WINDOW, burst=CONFLICT_REPORT_BURST)

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Scan links and start the I/O thread. Raises OSError if the wake-up pipe cannot be made."""
        if self._thread is not None:
            return
        with self._lock:
            self._stopping = False  # a stopped announcer may be started again
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        try:
            self._events_sock = open_link_events()
            self._sel.register(self._events_sock, selectors.EVENT_READ, self._on_link_event)
        except OSError as exc:  # fall back to the periodic rescan only
            log.warning(
                "no link events (%s); relying on the periodic rescan",
                exc,
                extra={"fields": {"event": "no-link-events", "reason": str(exc)}},
            )
        self._rescan(time.monotonic())
        self._thread = threading.Thread(target=self._run, name="l2guard-announcer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop answering on every interface at once, close all sockets and end the I/O thread."""
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            self._stopping = True
        self._wake()
        thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        """True while the I/O thread runs (it ends on stop(), or on a bug, which it logs)."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Announcer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- the API

    def set(self, desired: Desired, *, timeout: float = SET_TIMEOUT) -> Status:
        """Own exactly the IPs in ``desired`` (ip -> interface names, or ALL_INTERFACES), from now on.

        Applies the change on the I/O thread and waits for it (takeover bursts start immediately).
        Returns the resulting :class:`Status`. Raises ValueError/TypeError on malformed input,
        RuntimeError if the announcer is not running and TimeoutError if it does not respond.
        """
        norm = normalize(desired)
        with self._cond:
            if self._thread is None or self._stopping:
                raise RuntimeError("announcer is not running; call start() first")
            self._pending = norm
            self._requested_gen += 1
            gen = self._requested_gen
        if threading.current_thread() is self._thread:  # called from an on_event callback
            self._apply_pending()
            return self.status()
        self._wake()
        with self._cond:
            if not self._cond.wait_for(lambda: self._applied_gen >= gen or self._stopping, timeout):
                raise TimeoutError("announcer did not apply the desired state in time")
        return self.status()

    def reassert(self, ip: str, iface: str) -> None:
        """Announce ``ip`` on ``iface`` once more, soon: the frames of one step of the takeover burst, if this node
        answers for it there then. For the control plane, when another MAC claims an IP this node keeps (a runner-up
        that took it over by mistake moved the clients' neighbour entries; see docs/speaker.md). Never blocks; at
        most once per REASSERT_INTERVAL per (ip, iface). Raises ValueError for a malformed IP; ignored when the
        announcer is not running."""
        key = (normalize_ip(ip), iface)
        with self._lock:
            if self._thread is None or self._stopping or len(self._reasserts) >= MAX_QUEUED_REASSERTS:
                return
            self._reasserts.append(key)
        self._wake()

    def status(self) -> Status:
        """What is announced now (cheap; safe from any thread)."""
        with self._lock:
            st = self._status
            conflicts = tuple(self._conflicts)
        return Status(
            desired=st.desired,
            announcing=st.announcing,
            problems=st.problems,
            conflicts=conflicts,
            groups=st.groups,
            fallback_filters=st.fallback_filters,
            counters=self.counters.summary(),
        )

    # ---------------------------------------------------------------------------------- I/O thread

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # already pending, or shutting down
                self._wake_w.send(b"x")

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _on_link_event(self) -> None:
        assert self._events_sock is not None
        try:
            while self._events_sock.recv(65536):
                pass
        except (BlockingIOError, OSError):
            pass
        self._next_rescan = min(self._next_rescan, time.monotonic() + 0.01)  # coalesce a flurry

    def _run(self) -> None:
        assert self._sel is not None
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        break
                if self._pending is not None:
                    self._apply_pending()
                now = time.monotonic()
                if now >= self._next_rescan:
                    self._rescan(now)
                self._fire_bursts(now)
                self._reassert(now)
                for ip, iface, family, mac in self._conflict_last.due(now):
                    if (iface, ip) in self._owned_pairs:
                        self._conflict(ip, iface, family, mac)
                if self._refresh is not None and now >= self._next_refresh:
                    self._refresh_tick(now)
                if self._conflict_limit.due(now):
                    self._report_suppressed()
                deadline = self._next_rescan
                if self._bursts:
                    deadline = min(deadline, self._bursts[0][0])
                if self._refresh is not None:
                    deadline = min(deadline, self._next_refresh)
                for due in (
                    self._conflict_limit.deadline(),
                    self._conflict_last.deadline(),
                    self._reasserted.deadline(),
                ):
                    if due is not None:
                        deadline = min(deadline, due)
                timeout = max(0.0, deadline - time.monotonic())
                for key, _ in self._sel.select(timeout):
                    callback: Callable[[], None] = key.data
                    callback()
        except Exception:  # pragma: no cover - a bug; keep the node from announcing stale state
            log.exception(
                "announcer crashed; it stops answering on every interface",
                extra={"fields": {"event": "announcer-crashed"}},
            )
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for name in list(self._ports):
            self._close_port(name)
        if self._conflict_limit.suppressed:
            self._report_suppressed()
        self._publish()
        if self._sel is not None:
            self._sel.close()
        for s in (self._wake_r, self._wake_w, self._events_sock):
            if s is not None:
                s.close()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _apply_pending(self) -> None:
        with self._lock:
            pending, gen = self._pending, self._requested_gen
            self._pending = None
        if pending is not None:
            self._desired = pending
            self._reconcile()
        with self._cond:
            self._applied_gen = max(self._applied_gen, gen)
            self._cond.notify_all()

    def _rescan(self, now: float) -> None:
        self._next_rescan = now + self._rescan_interval
        try:
            links = self._scan()
        except Exception as exc:  # netlink hiccup: keep the last view, retry soon
            log.warning(
                "link scan failed (%s); keeping the last view and retrying in 1 s",
                exc,
                extra={"fields": {"event": "scan-failed", "reason": str(exc)}},
            )
            self._next_rescan = now + 1.0
            return
        self._links = links
        self._local_macs = frozenset(link.mac for link in links.values() if len(link.mac) == 6)
        if self._thread is not None:
            self._reconcile()
        for port in self._ports.values():
            if port.arp_fallback or port.ndp_fallback:
                port.retry_filters()
                self._next_rescan = min(self._next_rescan, now + 1.0)
                self._publish()
            if port.join_errors:
                port.retry_groups()
                self._next_rescan = min(self._next_rescan, now + 1.0)
                self._publish()

    # --------------------------------------------------------------------------------- reconciling

    def _resolve(self) -> tuple[dict[str, _StrSet], list[InterfaceProblem]]:
        """iface -> owned IPs, and the interface problems of explicit requests."""
        everywhere = eligible_for_all(self._links, self._exclude)
        per_iface: dict[str, _StrSet] = {}
        problems: list[InterfaceProblem] = []
        for ip, where in sorted(self._desired.items()):
            names: _StrSet = set()
            if isinstance(where, AllInterfaces):
                names.update(everywhere)
            else:
                for name in sorted(where):
                    link = self._links.get(name)
                    reason = "missing" if link is None else link.why_unusable()
                    if reason is None:
                        names.add(name)
                    else:
                        problems.append(InterfaceProblem(ip, name, reason=reason))
            for name in names:
                per_iface.setdefault(name, set()).add(ip)
        return per_iface, problems

    def _reconcile(self) -> None:
        per_iface, problems = self._resolve()
        now = time.monotonic()
        # Ports whose link vanished, changed identity or owns nothing any more: close first.
        for name in list(self._ports):
            port = self._ports[name]
            link = self._links.get(name)
            if name not in per_iface or link is None or link.index != port.index or link.mac != port.mac:
                self._close_port(name)
        for name, ips in sorted(per_iface.items()):
            link = self._links[name]
            existing = self._ports.get(name)
            if existing is not None:
                port = existing
            else:
                port = Port(
                    name,
                    link.index,
                    mac=link.mac,
                    counters=self.counters,
                    local_macs=lambda: self._local_macs,
                    on_conflict=self._conflict,
                    on_error=self._link_error,
                    max_arp_ips=self._max_arp,
                    max_ndp_ips=self._max_ndp,
                )
                self._ports[name] = port
            v4 = sorted(ip for ip in ips if ":" not in ip)
            v6 = sorted(ip for ip in ips if ":" in ip)
            acquired, released = self._update_port(port, v4, v6)
            self._register(port)
            for ip in sorted(acquired):
                self._takeover(port, ip, now)
            for ip in released:
                self._release(ip, name)
        for name in [n for n, p in self._ports.items() if not p.v4 and not p.v6]:
            self._close_port(name)
        sock_problems = [
            SocketProblem(ip, iface, reason=why)
            for (ip, iface), why in sorted(self._socket_problems.items())
            if iface in per_iface
        ]
        self._report_problems((*problems, *sock_problems))
        self._publish()

    def _update_port(self, port: Port, v4: list[str], v6: list[str]) -> tuple[_StrSet, _StrSet]:
        acquired: _StrSet = set()
        released: _StrSet = set()
        for key in [k for k in self._socket_problems if k[1] == port.name]:
            del self._socket_problems[key]
        family: Family
        for family, ips in (("ipv4", v4), ("ipv6", v6)):
            try:
                a, r = port.update(family, ips)
            except OSError as exc:  # no CAP_NET_RAW, link vanished between scan and bind, ...
                for ip in ips:
                    self._socket_problems[(ip, port.name)] = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "cannot answer %s on %s: %s",
                    family,
                    port.name,
                    exc,
                    extra={
                        "fields": {"event": "socket-failed", "iface": port.name, "family": family, "reason": str(exc)}
                    },
                )
                continue
            acquired |= a
            released |= r
        for gtext, err in port.join_errors.items():
            for ip in v6:
                self._socket_problems[(ip, port.name)] = f"join {gtext}: {err}"
        return acquired, released

    def _register(self, port: Port) -> None:
        assert self._sel is not None
        for sock, cb in ((port.arp_sock, port.read_arp), (port.ndp_sock, port.read_ndp)):
            if sock is None:
                continue
            try:
                self._sel.get_key(sock)
            except KeyError:
                self._sel.register(sock, selectors.EVENT_READ, cb)

    def _unregister(self, port: Port) -> None:
        assert self._sel is not None
        for sock in (port.arp_sock, port.ndp_sock):
            if sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(sock)

    def _close_port(self, name: str) -> None:
        port = self._ports.pop(name)
        released = sorted({*port.v4.values(), *port.v6.values()})
        self._unregister(port)
        port.close()
        for ip in released:
            self._release(ip, name)

    def _takeover(self, port: Port, ip: str, now: float) -> None:
        sent = port.announce(ip)
        log.info(
            "took over %s on %s (%d announcement frames)",
            ip,
            port.name,
            sent,
            extra={"fields": {"event": "takeover", "ip": ip, "iface": port.name, "count": sent}},
        )
        self._burst_started[(ip, port.name)] = now
        if self._burst_duration >= self._burst_interval:
            self._burst_seq += 1
            heapq.heappush(self._bursts, (now + self._burst_interval, self._burst_seq, ip, port.name, now))

    def _release(self, ip: str, iface: str) -> None:
        log.info("released %s on %s", ip, iface, extra={"fields": {"event": "release", "ip": ip, "iface": iface}})
        self._burst_started.pop((ip, iface), None)
        self.counters.forget(ip, iface)

    def _fire_bursts(self, now: float) -> None:
        while self._bursts and self._bursts[0][0] <= now:
            due, _, ip, iface, started = heapq.heappop(self._bursts)
            if self._burst_started.get((ip, iface)) != started:
                continue  # released or re-acquired since
            port = self._ports.get(iface)
            if port is None:
                continue
            port.announce(ip)
            nxt = due + self._burst_interval
            if nxt - started <= self._burst_duration + 1e-6:
                self._burst_seq += 1
                heapq.heappush(self._bursts, (nxt, self._burst_seq, ip, iface, started))

    def _reassert(self, now: float) -> None:
        """The re-assertions asked for since the last turn of the loop and those deferred to now, within their rate
        limit, of pairs this node answers for now."""
        with self._lock:
            asked, self._reasserts = self._reasserts, []
        for ip, iface in dict.fromkeys([*self._reasserted.due(now), *asked]):
            port = self._ports.get(iface)
            if port is None or (iface, ip) not in self._owned_pairs:
                continue  # not ours (any more) there
            if not self._reasserted.allow((ip, iface), now):
                continue  # goes out at the end of its interval
            sent = port.announce(ip)
            if not sent:
                continue
            self.counters.inc("reasserts", "ipv6" if ":" in ip else "ipv4", iface=iface, ip=ip)
            if self._reassert_limit.allow(now):
                more = self._reassert_limit.take_suppressed()
                log.info(
                    "re-asserted %s on %s, which another MAC claims (%d re-assertions not logged since the last line)",
                    ip,
                    iface,
                    more,
                    extra={"fields": {"event": "reassert", "ip": ip, "iface": iface, "count": more}},
                )

    def _refresh_tick(self, now: float) -> None:
        """This tick's share of the periodic refresh: the same frames as one burst step, for each pair due."""
        assert self._refresh is not None
        # A late tick is not made up (no catching-up burst): the next one is then a TICK from now.
        nxt = self._next_refresh + TICK
        self._next_refresh = nxt if nxt > now else now + TICK
        for iface, ip in self._refresh.tick(self._owned):
            port = self._ports.get(iface)
            if port is not None:
                port.announce(ip)

    # ------------------------------------------------------------------------------------ reporting

    def _emit(self, event: Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("the on_event callback failed", extra={"fields": {"event": "callback-failed"}})

    def _conflict(self, ip: str, iface: str, family: Family, mac: bytes) -> None:
        now = time.monotonic()
        if not self._conflict_last.allow((ip, iface, family, mac), now):
            return  # reported at the end of its interval (`_run`), unless released meanwhile
        mac_text = ":".join(f"{b:02x}" for b in mac)
        conflict = Conflict(ip, iface, family=family, mac=mac_text, at=time.time())
        with self._lock:  # status() copies the deque from other threads
            self._conflicts.append(conflict)
        if self._conflict_limit.due(now):
            self._report_suppressed()
        if not self._conflict_limit.allow(now):
            return
        log.warning(
            "conflict: %s on %s is also claimed by %s",
            ip,
            iface,
            mac_text,
            extra={"fields": {"event": "conflict", "ip": ip, "iface": iface, "family": family, "mac": mac_text}},
        )
        self._emit(conflict)

    def _report_suppressed(self) -> None:
        n = self._conflict_limit.take_suppressed()
        log.warning(
            "%d more conflict reports suppressed (at most %d per %.0f s; every conflict is counted in the metric)",
            n,
            CONFLICT_REPORT_BURST,
            CONFLICT_REPORT_WINDOW,
            extra={"fields": {"event": "conflicts-suppressed", "count": n}},
        )

    def _link_error(self, iface: str, exc: OSError) -> None:
        log.info(
            "link error on %s (%s); rescanning",
            iface,
            exc,
            extra={"fields": {"event": "link-error", "iface": iface, "reason": str(exc)}},
        )
        self._next_rescan = min(self._next_rescan, time.monotonic() + 0.05)

    def _report_problems(self, problems: tuple[InterfaceProblem | SocketProblem, ...]) -> None:
        old = set(self._problems)
        self._problems = problems
        for p in problems:
            if p not in old:
                log.warning(
                    "cannot announce %s on %s: %s",
                    p.ip,
                    p.iface,
                    p.reason,
                    extra={"fields": {"event": "interface-problem", "ip": p.ip, "iface": p.iface, "reason": p.reason}},
                )
                self._emit(p)

    def _publish(self) -> None:
        announcing: dict[str, _StrSet] = {}
        groups: dict[str, frozenset[str]] = {}
        fallback: _StrSet = set()
        for name, port in self._ports.items():
            for ip in (*port.v4.values(), *port.v6.values()):
                announcing.setdefault(ip, set()).add(name)
            if port.groups:
                groups[name] = port.groups
            if port.arp_fallback:
                fallback.add(f"{name}/ipv4")
            if port.ndp_fallback:
                fallback.add(f"{name}/ipv6")
        self._owned = sorted((iface, ip) for ip, ifaces in announcing.items() for iface in ifaces)
        self._owned_pairs = frozenset(self._owned)
        st = Status(
            desired=dict(self._desired),
            announcing={ip: frozenset(v) for ip, v in sorted(announcing.items())},
            problems=self._problems,
            groups=groups,
            fallback_filters=frozenset(fallback),
        )
        with self._lock:
            self._status = st
