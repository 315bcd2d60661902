"""The data plane against real kernels and real tools, in network namespaces on a snooping bridge.

Topology (speaker_netns.py): client, node-a and node-b on br0 with mcast_snooping 1 and an active
querier, so a missing solicited-node join makes NDP fail instead of passing by flooding.

Data path choice: each node serves HTTP with the VIP on ``lo`` and ``arp_ignore=1``/``arp_announce=2``
on ``all`` and ``eth0``. The kernels then never answer ARP for the VIP (checked: curl fails before the
announcer starts), so the client reaches a node only through the speaker's answers; the node that
receives the frames accepts them because the VIP is local. (An nftables DNAT from VIP:port to the
node IP works too; lo + arp_ignore needs no extra tooling and is what MetalLB users typically run.)

These tests assert behaviour, with bounds that only catch a hang (seconds, never milliseconds). How fast things
happen (takeover, burst spacing, failover interruption, loss under a flood) is measured in
bench/bench_dataplane.py against baselines of the same run; see docs/benchmarks-dataplane.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether
from speaker_netns import (
    PYTHON,
    REPO,
    VIP4,
    VIP6,
    Capture,
    Host,
    NodeProc,
    Topology,
    sh,
    sn_group,
    wait_for,
)
from speaker_web import curl, probe_log, serve_vip_on_lo, start_probe

pytestmark = pytest.mark.root

CLIENT_TOOL = str(Path(__file__).with_name("speaker_arpclient.py"))
FAST_BURST = ("--burst-interval", "0.2", "--burst-duration", "0.4")  # rounds at 0, 0.2, 0.4 s


def client_tool(client: Host, *args: str, timeout: float = 60) -> dict[str, object]:
    out = client.run([PYTHON, CLIENT_TOOL, *args], timeout=timeout)
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def arping(client: Host, ip: str, count: int = 3) -> tuple[int, set[str], str]:
    """(responses, MACs seen, raw output) of iputils arping."""
    res = sh(client.cmd(["arping", "-c", str(count), "-w", str(count + 1), "-I", "eth0", ip]), check=False)
    m = re.search(r"Received (\d+) response", res.stdout)
    macs = {x.lower() for x in re.findall(r"\[([0-9A-Fa-f:]{17})\]", res.stdout)}
    return (int(m.group(1)) if m else 0), macs, res.stdout


def ndisc6(client: Host, ip: str) -> str | None:
    """The MAC ndisc6 reports for ``ip``, or None."""
    res = sh(client.cmd(["ndisc6", "-1", "-q", "-r", "2", "-w", "500", ip, "eth0"]), check=False)
    out = res.stdout.strip().lower()
    return out if res.returncode == 0 and out else None


@pytest.fixture(autouse=True)
def _clean_client(request: pytest.FixtureRequest) -> None:
    if "topo" in request.fixturenames:
        topo: Topology = request.getfixturevalue("topo")
        topo.client.flush_neigh()


def both(where: str | list[str] = "all") -> dict[str, object]:
    return {VIP4: where, VIP6: where}


# ----------------------------------------------------------------------------------------- resolving


def test_kernel_client_resolves_both_vips_to_node_a_only_while_node_a_announces(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    client = topo.client
    client.run(["ping", "-c1", "-W1", VIP4], check=False)
    assert client.neigh(VIP4)[0] is None  # nobody answers before the announcer runs
    a = start_node(topo.node_a)
    st = a.set(both())["status"]
    assert isinstance(st, dict) and st["announcing"] == {VIP4: ["eth0"], VIP6: ["eth0"]}
    client.flush_neigh()
    client.run(["ping", "-c1", "-W1", VIP4], check=False)
    client.run(["ping", "-6", "-c1", "-W1", VIP6], check=False)
    assert client.neigh(VIP4)[0] == topo.node_a.mac
    assert client.neigh(VIP6)[0] == topo.node_a.mac


def test_arping_gets_node_a_mac_for_broadcast_and_unicast_follow_up_probes(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    a = start_node(topo.node_a)
    a.set({VIP4: ["eth0"]})
    n, macs, out = arping(topo.client, VIP4, count=3)
    assert "(1 broadcast(s))" in out  # iputils: first probe broadcast, the rest unicast to our MAC
    assert n == 3 and macs == {topo.node_a.mac}, out


def test_ndisc6_gets_node_a_mac_from_an_na_sourced_from_the_vip(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    assert ndisc6(topo.client, VIP6) is None
    a = start_node(topo.node_a)
    a.set({VIP6: ["eth0"]})
    assert ndisc6(topo.client, VIP6) == topo.node_a.mac


def test_unicast_ns_to_our_mac_gets_solicited_override_na_with_tlla(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    a = start_node(topo.node_a)
    a.set({VIP6: ["eth0"]})
    res = client_tool(topo.client, "ns", "--target", VIP6, "--source", topo.client.ip6,
                      "--ipdst", VIP6, "--dst", topo.node_a.mac)  # fmt: skip
    replies = [Ether(bytes.fromhex(h)) for h in res["replies"]]  # type: ignore[union-attr]
    assert len(replies) == 1
    na = replies[0]
    assert na.dst == topo.client.mac and na.src == topo.node_a.mac
    assert na[IPv6].src == VIP6 and na[IPv6].dst == topo.client.ip6 and na[IPv6].hlim == 255
    assert (na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].O, na[ICMPv6ND_NA].R) == (1, 1, 0)
    assert na[ICMPv6NDOptDstLLAddr].lladdr == topo.node_a.mac


def test_kernel_nud_unicast_probe_for_vip6_is_answered_and_entry_becomes_reachable(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    client = topo.client
    a = start_node(topo.node_a)
    a.set({VIP6: ["eth0"]})
    client.run(["sysctl", "-qw", "net.ipv6.neigh.eth0.delay_first_probe_time=1"])
    try:
        client.run(["ip", "-6", "neigh", "replace", VIP6, "lladdr", topo.node_a.mac, "dev", "eth0", "nud", "stale"])
        cap = Capture(client, Path(f"/tmp/l2g-nud-{topo.suffix}.pcap"), "icmp6")
        client.run(["ping", "-6", "-c1", "-W1", VIP6], check=False)  # STALE -> DELAY -> PROBE (unicast NS)
        assert wait_for(lambda: client.neigh(VIP6)[1] == "REACHABLE", timeout=10)
        frames = [Ether(f) for f, _ in cap.stop()]
    finally:
        client.run(["sysctl", "-qw", "net.ipv6.neigh.eth0.delay_first_probe_time=5"])
    unicast_ns = [f for f in frames if ICMPv6ND_NS in f and f.dst == topo.node_a.mac and f[IPv6].dst == VIP6]
    answers = [f for f in frames if ICMPv6ND_NA in f and f.src == topo.node_a.mac and f[ICMPv6ND_NA].S == 1]
    assert unicast_ns and answers, [f.summary() for f in frames]


def test_unicast_arp_probe_for_another_nodes_mac_is_not_answered(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    a = start_node(topo.node_a)
    a.set({VIP4: ["eth0"]})
    # An unknown unicast destination is flooded by the bridge, so node-a does see this frame.
    other = client_tool(topo.client, "probe", "--dst", "02:00:00:00:ee:ee", "--count", "3")
    assert other["replies"] == 0
    ours = client_tool(topo.client, "probe", "--dst", topo.node_a.mac, "--count", "3")
    assert ours["replies"] == 3 and ours["macs"] == {topo.node_a.mac: 3}


def test_dad_probe_for_owned_vip6_is_defended_with_na_to_all_nodes(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    a = start_node(topo.node_a)
    a.set({VIP6: ["eth0"]})
    res = client_tool(topo.client, "ns", "--target", VIP6, "--source", "::")
    replies = [Ether(bytes.fromhex(h)) for h in res["replies"]]  # type: ignore[union-attr]
    assert len(replies) == 1
    na = replies[0]
    assert na.dst == "33:33:00:00:00:01" and na[IPv6].dst == "ff02::1" and na[IPv6].src == VIP6
    assert (na[ICMPv6ND_NA].S, na[ICMPv6ND_NA].O) == (0, 1)


def test_snooping_bridge_forwards_ns_only_to_the_port_that_joined_and_stops_after_release(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    group = sn_group(VIP6)
    a = start_node(topo.node_a)
    st = a.set({VIP6: ["eth0"]})["status"]
    assert isinstance(st, dict) and st["groups"] == {"eth0": [group]}
    assert wait_for(lambda: topo.node_a.port in topo.mdb_ports(group), timeout=10)
    cap_b = Capture(topo.node_b, Path(f"/tmp/l2g-snoop-{topo.suffix}.pcap"), "icmp6 and ip6[40] == 135")
    assert ndisc6(topo.client, VIP6) == topo.node_a.mac
    seen_by_b = [f for f, _ in cap_b.stop() if ICMPv6ND_NS in Ether(f) and Ether(f)[ICMPv6ND_NS].tgt == VIP6]
    assert seen_by_b == []  # not flooded: the querier is active and node-b never joined
    a.set({})
    assert wait_for(lambda: topo.node_a.port not in topo.mdb_ports(group), timeout=10)
    assert ndisc6(topo.client, VIP6) is None


# ---------------------------------------------------------------------------------- takeover/release


def test_takeover_sends_well_formed_garp_and_unsolicited_na_and_client_entries_flip(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    client = topo.client
    a = start_node(topo.node_a, *FAST_BURST)
    b = start_node(topo.node_b, *FAST_BURST)
    a.set(both(["eth0"]))
    client.run(["ping", "-c1", "-W1", VIP4], check=False)
    client.run(["ping", "-6", "-c1", "-W1", VIP6], check=False)
    assert client.neigh(VIP4)[0] == topo.node_a.mac and client.neigh(VIP6)[0] == topo.node_a.mac
    time.sleep(1.1)  # leave the kernel's 1 s locktime after the first answer
    cap = Capture(client, Path(f"/tmp/l2g-takeover-{topo.suffix}.pcap"), "arp or icmp6")
    a.set({})
    st = b.set(both(["eth0"]))["status"]  # returns once applied (NodeProc waits at most 15 s)
    assert isinstance(st, dict) and st["announcing"] == {VIP4: ["eth0"], VIP6: ["eth0"]}
    flipped = wait_for(
        lambda: client.neigh(VIP4)[0] == topo.node_b.mac and client.neigh(VIP6)[0] == topo.node_b.mac,
        timeout=10,
    )
    burst_done = wait_for(lambda: counter(b, "gratuitous_sent") >= 9, timeout=10)  # 3 rounds x 3 frames
    time.sleep(0.2)  # the last frames of the burst reach the client's capture
    captured = cap.stop()
    frames = [Ether(f) for f, _ in captured]
    for frame, (_, ts) in zip(frames, captured, strict=True):
        frame.time = ts  # capture time, not dissection time
    assert flipped, (client.neigh(VIP4), client.neigh(VIP6))
    assert burst_done, b.status()["counters"]
    from_b = [f for f in frames if f.src == topo.node_b.mac]
    garp_req = [f for f in from_b if ARP in f and f[ARP].op == 1 and f[ARP].psrc == f[ARP].pdst == VIP4]
    garp_rep = [f for f in from_b if ARP in f and f[ARP].op == 2 and f[ARP].psrc == f[ARP].pdst == VIP4]
    unsol_na = [f for f in from_b if ICMPv6ND_NA in f and f[IPv6].dst == "ff02::1"]
    assert len(garp_req) == len(garp_rep) == len(unsol_na) == 3  # one round at once + two repeats
    for f in garp_req:
        assert f.dst == "ff:ff:ff:ff:ff:ff" and f[ARP].hwsrc == topo.node_b.mac
        assert f[ARP].hwdst == "00:00:00:00:00:00"
    for f in garp_rep:
        assert f.dst == "ff:ff:ff:ff:ff:ff" and f[ARP].hwsrc == topo.node_b.mac
    for f in unsol_na:
        na = f[ICMPv6ND_NA]
        assert f.dst == "33:33:00:00:00:01" and f[IPv6].src == VIP6 and f[IPv6].hlim == 255
        assert (na.R, na.S, na.O, na.tgt) == (0, 0, 1, VIP6)
        assert f[ICMPv6NDOptDstLLAddr].lladdr == topo.node_b.mac
        fresh = f.copy()
        del fresh[ICMPv6ND_NA].cksum
        assert Ether(bytes(fresh))[ICMPv6ND_NA].cksum == na.cksum
    # The repeats are separate rounds, not one batch: the last comes at least one interval (0.2 s) after the first,
    # because rounds are scheduled at 0, 0.2 and 0.4 s and a busy machine can only delay them.
    times = sorted(float(f.time) for f in garp_req)
    assert times[-1] - times[0] >= 0.2, times
    assert not [f for f in frames if f.src == topo.node_a.mac and ARP in f and f[ARP].op == 1]


def counter(node: NodeProc, kind: str) -> int:
    counters = node.status()["counters"]
    assert isinstance(counters, dict)
    return int(counters[kind])


def test_release_stops_answers_at_once(topo: Topology, start_node: Callable[..., NodeProc]) -> None:
    a = start_node(topo.node_a)
    a.set(both(["eth0"]))
    assert arping(topo.client, VIP4, count=1)[0] == 1
    st = a.set({})["status"]
    assert isinstance(st, dict) and st["announcing"] == {} and st["groups"] == {}
    assert arping(topo.client, VIP4, count=2)[0] == 0
    assert client_tool(topo.client, "probe", "--dst", topo.node_a.mac, "--count", "2")["replies"] == 0
    assert client_tool(topo.client, "ns", "--target", VIP6, "--source", topo.client.ip6,
                       "--ipdst", VIP6, "--dst", topo.node_a.mac)["replies"] == []  # fmt: skip


def test_duplicate_announcers_report_a_conflict_with_the_other_mac(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    a = start_node(topo.node_a, *FAST_BURST)
    b = start_node(topo.node_b, *FAST_BURST)
    a.set(both(["eth0"]))
    b.set(both(["eth0"]))  # node-b's takeover frames claim IPs node-a owns
    assert wait_for(lambda: len(a.status()["conflicts"]) >= 2, timeout=10)  # type: ignore[arg-type]
    conflicts = a.status()["conflicts"]
    assert isinstance(conflicts, list)
    assert {(c["ip"], c["family"], c["mac"]) for c in conflicts} >= {
        (VIP4, "ipv4", topo.node_b.mac),
        (VIP6, "ipv6", topo.node_b.mac),
    }
    counters = a.status()["counters"]
    assert isinstance(counters, dict) and counters["conflicts"] >= 2
    assert any(e["event"]["kind"] == "Conflict" for e in a.events)  # type: ignore[index]


# ------------------------------------------------------------------------------------------ interfaces


def test_missing_interface_is_reported_then_used_when_it_appears(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    node = topo.node_a
    a = start_node(node)  # periodic rescan every 10 s: the pickup below must come from link events
    st = a.set({VIP4: ["eth9"]})["status"]
    assert isinstance(st, dict) and st["announcing"] == {}
    assert [(p["iface"], p["reason"]) for p in st["problems"]] == [("eth9", "missing")]
    assert any(e["event"]["kind"] == "InterfaceProblem" for e in a.events)  # type: ignore[index]
    try:
        node.run(["ip", "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p"])
        node.run(["ip", "link", "set", "eth9p", "up"])
        node.run(["ip", "link", "set", "eth9", "up"])
        assert wait_for(lambda: a.status()["announcing"] == {VIP4: ["eth9"]}, timeout=10)
        assert a.status()["problems"] == []
    finally:
        node.run(["ip", "link", "del", "eth9"], check=False)
    assert wait_for(lambda: a.status()["announcing"] == {}, timeout=10)


def test_all_interfaces_skips_excluded_down_and_enslaved_links(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    node = topo.node_b
    cmds = [
        "ip link add veth7 type veth peer name veth7p",  # excluded by the default regex
        "ip link add lan1 type veth peer name lan1p",  # eligible once up
        "ip link add lan2 type veth peer name lan2p",  # stays down
        "ip link add brx type bridge",
        "ip link add lan3 type veth peer name lan3p",  # enslaved to brx
        "ip link set lan3 master brx",
    ]
    try:
        for c in cmds:
            node.run(c)
        for dev in ("veth7", "veth7p", "lan1", "lan1p", "lan2p", "lan3", "lan3p", "brx"):
            node.run(["ip", "link", "set", dev, "up"])
        b = start_node(node, "--exclude", "^(veth|brx|lan[0-9]p)")
        st = b.set({VIP4: "all"})["status"]
        assert isinstance(st, dict) and st["announcing"] == {VIP4: ["eth0", "lan1"]}
        st = b.set({VIP4: ["lan2", "lan3", "eth0"]})["status"]
        assert isinstance(st, dict) and st["announcing"] == {VIP4: ["eth0"]}
        assert sorted((p["iface"], p["reason"]) for p in st["problems"]) == [
            ("lan2", "down"),
            ("lan3", "enslaved"),
        ]
    finally:
        for dev in ("veth7", "lan1", "lan2", "lan3", "brx"):
            node.run(["ip", "link", "del", dev], check=False)


# ----------------------------------------------------------------------------------------------- storm


def test_a_flood_for_other_ips_stays_out_of_userspace_and_owned_requests_are_answered_meanwhile(
    topo: Topology, start_node: Callable[..., NodeProc]
) -> None:
    a = start_node(topo.node_a)
    a.set({VIP4: ["eth0"]})
    before = a.status()["counters"]
    flood = subprocess.Popen(
        topo.client.cmd([PYTHON, CLIENT_TOOL, "flood", "--rate", "20000", "--duration", "2.5"]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.3)
        load = client_tool(topo.client, "load", "--rate", "1000", "--duration", "1.5")
        out, _ = flood.communicate(timeout=30)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait(10)
    flooded = json.loads(out)
    assert flooded["sent"] > 0 and load["sent"] > 0, (flooded, load)  # the flood ran alongside the load
    assert load["answered"] > 0, load  # owned requests are answered during the flood (the loss rate is benched)
    after = a.status()["counters"]
    assert isinstance(before, dict) and isinstance(after, dict)
    received = after["requests_received"] - before["requests_received"]
    # The BPF filter kept the flood out of userspace: only owned requests were seen, and each seen was answered.
    assert load["answered"] <= received <= load["sent"], (received, load)
    assert after["requests_answered"] - before["requests_answered"] == received


# ------------------------------------------------------------------------------------------- data path


@pytest.fixture
def web(fresh_topo: Topology) -> Iterator[Topology]:
    """A fresh topology with an HTTP server behind both VIPs on node-a and node-b, answering with its node name."""
    t = fresh_topo
    servers = [serve_vip_on_lo(t.node_a, "node-a"), serve_vip_on_lo(t.node_b, "node-b")]
    try:
        assert wait_for(lambda: "8080" in t.node_a.run(["ss", "-ltn"]) and "8080" in t.node_b.run(["ss", "-ltn"]), 5)
        yield t
    finally:
        for s in servers:
            s.kill()
            s.wait(10)


def test_http_via_vip_works_only_through_our_answers_and_fails_over_to_node_b(
    web: Topology, start_node: Callable[..., NodeProc]
) -> None:
    t = web
    assert curl(t.client) is None  # the kernels stay silent: no ARP answer, no HTTP
    a = start_node(t.node_a)
    b = start_node(t.node_b)
    a.set({VIP4: ["eth0"]})
    assert curl(t.client) == "node-a"
    probe = start_probe(t.client, VIP4, 15.0, until="node-b", count=20)  # 15 s only bounds a hang
    time.sleep(0.5)
    t0 = time.monotonic()
    t.node_a.run(["ip", "link", "set", "eth0", "down"])  # node-a fails
    b.set({VIP4: ["eth0"]})
    log = probe_log(probe)
    before = [who for ts, who in log if ts < t0]
    after = [(ts, who) for ts, who in log if ts >= t0]
    assert before and all(who == "node-a" for who in before[-10:])
    first_b = next((ts for ts, who in after if who == "node-b"), None)
    assert first_b is not None, after[-5:]  # node-b took over (how fast: bench/bench_dataplane.py)
    assert all(who == "node-b" for ts, who in after if ts > first_b)
    assert sum(who == "node-b" for _, who in after) == 20  # and keeps answering
    # node-a's announcer survived its link going down (ENETDOWN) and still answers commands.
    st = a.status()
    assert st["announcing"] == {}


def test_http_via_ipv6_vip_works_only_through_our_answers_and_follows_a_takeover(
    web: Topology, start_node: Callable[..., NodeProc]
) -> None:
    t = web
    assert curl(t.client, VIP6) is None  # no NA from either kernel: the client cannot resolve the VIP
    a = start_node(t.node_a)
    b = start_node(t.node_b)
    a.set({VIP6: ["eth0"]})
    assert curl(t.client, VIP6) == "node-a"
    a.set({})
    b.set({VIP6: ["eth0"]})
    assert wait_for(lambda: curl(t.client, VIP6) == "node-b", 10)
    assert t.client.run(["ip", "-6", "neigh", "show", VIP6]).split("lladdr ")[1].split()[0] == t.node_b.mac


# ---------------------------------------------------------------------------------------------- CLI


def test_announce_cli_answers_then_prints_counters_and_goes_silent_on_sigterm(topo: Topology) -> None:
    # Through the real `l2guard announce` entry point, with metrics served on node-a's own loopback.
    metrics_port = 19101
    argv = ["announce", "--interface", "eth0", "--json", "--metrics-port", str(metrics_port), VIP4, VIP6]
    proc = subprocess.Popen(
        topo.node_a.cmd([PYTHON, "-m", "l2guard.cli", *argv]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline(), proc.stderr.readline()]
        assert lines == [f"l2guard announce: announcing {VIP4} on eth0\n",
                         f"l2guard announce: announcing {VIP6} on eth0\n"]  # fmt: skip
        assert arping(topo.client, VIP4, count=2)[0] == 2
        assert ndisc6(topo.client, VIP6) == topo.node_a.mac
        topo.node_a.run(["ip", "link", "set", "lo", "up"])
        metrics = topo.node_a.run(["curl", "-sf", "--max-time", "5", f"http://127.0.0.1:{metrics_port}/metrics"])
        answered = {
            line.split("{", 1)[1].split("}", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("l2guard_speaker_ip_requests_answered_total{")
        }
        assert answered[f'family="ipv4",interface="eth0",ip="{VIP4}"'] >= 2
        assert answered[f'family="ipv6",interface="eth0",ip="{VIP6}"'] >= 1
        assert "l2guard_speaker_gratuitous_sent_total{" in metrics
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["counters"]["ipv4"]["requests_answered"] >= 2
    assert summary["counters"]["ipv4"]["gratuitous_sent"] >= 2
    assert summary["counters"]["ipv6"]["requests_answered"] >= 1
    assert summary["counters"]["ipv6"]["gratuitous_sent"] >= 1
    assert arping(topo.client, VIP4, count=1)[0] == 0
