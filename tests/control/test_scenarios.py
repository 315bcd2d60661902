"""The control-plane scenarios of the speaker issue: several speakers against ONE API double, each asserting which
IPs `announcer.set()` receives on which speaker.

Every speaker is the real live mode in-process: `LiveState` (the list+watch source into its own `ClusterView`, its
Lease keeper, its Event poster, each with its own kubernetes ApiClient to the double through a kubeconfig) driven
by `control_loop` (the loop `l2guard speaker` runs) into a real `Reconciler`, whose data plane is replaced at its
seam (`Announcer.set()`) by the recorder of tests/control/test_reconcile.py. The API double
(tests/webhook/apidouble.py: no kube-apiserver can run here) stores the captured cluster (tests/data/api/list-*.json):
cp-1 with the exclude label, worker-1, worker-2; the LoadBalancer service default/web on 192.0.2.100, with a ready
endpoint on worker-1 and a serving-but-terminating one on worker-2; pool and L2Advertisement `lan`. A test changes
those objects in the double and every speaker's watch sees the change.

Expected winners are literal: for 192.0.2.100 the election order is cp-1, worker-1, worker-2
(tests/core/test_election.py's vectors), so worker-1 owns it at the start; the property test computes winners with
tests/core/election_reference.py, which shares no code with the planner. Every wait is bounded generously: these
are not timing tests.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from l2core.model import EXCLUDE_LABEL, EligibilitySettings
from l2core.plan import Status
from l2guard.control.command import control_loop
from l2guard.control.health import HealthServer, SpeakerStatus, StatusBoard
from l2guard.control.live import LiveState
from l2guard.control.metrics import SpeakerMetrics
from l2guard.control.reconcile import Reconciler, View
from l2guard.view import ClusterView
from speaker.announcer import ALL_INTERFACES
from tests.control.test_reconcile import Recorder
from tests.control.test_speaker_live import kubeconfig
from tests.core.election_reference import reference_owner
from tests.webhook import apidouble
from tests.webhook.apidouble import APIDouble, too_old_list

IP = "192.0.2.100"
NODES = ("cp-1", "worker-1", "worker-2")
NAMESPACE = "l2guard-system"
SERVICE = "/api/v1/namespaces/default/services/web"
SLICE = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-abc12"
POOL = "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/lan"
ADVERTISEMENT = "/apis/metallb.io/v1beta1/namespaces/metallb-system/l2advertisements/lan"
EVENTS = "/api/v1/namespaces/default/events/"
POOL_EVENTS = "/api/v1/namespaces/metallb-system/events/"
WAIT = 20.0  # seconds: a bound that catches a hang, never a performance target


def node_path(name: str) -> str:
    return f"/api/v1/nodes/{name}"


def lease_path(name: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/l2guard-speaker-{name}"


def label(double: APIDouble, name: str, *, exclude: bool = True) -> None:
    """`kubectl label node NAME node.kubernetes.io/exclude-from-external-load-balancers=` (or `...-`)."""
    double.store.patch(node_path(name), {"metadata": {"labels": {EXCLUDE_LABEL: "" if exclude else None}}})


class ObservedReconciler(Reconciler):
    """The real reconciler, remembering each View it was given and what the data plane was then told."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[tuple[View, frozenset[str]]] = []

    def reconcile(self, view: View) -> Any:
        done = super().reconcile(view)
        dataplane = self._dataplane
        assert isinstance(dataplane, Recorder)
        self.seen.append((view, frozenset(dataplane.last)))
        return done


