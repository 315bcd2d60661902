"""Probe takeover decisions: which owners a runner-up watches, the probe budget, and the miss/answer state machine.

Election orders used below, from sha256(node + "#" + ip) (worked out once by hand with hashlib, see
tests/core/election_reference.py for the rule):
  192.0.2.100    worker-1, worker-2, worker-3
  192.0.2.101    worker-2, worker-3, worker-1
  192.0.2.102    worker-2, worker-1, worker-3
  2001:db8::100  worker-1, worker-2, worker-3
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from l2core.model import EligibilitySettings
from l2core.plan import Plan, Planner, plan
from l2core.probing import (
    Change,
    ProbeState,
    RunnerUps,
    Watch,
    after_answer,
    after_tick,
    answering_again,
    format_macs,
    not_answering,
    parse_macs,
    probe_period,
    runner_up,
    silent,
    watches,
)
from l2core.reporting import EventType
from tests.builders import EXCLUDE, advertisement, cluster, endpoints, node, pool, service

WORKERS = ["worker-1", "worker-2", "worker-3"]
LAN = [
    pool("lan", "192.0.2.100-192.0.2.120", "2001:db8::100-2001:db8::120"),
    advertisement("lan", ipAddressPools=["lan"]),
]


def make(*objects: Any, excluded: tuple[str, ...] = ()) -> Plan:
    nodes = [node(n, {EXCLUDE: ""}) if n in excluded else node(n) for n in WORKERS]
    return plan(cluster(*nodes, *objects, *LAN), EligibilitySettings())


def svc(name: str, *ips: str) -> list[Any]:
    return [service(name, list(ips)), endpoints(name, WORKERS)]


def test_the_runner_up_watches_the_owner_of_each_ip_it_backs_up() -> None:
    p = make(*svc("web", "192.0.2.100"), *svc("db", "192.0.2.101"), *svc("api", "192.0.2.102"))
    assert watches(p, "worker-2") == {
        "worker-1": Watch("worker-1", "192.0.2.100", {"192.0.2.100": None}, ("default/web",))
    }
    assert watches(p, "worker-1") == {
        "worker-2": Watch("worker-2", "192.0.2.102", {"192.0.2.102": None}, ("default/api",))
    }
    assert watches(p, "worker-3") == {
        "worker-2": Watch("worker-2", "192.0.2.101", {"192.0.2.101": None}, ("default/db",))
    }


def test_one_watch_per_owner_probing_an_ipv4_vip_when_there_is_one() -> None:
    p = make(*svc("web", "192.0.2.100"), *svc("v6", "2001:db8::100"))
    assert watches(p, "worker-2") == {
        "worker-1": Watch(
            "worker-1",
            "192.0.2.100",
            {"192.0.2.100": None, "2001:db8::100": None},
            ("default/v6", "default/web"),
        )
    }


def test_an_owner_with_only_ipv6_vips_is_probed_with_ndp() -> None:
    w = watches(make(*svc("v6", "2001:db8::100")), "worker-2")["worker-1"]
    assert (w.target, w.protocol) == ("2001:db8::100", "NDP")
    assert watches(make(*svc("web", "192.0.2.100")), "worker-2")["worker-1"].protocol == "ARP"


def test_a_dual_stack_service_is_taken_over_whole() -> None:
    p = make(*svc("dual", "192.0.2.100", "2001:db8::101"))
    assert watches(p, "worker-2")["worker-1"].takeover == {"192.0.2.100": None, "2001:db8::101": None}


def test_an_excluded_node_backs_nobody_up_and_the_next_one_does() -> None:
    p = make(*svc("web", "192.0.2.100"), excluded=("worker-2",))
    assert watches(p, "worker-2") == {}
    assert watches(p, "worker-3") == {
        "worker-1": Watch("worker-1", "192.0.2.100", {"192.0.2.100": None}, ("default/web",))
    }


def test_the_owner_and_the_third_node_watch_nothing() -> None:
    p = make(*svc("web", "192.0.2.100"))
    assert watches(p, "worker-1") == {}
    assert watches(p, "worker-3") == {}


def test_a_service_nobody_announces_is_watched_by_nobody() -> None:
    p = make(*svc("web", "192.0.2.100"), excluded=tuple(WORKERS))
    assert all(watches(p, n) == {} for n in WORKERS)


def test_a_runner_up_the_planner_forgot_is_elected_again() -> None:
    p = make(*svc("web", "192.0.2.100"), *svc("db", "192.0.2.101"))
    forgotten = replace(p, services={k: replace(sp, runner_up=None) for k, sp in p.services.items()})
    assert runner_up(forgotten, "default/web") == "worker-2"
    assert runner_up(forgotten, "default/db") == "worker-3"
    assert watches(forgotten, "worker-2") == watches(p, "worker-2")


def test_a_service_with_one_candidate_has_no_runner_up() -> None:
    p = make(*svc("web", "192.0.2.100"), excluded=("worker-2", "worker-3"))
    assert runner_up(p, "default/web") is None
    forgotten = replace(p, services={k: replace(sp, runner_up=None) for k, sp in p.services.items()})
    assert runner_up(forgotten, "default/web") is None


@pytest.mark.parametrize(
    ("owners", "expected"),
    [(0, 0.3), (1, 0.3), (15, 0.3), (16, 0.32), (30, 0.6), (49, 0.98)],
)
def test_the_probe_period_stretches_past_the_budget(owners: int, expected: float) -> None:
    assert probe_period(owners, interval=0.3, budget=50.0) == pytest.approx(expected)


def run(state: ProbeState, steps: str, *, misses: int = 3) -> tuple[ProbeState, list[Change | None]]:
    """Drive the state machine: 't' a tick with a probe sent, 'n' a tick without one (no MAC), 'a' an answer."""
    changes: list[Change | None] = []
    for step in steps:
        if step == "a":
            state, change = after_answer(state)
        else:
            state, change = after_tick(state, misses=misses, sent=step == "t")
        changes.append(change)
    return state, changes


def test_three_unanswered_probes_take_over_at_the_third_miss() -> None:
    state, changes = run(ProbeState(), "tttt")
    assert changes == [None, None, None, Change.TAKEOVER]
    assert state == ProbeState(misses=3, pending=True, taken_over=True, answered_once=False)


def test_an_answer_between_probes_resets_the_misses() -> None:
    _, changes = run(ProbeState(), "ttatttatt")
    assert changes == [None, None, None, None, None, None, None, None, None]


def test_a_takeover_happens_once_and_the_next_answer_yields() -> None:
    state, changes = run(ProbeState(), "tttttta")
    assert changes == [None, None, None, Change.TAKEOVER, None, None, Change.YIELD]
    assert state == ProbeState(misses=0, pending=False, taken_over=False, answered_once=True)


def test_without_a_mac_to_probe_nothing_counts_as_missed() -> None:
    state, changes = run(ProbeState(), "nnnnnn")
    assert changes == [None] * 6
    assert state == ProbeState()


def test_the_miss_count_is_configurable() -> None:
    _, changes = run(ProbeState(), "tt", misses=1)
    assert changes == [None, Change.TAKEOVER]


def test_the_events_say_who_stopped_answering_and_who_took_over() -> None:
    w = Watch("worker-1", "192.0.2.100", {"192.0.2.100": None}, ("default/web",))
    event = not_answering(w, "worker-2")
    assert (event.type, event.reason) == (EventType.WARNING, "OwnerNotAnswering")
    assert event.message == "node worker-1 stopped answering ARP for 192.0.2.100; worker-2 took over"
    v6 = Watch("worker-1", "2001:db8::100", {"2001:db8::100": None}, ("default/v6",))
    assert not_answering(v6, "worker-2").message == (
        "node worker-1 stopped answering NDP for 2001:db8::100; worker-2 took over"
    )
    back = answering_again(w, "worker-2")
    assert (back.type, back.message) == (
        EventType.NORMAL,
        "node worker-1 answers ARP for 192.0.2.100 again; worker-2 yielded",
    )


def test_published_macs_are_written_sorted_and_read_back_bounded() -> None:
    assert format_macs(["02:00:00:00:0B:01", "02:00:00:00:0a:01"]) == "02:00:00:00:0a:01,02:00:00:00:0b:01"
    assert parse_macs("02:00:00:00:0a:01, 02:00:00:00:0B:01") == {"02:00:00:00:0a:01", "02:00:00:00:0b:01"}
    # multicast (odd first octet), all zero, malformed: ignored; any non-text value: nothing
    assert parse_macs("01:00:5e:00:00:01,00:00:00:00:00:00,02:00:00:00:0a,zz:00:00:00:00:01,") == frozenset()
    assert parse_macs(None) == frozenset() and parse_macs(["02:00:00:00:0a:01"]) == frozenset()
    many = ",".join(f"02:00:00:00:00:{i:02x}" for i in range(40))
    assert parse_macs(many) == {f"02:00:00:00:00:{i:02x}" for i in range(16)}
    assert parse_macs("x" * 10_000_000) == frozenset()


def test_an_owner_never_heard_at_its_published_macs_is_reported_silent_once_and_never_taken_over() -> None:
    state = ProbeState()
    changes = []
    for _ in range(6):
        state, change = after_tick(state, misses=3, sent=False, asked=True)
        changes.append(change)
    assert changes == [None, None, None, Change.SILENT, None, None]
    assert state == ProbeState(asked=6, silent=True)
    state, change = after_answer(state)
    assert (state, change) == (ProbeState(answered_once=True), None)


def test_an_owner_heard_once_is_never_silent() -> None:
    state, _ = after_answer(ProbeState())
    for _ in range(6):
        state, change = after_tick(state, misses=3, sent=False, asked=True)
        assert change is None
    assert not state.silent


def test_the_self_test_event_names_the_macs_tried() -> None:
    w = Watch("worker-1", "192.0.2.100", {"192.0.2.100": None}, ("default/web",))
    assert silent(w, "worker-2", ["02:00:00:00:0b:01", "02:00:00:00:0a:01"]).message == (
        "node worker-1 does not answer ARP for 192.0.2.100 at its MACs 02:00:00:00:0a:01, 02:00:00:00:0b:01; "
        "worker-2 takes nothing over (is its speaker running, on the right interface?)"
    )


def test_runner_ups_the_planner_forgets_as_nodes_come_and_go_match_a_full_election() -> None:
    """A long-running speaker's view: one Planner changed node by node, the runner-ups it forgets kept in one
    RunnerUps per node; after every change each node watches what a one-shot plan of the same cluster says."""
    names = [f"worker-{i}" for i in range(1, 7)]
    ips = [f"192.0.2.{100 + i}" for i in range(20)]
    docs = [node(n) for n in names]
    docs += [d for i, ip in enumerate(ips) for d in (service(f"s{i}", [ip]), endpoints(f"s{i}", names))]
    docs += LAN
    planner = Planner(cluster(*docs), EligibilitySettings())
    kept = {n: RunnerUps() for n in names}
    steps = [("worker-1", True), ("worker-2", True), ("worker-1", False), ("worker-3", True), ("worker-2", False)]
    steps += [("worker-4", True), ("worker-3", False), ("worker-4", False)]
    out: set[str] = set()
    forgotten = 0
    for name, leave in steps:
        out = out | {name} if leave else out - {name}
        planner.upsert_node(cluster(node(name, {EXCLUDE: ""}) if leave else node(name)).nodes[name])
        forgotten = max(forgotten, sum(sp.runner_up is None for sp in planner.plan.services.values()))
        now = [node(n, {EXCLUDE: ""}) if n in out else node(n) for n in names]
        fresh = plan(cluster(*now, *docs[len(names) :]), EligibilitySettings())
        for n in names:
            assert watches(planner.plan, n, kept=kept[n]) == watches(fresh, n), (name, leave, n)
    assert forgotten > 0  # the incremental path did forget some: the kept elections were exercised
