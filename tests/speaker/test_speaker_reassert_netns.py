"""`Announcer.reassert` on the wire (issue 9, re-assertion after a false takeover): however often the control plane
asks, an owned (IP, interface) is announced again at most once a second: the requests waiting together get one
round, those that come within the second after it one more round at its end; a pair not owned is never announced.
tcpdump on the client's link counts the rounds (speaker_netns.py's topology, one announcer in node-a).

The bounds are generous: what is checked is how many rounds go out, not when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether
from speaker_netns import VIP4, VIP6, Capture, NodeProc, Topology
from test_speaker_refresh_netns import QUIET, rounds

pytestmark = pytest.mark.root

OTHER4 = "192.0.2.101"  # not owned by node-a


def test_reasserting_an_owned_ip_150_times_in_a_second_sends_one_round_now_and_one_at_the_end_of_the_second(
    topo: Topology, start_node: Callable[..., NodeProc], tmp_path: Path
) -> None:
    a = start_node(topo.node_a, *QUIET)  # the takeover is one round: every later one is a re-assertion
    cap = Capture(topo.client, tmp_path / "reassert.pcap", "arp or icmp6")
    a.set({VIP4: ["eth0"], VIP6: ["eth0"]})
    time.sleep(1.0)  # pacing: the takeover round apart from the re-assertions
    for ip, iface in ((VIP4, "eth0"), (OTHER4, "eth0"), (VIP6, "eth9")) * 3:
        assert a.request({"cmd": "reassert", "ip": ip, "iface": iface, "times": 50}) == {"reply": "reassert"}
        time.sleep(0.1)  # pacing: three series of requests within a second, after the first round went out
    time.sleep(3.0)  # the trailing round is due one second after the first
    captured = [(Ether(f), ts) for f, ts in cap.stop()]
    status = a.status()
    a.set({})
    mac = topo.node_a.mac
    assert len(rounds(captured, mac, VIP4)) == 3, (
        rounds(captured, mac, VIP4),
        rounds(captured, mac, VIP6),
        status,
    )  # the takeover, now, a second later
    assert len(rounds(captured, mac, VIP6)) == 1  # its takeover only: not owned on eth9
    assert rounds(captured, mac, OTHER4) == []
    assert isinstance(status, dict) and status["counters"]["reasserts"] == 2, status
