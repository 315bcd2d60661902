"""The periodic refresh on the wire (issue 9, part 3): a node with a refresh interval announces each owned IP
again at about that interval, with the same frames as one takeover round; a node without one sends nothing after
its takeover. tcpdump on the client's link sees both (speaker_netns.py's topology, one announcer per node).

The bounds are generous (they catch a refresh that never comes or comes in a burst, not a late tick); the spread
itself is tested without packets in test_speaker_refresh.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, IPv6
from scapy.layers.l2 import ARP, Ether
from speaker_netns import VIP4, VIP6, Capture, NodeProc, Topology

pytestmark = pytest.mark.root

INTERVAL = 5.0  # the smallest --refresh-interval
OTHER4 = "192.0.2.101"  # announced by node-b, which refreshes nothing
QUIET = ("--burst-duration", "0")  # the takeover is one round: every later frame is a refresh
CAPTURE = 11.5  # seconds: two refreshes at least for each IP of node-a


def rounds(frames: list[tuple[Ether, float]], mac: str, ip: str) -> list[float]:
    """When `mac` announced `ip` (a gratuitous ARP, or an unsolicited NA to all nodes): one time per round, the
    frames of one round (ARP request and reply) within 0.5 s of its first."""
    times = sorted(
        ts
        for f, ts in frames
        if f.src == mac
        and (
            (ARP in f and f[ARP].psrc == f[ARP].pdst == ip)
            or (ICMPv6ND_NA in f and f[IPv6].dst == "ff02::1" and f[ICMPv6ND_NA].tgt == ip)
        )
    )
    out: list[float] = []
    for ts in times:
        if not out or ts - out[-1] > 0.5:
            out.append(ts)
    return out


def test_refresh_reannounces_each_owned_ip_at_about_the_interval_and_never_when_off(
    topo: Topology, start_node: Callable[..., NodeProc], tmp_path: Path
) -> None:
    a = start_node(topo.node_a, *QUIET, "--refresh-interval", str(INTERVAL))
    b = start_node(topo.node_b, *QUIET)
    cap = Capture(topo.client, tmp_path / "refresh.pcap", "arp or icmp6")
    started = time.time()
    a.set({VIP4: ["eth0"], VIP6: ["eth0"]})
    b.set({OTHER4: ["eth0"]})
    time.sleep(CAPTURE)
    captured = [(Ether(f), ts) for f, ts in cap.stop()]
    a.set({})
    b.set({})
    for ip in (VIP4, VIP6):
        seen = [t - started for t in rounds(captured, topo.node_a.mac, ip)]
        takeover, refreshes = seen[0], seen[1:]
        assert takeover < 2, seen
        assert len(refreshes) >= 2, seen  # 11.5 s: the first within one interval, then every 5 s
        assert refreshes[0] - takeover < INTERVAL + 2, seen
        gaps = [later - earlier for earlier, later in itertools.pairwise(refreshes)]
        assert all(INTERVAL - 1.5 < gap < INTERVAL + 3 for gap in gaps), seen
    only = [t - started for t in rounds(captured, topo.node_b.mac, OTHER4)]
    assert len(only) == 1 and only[0] < 2, only  # the takeover, and nothing after it
