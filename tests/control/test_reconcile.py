"""The reconcile step: which IPs the data plane is told to announce on each speaker, and what is said about it.

The data plane is replaced at its seam (`Announcer.set()`) by a recorder, as the control-plane issue asks; the
plans come from the real core over clusters built from plain objects. Expected winners are literal: for
192.0.2.100 the election order is cp-1, worker-1, worker-2 (tests/core/test_election.py's hashlib vectors).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from l2core.model import Cluster, EligibilitySettings
from l2core.parse import build_cluster
from l2core.plan import plan
from l2core.reporting import ServiceEvent
from l2guard.control.health import SpeakerStatus, StatusBoard
from l2guard.control.metrics import SpeakerMetrics
from l2guard.control.reconcile import Reconciler, View
from l2guard.view import StaleObject
from speaker.announcer import ALL_INTERFACES, AllInterfaces, Conflict
from speaker.announcer import Status as DataPlaneStatus
from tests.builders import READY, advertisement, endpoints, excluded, node, pool, service

IP = "192.0.2.100"
NODES = ("cp-1", "worker-1", "worker-2")


class Recorder:
    """The data plane's seam: records every desired state it is given and answers on eth0 for each IP."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def set(self, desired: Mapping[str, frozenset[str] | AllInterfaces]) -> DataPlaneStatus:
        self.calls.append(dict(desired))
        return DataPlaneStatus(desired=dict(desired), announcing={ip: frozenset({"eth0"}) for ip in desired})

    @property
    def last(self) -> dict[str, Any]:
        return self.calls[-1]


class Speaker:
    """One node's reconciler with its recorder, status board and the Events it would post."""

    def __init__(self, name: str, *, dry_run: bool = False) -> None:
        self.dataplane = Recorder()
        self.board = StatusBoard(SpeakerStatus(node=name))
        self.events: list[tuple[str, ServiceEvent]] = []
        self.hold_back = False
        self.reconciler = Reconciler(
            node=name,
            dataplane=None if dry_run else self.dataplane,
            board=self.board,
            metrics=SpeakerMetrics(),
            report=self.report,
        )

    def report(self, key: str, event: ServiceEvent) -> bool:
        self.events.append((key, event))
        return not self.hold_back  # a poster out of tokens takes nothing

    def run(self, docs: list[dict[str, Any]], **view: Any) -> None:
        parsed = build_cluster(docs)
        assert parsed.problems == ()
        p = plan(parsed.cluster, EligibilitySettings(), alive=view.get("alive"))
        self.reconciler.reconcile(View(p, nodes=parsed.cluster.nodes, **view))


def cluster(*nodes: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *nodes,
        service("web", [IP]),
        endpoints("web", {"worker-1": READY}),
        pool("lan", "192.0.2.0/24"),
        advertisement("l2", ipAddressPools=["lan"]),
    ]


def speakers() -> dict[str, Speaker]:
    return {name: Speaker(name) for name in NODES}


def test_the_winner_announces_and_the_others_announce_nothing() -> None:
    fleet = speakers()
    for s in fleet.values():
        s.run(cluster(*(node(n) for n in NODES)))
    assert fleet["cp-1"].dataplane.last == {IP: ALL_INTERFACES}
    assert fleet["worker-1"].dataplane.last == {} and fleet["worker-2"].dataplane.last == {}
    assert [(k, e.reason, e.message) for k, e in fleet["cp-1"].events] == [
        ("default/web", "Announcing", "announcing 192.0.2.100 from node cp-1 on all interfaces")
    ]
    assert fleet["worker-1"].events == [] and fleet["worker-2"].events == []
    status = fleet["cp-1"].board.current
    assert [(a.ip, a.interfaces) for a in status.announced] == [(IP, ("eth0",))]
    assert status.last_reconcile is not None and status.last_reconcile.added == (IP,)


