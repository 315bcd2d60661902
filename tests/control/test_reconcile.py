"""The reconcile step: which IPs the data plane is told to announce on each speaker, and what is said about it.

The data plane is replaced at its seam (`Announcer.set()`) by a recorder, as the control-plane issue asks; the
plans come from the real core over clusters built from plain objects. Expected winners are literal: for
192.0.2.100 the election order is cp-1, worker-1, worker-2 (tests/core/test_election.py's hashlib vectors).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import hypothesis
import hypothesis.strategies
import pytest

from l2core.model import EXCLUDE_LABEL, Cluster, EligibilitySettings
from l2core.parse import build_cluster
from l2core.plan import Plan, plan
from l2core.reporting import ServiceEvent
from l2guard.control.health import SpeakerStatus, StatusBoard
from l2guard.control.metrics import SpeakerMetrics
from l2guard.control.reconcile import Reconciler, View
from l2guard.view import ClusterView, StaleObject
from speaker.announcer import ALL_INTERFACES, AllInterfaces, Conflict
from speaker.announcer import Status as DataPlaneStatus
from tests.builders import READY, advertisement, endpoints, excluded, node, pool, service
from tests.kube.scripts import speaker_lease

IP = "192.0.2.100"
NODES = ("cp-1", "worker-1", "worker-2")


class Recorder:
    """The data plane's seam: records every desired state it is given and answers on eth0 for each IP, and the
    re-assertions asked for."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.reasserts: list[tuple[str, str]] = []

    def set(self, desired: Mapping[str, frozenset[str] | AllInterfaces]) -> DataPlaneStatus:
        self.calls.append(dict(desired))
        return DataPlaneStatus(desired=dict(desired), announcing={ip: frozenset({"eth0"}) for ip in desired})

    def reassert(self, ip: str, iface: str) -> None:
        self.reasserts.append((ip, iface))

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
    assert s.dataplane.reasserts == []  # a speaker cut off yields: it says nothing more on the wire
    # Back in contact: the plan decides again.
    s.run(docs, live=True)
    assert s.dataplane.last == {IP: ALL_INTERFACES}


def test_the_owner_in_contact_keeps_an_ip_another_mac_claims_and_reasserts_it_on_that_interface() -> None:
    s = Speaker("cp-1")
    docs = cluster(*(node(n) for n in NODES))
    s.run(docs, live=True)
    for iface in ("eth0", "eth1"):
        s.reconciler.on_dataplane_event(Conflict(IP, iface, family="ipv4", mac="02:00:00:00:0b:01", at=1.0))
    s.run(docs, live=True)
    assert s.dataplane.last == {IP: ALL_INTERFACES}  # kept
    assert s.dataplane.reasserts == [(IP, "eth0"), (IP, "eth1")]
    assert [e.reason for _, e in s.events][-2:] == ["IPConflict", "IPConflict"]  # still reported as a conflict
    s.run(docs, live=True)
    assert len(s.dataplane.reasserts) == 2  # one per claim seen, not per reconcile


def test_a_claim_on_an_ip_this_node_does_not_own_is_not_reasserted() -> None:
    s = Speaker("worker-1")  # cp-1 owns 192.0.2.100
    docs = cluster(*(node(n) for n in NODES))
    s.run(docs, live=True)
    s.reconciler.on_dataplane_event(Conflict(IP, "eth0", family="ipv4", mac="02:00:00:00:0a:01", at=1.0))
    s.run(docs, live=True)
    assert s.dataplane.last == {} and s.dataplane.reasserts == []


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


# ----- visiting only what changed (issue 8, reaction benchmark) ----------------------------------------------------
# Live mode hands the reconciler one Planner's plans, which know what was replanned in between; these tests drive
# it from a ClusterView as the live source does and check it says exactly what a walk over every service says.


