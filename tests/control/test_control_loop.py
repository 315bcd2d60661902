"""The speaker's control loop (`l2guard.control.command.control_loop`): when it polls and reconciles.

The state source is a plain object handing out Views; the reconciler is the real one, its data plane replaced
by a recorder at its seam. The debounce is set far longer than any bound here, so that a test which finishes
within its bound shows that nothing waited for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping

import pytest

from l2core.model import EligibilitySettings
from l2core.parse import build_cluster
from l2core.plan import plan
from l2guard.control.command import control_loop
from l2guard.control.health import SpeakerStatus, StatusBoard
from l2guard.control.metrics import SpeakerMetrics
from l2guard.control.reconcile import Reconciler, View
from speaker.announcer import ALL_INTERFACES, AllInterfaces
from speaker.announcer import Status as DataPlaneStatus
from tests.builders import READY, advertisement, endpoints, excluded, node, pool, service

IP = "192.0.2.100"
BOUND = 10.0  # seconds: generous, only to catch a hang
LONG = 60.0  # a debounce no test waits for


def view(*, cp1_excluded: bool, synced: bool = True) -> View:
    """The captured three-node shape: cp-1 wins 192.0.2.100 unless it carries the exclude label."""
    docs = [
        excluded("cp-1") if cp1_excluded else node("cp-1"),
        node("worker-1"),
        node("worker-2"),
        service("web", [IP]),
        endpoints("web", {"worker-1": READY}),
        pool("lan", "192.0.2.0/24"),
        advertisement("l2", ipAddressPools=["lan"]),
    ]
    cluster = build_cluster(docs).cluster
    return View(plan(cluster, EligibilitySettings()), nodes=cluster.nodes, synced=synced, live=True)


class Source:
    """A state source: `poll()` hands out the View last put, once."""

    mode = "test"

    def __init__(self, debounce: float) -> None:
        self.wait = LONG
        self.debounce = debounce
        self._lock = threading.Lock()
        self._next: View | None = None
        self.polls = 0

    def put(self, v: View | None) -> None:
        with self._lock:
            self._next = v

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def report(self, key: str, event: object) -> bool:
        return True

    def poll(self) -> View | None:
        with self._lock:
            v, self._next = self._next, None
            self.polls += 1
            return v


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, object]]] = []
        self.changed = threading.Condition()

    def set(self, desired: Mapping[str, frozenset[str] | AllInterfaces]) -> DataPlaneStatus:
        with self.changed:
            self.calls.append((time.monotonic(), dict(desired)))
            self.changed.notify_all()
        return DataPlaneStatus(desired=dict(desired))

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.calls) >= count, BOUND), self.calls


class Loop:
    def __init__(self, debounce: float, clock: object = None, on_first_sync: object = None) -> None:
        self.source = Source(debounce)
        self.dataplane = Recorder()
        self.reconciler = Reconciler(
            node="cp-1",
            dataplane=self.dataplane,
            board=StatusBoard(SpeakerStatus(node="cp-1")),
            metrics=SpeakerMetrics(),
        )
        self.wake, self.stop = threading.Event(), threading.Event()
        kwargs = {} if clock is None else {"clock": clock}
        if on_first_sync is not None:
            kwargs["on_first_sync"] = on_first_sync
        self.thread = threading.Thread(
            target=control_loop,
            args=(self.source, self.reconciler, None),
            kwargs={"wake": self.wake, "stop": self.stop, **kwargs},
            daemon=True,
        )

    def change(self, *, cp1_excluded: bool) -> None:
        self.source.put(view(cp1_excluded=cp1_excluded))
        self.wake.set()


@pytest.fixture
def loops() -> Iterator[list[Loop]]:
    started: list[Loop] = []
    yield started
    for loop in started:
        loop.stop.set()
        loop.wake.set()
        loop.thread.join(BOUND)
        assert not loop.thread.is_alive()


def test_the_first_change_after_a_quiet_spell_is_reconciled_without_waiting_for_the_debounce(loops: list[Loop]) -> None:
    loop = Loop(debounce=LONG)
    loops.append(loop)
    loop.thread.start()
    loop.change(cp1_excluded=False)
    loop.dataplane.wait_for(1)  # within BOUND, far less than the debounce
    assert loop.dataplane.calls[0][1] == {IP: ALL_INTERFACES}


def test_a_burst_is_reconciled_once_after_the_debounce_with_its_last_state(loops: list[Loop]) -> None:
    debounce = 3.0
    loop = Loop(debounce=debounce)
    loops.append(loop)
    loop.thread.start()
    loop.change(cp1_excluded=False)
    loop.dataplane.wait_for(1)
    # The rest of the burst, at once: one reconcile for both changes, not before the debounce has passed.
    loop.change(cp1_excluded=True)
    loop.change(cp1_excluded=False)
    loop.change(cp1_excluded=True)
    loop.dataplane.wait_for(2)
    (first, _), (second, desired) = loop.dataplane.calls
    assert desired == {}  # the burst's last state: cp-1 excluded
    assert second - first >= debounce
    time.sleep(0.2)
    assert len(loop.dataplane.calls) == 2


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_poll_that_finds_nothing_new_does_not_delay_the_next_change(loops: list[Loop]) -> None:
    clock = Clock()
    loop = Loop(debounce=LONG, clock=clock)
    loops.append(loop)
    loop.thread.start()
    loop.change(cp1_excluded=False)
    loop.dataplane.wait_for(1)
    clock.now += LONG + 1  # a quiet spell
    loop.wake.set()  # woken with nothing new (a lease tick): polled, not reconciled
    deadline = time.monotonic() + BOUND
    while loop.source.polls < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    loop.change(cp1_excluded=True)
    loop.dataplane.wait_for(2)  # at once: the empty poll did not start a debounce window
    assert loop.dataplane.calls[1][1] == {}


def test_the_first_sync_hook_runs_once_after_the_first_synced_reconcile(loops: list[Loop]) -> None:
    calls: list[int] = []
    loop = Loop(debounce=0.0, on_first_sync=lambda: calls.append(len(loop.dataplane.calls)))
    loops.append(loop)
    loop.thread.start()
    loop.source.put(view(cp1_excluded=False, synced=False))
    loop.wake.set()
    loop.dataplane.wait_for(1)
    for i in range(3):
        loop.change(cp1_excluded=i % 2 == 0)
        loop.dataplane.wait_for(2 + i)
    assert calls == [2]  # after the second reconcile, the first of a synced View; once