def test_the_exclude_label_on_the_owner_moves_the_ip_and_the_new_owner_says_so_once() -> None:
    fleet = speakers()
    for s in fleet.values():
        s.run(cluster(*(node(n) for n in NODES)))
    labelled = cluster(excluded("cp-1"), node("worker-1"), node("worker-2"))
    removed = []
    for _ in range(2):  # the second round changes nothing and says nothing again
        for s in fleet.values():
            s.run(labelled)
        done = fleet["cp-1"].board.current.last_reconcile
        assert done is not None
        removed.append(done.removed)
    assert removed == [(IP,), ()]
    assert fleet["cp-1"].dataplane.last == {}
    assert fleet["worker-1"].dataplane.last == {IP: ALL_INTERFACES}
    assert fleet["worker-2"].dataplane.last == {}
    assert [e.message for _, e in fleet["worker-1"].events] == [
        "announcing 192.0.2.100 from node worker-1 on all interfaces"
    ]


def test_the_only_node_excluded_means_nobody_and_one_warning_from_one_speaker(caplog: pytest.LogCaptureFixture) -> None:
    fleet = {"cp-1": Speaker("cp-1"), "worker-1": Speaker("worker-1")}
    docs = cluster(excluded("cp-1"), excluded("worker-1"))
    with caplog.at_level(logging.WARNING, logger="l2guard.control.reconcile"):
        for _ in range(3):
            for s in fleet.values():
                s.run(docs)
    assert all(s.dataplane.last == {} for s in fleet.values())
    warnings = [(name, e) for name, s in fleet.items() for _, e in s.events]
    # cp-1 ranks first by hash for 192.0.2.100 among the alive speakers: it alone reports.
    assert [(name, e.type.value, e.reason) for name, e in warnings] == [("cp-1", "Warning", "NoEligibleNode")]
    assert warnings[0][1].message.startswith(
        "no eligible node for 192.0.2.100: cp-1, worker-1 excluded by label "
        "node.kubernetes.io/exclude-from-external-load-balancers"
    )
    lines = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "no-announcer"]
    assert len(lines) == 2  # once per speaker, not once per reconcile
    assert all(r.levelno == logging.WARNING and r.getMessage() == "no node announces default/web" for r in lines)
    assert all(r.fields["reason"] == warnings[0][1].message for r in lines)  # type: ignore[attr-defined]


def test_fail_static_keeps_what_was_announced_and_yields_an_ip_another_node_claims() -> None:
    s = Speaker("cp-1")
    docs = cluster(*(node(n) for n in NODES))
    s.run(docs)
    assert s.dataplane.last == {IP: ALL_INTERFACES}
    # Cut off, and the stale plan now says cp-1 is excluded: keep announcing (the view is stale, not the node).
    s.run(cluster(excluded("cp-1"), node("worker-1"), node("worker-2")), cut_off_since=1000.0, live=True)
    assert s.dataplane.last == {IP: ALL_INTERFACES}
    assert s.board.current.api is not None and s.board.current.api.cut_off_since == 1000.0
    # Another node claims the IP on the wire while we are cut off: it holds the fresher view, so we yield.
    s.reconciler.on_dataplane_event(Conflict(IP, "eth0", family="ipv4", mac="02:00:00:00:0b:01", at=1001.0))
    s.run(docs, cut_off_since=1000.0, live=True)
    assert s.dataplane.last == {}
    assert [e.reason for _, e in s.events][-1] == "IPConflict"
    # Back in contact: the plan decides again.
    s.run(docs, live=True)
    assert s.dataplane.last == {IP: ALL_INTERFACES}


def test_before_the_first_sync_nothing_changes() -> None:
    s = Speaker("cp-1")
    s.run(cluster(*(node(n) for n in NODES)), synced=False)
    assert s.dataplane.last == {} and s.events == []
    assert s.board.current.synced_since is None


def test_dry_run_computes_and_shows_everything_but_sends_nothing() -> None:
    s = Speaker("cp-1", dry_run=True)
    s.run(cluster(*(node(n) for n in NODES)))
    assert s.dataplane.calls == []
    status = s.board.current
    assert status.dry_run and [(a.ip, a.interfaces) for a in status.announced] == [(IP, ())]
    assert [e.reason for _, e in s.events] == ["Announcing"]


