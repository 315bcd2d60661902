"""The runner-up's probes on the wire (speaker.prober), in network namespaces: node-a's real announcer owns the
VIPs, node-b's prober learns node-a's MAC from what node-a sends, probes it unicast, and hears the answers.

Every frame node-b sends is checked in a capture on node-b's link: unicast to node-a's MAC, never broadcast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether
from speaker_netns import VIP4, VIP6, Capture, NodeProc, Topology, wait_for

pytestmark = pytest.mark.root

PROBER = str(Path(__file__).with_name("speaker_prober.py"))
ONE_ROUND = ("--burst-interval", "0.2", "--burst-duration", "0")  # the takeover round only, no repeats


def heard(p: NodeProc, owner: str) -> int:
    return sum(1 for e in p.events if isinstance(e.get("event"), dict) and e["event"].get("heard") == owner)  # type: ignore[union-attr]


def counts(p: NodeProc) -> dict[str, int]:
    reply = p.request({"cmd": "counts"})["reply"]
    assert isinstance(reply, dict)
    return reply


@pytest.mark.parametrize(("probe_ip", "proto"), [(VIP4, "arp"), (VIP6, "ndp")])
def test_a_unicast_probe_to_the_owner_learned_from_its_takeover_gets_the_owners_answer(
    topo: Topology, start_node: Callable[..., NodeProc], tmp_path: Path, probe_ip: str, proto: str
) -> None:
    prober = start_node(topo.node_b, helper=PROBER)
    target = {"probe": probe_ip, "vips": [VIP4, VIP6]}
    assert prober.request({"cmd": "targets", "targets": {"node-a": target}})["reply"] is True
    assert prober.request({"cmd": "probe", "owner": "node-a"})["reply"] is False  # no MAC yet: nothing sent
    cap = Capture(topo.node_b, tmp_path / "b.pcap", "arp or icmp6")
    owner = start_node(topo.node_a, *ONE_ROUND)
    owner.set({VIP4: "all", VIP6: "all"})  # the takeover round: a gratuitous ARP pair and an unsolicited NA
    assert wait_for(lambda: prober.request({"cmd": "seen"})["reply"], timeout=10)
    seen = prober.request({"cmd": "seen"})["reply"]
    assert seen == {"node-a": {"iface": "eth0", "mac": topo.node_a.mac}}
    before = counts(prober)["heard"]
    for _ in range(5):
        assert prober.request({"cmd": "probe", "owner": "node-a"})["reply"] is True
    assert wait_for(lambda: counts(prober)["heard"] >= before + 5, timeout=10), counts(prober)
    frames = [Ether(f) for f, _ in cap.stop()]
    sent = [f for f in frames if f.src == topo.node_b.mac]
    assert len(sent) == 5
    assert {f.dst for f in sent} == {topo.node_a.mac}  # unicast, never broadcast or multicast
    answers = [f for f in frames if f.src == topo.node_a.mac and f.dst == topo.node_b.mac]
    assert len(answers) == 5
    if proto == "arp":
        assert all(f[ARP].op == 1 and f[ARP].pdst == VIP4 and f[ARP].psrc == "0.0.0.0" for f in sent)
        assert all(f[ARP].op == 2 and f[ARP].psrc == VIP4 and f[ARP].hwsrc == topo.node_a.mac for f in answers)
    else:
        assert all(f[ICMPv6ND_NS].tgt == VIP6 and f[IPv6].dst == VIP6 for f in sent)
        assert all(f[IPv6].src.startswith("fe80:") for f in sent)  # from our link-local address
        assert all(f[ICMPv6ND_NA].tgt == VIP6 and f[ICMPv6ND_NA].S == 1 for f in answers)


def test_an_owner_that_stopped_answering_is_not_heard(topo: Topology, start_node: Callable[..., NodeProc]) -> None:
    prober = start_node(topo.node_b, helper=PROBER)
    prober.request({"cmd": "targets", "targets": {"node-a": {"probe": VIP4, "vips": [VIP4]}}})
    owner = start_node(topo.node_a, *ONE_ROUND)
    owner.set({VIP4: "all"})
    assert wait_for(lambda: prober.request({"cmd": "seen"})["reply"], timeout=10)
    owner.kill()
    before = counts(prober)["heard"]
    for _ in range(3):
        assert prober.request({"cmd": "probe", "owner": "node-a"})["reply"] is True
    # The probes go out to the learned MAC; with node-a's responder gone nothing answers (a bound to catch a
    # hang, not a timing: the answers of a live owner arrive in microseconds).
    assert not wait_for(lambda: counts(prober)["heard"] > before, timeout=1.0)
    assert counts(prober)["sent"] >= 3


def test_frames_from_other_vips_and_unwatched_owners_teach_nothing(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    prober = start_node(topo.node_b, helper=PROBER)
    prober.request({"cmd": "targets", "targets": {"node-a": {"probe": "192.0.2.101", "vips": ["192.0.2.101"]}}})
    owner = start_node(topo.node_a, *ONE_ROUND)
    owner.set({VIP4: "all"})  # announces .100, which node-b does not watch
    assert not wait_for(lambda: prober.request({"cmd": "seen"})["reply"], timeout=1.0)
    assert prober.request({"cmd": "probe", "owner": "node-a"})["reply"] is False