class Lines(logging.Handler):
    """The reconciler's "no node announces" WARNING lines: (service, reason)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        if fields.get("event") == "no-announcer":
            self.lines.append((fields["service"], fields["reason"]))

    def take(self) -> list[tuple[str, str]]:
        out, self.lines = sorted(self.lines), []
        return out


def live_view_of(view: ClusterView) -> View:
    """What `LiveState.poll()` hands the reconciler (connected, synced)."""
    snap = view.snapshot
    return View(snap.plan, nodes=snap.cluster.nodes, alive=snap.alive, synced=snap.synced, live=True)


def walked_whole(v: View) -> View:
    """The same View with a plan that has no history: the reconciler walks every service, as it does in file mode."""
    p = v.plan
    return dataclasses.replace(v, plan=Plan(p.settings, p.node_reasons, p.selections, p.services))


def released(name: str, rv: int) -> dict[str, Any]:
    """`name`'s speaker Lease as a stopping speaker leaves it (no holder)."""
    lease = speaker_lease(name, str(rv), duration=1)
    del lease["spec"]["holderIdentity"]
    return lease


def listed_view(docs: list[dict[str, Any]], leases: list[dict[str, Any]]) -> ClusterView:
    view = ClusterView(EligibilitySettings())
    for kind in ("Node", "Service", "EndpointSlice", "IPAddressPool", "L2Advertisement"):
        view.replace_kind(kind, [d for d in docs if d["kind"] == kind])
    view.replace_kind("Lease", leases)
    return view