def test_a_speaker_not_alive_is_not_elected_and_liveness_is_shown() -> None:
    s = Speaker("worker-1")
    s.run(cluster(*(node(n) for n in NODES)), alive=frozenset({"worker-1", "worker-2"}))
    assert s.dataplane.last == {IP: ALL_INTERFACES}  # cp-1 would win, but its speaker does not run
    assert s.board.current.peers_alive == ("worker-1", "worker-2")


def test_an_event_the_poster_held_back_is_offered_again_until_it_is_taken() -> None:
    """An Event refused by the rate limit counted as said and was never posted (found in review)."""
    s = Speaker("cp-1")
    s.hold_back = True
    docs = cluster(*(node(n) for n in NODES))
    s.run(docs)
    s.hold_back = False
    s.run(docs)
    s.run(docs)
    assert [e.reason for _, e in s.events] == ["Announcing", "Announcing"]  # refused once, then taken once


def test_file_mode_shows_every_node_as_a_peer_alive() -> None:
    s = Speaker("cp-1")
    s.run(cluster(*(node(n) for n in NODES)))
    assert s.board.current.peers_alive == NODES


def test_a_stale_object_is_warned_about_once_per_problem_by_its_reporter_and_said_valid_again() -> None:
    """worker-2 reports on IPAddressPool metallb-system/lan among cp-1, worker-1, worker-2 (tests/core/
    test_reporting.py's hashlib vectors); the others say nothing."""
    docs = cluster(node("cp-1"), node("worker-1"), node("worker-2"))
    parsed = build_cluster(docs)
    p = plan(parsed.cluster, EligibilitySettings())
    said: dict[str, list[tuple[str, str, str, ServiceEvent]]] = {n: [] for n in NODES}
    reconcilers = {
        n: Reconciler(
            node=n,
            dataplane=Recorder(),
            board=StatusBoard(SpeakerStatus(node=n)),
            metrics=SpeakerMetrics(),
            report_object=lambda kind, key, uid, event, n=n: said[n].append((kind, key, uid, event)) is None,
            clock=lambda: 1_796_140_800.0,
        )
        for n in NODES
    }
    key = ("IPAddressPool", "metallb-system/lan")

    def run(stale: dict[tuple[str, str], StaleObject], cluster: Cluster = parsed.cluster) -> None:
        for r in reconcilers.values():
            r.reconcile(View(p, nodes=parsed.cluster.nodes, stale=stale, cluster=cluster, live=True))

    bad = StaleObject(*key, "spec.addresses[0]: bad", since=5.0, kept=True, uid="uid-lan")
    run({key: bad})
    run({key: bad})  # the same problem again: nothing new to say
    worse = StaleObject(*key, "spec.addresses[0]: worse", since=5.0, kept=True, uid="uid-lan")
    run({key: worse})
    run({})  # valid again (the pool is in the cluster)
    assert said["cp-1"] == said["worker-1"] == []
    assert [(kind, k, uid, e.type.value, e.reason) for kind, k, uid, e in said["worker-2"]] == [
        ("IPAddressPool", "metallb-system/lan", "uid-lan", "Warning", "InvalidObject"),
        ("IPAddressPool", "metallb-system/lan", "uid-lan", "Warning", "InvalidObject"),
        ("IPAddressPool", "metallb-system/lan", "uid-lan", "Normal", "ValidAgain"),
    ]
    assert [e.message.split(": ", 1)[1] for *_, e in said["worker-2"][:2]] == [
        "spec.addresses[0]: bad; its last valid version is still in use (correct the object: kubectl edit "
        "ipaddresspool lan -n metallb-system)",
        "spec.addresses[0]: worse; its last valid version is still in use (correct the object: kubectl edit "
        "ipaddresspool lan -n metallb-system)",
    ]
    assert said["worker-2"][0][3].message.startswith(
        "IPAddressPool metallb-system/lan is invalid since 2026-12-01T16:00:00Z"
    )
    # Stale again, then deleted: no Event on a gone object.
    run({key: bad})
    run({}, Cluster())
    assert [e.reason for *_, e in said["worker-2"]][3:] == ["InvalidObject"]