class Speaker:
    """One node's speaker in-process, wired as `l2guard speaker` wires it in live mode, with a recording data plane."""

    def __init__(
        self, node: str, kubeconfig_path: Path, *, lease: tuple[int, float], view: ClusterView | None = None
    ) -> None:
        self.node = node
        self.wake = threading.Event()
        self._stop = threading.Event()
        self.view = view or ClusterView(EligibilitySettings())
        self.metrics = SpeakerMetrics()
        self.state = LiveState(
            node=node,
            namespace=NAMESPACE,
            kubeconfig=str(kubeconfig_path),
            metallb_namespace="metallb-system",
            view=self.view,
            lease_duration=lease[0],
            lease_renew_interval=lease[1],
            metrics=self.metrics,
            wake=self.wake,
        )
        self.dataplane = Recorder()
        self.board = StatusBoard(SpeakerStatus(node=node))
        self.reconciler = ObservedReconciler(
            node=node,
            dataplane=self.dataplane,
            board=self.board,
            metrics=self.metrics,
            report=self.state.report,
            report_object=self.state.report_object,
        )
        self._thread = threading.Thread(target=self._run, name=f"speaker-{node}", daemon=True)
        self.running = False

    def _run(self) -> None:
        control_loop(self.state, self.reconciler, None, wake=self.wake, stop=self._stop)

    def start(self) -> None:
        self.state.start()
        self._thread.start()
        self.running = True

    def stop(self) -> None:
        """A clean stop, in `l2guard speaker`'s order on SIGTERM: the loop ends (the data plane would stop
        answering here), then the state source releases the lease and ends its watches."""
        self._end_loop()
        self.state.stop()

    def kill(self) -> None:
        """As SIGKILL: everything stops at once, nothing is released; the Lease stays as last renewed."""
        self._end_loop()
        self.state.lease.stop()
        self.state.source.stop()
        self.state.poster.stop()

    def _end_loop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive()
        self.running = False

    @property
    def announced(self) -> frozenset[str] | None:
        """The IPs of the last `set()`; None before the first."""
        return frozenset(self.dataplane.last) if self.dataplane.calls else None

    @property
    def last_view(self) -> View | None:
        return self.reconciler.seen[-1][0] if self.reconciler.seen else None


Fleet = dict[str, Speaker]


def announcements(fleet: Fleet) -> dict[str, frozenset[str] | None]:
    return {name: s.announced for name, s in fleet.items()}


