"""Counters of the speaker's data plane, as a plain snapshot and as Prometheus metrics.

Two kinds of series exist for every counter kind:
- totals per (family, interface), kept for the life of the process (monotonic);
- per-IP series per (family, interface, ip), kept only while the IP is owned, so the label set stays
  bounded by what this node announces (an ARP storm for other IPs cannot grow it).

The responder thread is the only writer; readers take copies. This module must not open sockets or
decide anything about packets; it only counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Literal

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

Kind = Literal["requests_received", "requests_answered", "gratuitous_sent", "conflicts", "reasserts", "errors"]
KINDS: tuple[Kind, ...] = (
    "requests_received",
    "requests_answered",
    "gratuitous_sent",
    "conflicts",
    "reasserts",
    "errors",
)
Family = Literal["ipv4", "ipv6"]

_HELP: dict[Kind, str] = {
    "requests_received": "ARP requests / Neighbor Solicitations received for owned IPs",
    "requests_answered": "ARP replies / Neighbor Advertisements sent in answer to a request",
    "gratuitous_sent": "Gratuitous ARP and unsolicited NA frames sent",
    "conflicts": "Frames in which another MAC claimed an owned IP",
    "reasserts": "Owned IPs announced again because another MAC claimed them and this node keeps them",
    "errors": "Send or receive errors on a packet socket (link down or gone)",
}


class Counters:
    """Thread-safe counters; ``inc`` is cheap enough for the per-frame path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[Kind, str, str], int] = {}
        self._per_ip: dict[tuple[Kind, str, str, str], int] = {}

    def inc(self, kind: Kind, family: Family, *, iface: str, ip: str | None = None, n: int = 1) -> None:
        """Add ``n``; ``ip`` only for an owned IP (otherwise only the total moves)."""
        with self._lock:
            key = (kind, family, iface)
            self._totals[key] = self._totals.get(key, 0) + n
            if ip is not None:
                ikey = (kind, family, iface, ip)
                self._per_ip[ikey] = self._per_ip.get(ikey, 0) + n

    def forget(self, ip: str, iface: str | None = None) -> None:
        """Drop the per-IP series of ``ip`` (on ``iface`` only, if given) after it was released."""
        with self._lock:
            for key in [k for k in self._per_ip if k[3] == ip and (iface is None or k[2] == iface)]:
                del self._per_ip[key]

    def totals(self) -> dict[tuple[Kind, str, str], int]:
        """{(kind, family, iface): count}."""
        with self._lock:
            return dict(self._totals)

    def per_ip(self) -> dict[tuple[Kind, str, str, str], int]:
        """{(kind, family, iface, ip): count} for currently owned IPs."""
        with self._lock:
            return dict(self._per_ip)

    def summary(self) -> dict[str, int]:
        """{kind: count} summed over families and interfaces (every kind present, zeros included)."""
        out: dict[str, int] = dict.fromkeys(KINDS, 0)
        for (kind, _, _), n in self.totals().items():
            out[kind] += n
        return out

    def by_family(self) -> dict[str, dict[str, int]]:
        """{family: {kind: count}} summed over interfaces."""
        out: dict[str, dict[str, int]] = {f: dict.fromkeys(KINDS, 0) for f in ("ipv4", "ipv6")}
        for (kind, family, _), n in self.totals().items():
            out[family][kind] += n
        return out


class SpeakerCollector(Collector):
    """Exposes :class:`Counters` to a prometheus_client registry.

    ``l2guard_speaker_<kind>_total{family,interface}`` and
    ``l2guard_speaker_ip_<kind>_total{family,interface,ip}`` (owned IPs only).
    """

    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        totals = self._counters.totals()
        per_ip = self._counters.per_ip()
        for kind in KINDS:
            fam = CounterMetricFamily(f"l2guard_speaker_{kind}", _HELP[kind], labels=["family", "interface"])
            for (k, family, iface), n in sorted(totals.items()):
                if k == kind:
                    fam.add_metric([family, iface], n)
            yield fam
            ip_fam = CounterMetricFamily(
                f"l2guard_speaker_ip_{kind}",
                _HELP[kind] + ", per owned IP",
                labels=["family", "interface", "ip"],
            )
            for (k, family, iface, ip), n in sorted(per_ip.items()):
                if k == kind:
                    ip_fam.add_metric([family, iface, ip], n)
            yield ip_fam
