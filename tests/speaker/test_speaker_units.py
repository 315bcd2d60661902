"""Unit tests without namespaces: interface eligibility, input validation, counters and the CLI's
refusals (bad IPs, no CAP_NET_RAW)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from speaker.announcer import ALL_INTERFACES, Announcer, normalize
from speaker.interfaces import (
    DEFAULT_EXCLUDE,
    IFF_BROADCAST,
    IFF_LOOPBACK,
    IFF_LOWER_UP,
    IFF_NOARP,
    IFF_UP,
    Link,
    eligible_for_all,
)
from speaker.metrics import Counters, SpeakerCollector

REPO = Path(__file__).resolve().parents[2]
OK = IFF_UP | IFF_LOWER_UP | IFF_BROADCAST
MAC = b"\x02\x00\x00\x00\x0a\x01"


def link(name: str, flags: int = OK, *, master: int | None = None, mac: bytes = MAC) -> Link:
    return Link(name, 1, flags=flags, mac=mac, master=master)


def test_only_up_broadcast_unenslaved_non_excluded_links_are_eligible_for_all() -> None:
    links = {
        "eth0": link("eth0"),
        "bond0": link("bond0"),
        "eth1": link("eth1", OK & ~IFF_LOWER_UP),
        "eth2": link("eth2", OK & ~IFF_UP),
        "lo": link("lo", OK | IFF_LOOPBACK),
        "wg0": link("wg0", OK | IFF_NOARP),
        "ens3": link("ens3", master=7),
        "tun0": link("tun0", OK & ~IFF_BROADCAST),
        "x": link("x", mac=b""),
    }
    virtual = "cni0 veth1a2b flannel.1 cali123 cilium_host kube-ipvs0 docker0 vxlan.calico tunl0 lxc12"
    for name in virtual.split():
        links[name] = link(name)
    assert eligible_for_all(links, re.compile(DEFAULT_EXCLUDE)) == {"eth0", "bond0"}


def test_unusable_links_say_why() -> None:
    assert link("a", OK & ~IFF_UP).why_unusable() == "down"
    assert link("a", OK & ~IFF_LOWER_UP).why_unusable() == "no carrier"
    assert link("a", OK | IFF_NOARP).why_unusable() == "NOARP"
    assert link("a", master=3).why_unusable() == "enslaved"
    assert link("a").why_unusable() is None


def test_desired_state_is_normalized_and_bad_input_rejected() -> None:
    assert normalize({"2001:DB8::0100": ALL_INTERFACES, "::ffff:192.0.2.1": frozenset({"eth0"})}) == {
        "2001:db8::100": ALL_INTERFACES,
        "192.0.2.1": frozenset({"eth0"}),  # the IPv4-mapped form is its IPv4 address, as the core reads it
    }
    with pytest.raises(ValueError):
        normalize({" 192.0.2.1": ALL_INTERFACES})  # Go refuses spaces around an address, and so do we
    with pytest.raises(ValueError):
        normalize({"192.0.2.0/24": ALL_INTERFACES})
    with pytest.raises(ValueError):
        normalize({"not-an-ip": ALL_INTERFACES})
    with pytest.raises(TypeError):
        normalize({"192.0.2.1": "eth0"})  # type: ignore[dict-item]


def test_set_before_start_is_refused() -> None:
    with pytest.raises(RuntimeError):
        Announcer(scan=dict).set({"192.0.2.1": ALL_INTERFACES})


def test_filter_limits_beyond_what_a_bpf_program_can_hold_are_refused() -> None:
    from speaker import bpf

    Announcer(scan=dict, max_arp_filter_ips=bpf.MAX_ARP_IPS_POSSIBLE, max_ndp_filter_ips=bpf.MAX_NDP_IPS_POSSIBLE)
    for arp, ndp in ((bpf.MAX_ARP_IPS_POSSIBLE + 1, 0), (0, bpf.MAX_NDP_IPS_POSSIBLE + 1), (-1, 0)):
        with pytest.raises(ValueError, match="filter limits"):
            Announcer(scan=dict, max_arp_filter_ips=arp, max_ndp_filter_ips=ndp)


def test_a_stopped_announcer_can_be_started_again() -> None:
    a = Announcer(scan=dict)
    assert not a.running
    a.start()
    assert a.running
    a.stop()
    assert not a.running
    with pytest.raises(RuntimeError):
        a.set({})
    a.start()
    try:
        assert a.set({}).announcing == {}  # found in review: this raised RuntimeError
    finally:
        a.stop()


def test_announcer_without_eligible_links_announces_nothing_and_reports_missing_interface() -> None:
    events: list[object] = []
    with Announcer(scan=lambda: {"lo": link("lo", OK | IFF_LOOPBACK)}, on_event=events.append) as ann:
        st = ann.set({"192.0.2.100": ALL_INTERFACES, "192.0.2.101": frozenset({"eth7"})})
        assert st.announcing == {}
        assert st.missing == {"192.0.2.101": frozenset({"eth7"})}
        assert ann.set({"192.0.2.100": ALL_INTERFACES, "192.0.2.101": frozenset({"eth7"})}).announcing == {}
    assert len(events) == 1  # reported once, not on every idempotent set()


def test_per_ip_series_exist_only_while_owned_and_totals_stay_monotonic() -> None:
    c = Counters()
    c.inc("requests_received", "ipv4", iface="eth0", ip="192.0.2.100")
    c.inc("requests_received", "ipv4", iface="eth0")
    c.inc("gratuitous_sent", "ipv6", iface="eth0", ip="2001:db8::100", n=2)
    reg = CollectorRegistry()
    reg.register(SpeakerCollector(c))
    text = generate_latest(reg).decode()
    assert 'l2guard_speaker_requests_received_total{family="ipv4",interface="eth0"} 2.0' in text
    assert 'l2guard_speaker_ip_requests_received_total{family="ipv4",interface="eth0",ip="192.0.2.100"} 1.0' in text
    c.forget("192.0.2.100")
    text = generate_latest(reg).decode()
    assert 'ip="192.0.2.100"' not in text and 'ip="2001:db8::100"' in text
    assert 'l2guard_speaker_requests_received_total{family="ipv4",interface="eth0"} 2.0' in text
    assert c.summary()["gratuitous_sent"] == 2 and c.by_family()["ipv6"]["gratuitous_sent"] == 2


def _cli(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "speaker.announce_cli", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO, env=env, check=False)


def test_announce_cli_rejects_invalid_ip_with_one_line_and_exit_2() -> None:
    res = _cli("192.0.2.1", "192.0.2.999")
    assert res.returncode == 2
    assert res.stderr == "l2guard announce: invalid IP address '192.0.2.999' (no spaces, zone ids or prefixes)\n"


def test_announce_cli_without_cap_net_raw_says_so_in_one_line_and_exits_2() -> None:
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv (util-linux) is needed to drop root for this test")
        res = _cli("192.0.2.100", user="65534")
    else:
        res = _cli("192.0.2.100")
    assert res.returncode == 2
    assert res.stderr == "l2guard announce: needs root or CAP_NET_RAW to open raw packet sockets\n"
    assert "Traceback" not in res.stdout + res.stderr
