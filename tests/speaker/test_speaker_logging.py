"""The speaker's log lines as an operator's log pipeline sees them: JSON with structured fields.

node-a runs with ``--log-json`` (l2guard.logs' JSON formatter, as in the cluster) through a takeover, a missing
interface and a release. Every line from the speaker's modules carries its fields (event, ip, iface, reason, ...)
in the JSON document, and its message is plain text: no ``event=...`` or ``key=value`` (issue 7, item 7).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

import pytest
from speaker_netns import VIP4, VIP6, NodeProc, Topology

pytestmark = pytest.mark.root

KEY_VALUE = re.compile(r"\b[a-z_]+=\S")


def test_takeover_problem_and_release_lines_carry_fields_and_no_key_value_text(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    node = start_node(topo.node_a, "--log-json")
    lines: list[str] = []
    stderr = node.proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(stderr), daemon=True)
    reader.start()
    node.set({VIP4: ["eth0"], VIP6: ["eth0"], "192.0.2.101": ["eth7"]})
    node.set({})
    node.stop()
    reader.join(10)

    docs = [json.loads(line) for line in lines if line.startswith("{")]
    ours = [d for d in docs if str(d.get("logger", "")).startswith("speaker.")]
    assert ours, lines
    for doc in ours:
        assert "event" in doc, doc
        assert not KEY_VALUE.search(doc["msg"]), doc
    by_event = {(d["event"], d.get("ip"), d.get("iface")): d for d in ours}
    for ip in (VIP4, VIP6):
        assert by_event[("takeover", ip, "eth0")]["count"] >= 1
        assert ("release", ip, "eth0") in by_event
    problem = by_event[("interface-problem", "192.0.2.101", "eth7")]
    assert problem["reason"] == "missing" and problem["level"] == "warning"
    assert problem["msg"] == "cannot announce 192.0.2.101 on eth7: missing"
