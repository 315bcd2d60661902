"""Frames of other VLANs reach a packet socket on the parent interface and must not be answered there.

This kernel has no 8021q module, which is the case that bit: with no VLAN interface for VLAN 5, a socket bound
to eth0 still receives VLAN 5's frames, untagged in the bytes (the tag went to the metadata, then the kernel
marked the frame PACKET_OTHERHOST). The client namespace sends scapy-crafted ``Dot1Q(vlan=5)`` who-has and NS
frames for the VIPs through the snooping bridge, and an AF_PACKET socket on the client collects what comes
back from the node (speaker_crafted.py). Untagged requests are the control, and priority-tagged ones (VLAN id 0,
which is the native VLAN) must be answered as well (issue 7, item 5).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from speaker_netns import PYTHON, VIP4, VIP6, Host, NodeProc, Topology, wait_for

pytestmark = pytest.mark.root

HELPER = str(Path(__file__).with_name("speaker_crafted.py"))
CASES = ("native:-", "vlan5:5", "priority:0")


def probe(client: Host, node: Host) -> tuple[dict[str, list[str]], list[dict[str, object]]]:
    """Send the CASES from ``client``; (case -> [ip4, ip6] sources, replies from ``node``)."""
    out = client.run([PYTHON, HELPER, "probe", "eth0", node.mac, *CASES], timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    return result["sources"], result["replies"]


def answered(sources: dict[str, list[str]], replies: list[dict[str, object]], case: str) -> set[str]:
    """The kinds of untagged reply that went to the addresses of ``case`` ("arp-reply", "na")."""
    ip4, ip6 = sources[case]
    return {str(r["kind"]) for r in replies if r["to"] in (ip4, ip6) and not r["tagged"]}


def test_announcer_ignores_vlan5_requests_on_the_parent_and_answers_native_and_priority_tagged(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    a = start_node(topo.node_a)
    st = a.set({VIP4: ["eth0"], VIP6: ["eth0"]})["status"]
    assert isinstance(st, dict) and st["announcing"] == {VIP4: ["eth0"], VIP6: ["eth0"]}
    sources, replies = probe(topo.client, topo.node_a)
    assert answered(sources, replies, "native") == {"arp-reply", "na"}, replies
    assert answered(sources, replies, "priority") == {"arp-reply", "na"}, replies
    assert answered(sources, replies, "vlan5") == set(), replies
    assert not any(r["tagged"] for r in replies)


def test_the_responder_itself_ignores_vlan5_requests_when_its_filter_accepts_everything(topo: Topology) -> None:
    # The BPF program is only an optimisation: with a filter that accepts every frame, the responder's own
    # receive path must still tell VLAN 5 from the native VLAN.
    node = subprocess.Popen(
        topo.node_a.cmd([PYTHON, HELPER, "port", "eth0"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None and node.stdin is not None
        ready = node.stdout.readline()
        assert json.loads(ready or "{}").get("ready"), node.stderr.read() if node.stderr else ""
        sources, replies = probe(topo.client, topo.node_a)
        node.stdin.close()
        counters = json.loads(node.stdout.readline())["counters"]
    finally:
        if node.poll() is None:
            node.kill()
        node.wait(10)
        for f in (node.stdout, node.stderr):
            if f is not None:
                f.close()
    assert answered(sources, replies, "native") == {"arp-reply", "na"}, replies
    assert answered(sources, replies, "priority") == {"arp-reply", "na"}, replies
    assert answered(sources, replies, "vlan5") == set(), replies
    assert counters["requests_received"] == 4  # the VLAN 5 frames were not even counted as requests


def test_a_claim_for_the_vip_from_vlan5_is_not_a_conflict_on_the_parent(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    # VLAN 5 is another broadcast domain: 192.0.2.100 there is somebody else's business.
    a = start_node(topo.node_a)
    a.set({VIP4: ["eth0"]})
    topo.client.run([PYTHON, HELPER, "claims", "eth0", "3", "5"], timeout=60)
    topo.client.run([PYTHON, HELPER, "claims", "eth0", "1", "-", "100"], timeout=60)  # the control, sent last

    def conflicts() -> int:
        counters = a.status()["counters"]
        assert isinstance(counters, dict)
        return int(counters["conflicts"])

    assert wait_for(lambda: conflicts() >= 1, timeout=10, interval=0.1)
    assert conflicts() == 1  # only the untagged claim, which arrived after the three tagged ones
    reported = a.status()["conflicts"]
    assert isinstance(reported, list) and [c["mac"] for c in reported] == ["02:cc:00:00:00:64"]
