"""`l2guard announce` refuses input it cannot honour before it sends anything, with one line and exit 2, and says
each event once (issue 7, item 5).

The refusals run through the real command in a child process; none needs root. The event test runs the command
in a namespace of its own (root), on a link that exists but is down.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def announce(
    *args: str, prefix: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`l2guard announce ARGS` through the `l2guard` dispatcher, as an operator runs it (`environ` is added to
    this process's environment, without its L2GUARD_ variables)."""
    argv = [*prefix, sys.executable, "-m", "l2guard.cli", "announce", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2GUARD_")}
    env.update(environ or {}, PYTHONPATH=str(REPO))
    return subprocess.run(argv, capture_output=True, text=True, timeout=15, cwd=REPO, env=env, check=False)


def assert_refused(res: subprocess.CompletedProcess[str], line: str) -> None:
    assert (res.returncode, res.stderr, res.stdout) == (2, f"l2guard announce: {line}\n", "")


UNSPECIFIED = "the unspecified address is no host's address"
LOOPBACK = "a loopback address never leaves its host"
MULTICAST = "a multicast address names a group, not a host"


@pytest.mark.parametrize(
    ("vip", "why"),
    [
        ("0.0.0.0", UNSPECIFIED),
        ("::", UNSPECIFIED),
        ("224.0.0.1", MULTICAST),
        ("239.255.255.250", MULTICAST),
        ("ff02::1", MULTICAST),
        ("ff05::1:3", MULTICAST),
        ("169.254.10.20", "a link-local address (169.254.0.0/16) belongs to one link's hosts, not to a service"),
        ("fe80::1", "a link-local address (fe80::/10) belongs to one link's hosts, not to a service"),
        ("febf::1", "a link-local address (fe80::/10) belongs to one link's hosts, not to a service"),
        ("127.0.0.1", LOOPBACK),
        ("127.1.2.3", LOOPBACK),
        ("::1", LOOPBACK),
        ("::ffff:127.0.0.1", LOOPBACK),
        ("255.255.255.255", "the limited broadcast address is no host's address"),
    ],
)
def test_announce_refuses_an_address_no_host_can_own_naming_it_and_why(vip: str, why: str) -> None:
    # --interface lo: should the check ever regress, nothing is sent on this machine's links (lo is never used).
    assert_refused(announce("--interface", "lo", "192.0.2.100", vip), f"cannot announce {vip}: {why}")


def test_announce_accepts_documentation_addresses_and_the_top_port_up_to_the_privilege_check() -> None:
    # 198.51.100.0/24 and 2001:db8::/32 are ordinary unicast addresses: the run gets past every input check and
    # stops at the privilege check, which an unprivileged user always fails.
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    res = announce("--metrics-port", "65535", "198.51.100.7", "2001:db8::7", prefix=user)
    assert_refused(res, "needs root or CAP_NET_RAW to open raw packet sockets")


def test_announce_refuses_an_interface_that_does_not_exist_and_lists_those_that_do() -> None:
    existing = sorted(os.listdir("/sys/class/net"))  # the kernel's own list, not the code under test
    assert 0 < len(existing) <= 20, existing  # the message lists up to 20; beyond that this test needs a netns
    res = announce("--interface", "lo", "--interface", "l2g-nosuch0", "192.0.2.100")
    assert_refused(res, f"no interface 'l2g-nosuch0' on this node (interfaces: {', '.join(existing)})")


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_announce_refuses_a_metrics_port_out_of_range_as_the_webhook_does(port: str) -> None:
    res = announce("--metrics-port", port, "--interface", "lo", "192.0.2.100")
    assert_refused(res, f"--metrics-port must be a port number, not {port}")


@pytest.mark.parametrize(
    ("flag", "value", "line"),
    [
        ("--burst-interval", "nan", "--burst-interval must be between 0.01 and 3600 seconds"),
        ("--burst-interval", "0.000001", "--burst-interval must be between 0.01 and 3600 seconds"),
        ("--burst-duration", "inf", "--burst-duration must be between 0 and 3600 seconds"),
        ("--refresh-interval", "1", "--refresh-interval must be 0 (off) or between 5 and 3600 seconds"),
        ("--refresh-interval", "nan", "--refresh-interval must be 0 (off) or between 5 and 3600 seconds"),
        ("--refresh-interval", "-5", "--refresh-interval must be 0 (off) or between 5 and 3600 seconds"),
    ],
)
def test_announce_refuses_burst_timing_that_would_never_end_or_flood(flag: str, value: str, line: str) -> None:
    assert_refused(announce(flag, value, "--interface", "lo", "192.0.2.100"), line)


@pytest.mark.parametrize(
    ("argv", "environ", "line"),
    [
        (["--log-format", "xml"], {}, "--log-format must be auto, json or text, not 'xml'"),
        ([], {"L2GUARD_LOG_FORMAT": "xml"}, "L2GUARD_LOG_FORMAT must be auto, json or text, not 'xml'"),
    ],
)
def test_announce_reads_the_shared_log_format_and_its_twin_as_every_command(
    argv: list[str], environ: dict[str, str], line: str
) -> None:
    # The twin was ignored before the shared table (issue 8, part 1); the interface check would have answered.
    res = announce(*argv, "--interface", "l2g-nosuch0", "192.0.2.100", environ=environ)
    assert_refused(res, line)


@pytest.mark.root
def test_announce_logs_each_event_once_as_a_structured_line(need_root: None) -> None:
    ns = f"l2cli-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        # A link that exists but is down: the run starts, and the announcer reports an interface problem.
        subprocess.run(["ip", "-n", ns, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p"], check=True)
        argv = [
            sys.executable,
            "-m",
            "l2guard.cli",
            "announce",
            "--json",
            "--log-format",
            "json",
            "-i",
            "lan0",
            "192.0.2.100",
        ]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        try:
            assert proc.stderr is not None
            lines = []
            for _ in range(10):  # bounded: the problem line, then the announcing line
                lines.append(proc.stderr.readline())
                if "announcing" in lines[-1] or not lines[-1]:
                    break
            proc.terminate()
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)
    text = "".join(lines) + err
    assert proc.returncode == 0 and "Traceback" not in text, text
    assert lines[-1] == "l2guard announce: announcing 192.0.2.100 on no interface\n", text
    about_lan0 = [line for line in text.splitlines() if "lan0" in line]
    assert len(about_lan0) == 1, text  # once: not a log line plus a CLI line
    record = json.loads(about_lan0[0])  # l2guard.logs' JSON format, which keeps the structured fields
    assert (record["level"], record["logger"]) == ("warning", "speaker.announcer"), record
    assert json.loads(out)["stopped"] is True


def test_announce_refuses_the_loopback_interface_which_never_carries_arp() -> None:
    """`--interface lo` ran forever announcing on no interface (found in review)."""
    res = announce("--interface", "lo", "192.0.2.100")
    assert_refused(res, "interface 'lo' cannot announce anything (loopback): ARP and NDP need an Ethernet link")


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (" 192.0.2.100", "invalid IP address ' 192.0.2.100' (no spaces, zone ids or prefixes)"),
        ("2001:db8::1%eth0", "invalid IP address '2001:db8::1%eth0' (no spaces, zone ids or prefixes)"),
    ],
)
def test_announce_reads_addresses_as_the_core_and_go_do(raw: str, line: str) -> None:
    assert_refused(announce("--interface", "lo", raw), line)


def test_an_ipv4_mapped_address_is_announced_as_its_ipv4_address() -> None:
    """`::ffff:192.0.2.100` was announced over NDP as ::ffff:c000:264 where the core says 192.0.2.100 over ARP;
    the dry check of the address reader shows the canonical form the announcer is given."""
    from speaker.announcer import normalize_ip

    assert normalize_ip("::ffff:192.0.2.100") == "192.0.2.100"
    with pytest.raises(ValueError):
        normalize_ip(" 192.0.2.100")