def wait_for(predicate: Callable[[], bool], fleet: Fleet, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; set() last got: {announcements(fleet)}"
        time.sleep(0.05)


def owned(fleet: Fleet, owners: dict[str, set[str]]) -> Callable[[], bool]:
    """Every speaker's last set() holds exactly the IPs `owners` gives it (nothing for a speaker not named)."""
    return lambda: all(s.announced == frozenset(owners.get(name, set())) for name, s in fleet.items())


def settled(fleet: Fleet, owners: dict[str, set[str]]) -> None:
    """Wait until every running speaker sees every running speaker alive and announces what `owners` says."""
    alive = frozenset(name for name, s in fleet.items() if s.running)

    def done() -> bool:
        views = [s.last_view for s in fleet.values() if s.running]
        return (
            all(v is not None and v.alive == alive and v.cut_off_since is None for v in views)
            and owned({n: s for n, s in fleet.items() if s.running}, owners)()
        )

    wait_for(done, fleet, f"{owners} with {sorted(alive)} alive")


@pytest.fixture
def double() -> Iterator[APIDouble]:
    """The captured cluster as stored objects: every list and watch is answered from the store."""
    with APIDouble({}) as d:
        d.store.seed(
            "list-nodes.json",
            "list-services.json",
            "list-endpointslices.json",
            "list-ipaddresspools.json",
            "list-l2advertisements.json",
        )
        yield d


@pytest.fixture
def speakers(double: APIDouble, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """start(lease=(duration, renew interval)) -> the three speakers, running; all stopped at the end."""
    started: list[Speaker] = []

    def start(lease: tuple[int, float] = (6, 1.0)) -> Fleet:
        path = kubeconfig(tmp_path, double.url)
        fleet = {name: Speaker(name, path, lease=lease) for name in NODES}
        for s in fleet.values():
            s.start()
            started.append(s)
        return fleet

    yield start
    for s in started:
        if s.running:
            s.stop()


def warnings_in(double: APIDouble) -> list[dict[str, Any]]:
    with double.store.lock:
        return [o for p, o in double.store.objects.items() if p.startswith(EVENTS) and o["type"] == "Warning"]


def pool_events(double: APIDouble) -> list[dict[str, Any]]:
    """The Events about the pool `lan` (in its namespace), Warnings first."""
    with double.store.lock:
        found = [o for p, o in double.store.objects.items() if p.startswith(POOL_EVENTS)]
    return sorted(found, key=lambda e: e["type"] != "Warning")


# ---------------------------------------------------------------------------------------------------------- 1


def test_the_exclude_label_on_the_owner_moves_the_ip_to_the_next_node(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    fleet = speakers()
    settled(fleet, {"worker-1": {IP}})
    assert fleet["worker-1"].dataplane.last == {IP: ALL_INTERFACES}
    # As `kubectl label` does it: a PATCH through the real client, over HTTP to the double.
    with k8s.ApiClient(k8s.Configuration(host=double.url)) as api:
        k8s.CoreV1Api(api).patch_node("worker-1", {"metadata": {"labels": {EXCLUDE_LABEL: ""}}})
    assert ("PATCH", node_path("worker-1"), 200) in double.requests
    settled(fleet, {"worker-2": {IP}})
    assert fleet["worker-1"].dataplane.last == {}
    assert fleet["worker-2"].dataplane.last == {IP: ALL_INTERFACES}
    assert fleet["cp-1"].dataplane.last == {}


# ---------------------------------------------------------------------------------------------------------- 2


def test_the_label_on_the_only_eligible_node_means_nobody_and_one_warning_event(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    fleet = speakers()
    settled(fleet, {"worker-1": {IP}})
    label(double, "worker-2")  # not the owner: nothing moves, worker-1 is now the only eligible node
    wait_for(
        lambda: all(
            dict(s.view.snapshot.cluster.nodes)["worker-2"].labels.get(EXCLUDE_LABEL) == "" for s in fleet.values()
        ),
        fleet,
        "worker-2 labelled in every view",
    )
    settled(fleet, {"worker-1": {IP}})
    # At a cold start the first speaker up may see no peer alive yet and say so: only what follows counts, once
    # every poster has written what it was given then (a cold-start Warning still queued would count as new).
    wait_for(lambda: all(s.state.poster._queue.empty() for s in fleet.values()), fleet, "the posters' queues")
    time.sleep(0.5)  # a write taken off the queue is in flight for at most a request
    before = {e["metadata"]["name"] for e in warnings_in(double)}
    label(double, "worker-1")

    def nobody_reconciled() -> bool:
        views = [s.last_view for s in fleet.values()]
        return all(v is not None and v.plan.services["default/web"].status is Status.NOBODY for v in views)

    wait_for(nobody_reconciled, fleet, "every speaker reconciling 'nobody' for default/web")
    assert announcements(fleet) == dict.fromkeys(NODES, frozenset())
    wait_for(lambda: len(warnings_in(double)) > len(before), fleet, "the Warning Event")
    # Every poster has written what it was given: nothing is queued, and stop() waits for a write in flight.
    wait_for(lambda: all(s.state.poster._queue.empty() for s in fleet.values()), fleet, "the posters' queues")
    for s in fleet.values():
        s.state.poster.stop()
    events = [e for e in warnings_in(double) if e["metadata"]["name"] not in before]
    assert [(e["reason"], e["involvedObject"]["name"], e["source"]["host"], e["count"]) for e in events] == [
        ("NoEligibleNode", "web", "cp-1", 1)  # cp-1 ranks first by hash among the alive speakers: it reports
    ]
    assert events[0]["message"] == (
        "no eligible node for 192.0.2.100: cp-1, worker-1, worker-2 excluded by label "
        "node.kubernetes.io/exclude-from-external-load-balancers (node worker-1 is being drained (unschedulable) and "
        "is expected to leave: keep its label and let the IP move to another node; remove label "
        "node.kubernetes.io/exclude-from-external-load-balancers from node cp-1, worker-2, or start the speaker with "
        "--ignore-exclude-lb)"
    )


# ---------------------------------------------------------------------------------------------------------- 3


def test_with_externaltrafficpolicy_local_the_ip_follows_the_serving_endpoint(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    fleet = speakers()
    settled(fleet, {"worker-1": {IP}})
    # Local: worker-1 (ready) and worker-2 (serving, terminating) both serve; worker-1 ranks first and keeps it.
    double.store.patch(SERVICE, {"spec": {"externalTrafficPolicy": "Local"}})
    wait_for(
        lambda: all(
            s.view.snapshot.cluster.services["default/web"].external_traffic_policy_local for s in fleet.values()
        ),
        fleet,
        "the Local policy in every view",
    )
    settled(fleet, {"worker-1": {IP}})
    # The pod moves: the slice's only endpoint is now a ready one on worker-2.
    moved = {"addresses": ["10.244.2.8"], "conditions": {"ready": True, "serving": True, "terminating": False}}
    double.store.patch(SLICE, {"endpoints": [moved | {"nodeName": "worker-2"}]})
    settled(fleet, {"worker-2": {IP}})
    # And back to worker-1.
    double.store.patch(SLICE, {"endpoints": [moved | {"nodeName": "worker-1"}]})
    settled(fleet, {"worker-1": {IP}})


# ---------------------------------------------------------------------------------------------------------- 4


def test_an_advertisement_selecting_other_nodes_moves_the_ip_and_a_pool_dropping_it_withdraws_it(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    fleet = speakers()
    settled(fleet, {"worker-1": {IP}})
    selector = [{"matchLabels": {"kubernetes.io/hostname": "worker-2"}}]
    double.store.patch(ADVERTISEMENT, {"spec": {"nodeSelectors": selector}})
    settled(fleet, {"worker-2": {IP}})
    double.store.patch(POOL, {"spec": {"addresses": ["192.0.2.101-192.0.2.120", "2001:db8::100/124"]}})
    settled(fleet, {})


# ---------------------------------------------------------------------------------------------------------- 5


def test_an_invalid_pool_edit_keeps_the_last_good_version_announced_and_reports_it_stale(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    fleet = speakers()
    settled(fleet, {"worker-1": {IP}})
    before = {name: len(s.dataplane.calls) for name, s in fleet.items()}
    double.store.patch(POOL, {"spec": {"addresses": ["192.0.2.300-192.0.2.7"]}})
    key = ("IPAddressPool", "metallb-system/lan")
    wait_for(lambda: all(key in s.view.snapshot.stale for s in fleet.values()), fleet, "the pool stale in every view")
    # The stale record is a new snapshot: every speaker reconciles it, and nothing is withdrawn.
    wait_for(lambda: all(len(s.dataplane.calls) > before[n] for n, s in fleet.items()), fleet, "a reconcile each")
    assert announcements(fleet) == {"cp-1": frozenset(), "worker-1": {IP}, "worker-2": frozenset()}
    assert all(IP in call for call in fleet["worker-1"].dataplane.calls[before["worker-1"] :])
    for s in fleet.values():
        stale = s.view.snapshot.stale[key]
        assert stale.kept and "spec.addresses[0]" in stale.problem
        assert s.metrics.registry.get_sample_value("l2guard_speaker_config_stale") == 1.0
    # One speaker says so on the pool itself: worker-2, first of the three in hash order for the pool's kind and key
    # (tests/core/test_reporting.py's vectors).
    wait_for(lambda: pool_events(double), fleet, "the Warning Event on the pool")
    # A valid edit again clears it (and this one changes nothing for 192.0.2.100), and the reporter says that too.
    double.store.patch(POOL, {"spec": {"addresses": ["192.0.2.100-192.0.2.110"]}})
    wait_for(lambda: all(not s.view.snapshot.stale for s in fleet.values()), fleet, "the pool valid again")
    settled(fleet, {"worker-1": {IP}})
    wait_for(lambda: len(pool_events(double)) == 2, fleet, "the Normal Event on the pool")
    wait_for(lambda: all(s.state.poster._queue.empty() for s in fleet.values()), fleet, "the posters' queues")
    for s in fleet.values():
        s.state.poster.stop()
    warning, normal = pool_events(double)
    uid = double.store.objects[POOL]["metadata"]["uid"]
    assert (
        warning["involvedObject"]
        == normal["involvedObject"]
        == {
            "kind": "IPAddressPool",
            "name": "lan",
            "namespace": "metallb-system",
            "apiVersion": "metallb.io/v1beta1",
            "uid": uid,
        }
    )
    assert [(e["type"], e["reason"], e["source"]["host"], e["count"]) for e in (warning, normal)] == [
        ("Warning", "InvalidObject", "worker-2", 1),
        ("Normal", "ValidAgain", "worker-2", 1),
    ]
    assert warning["message"].startswith("IPAddressPool metallb-system/lan is invalid since ")
    assert warning["message"].endswith(
        "; its last valid version is still in use (correct the object: kubectl edit ipaddresspool lan -n "
        "metallb-system)"
    )
    assert ": spec.addresses[0]: '192.0.2.300-192.0.2.7' is not a valid range" in warning["message"]
    assert normal["message"] == "IPAddressPool metallb-system/lan is valid again: its current version is in use"


def test_a_restarted_reporter_does_not_warn_again_about_the_same_stale_object(
    double: APIDouble, speakers: Callable[..., Fleet], tmp_path: Path
) -> None:
    """The InvalidObject Warning says since when the reporter saw the object invalid, which a restarted speaker
    sees anew: the Event must still be the one posted before the restart (docs/speaker.md: a restarted speaker
    finds the Events it posted before and writes nothing). The pool is invalid from the start, so the restarted
    speaker has the same to say (one that saw a valid version before would say that it is still in use)."""
    double.store.patch(POOL, {"spec": {"addresses": ["192.0.2.300-192.0.2.7"]}})
    fleet = speakers()
    settled(fleet, {})

    def from_worker_2() -> list[dict[str, Any]]:
        return [e for e in pool_events(double) if e["source"]["host"] == "worker-2"]

    wait_for(lambda: len(from_worker_2()) == 1, fleet, "worker-2's Warning Event on the pool")
    before = from_worker_2()
    fleet["worker-2"].kill()  # its Lease stays: the others keep it alive, and the reporter stays worker-2
    time.sleep(1.1)  # the restarted speaker's first sight of the stale pool is in a later second
    again = Speaker("worker-2", kubeconfig(tmp_path, double.url), lease=(6, 1.0))
    again.start()
    try:
        wait_for(lambda: again.state.poster.adopted + again.state.poster.posted > 0, fleet, "the restarted reporter")
        assert (again.state.poster.adopted, again.state.poster.posted) == (1, 0)
        assert from_worker_2() == before
    finally:
        again.stop()


# ---------------------------------------------------------------------------------------------------------- 6


def readyz(board: StatusBoard) -> tuple[int, str]:
    """GET /readyz from the health server over this speaker's status board."""
    health = HealthServer(board, SpeakerMetrics().registry, host="127.0.0.1", port=0)
    health.start()
    try:
        r = httpx.get(f"http://127.0.0.1:{health.port}/readyz", timeout=10)
        return r.status_code, r.text
    finally:
        health.stop()


def test_when_the_api_goes_away_announcements_stay_and_on_its_return_the_speakers_relist(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    lease = (2, 0.5)
    fleet = speakers(lease=lease)
    settled(fleet, {"worker-1": {IP}})
    double.stop()
    wait_for(
        lambda: all((st := s.board.current.api) is not None and st.cut_off_since is not None for s in fleet.values()),
        fleet,
        "every speaker cut off",
    )
    # Past the lease duration nobody renewed anything: a speaker judging peers from its stale view would now take
    # every IP; fail-static keeps what each announced.
    time.sleep(lease[0] + 1)
    assert announcements(fleet) == {"cp-1": frozenset(), "worker-1": {IP}, "worker-2": frozenset()}
    for s in fleet.values():
        status, body = readyz(s.board)
        assert status == 503 and "cut off from the API" in json.loads(body)["reason"], body
    # While it is down, the owner is labelled: only a re-list after the return can show it.
    label(double, "worker-1")
    double.restart()
    settled(fleet, {"worker-2": {IP}})
    for s in fleet.values():
        assert s.state.source.status().relists["nodes"] >= 1
        wait_for(lambda s=s: readyz(s.board)[0] == 200, fleet, f"{s.node} ready again")


class SlowNodeLists(ClusterView):
    """A view whose lists of Nodes take a while to apply once `slow` is set, as a re-list of a large cluster does (a
    full replan of 10k services costs about 1.5 s, see l2guard/view.py)."""

    slow = False

    def replace_kind(self, kind: str, items: Any) -> None:
        if self.slow and kind == "Node":
            time.sleep(1.5)
        super().replace_kind(kind, items)


def test_after_reconnecting_the_first_plan_is_made_from_the_relisted_view(double: APIDouble, tmp_path: Path) -> None:
    """Cut off, the owner is labelled; back in contact, the speaker stays cut off until the re-list of Nodes has
    landed in its view, then plans once: its first set() not held by fail-static already withdraws the IP. It used to
    thaw as soon as the lists had answered, and plan once from the snapshot of before the outage (announcing the IP
    it no longer owned) while the re-list was still being applied."""
    view = SlowNodeLists(EligibilitySettings())
    speaker = Speaker("worker-1", kubeconfig(tmp_path, double.url), lease=(2, 0.5), view=view)
    speaker.state.source.backoff = (0.05, 0.1)  # every resource lists again within a moment of the return
    fleet = {"worker-1": speaker}
    speaker.start()
    try:
        settled(fleet, {"worker-1": {IP}})
        double.stop()
        wait_for(lambda: (v := speaker.last_view) is not None and v.cut_off_since is not None, fleet, "cut off")
        label(double, "worker-1")
        view.slow = True
        outage = len(speaker.reconciler.seen)
        double.restart()
        wait_for(lambda: speaker.announced == frozenset(), fleet, "the IP withdrawn after the re-list")
        time.sleep(1)  # whatever follows the first plan back in contact is recorded too
        back = [told for v, told in speaker.reconciler.seen[outage:] if v.cut_off_since is None]
        assert back and all(told == frozenset() for told in back), back
        assert all(told == {IP} for v, told in speaker.reconciler.seen[outage:] if v.cut_off_since is not None)
    finally:
        speaker.stop()


def test_a_hung_api_server_never_makes_the_speakers_withdraw_their_ips(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    """The API server accepts connections and never answers: the open watches stay silent, so only the failing
    renewals tell. Liveness used to run out before fail-static began, every speaker judged every speaker (itself
    included) dead and the IP went nowhere (found in review)."""
    lease = (2, 0.5)
    fleet = speakers(lease=lease)
    settled(fleet, {"worker-1": {IP}})
    double.hang = 60.0
    wait_for(
        lambda: all((st := s.board.current.api) is not None and st.cut_off_since is not None for s in fleet.values()),
        fleet,
        "every speaker cut off",
    )
    time.sleep(lease[0] + 1)
    assert announcements(fleet) == {"cp-1": frozenset(), "worker-1": {IP}, "worker-2": frozenset()}
    double.hang = 0.0


# ---------------------------------------------------------------------------------------------------------- 7


def test_a_410_gone_makes_the_speakers_relist_and_see_what_they_missed(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    fleet = speakers()
    settled(fleet, {"worker-1": {IP}})
    # The owner is labelled and etcd compacts its history at once, so no watch streams the change; then every
    # watch ends (as at a server-side timeout) and resumes from a compacted version: the captured ERROR 410.
    # The first re-list of nodes is answered with the captured list-too-old 410 as well.
    with double.store.lock:
        label(double, "worker-1")
        double.store.compact()
    double.once[("/api/v1/nodes", False)] = [too_old_list()]
    double.store.drop_watches()
    settled(fleet, {"worker-2": {IP}})
    relists = sorted(s.state.source.status().relists["nodes"] for s in fleet.values())
    assert relists[0] >= 1 and relists[-1] >= 2, relists  # one speaker met the 410 list too, and listed again
    assert ("/api/v1/nodes", False, None, 410) in double.log
    assert all(s.state.source.status().errors["nodes"] == 0 for s in fleet.values())  # 410 is no failure
    assert all(
        s.metrics.registry.get_sample_value("l2guard_speaker_watch_restarts_total", {"resource": "nodes"})
        for s in fleet.values()
    )


# ---------------------------------------------------------------------------------------------------------- 8


def test_when_the_owners_lease_is_not_renewed_the_next_node_takes_over_after_the_lease_duration(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    fleet = speakers(lease=(2, 0.5))
    settled(fleet, {"worker-1": {IP}})
    fleet["worker-1"].kill()
    lease = double.store.objects[lease_path("worker-1")]["spec"]
    assert lease["holderIdentity"] == "worker-1" and lease["leaseDurationSeconds"] == 2  # not released
    settled(fleet, {"worker-2": {IP}})
    # Not before the lease ran out: a peer observes a renewal after it was written, so the last renewal's time plus
    # the duration comes first (one machine, one wall clock; the peers judge on their own monotonic clocks).
    renewed = datetime.strptime(lease["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    since = {a.ip: a.since for a in fleet["worker-2"].board.current.announced}[IP]
    assert since >= renewed + 2, (since, renewed)
    assert [v.alive for v in (fleet["worker-2"].last_view, fleet["cp-1"].last_view) if v is not None] == [
        frozenset({"cp-1", "worker-2"})
    ] * 2


# ---------------------------------------------------------------------------------------------------------- 9


def test_when_the_owner_stops_cleanly_it_releases_its_lease_and_the_handover_is_immediate(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    lease = (120, 1.0)  # a takeover within WAIT can only come from the release, never from an expiry
    fleet = speakers(lease=lease)
    settled(fleet, {"worker-1": {IP}})
    fleet["worker-1"].stop()
    released = double.store.objects[lease_path("worker-1")]["spec"]
    assert "holderIdentity" not in released and released["leaseDurationSeconds"] == 1
    settled(fleet, {"worker-2": {IP}})


# ---------------------------------------------------------------------------------------------------------- 10

EXTRA_IPS = ("192.0.2.101", "192.0.2.102", "192.0.2.103", "192.0.2.104", "192.0.2.105")


def view_key(view: View) -> tuple[Any, ...] | None:
    """What decides a speaker's announcements, for views that plan (synced, not cut off); None otherwise."""
    if not view.synced or view.cut_off_since is not None:
        return None
    return (tuple(sorted((n, repr(node)) for n, node in view.nodes.items())), view.alive)


def test_three_speakers_with_the_same_view_never_announce_the_same_ip(
    double: APIDouble, speakers: Callable[..., Fleet]
) -> None:
    web, web_slice = double.store.objects[SERVICE], double.store.objects[SLICE]
    for i, ip in enumerate(EXTRA_IPS, start=2):  # more services and their slices, derived from the captured ones
        svc, eps = json.loads(json.dumps(web)), json.loads(json.dumps(web_slice))
        svc["metadata"] = {"name": f"web-{i}", "namespace": "default"}
        svc["status"]["loadBalancer"]["ingress"] = [{"ip": ip, "ipMode": "VIP"}]
        eps["metadata"] = {"name": f"web-{i}-abc12", "namespace": "default"}
        eps["metadata"]["labels"] = {"kubernetes.io/service-name": f"web-{i}"}
        double.store.put(svc)
        double.store.put(eps)
    ips = (IP, *EXTRA_IPS)
    fleet = speakers()
    rng = random.Random(8)
    labelled = {"cp-1"}
    for step in range(5):
        eligible = set(NODES) - labelled
        owners: dict[str, set[str]] = {}
        for ip in ips:
            owner = reference_owner(eligible, ip)
            if owner is not None:
                owners.setdefault(owner, set()).add(ip)
        settled(fleet, owners)
        if step == 0:
            assert {ip for o in owners.values() for ip in o} == set(ips) and len(owners) >= 2, owners
        labelled = {n for n in NODES if rng.random() < 0.4}
        for name in NODES:
            label(double, name, exclude=name in labelled)
    # Over the whole run, including every transient: any two speakers that reconciled the same view (the same
    # nodes and the same alive set) told their data planes disjoint sets of IPs.
    by_view: dict[tuple[Any, ...], dict[str, frozenset[str]]] = {}
    for name, s in fleet.items():
        for view, told in s.reconciler.seen:
            if (key := view_key(view)) is not None:
                seen = by_view.setdefault(key, {})
                seen[name] = seen.get(name, frozenset()) | told
    shared = [told for told in by_view.values() if len(told) > 1]
    assert shared  # the property was exercised: settled views are shared by construction
    for told in shared:
        names = sorted(told)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                assert not told[a] & told[b], (a, b, told)


# ---------------------------------------------------------------------------------------------------------- the double


def test_watches_ending_over_and_over_never_cut_a_speaker_off(
    double: APIDouble, speakers: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server-side watch timeouts are routine: each watch is resumed on the same kept-alive connection, without a
    failure, so no speaker ever goes fail-static for them (the double once closed that connection unannounced, and
    the client's next list on it failed)."""
    monkeypatch.setattr(apidouble, "WATCH_HOLD", 0.05)
    fleet = speakers()
    settled(fleet, {"worker-1": {IP}})
    time.sleep(3)  # some hundred watches end and resume meanwhile
    label(double, "worker-1")
    settled(fleet, {"worker-2": {IP}})
    for s in fleet.values():
        assert all(v.cut_off_since is None for v, _ in s.reconciler.seen), s.node
        assert not any(s.state.source.status().errors.values()), s.state.source.status().errors
