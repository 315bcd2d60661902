"""The probe loop (l2guard.control.probes) and its place in the reconcile step, with the prober replaced at its seam
by a recorder and the clock by a counter. Election order for 192.0.2.100 among worker-1..3: worker-1, worker-2,
worker-3 (tests/core/test_probing.py), so worker-2 backs worker-1 up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from l2core.model import EligibilitySettings
from l2core.plan import Plan, plan
from l2core.reporting import ServiceEvent
from l2guard.control.health import SpeakerStatus, StatusBoard
from l2guard.control.metrics import SpeakerMetrics
from l2guard.control.probes import ProbeLoop
from l2guard.control.reconcile import Reconciler, View
from speaker.announcer import ALL_INTERFACES, AllInterfaces, Conflict
from speaker.announcer import Status as DataPlaneStatus
from speaker.prober import Target
from tests.builders import READY, advertisement, cluster, endpoints, node, pool, service

IP = "192.0.2.100"
WORKERS = ("worker-1", "worker-2", "worker-3")


def the_plan() -> Plan:
    docs = [
        *(node(n) for n in WORKERS),
        service("web", [IP]),
        endpoints("web", dict.fromkeys(WORKERS, READY)),
        pool("lan", "192.0.2.0/24"),
        advertisement("l2", ipAddressPools=["lan"]),
    ]
    return plan(cluster(*docs), EligibilitySettings())


class FakeProber:
    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}
        self.probes: list[str] = []
        self.asked: list[tuple[str, list[bytes]]] = []
        self.can_send = True

    def set_targets(self, targets: Mapping[str, Target]) -> None:
        self.targets = dict(targets)

    def probe(self, owner: str) -> bool:
        self.probes.append(owner)
        return self.can_send

    def ask(self, owner: str, candidates: Iterable[bytes]) -> bool:
        self.asked.append((owner, sorted(candidates)))
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self.reasserts: list[tuple[str, str]] = []

    def set(self, desired: Mapping[str, frozenset[str] | AllInterfaces]) -> DataPlaneStatus:
        self.last = dict(desired)
        return DataPlaneStatus(desired=dict(desired), announcing={ip: frozenset({"eth0"}) for ip in desired})

    def reassert(self, ip: str, iface: str) -> None:
        self.reasserts.append((ip, iface))


def make_loop(
    node_name: str = "worker-2",
    *,
    then: Callable[[], None] = lambda: None,
    peer_macs: Mapping[str, frozenset[str]] | None = None,
) -> tuple[ProbeLoop, FakeProber, Clock, list[str], list[tuple[str, str]]]:
    """A loop for `node_name`; each change is recorded and then handed to `then` (the reconciler's hook)."""
    prober, clock = FakeProber(), Clock()
    changes: list[str] = []
    events: list[tuple[str, str]] = []

    def report(key: str, event: ServiceEvent) -> bool:
        events.append((key, event.message))
        return True

    def on_change() -> None:
        changes.append("changed")
        then()

    loop = ProbeLoop(
        node=node_name,
        prober=prober,
        interval=0.3,
        misses=3,
        budget=50.0,
        metrics=SpeakerMetrics(),
        on_change=on_change,
        report=report,
        peer_macs=lambda: peer_macs or {},
        clock=clock,
    )
    return loop, prober, clock, changes, events


def ticks(loop: ProbeLoop, clock: Clock, n: int) -> None:
    for _ in range(n):
        clock.now += 0.3
        for watch, change in loop.tick():
            loop._changed(watch, change)  # what the loop's thread does with them


def test_the_runner_up_probes_the_owner_and_takes_over_after_three_silent_periods() -> None:
    loop, prober, clock, changes, events = make_loop()
    loop.follow(the_plan())
    assert prober.targets == {"worker-1": Target(IP, frozenset({IP}))}
    ticks(loop, clock, 3)
    assert prober.probes == ["worker-1"] * 3 and loop.held() == {}
    ticks(loop, clock, 1)
    assert loop.held() == {IP: None}
    assert changes == ["changed"]
    assert events == [("default/web", "node worker-1 stopped answering ARP for 192.0.2.100; worker-2 took over")]


def test_an_answer_yields_at_once() -> None:
    loop, _, clock, changes, events = make_loop()
    loop.follow(the_plan())
    ticks(loop, clock, 4)
    loop.on_heard("worker-1")
    assert loop.held() == {}
    assert changes == ["changed", "changed"]
    assert events[-1] == ("default/web", "node worker-1 answers ARP for 192.0.2.100 again; worker-2 yielded")


def test_answers_in_time_keep_the_owner() -> None:
    loop, _, clock, changes, _ = make_loop()
    loop.follow(the_plan())
    for _ in range(10):
        ticks(loop, clock, 1)
        loop.on_heard("worker-1")
    assert loop.held() == {} and changes == []


def test_without_a_mac_nothing_is_taken_over() -> None:
    loop, prober, clock, changes, _ = make_loop()
    prober.can_send = False
    loop.follow(the_plan())
    ticks(loop, clock, 10)
    assert loop.held() == {} and changes == []


def test_the_owner_and_the_third_node_probe_nobody() -> None:
    for name in ("worker-1", "worker-3"):
        loop, prober, clock, _, _ = make_loop(name)
        loop.follow(the_plan())
        ticks(loop, clock, 5)
        assert prober.targets == {} and prober.probes == []


def reconciler(loop: ProbeLoop, dataplane: Recorder, posted: list[ServiceEvent]) -> Reconciler:
    """worker-2's reconciler over `loop`; the loop's changes must be routed to its `on_probe_change`."""
    return Reconciler(
        node="worker-2",
        dataplane=dataplane,
        board=StatusBoard(SpeakerStatus(node="worker-2")),
        metrics=SpeakerMetrics(),
        report=lambda key, event: posted.append(event) or True,
        probes=loop,
    )


def test_the_reconciler_announces_a_takeover_beside_the_plan_and_drops_it_on_yield() -> None:
    hook: list[Reconciler] = []
    loop, _, clock, _, _ = make_loop(then=lambda: hook[0].on_probe_change())
    dp, posted = Recorder(), []
    r = reconciler(loop, dp, posted)
    hook.append(r)
    p = the_plan()
    r.reconcile(View(p))
    assert dp.last == {}
    ticks(loop, clock, 4)
    assert r.pending_events()  # the takeover asks for a reconcile
    r.reconcile(View(p))
    assert dp.last == {IP: ALL_INTERFACES}
    # The owner's answers arrive at our responder as a conflict: expected, not reported.
    r.on_dataplane_event(Conflict(IP, "eth0", family="ipv4", mac="02:00:00:00:0a:01", at=0.0))
    r.reconcile(View(p))
    assert [e.reason for e in posted] == []
    assert dp.reasserts == []  # the runner-up holding a takeover never answers the owner's claim
    loop.on_heard("worker-1")
    r.reconcile(View(p))
    assert dp.last == {}


def test_cut_off_from_the_api_a_speaker_takes_nothing_over() -> None:
    loop, _, clock, _, _ = make_loop()
    dp, posted = Recorder(), []
    r = reconciler(loop, dp, posted)
    p = the_plan()
    r.reconcile(View(p, live=True))
    ticks(loop, clock, 4)
    r.reconcile(View(p, live=True, cut_off_since=1.0))
    assert dp.last == {}


def test_before_the_owner_is_heard_its_published_macs_are_asked_and_a_silent_owner_is_reported() -> None:
    published = {"worker-1": frozenset({"02:00:00:00:0a:01"})}
    loop, prober, clock, _, events = make_loop(peer_macs=published)
    prober.can_send = False  # no MAC heard on the wire yet
    loop.follow(the_plan())
    ticks(loop, clock, 4)
    assert prober.asked == [("worker-1", [bytes.fromhex("02000000 0a01".replace(" ", ""))])] * 4
    assert events == [
        (
            "default/web",
            "node worker-1 does not answer ARP for 192.0.2.100 at its MACs 02:00:00:00:0a:01; worker-2 takes nothing "
            "over (is its speaker running, on the right interface?)",
        )
    ]
    assert loop.held() == {}  # a candidate's silence takes nothing over
    ticks(loop, clock, 10)
    assert len(events) == 1 and loop.held() == {}
