"""Speaker control-plane benchmark, in one process: reaction time of the watch -> view -> plan -> `set()` pipeline,
and where the memory of a 10,000-service cache goes.

Run:  .venv/bin/python bench/bench_speaker_reaction.py [--trials 200] [--seconds 120]

The real pieces: `l2guard.view.ClusterView` listed with 500 nodes and 10,000 LoadBalancer services (the webhook
benchmark's generator, bench/webhook_cluster.py), fed one Node MODIFIED event per trial through `apply()`, then
`l2guard.control.reconcile.Reconciler.reconcile()` with the View the live mode builds from the snapshot and a
recording data plane (what `Announcer.set()` receives; no socket). The clock runs from `apply()` start to the
moment the recorder's `set()` is called. The speaker is node-000:
- "own exclude label": the exclude label is added to node-000 (it releases its IPs) or removed (it wins them back);
- "peer exclude label": the label is added to or removed from node-001, whose released IPs partly move to node-000;
- baseline, in the same process and interleaved: an unrelated label (`example.com/team`) toggled on node-000;
  the same event path, nothing moves.
As the speaker does after its first synced reconcile, the cache is then left out of the garbage collector's full
collections (`l2guard.control.command.freeze_the_cache`, gc.freeze); `--no-gc-freeze` measures without it, and the
script times one full collection over the cache both ways.
Not included: the HTTP of the watch stream, and the live loop's debounce (`l2guard.control.live.DEBOUNCE`), which
is on the leading edge: a change that comes 50 ms or more after the last reconcile (a lone label change; each
trial here) is planned at once, and only the rest of a burst waits up to 50 ms.

Memory: tracemalloc over the listing (`replace_kind` of every kind) and one reconcile, top allocations grouped by
file. A script, not a timed test; every loop is bounded by --trials and --seconds.
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.webhook_cluster import EXCLUDE, cluster_documents
from l2core.model import EligibilitySettings
from l2guard.control.command import freeze_the_cache
from l2guard.control.health import SpeakerStatus, StatusBoard
from l2guard.control.live import DEBOUNCE
from l2guard.control.metrics import SpeakerMetrics
from l2guard.control.reconcile import Reconciler, View
from l2guard.view import ClusterView, Snapshot
from speaker.announcer import AllInterfaces
from speaker.announcer import Status as DataPlaneStatus
from tests.kube.scripts import speaker_lease

ME = "node-000"
PEER = "node-001"


class Recorder:
    """The data plane's seam: records when `set()` is called and what it gets."""

    def __init__(self) -> None:
        self.called_at = 0.0
        self.desired: Mapping[str, frozenset[str] | AllInterfaces] = {}

    def set(self, desired: Mapping[str, frozenset[str] | AllInterfaces]) -> DataPlaneStatus:
        self.called_at = time.perf_counter()
        self.desired = desired
        return DataPlaneStatus(desired=desired)


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in docs:
        out[d["kind"]].append(d)
    return out


def live_view(snap: Snapshot) -> View:
    """What `LiveState.poll()` hands to the reconciler for this snapshot (connected, synced)."""
    return View(snap.plan, nodes=snap.cluster.nodes, alive=snap.alive, synced=snap.synced, live=True)


def lease(node: str, rv: int, *, held: bool) -> dict[str, Any]:
    """`node`'s speaker Lease (the captured one, renamed): held for an hour, or released as a stopping speaker
    releases it (no holder, 1 s)."""
    obj = speaker_lease(node, str(rv), duration=3600 if held else 1)
    if not held:
        del obj["spec"]["holderIdentity"]
    return obj


def listed_view(kinds: Mapping[str, list[dict[str, Any]]]) -> ClusterView:
    """The view as the live source fills it: every kind listed, every node's speaker Lease held."""
    view = ClusterView(EligibilitySettings())
    for kind in ("Node", "Service", "EndpointSlice", "IPAddressPool", "L2Advertisement"):
        view.replace_kind(kind, kinds[kind])
    view.replace_kind("Lease", [lease(n["metadata"]["name"], 1, held=True) for n in kinds["Node"]])
    assert view.synced and view.snapshot.alive is not None and len(view.snapshot.alive) == len(kinds["Node"])
    return view


class GcPauses:
    """The garbage collector's pauses, summed since `take()` (gc.callbacks): what the tail is made of."""

    def __init__(self) -> None:
        self.total = 0.0
        self.full = 0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start
            self.full += info["generation"] == 2

    def take(self) -> tuple[float, int]:
        out = (self.total, self.full)
        self.total, self.full = 0.0, 0
        return out


def fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.1f}" for x in xs)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def full_collection_ms() -> float:
    start = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - start) * 1e3


def reaction(trials: int, seconds: float, lease_trials: int, *, gc_freeze: bool) -> None:
    kinds = by_kind(cluster_documents(500, 10_000))
    nodes = {n["metadata"]["name"]: n for n in kinds["Node"]}
    t0 = time.perf_counter()
    view = listed_view(kinds)
    listed_s = time.perf_counter() - t0
    recorder = Recorder()
    metrics = SpeakerMetrics()
    board = StatusBoard(SpeakerStatus(node=ME))
    reconciler = Reconciler(node=ME, dataplane=recorder, board=board, metrics=metrics)
    t0 = time.perf_counter()
    reconciler.reconcile(live_view(view.snapshot))
    first_s = time.perf_counter() - t0
    owned = len(recorder.desired)
    print(f"listed 500 nodes, 10,000 services in {listed_s:.2f} s; first reconcile {first_s * 1e3:.1f} ms; ")
    print(f"{ME} announces {owned} IPs")
    unfrozen = [full_collection_ms() for _ in range(3)]
    if gc_freeze:
        freeze_the_cache()
        frozen = [full_collection_ms() for _ in range(3)]
        print(f"a full collection over the cache: {fmt(unfrozen)} ms; after gc.freeze(): {fmt(frozen)} ms")
    else:
        print(f"a full collection over the cache: {fmt(unfrozen)} ms (--no-gc-freeze: the cache stays collectable)")

    current = dict(nodes)  # each node's latest object: the cases toggle their own label and keep the others'

    def variant(name: str, label: str, on: bool) -> dict[str, Any]:
        obj = copy.deepcopy(current[name])
        if on:
            obj["metadata"]["labels"][label] = ""
        else:
            del obj["metadata"]["labels"][label]
        current[name] = obj
        return obj

    pauses = GcPauses()

    def one(name: str, label: str, on: bool) -> tuple[float, int, float]:
        """ms from apply() start to set(); IPs this node announces after; ms of GC pauses meanwhile."""
        event = ("Node", "MODIFIED", variant(name, label, on))
        version = view.snapshot.version
        pauses.take()
        start = time.perf_counter()
        changed = view.apply([event])
        snap = view.snapshot
        assert snap.version > version and changed == 1, changed
        reconciler.reconcile(live_view(snap))
        took = (recorder.called_at - start) * 1e3
        return took, len(recorder.desired), pauses.take()[0] * 1e3

    cases = {
        "baseline: unrelated label on node-000": (ME, "example.com/team"),
        "own exclude label (node-000)": (ME, EXCLUDE),
        "peer exclude label (node-001)": (PEER, EXCLUDE),
    }
    # Each case is measured twice: the trials that add its label, and those that remove it again.
    rows = [f"{c}, {w}" for c in cases for w in ("added", "removed")]
    results: dict[str, list[float]] = {r: [] for r in rows}
    no_gc: dict[str, list[float]] = {r: [] for r in rows}  # the same, minus the GC pauses inside each trial
    announced: dict[str, set[int]] = {r: set() for r in rows}
    deadline = time.monotonic() + seconds
    gc.collect()
    for i in range(trials):
        if time.monotonic() > deadline:
            print(f"stopped after {i} trials: --seconds {seconds} reached")
            break
        on = i % 2 == 0  # add the label, then remove it: each trial is a real change
        for case, (name, label) in cases.items():
            ms, count, gc_ms = one(name, label, on)
            row = f"{case}, {'added' if on else 'removed'}"
            results[row].append(ms)
            no_gc[row].append(ms - gc_ms)
            announced[row].add(count)
    everything = [x for r in rows[2:] for x in results[r]]  # the exclude-label rows
    baseline = results[rows[0]] + results[rows[1]]
    base, base99 = statistics.median(baseline), pct(baseline, 0.99)
    print(f"\nevent -> set(), {len(results[rows[0]])} trials per row (the label added, then removed, alternately)")
    print(f"{'case':50s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'p50/base':>9s} {'p99/base':>9s}  IPs after")
    for case, xs in results.items():
        print(
            f"{case:50s} {pct(xs, 0.5):8.2f} {pct(xs, 0.99):8.2f} {max(xs):8.2f} {pct(xs, 0.5) / base:9.2f} "
            f"{pct(xs, 0.99) / base99:9.2f}  {sorted(announced[case])}"
        )
    print("the same without the garbage collector's pauses inside each trial:")
    for case, xs in no_gc.items():
        print(f"{case:50s} {pct(xs, 0.5):8.2f} {pct(xs, 0.99):8.2f} {max(xs):8.2f}")
    worst = pct(everything, 0.99)
    print(f"all label changes together: p99 {worst:.2f} ms ({worst / base99:.2f} x the baseline's p99)")
    print(
        f"the live loop's debounce adds nothing to a lone change (leading edge); within a burst up to "
        f"{DEBOUNCE * 1e3:.0f} ms: p99 {worst + DEBOUNCE * 1e3:.1f} ms"
    )
    leases(view, reconciler, recorder, trials=lease_trials, seconds=seconds)
    profile_reconcile(view, reconciler, nodes)


