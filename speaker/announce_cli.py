"""``l2guard announce``: run the data plane on its own, without Kubernetes.

It sends the takeover burst for the given IPs, answers ARP and NDP for them until SIGINT/SIGTERM, then
stops answering and prints its counters. Admins use it to test layer-2 reachability of a node; tests
and demos use it to drive the data plane from outside. It reuses :class:`speaker.announcer.Announcer`.

This module must not hold packet logic or read Kubernetes. Bad input (an address no host can own, an
interface this node does not have, a port out of range) and missing privileges end with one line on
stderr and exit status 2, never a traceback. Every check runs before anything is sent. Events (conflicts,
interface problems) reach the operator once, as the announcer's own log lines, formatted as every l2guard
command's (`l2guard.logs`: text in a terminal, JSON lines otherwise, structured fields kept; `--log-format` and its
twin `L2GUARD_LOG_FORMAT` come from the shared table in `l2guard.settings`). The CLI glue is the only part of
`speaker/` that imports `l2guard`; the data plane imports neither it nor anything that reads the cluster.

The lead wires :func:`add_parser` and :func:`run` into ``l2guard/cli.py``; ``python -m
speaker.announce_cli`` runs the same command stand-alone.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, TextIO

from l2core.addresses import parse_ip
from l2core.text import and_more
from l2guard import logs
from l2guard.options import port_problem
from l2guard.settings import add_shared_arguments, read_shared
from speaker.announcer import ALL_INTERFACES, DEFAULT_BURST_DURATION, DEFAULT_BURST_INTERVAL, Announcer
from speaker.interfaces import DEFAULT_EXCLUDE, scan_links
from speaker.refresh import MAX_INTERVAL, MIN_INTERVAL
from speaker.responder import raw_socket_problem

PROG = "l2guard announce"
EXIT_USAGE = 2
EXIT_CRASHED = 1
NEVER_ARP = frozenset({"loopback", "no BROADCAST", "NOARP", "no Ethernet address"})
MAX_LISTED_INTERFACES = 20  # a node with hundreds of CNI veths still gets a one-line refusal
MAX_BURST_SECONDS = 3600.0
MIN_BURST_INTERVAL = 0.01  # a smaller interval would flood the LAN with gratuitous frames
SHARED_FLAGS = ("--log-format",)  # the level stays -v: warnings only by default, every takeover with -v


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ips", nargs="+", metavar="IP", help="IPv4/IPv6 addresses to announce")
    p.add_argument(
        "--interface",
        "-i",
        action="append",
        default=[],
        metavar="IFACE",
        help="announce only on this interface (repeatable; default: every eligible interface)",
    )
    p.add_argument(
        "--exclude",
        default=DEFAULT_EXCLUDE,
        metavar="REGEX",
        help="interface names never used for 'all interfaces' (default: CNI and virtual devices)",
    )
    p.add_argument("--burst-interval", type=float, default=DEFAULT_BURST_INTERVAL, metavar="SECONDS")
    p.add_argument("--burst-duration", type=float, default=DEFAULT_BURST_DURATION, metavar="SECONDS")
    p.add_argument(
        "--refresh-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"announce every IP again at this interval, spread over it ({MIN_INTERVAL:.0f}-{MAX_INTERVAL:.0f}; "
        "default 0: off)",
    )
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT", help="serve Prometheus /metrics")
    p.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR")
    p.add_argument("--json", action="store_true", help="print the exit counters as JSON")
    add_shared_arguments(p, SHARED_FLAGS)
    p.add_argument("--verbose", "-v", action="store_true", help="log every takeover and release")


def add_parser(subparsers: Any) -> None:
    """Register ``announce`` on an argparse subparsers object (``parser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "announce",
        help="answer ARP/NDP for IPs on this node until interrupted",
        description="Send takeover announcements for IP..., answer ARP and NDP for them until SIGINT or "
        "SIGTERM, then print counters. Needs root or CAP_NET_RAW.",
    )
    _add_arguments(p)
    p.set_defaults(run=run)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _unannounceable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why no single host can own ``ip`` as a service address, or None.

    Unspecified: RFC 1122 3.2.1.3 and RFC 4291 2.5.2 ("this host" / "no address"). Loopback: RFC 1122 3.2.1.3,
    RFC 4291 2.5.3 (never on a wire). Multicast: RFC 1112, RFC 4291 2.7 (a group, and ARP/NDP never resolve it).
    Link-local: RFC 3927 (169.254.0.0/16) and RFC 4291 2.5.6 (fe80::/10), scoped to one link and configured by
    hosts themselves. `ip` comes from the core's reader, so an IPv4-mapped address arrives as IPv4.
    """
    if ip.is_unspecified:
        return "the unspecified address is no host's address"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the limited broadcast address is no host's address"
    if ip.is_loopback:
        return "a loopback address never leaves its host"
    if ip.is_multicast:
        return "a multicast address names a group, not a host"
    if ip.is_link_local:
        net = "169.254.0.0/16" if ip.version == 4 else "fe80::/10"
        return f"a link-local address ({net}) belongs to one link's hosts, not to a service"
    return None


def _parse_ips(raw_ips: Sequence[str]) -> tuple[list[str], str | None]:
    """The canonical addresses, or the first problem (one line)."""
    ips: list[str] = []
    for raw in raw_ips:
        ip = parse_ip(raw)  # the core's reader: as Go (and so MetalLB) reads addresses
        if ip is None:
            return [], f"invalid IP address {raw!r} (no spaces, zone ids or prefixes)"
        why = _unannounceable(ip)
        if why is not None:
            return [], f"cannot announce {raw}: {why}"
        ips.append(str(ip))
    return ips, None


def _interface_problem(names: Sequence[str]) -> str | None:
    """A named interface that does not exist now is a typo far more often than a link still to come."""
    if not names:
        return None
    try:
        links = scan_links()
    except OSError as exc:
        return f"cannot list the network interfaces: {exc.strerror or exc}"
    missing = [n for n in dict.fromkeys(names) if n not in links]
    if not missing:
        # Down, no carrier or enslaved can change while it runs (the announcer reports it and waits); these
        # cannot: such a link never carries ARP or NDP, and announcing on it would say nothing, forever.
        for name in dict.fromkeys(names):
            why = links[name].why_unusable()
            if why in NEVER_ARP:
                return f"interface {name!r} cannot announce anything ({why}): ARP and NDP need an Ethernet link"
        return None
    which = ", ".join(repr(n) for n in missing)
    there = and_more(sorted(links), MAX_LISTED_INTERFACES) or "none"
    return f"no interface {which} on this node (interfaces: {there})"


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command; returns the exit status. (`out`/`err` match the `l2guard` dispatcher; output goes to the
    process's own stdout and stderr, which signal handling and the exit counters rely on.)"""
    shared, problems = read_shared(args, os.environ, SHARED_FLAGS)
    if problems:
        return _fail("; ".join(problems))
    ips, problem = _parse_ips(args.ips)
    if problem is not None:
        return _fail(problem)
    if args.metrics_port is not None:
        problem = port_problem("--metrics-port", args.metrics_port)
        if problem is not None:
            return _fail(problem)
    try:
        exclude = re.compile(args.exclude)
    except re.error as exc:
        return _fail(f"invalid --exclude regex: {exc}")
    # Written so that NaN fails too.
    if not MIN_BURST_INTERVAL <= args.burst_interval <= MAX_BURST_SECONDS:
        return _fail(f"--burst-interval must be between {MIN_BURST_INTERVAL} and {MAX_BURST_SECONDS:.0f} seconds")
    if not 0 <= args.burst_duration <= MAX_BURST_SECONDS:
        return _fail(f"--burst-duration must be between 0 and {MAX_BURST_SECONDS:.0f} seconds")
    if args.refresh_interval != 0 and not MIN_INTERVAL <= args.refresh_interval <= MAX_INTERVAL:
        return _fail(f"--refresh-interval must be 0 (off) or between {MIN_INTERVAL:.0f} and {MAX_INTERVAL:.0f} seconds")
    problem = _interface_problem(args.interface) or raw_socket_problem()
    if problem is not None:
        return _fail(problem)
    logs.setup(shared.log_format, "info" if args.verbose else "warning")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    announcer = Announcer(
        exclude=exclude,
        burst_interval=args.burst_interval,
        burst_duration=args.burst_duration,
        refresh_interval=args.refresh_interval,
    )  # no on_event: the announcer logs every event itself, and printing it again said everything twice
    where = frozenset(args.interface) if args.interface else ALL_INTERFACES
    try:
        if args.metrics_port is not None:
            _serve_metrics(announcer, args.metrics_address, args.metrics_port)
        announcer.start()
        status = announcer.set(dict.fromkeys(ips, where))
        for ip in ips:
            ifaces = sorted(status.announcing.get(ip, ()))
            text = ",".join(ifaces) if ifaces else "no interface"
            print(f"{PROG}: announcing {ip} on {text}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if not announcer.running:  # the I/O thread died: say so instead of pretending to answer
                announcer.stop()
                _print_counters(announcer, as_json=args.json)
                print(f"{PROG}: the data plane stopped unexpectedly (see the log above)", file=sys.stderr, flush=True)
                return EXIT_CRASHED
    except OSError as exc:
        announcer.stop()
        return _fail(f"{exc.strerror or exc}")
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    announcer.stop()
    _print_counters(announcer, as_json=args.json)
    return 0


def _serve_metrics(announcer: Announcer, address: str, port: int) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    from speaker.metrics import SpeakerCollector

    registry = CollectorRegistry()
    registry.register(SpeakerCollector(announcer.counters))
    start_http_server(port, addr=address, registry=registry)


def _print_counters(announcer: Announcer, *, as_json: bool) -> None:
    by_family = announcer.counters.by_family()
    if as_json:
        print(json.dumps({"stopped": True, "counters": by_family}, sort_keys=True), flush=True)
        return
    print(f"{PROG}: stopped; counters:", flush=True)
    kinds = list(next(iter(by_family.values())))
    print("family " + " ".join(kinds), flush=True)
    for family, counts in by_family.items():
        print(f"{family} " + " ".join(str(counts[k]) for k in kinds), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m speaker.announce_cli [options] IP [IP ...]``."""
    parser = argparse.ArgumentParser(prog=PROG, description="Answer ARP/NDP for IPs until interrupted.")
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
