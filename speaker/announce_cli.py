"""``l2guard announce``: run the data plane on its own, without Kubernetes.

It sends the takeover burst for the given IPs, answers ARP and NDP for them until SIGINT/SIGTERM, then
stops answering and prints its counters. Admins use it to test layer-2 reachability of a node; tests
and demos use it to drive the data plane from outside. It reuses :class:`speaker.announcer.Announcer`.

This module must not hold packet logic or read Kubernetes. Bad input and missing privileges end with
one line on stderr and exit status 2, never a traceback.

The lead wires :func:`add_parser` and :func:`run` into ``l2guard/cli.py``; ``python -m
speaker.announce_cli`` runs the same command stand-alone.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, TextIO

from speaker.announcer import ALL_INTERFACES, DEFAULT_BURST_DURATION, DEFAULT_BURST_INTERVAL, Announcer, Event
from speaker.interfaces import DEFAULT_EXCLUDE

PROG = "l2guard announce"
EXIT_USAGE = 2
EXIT_CRASHED = 1


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
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT", help="serve Prometheus /metrics")
    p.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR")
    p.add_argument("--json", action="store_true", help="print the exit counters as JSON")
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


def _check_raw_sockets() -> str | None:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        return "needs root or CAP_NET_RAW to open raw packet sockets"
    except OSError as exc:
        return f"cannot open a raw packet socket: {exc.strerror or exc}"
    return None


def _print_event(event: Event) -> None:
    print(f"{PROG}: {type(event).__name__.lower()}: {_describe(event)}", file=sys.stderr, flush=True)


def _describe(event: Event) -> str:
    fields = {k: getattr(event, k) for k in event.__slots__ if k != "at"}
    return " ".join(f"{k}={v}" for k, v in fields.items())


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command; returns the exit status. (`out`/`err` match the `l2guard` dispatcher; output goes to the
    process's own stdout and stderr, which signal handling and the exit counters rely on.)"""
    ips: list[str] = []
    for raw in args.ips:
        try:
            ips.append(str(ipaddress.ip_address(raw.strip())))
        except ValueError:
            return _fail(f"invalid IP address {raw!r}")
    try:
        exclude = re.compile(args.exclude)
    except re.error as exc:
        return _fail(f"invalid --exclude regex: {exc}")
    if args.burst_interval <= 0 or args.burst_duration < 0:
        return _fail("--burst-interval must be > 0 and --burst-duration >= 0")
    problem = _check_raw_sockets()
    if problem is not None:
        return _fail(problem)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    announcer = Announcer(
        exclude=exclude,
        burst_interval=args.burst_interval,
        burst_duration=args.burst_duration,
        on_event=_print_event,
    )
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