def leases(view: ClusterView, reconciler: Reconciler, recorder: Recorder, *, trials: int, seconds: float) -> None:
    """A peer's speaker stops (its Lease released, as on SIGTERM) and starts again: the alive set changes."""
    took: dict[str, list[float]] = {"released": [], "held again": []}
    rv = 100
    deadline = time.monotonic() + seconds
    for i in range(trials * 2):
        if time.monotonic() > deadline:
            print(f"lease trials stopped after {i}: --seconds {seconds} reached")
            break
        held = i % 2 == 1
        rv += 1
        start = time.perf_counter()
        view.apply([("Lease", "MODIFIED", lease(PEER, rv, held=held))])
        reconciler.reconcile(live_view(view.snapshot))
        took["held again" if held else "released"].append((recorder.called_at - start) * 1e3)
    print(f"\nevent -> set() when {PEER}'s speaker Lease is released and held again (the alive set changes):")
    for what, xs in took.items():
        if xs:
            print(f"  {what:12s} {len(xs)} trials: p50 {pct(xs, 0.5):8.1f} ms, max {max(xs):8.1f} ms")


def profile_reconcile(view: ClusterView, reconciler: Reconciler, nodes: Mapping[str, Any]) -> None:
    """Where one own-label trial spends its time, by phase: apply (plan + publish) vs reconcile."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    for on in (True, False) * 5:
        obj = copy.deepcopy(nodes[ME])
        if on:
            obj["metadata"]["labels"][EXCLUDE] = ""
        prof.enable()
        view.apply([("Node", "MODIFIED", obj)])
        reconciler.reconcile(live_view(view.snapshot))
        prof.disable()
    print("\nprofile of 10 own-label trials (cumulative, top 12):")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(12)


def memory() -> None:
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    docs = cluster_documents(500, 10_000)
    kinds = by_kind(docs)
    view = listed_view(kinds)
    recorder = Recorder()
    reconciler = Reconciler(
        node=ME, dataplane=recorder, board=StatusBoard(SpeakerStatus(node=ME)), metrics=SpeakerMetrics()
    )
    reconciler.reconcile(live_view(view.snapshot))
    del docs, kinds
    gc.collect()
    cached = tracemalloc.take_snapshot()
    tracemalloc.stop()
    diff = cached.compare_to(before, "filename")
    total = sum(d.size_diff for d in diff)
    print(f"\ntracemalloc: {total / 2**20:.1f} MiB held by the view, plan and reconciler after listing")
    print("(the raw documents are dropped, as the source drops each list once applied)")
    for d in sorted(diff, key=lambda d: -d.size_diff)[:12]:
        name = d.traceback[0].filename
        short = name.split("/site-packages/")[-1].split("/bench8/")[-1]
        print(f"  {d.size_diff / 2**20:7.1f} MiB  {d.count_diff:>9,d} blocks  {short}")
    print("  top lines:")
    for d in cached.compare_to(before, "lineno")[:8]:
        frame = d.traceback[0]
        short = frame.filename.split("/site-packages/")[-1].split("/bench8/")[-1]
        print(f"  {d.size_diff / 2**20:7.1f} MiB  {short}:{frame.lineno}")
    print(f"(keeping {len(view.snapshot.cluster.services):,} services, {len(view.snapshot.cluster.nodes)} nodes)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--lease-trials", type=int, default=5)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--no-gc-freeze", action="store_true", help="leave the cache in the full collections")
    args = parser.parse_args()
    reaction(args.trials, args.seconds, args.lease_trials, gc_freeze=not args.no_gc_freeze)
    if not args.skip_memory:
        memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
