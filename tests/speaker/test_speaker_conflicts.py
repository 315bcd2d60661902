"""Conflict reports under a flood of spoofed claims: bounded log lines, every conflict still counted.

The review sent gratuitous ARPs claiming the VIP from 4,096 spoofed MACs; the per-MAC limit let 85,000 log lines
through in 10 s. Here the client sends 4,096 such frames (speaker_crafted.py), node-a logs JSON lines (l2guard.logs
via speaker_node.py --log-json) and reports to its status; the test counts what was written (issue 7, item 5).
The pure limiter is checked with literal times.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from speaker_netns import PYTHON, VIP4, NodeProc, Topology, wait_for

from speaker.announcer import CONFLICT_REPORT_BURST, CONFLICT_REPORT_WINDOW, ReportLimit, TrailingLimit

HELPER = str(Path(__file__).with_name("speaker_crafted.py"))
SPOOFED = 4096


def test_report_limit_lets_a_burst_through_per_window_and_counts_the_rest() -> None:
    limit = ReportLimit(window=5.0, burst=3)
    assert [limit.allow(t) for t in (100.0, 100.1, 100.2, 100.3, 101.0)] == [True, True, True, False, False]
    assert limit.suppressed == 2 and not limit.due(104.9) and limit.deadline() == 105.0
    assert limit.due(105.0)
    assert limit.take_suppressed() == 2 and limit.suppressed == 0 and limit.deadline() is None
    assert [limit.allow(t) for t in (105.0, 105.1, 105.2, 105.3)] == [True, True, True, False]
    assert not limit.due(109.0) and limit.due(110.5)


@pytest.mark.root
def test_trailing_limit_passes_a_key_once_an_interval_and_the_last_of_a_stream_at_the_interval_end() -> None:
    limit: TrailingLimit[str] = TrailingLimit(interval=1.0, max_keys=2)
    assert [limit.allow("a", t) for t in (10.0, 10.2, 10.5)] == [True, False, False]
    assert limit.allow("b", 10.5) and limit.deadline() == 11.0 and limit.due(10.9) == []
    assert limit.due(11.0) == ["a"] and limit.deadline() is None
    assert limit.allow("a", 11.0) and not limit.allow("a", 11.5)
    assert limit.due(12.0) == ["a"] and limit.allow("a", 12.0)
    assert limit.allow("c", 12.0)  # a third key: the table of two is cleared, nothing waits forever
    assert limit.due(100.0) == []


def test_a_flood_of_spoofed_claims_logs_a_bounded_number_of_lines_and_counts_every_conflict(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    node = start_node(topo.node_a, "--log-json")
    lines: list[str] = []
    stderr = node.proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(stderr), daemon=True)  # never let the pipe fill up
    reader.start()
    node.set({VIP4: ["eth0"]})
    started = time.monotonic()
    sent = json.loads(topo.client.run([PYTHON, HELPER, "claims", "eth0", str(SPOOFED)], timeout=60))
    assert sent == {"sent": SPOOFED}

    def counted() -> int:
        counters = node.status()["counters"]
        assert isinstance(counters, dict)
        return int(counters["conflicts"])

    assert wait_for(lambda: counted() >= SPOOFED, timeout=30, interval=0.2), counted()
    elapsed = time.monotonic() - started
    assert counted() == SPOOFED  # the metric counts every conflict
    node.stop()  # flushes the summary of what was still suppressed
    reader.join(10)

    docs = [json.loads(line) for line in lines if line.startswith("{")]
    conflicts = [d for d in docs if d.get("event") == "conflict"]
    summaries = [d for d in docs if d.get("event") == "conflicts-suppressed"]
    windows = int(elapsed // CONFLICT_REPORT_WINDOW) + 2  # windows the flood can touch, rounding up at both ends
    assert 0 < len(conflicts) <= CONFLICT_REPORT_BURST * windows, len(conflicts)
    assert 0 < len(summaries) <= windows
    # Every spoofed MAC was a distinct report: each one was either logged or counted in a summary.
    assert len(conflicts) + sum(int(d["count"]) for d in summaries) == SPOOFED
    assert {(d["ip"], d["iface"], d["family"]) for d in conflicts} == {(VIP4, "eth0", "ipv4")}
    assert all(d["mac"].startswith("02:cc:00:") and "event=" not in d["msg"] for d in conflicts)