@hypothesis.settings(max_examples=60, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(hypothesis.strategies.randoms(use_true_random=False))
def test_what_a_speaker_says_from_the_changes_equals_what_it_says_from_every_service(rnd: Any) -> None:
    names = ["n0", "n1", "n2", "n3"]
    ips = ["192.0.2.100", "192.0.2.101", "192.0.2.102", "198.51.100.7"]  # the last one is in no pool: nobody

    def a_node(name: str) -> dict[str, Any]:
        labels = {"zone": rnd.choice("ab")}
        if rnd.random() < 0.3:
            labels[EXCLUDE_LABEL] = ""
        if rnd.random() < 0.3:
            labels["rack"] = "fast"
        doc = node(name, labels, unavailable=rnd.random() < 0.1)
        if rnd.random() < 0.2:
            doc["spec"] = {"unschedulable": True}  # cordoned: explain's fixes never say to remove its label
        return doc

    def a_service(i: int) -> dict[str, Any]:
        return service(f"s{i}", [rnd.choice(ips)], local=rnd.random() < 0.3, labels={"tier": rnd.choice(["a", "b"])})

    def a_slice(i: int) -> dict[str, Any]:
        return endpoints(f"s{i}", dict.fromkeys(rnd.sample(names, rnd.randint(0, 2)), READY))

    def an_advertisement() -> dict[str, Any]:
        spec: dict[str, Any] = {"ipAddressPools": ["lan"], "nodeSelectors": [{"matchLabels": {"zone": "a"}}]}
        if rnd.random() < 0.5:
            spec["interfaces"] = [rnd.choice(["eth0", "eth1"])]
        return advertisement("zone-a", **spec)

    docs = [a_node(n) for n in names]
    docs += [d for i in range(6) for d in (a_service(i), a_slice(i))]
    docs += [
        pool("lan", "192.0.2.96/27"),
        an_advertisement(),
        advertisement(
            "fast",
            ipAddressPools=["lan"],
            serviceSelectors=[{"matchLabels": {"tier": "b"}}],
            preferredNodeSelectors=[{"weight": 5, "preference": {"matchLabels": {"rack": "fast"}}}],
        ),
        # Tier a: a node in zone a that gains or loses the rack label stays selected, on other interfaces.
        advertisement(
            "rack",
            ipAddressPools=["lan"],
            serviceSelectors=[{"matchLabels": {"tier": "a"}}],
            nodeSelectors=[{"matchLabels": {"rack": "fast"}}],
            interfaces=["eth2"],
        ),
    ]
    rv = 10
    view = listed_view(docs, [speaker_lease(n, str(rv)) for n in names])
    leased = [*names, "n9"]  # n9: a speaker whose Node is not (yet) in the view
    pairs = {n: (Speaker(n), Speaker(n)) for n in names}  # (from the changes, from every service)
    lines = Lines()
    logger = logging.getLogger("l2guard.control.reconcile")
    logger.addHandler(lines)
    try:
        for step in range(30):
            if step:
                r, rv = rnd.random(), rv + 1
                if r < 0.35:
                    event = ("Node", "MODIFIED", a_node(rnd.choice(names)))
                elif r < 0.4:
                    event = ("Node", rnd.choice(["DELETED", "ADDED"]), a_node(rnd.choice(names)))
                elif r < 0.55:
                    event = ("Service", "MODIFIED", a_service(rnd.randrange(6)))
                elif r < 0.6:
                    event = ("Service", "DELETED", a_service(rnd.randrange(6)))
                elif r < 0.7:
                    event = ("EndpointSlice", "MODIFIED", a_slice(rnd.randrange(6)))
                elif r < 0.9:
                    name = rnd.choice(leased)
                    event = (
                        "Lease",
                        "MODIFIED",
                        speaker_lease(name, str(rv)) if rnd.random() < 0.5 else released(name, rv),
                    )
                else:
                    event = ("L2Advertisement", "MODIFIED", an_advertisement())
                view.apply([event])
            live = live_view_of(view)
            hold_back = rnd.random() < 0.2  # the poster's rate limit, the same for both
            for name, (changes, whole) in pairs.items():
                said = []
                for s, v in ((changes, live), (whole, walked_whole(live))):
                    s.hold_back = hold_back
                    s.events.clear()
                    s.reconciler.reconcile(v)
                    said.append(
                        (sorted((k, e.type.value, e.message) for k, e in s.events), lines.take(), s.dataplane.last)
                    )
                assert said[0] == said[1], (step, name)
    finally:
        logger.removeHandler(lines)


def test_a_node_event_that_moves_nothing_offers_a_held_back_event_again() -> None:
    view = listed_view(cluster(*(node(n) for n in NODES)), [])
    s = Speaker("cp-1")
    s.hold_back = True
    s.reconciler.reconcile(live_view_of(view))
    s.hold_back = False
    view.apply([("Node", "MODIFIED", node("worker-2", {"example.com/team": "blue"}))])  # replans no service
    assert live_view_of(view).plan.replanned_since(s.reconciler._said.plan) == frozenset()  # type: ignore[union-attr]
    s.reconciler.reconcile(live_view_of(view))
    view.apply([("Node", "MODIFIED", node("worker-2"))])
    s.reconciler.reconcile(live_view_of(view))
    assert [e.reason for _, e in s.events] == ["Announcing", "Announcing"]  # refused once, then taken once


def test_new_reasons_for_a_service_nobody_announces_log_again_though_its_plan_did_not_change() -> None:
    view = listed_view(cluster(excluded("cp-1"), excluded("worker-1")), [])
    s = Speaker("cp-1")
    lines = Lines()
    logger = logging.getLogger("l2guard.control.reconcile")
    logger.addHandler(lines)
    try:
        s.reconciler.reconcile(live_view_of(view))
        first = lines.take()
        # worker-1 is also cut off from the network now: still nobody, its ServicePlan is not replanned.
        view.apply([("Node", "MODIFIED", node("worker-1", {EXCLUDE_LABEL: ""}, unavailable=True))])
        assert live_view_of(view).plan.replanned_since(s.reconciler._said.plan) == frozenset()  # type: ignore[union-attr]
        s.reconciler.reconcile(live_view_of(view))
        second = lines.take()
        view.apply([("Node", "MODIFIED", node("cp-1", {EXCLUDE_LABEL: "", "example.com/team": "blue"}))])
        s.reconciler.reconcile(live_view_of(view))
        third = lines.take()
    finally:
        logger.removeHandler(lines)
    assert [k for k, _ in first] == ["default/web"] and [k for k, _ in second] == ["default/web"]
    assert "NetworkUnavailable" in second[0][1] and second[0][1] != first[0][1]
    assert third == []  # the same reasons: said once
    assert [e.message for _, e in s.events] == [first[0][1], second[0][1]]  # cp-1 reports, on each new message


def test_when_the_reporting_speaker_stops_the_next_alive_one_reports_the_service_nobody_announces() -> None:
    docs = cluster(excluded("cp-1"), excluded("worker-1"), excluded("worker-2"))
    view = listed_view(docs, [speaker_lease(n, "10") for n in NODES])
    fleet = speakers()
    for s in fleet.values():
        s.reconciler.reconcile(live_view_of(view))
    assert [n for n, s in fleet.items() if s.events] == ["cp-1"]  # first by hash for 192.0.2.100
    view.apply([("Lease", "MODIFIED", released("cp-1", 11))])
    for s in fleet.values():
        s.events.clear()
        s.reconciler.reconcile(live_view_of(view))
    assert [(n, e.reason) for n, s in fleet.items() for _, e in s.events] == [("worker-1", "NoEligibleNode")]
