"""IP address ranges of MetalLB IPAddressPools: parsing, containment and overlap.

MetalLB accepts each `spec.addresses` entry either as a CIDR (`192.0.2.0/24`, host bits are masked, as Go's
`net.ParseCIDR` does) or as an inclusive range `first-last` of one family (whitespace around the dash allowed).
A bare address is not accepted, matching MetalLB's `config.parseCIDR`.

No I/O, standard library only.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from l2core.text import shown


@dataclass(frozen=True, slots=True, order=True)
class AddressRange:
    """An inclusive range of addresses of one family, as integers."""

    version: int  # 4 or 6
    first: int
    last: int
    text: str  # the entry as written, for messages

    def __contains__(self, ip: object) -> bool:
        if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return ip.version == self.version and self.first <= int(ip) <= self.last
        return False

    def overlaps(self, other: AddressRange) -> bool:
        return self.version == other.version and self.first <= other.last and other.first <= self.last

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def parse_range(text: object) -> tuple[AddressRange | None, str | None]:
    """Parse one `spec.addresses` entry. Returns (range, None) or (None, why it is invalid).

    As MetalLB's `config.parseCIDR`: the `first-last` form trims spaces around each address; the CIDR form goes to
    Go's `net.ParseCIDR` untrimmed, so `" 10.0.0.0/8"` is invalid there and here."""
    if not isinstance(text, str) or not text.strip():
        return None, "address entry must be a non-empty string (a CIDR or a first-last range)"
    if "-" in text:
        left, _, right = text.partition("-")
        first, last = _ip_value(left.strip()), _ip_value(right.strip())
        if first is None or last is None:
            return None, f"{shown(text)} is not a valid range (expected first-last, e.g. 192.0.2.10-192.0.2.20)"
        if first[0] != last[0]:
            return None, f"range {shown(text)} mixes IPv4 and IPv6"
        if first[1] > last[1]:
            before, after = format_address(*first), format_address(*last)
            return None, f"range {shown(text)} is reversed: {before} is after {after}"
        return AddressRange(first[0], first[1], last[1], text.strip()), None
    if "/" not in text:
        ip = parse_ip(text.strip())
        hint = f"write a single address as {ip}/{ip.max_prefixlen}" if ip else "e.g. 192.0.2.0/24, 192.0.2.1-192.0.2.9"
        return None, f"{shown(text)} is not a CIDR or range ({hint})"
    if text != text.strip():
        return None, f"{shown(text)} is not a valid CIDR (no spaces around a CIDR: MetalLB's parser refuses them)"
    address, _, prefix = text.partition("/")
    # Go's net.ParseCIDR checks the prefix against 128 bits whenever the address is written with ':', masks the
    # 16-byte form, and an IPv4-mapped result is IPv4: `::ffff:192.0.2.0/120` is 192.0.2.0/24, while
    # `::ffff:192.0.2.1/32` is the IPv6 network ::/32.
    if ":" in address:
        raw = _ipv6_raw(address)
        value = None if raw is None else (6, raw)
    else:
        value = _ip_value(address)
    bits = 32 if value is not None and value[0] == 4 else 128
    if value is None or not prefix.isdigit() or not prefix.isascii() or int(prefix) > bits:
        return None, f"{shown(text)} is not a valid CIDR"
    host = (1 << (bits - int(prefix))) - 1  # host bits are masked, as Go's net.ParseCIDR does
    network = value[1] & ~host
    if bits == 128 and int(prefix) >= 96 and network >> 32 == 0xFFFF:
        return AddressRange(4, network & 0xFFFFFFFF, (network | host) & 0xFFFFFFFF, text), None
    return AddressRange(value[0], network, network | host, text), None


def parse_ip(text: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address as Go's `net.ParseIP` reads it, or None when `text` is not one.

    Go rejects surrounding spaces and zone ids (`fe80::1%eth0`), which Python's `ipaddress` accepts, and treats an
    IPv4-mapped IPv6 address (`::ffff:192.0.2.100`) as the IPv4 address it maps: it prints as `192.0.2.100`, hashes
    so in the election and lies in IPv4 pools."""
    value = _ip_value(text)
    if value is None:
        return None
    return ipaddress.IPv4Address(value[1]) if value[0] == 4 else ipaddress.IPv6Address(value[1])


def _ip_value(text: object) -> tuple[int, int] | None:
    """(family, address as an integer) for what `parse_ip` accepts, else None.

    Pools can list tens of thousands of entries and `ipaddress` costs 3-10 us for each; the plain forms (dotted
    quads, eight or "::"-compressed hextets) are read here in about 1 us, and everything else (embedded IPv4 in IPv6
    among it) by `ipaddress`. tests/core/test_addresses.py checks both paths against `ipaddress` itself."""
    if not isinstance(text, str) or text != text.strip() or "%" in text:
        return None
    if ":" in text:
        value = _ipv6_raw(text)
        if value is None:
            return None
        if value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d, the IPv4-mapped form
            return 4, value & 0xFFFFFFFF
        return 6, value
    v4 = _ipv4_int(text)
    return (4, v4) if v4 is not None else None


def _ipv6_raw(text: str) -> int | None:
    """The 128 bits of an address written with ':' (no spaces or zone, as `_ip_value` checked), unmapped."""
    if text != text.strip() or "%" in text:
        return None
    value = _ipv6_int(text) if "." not in text else None
    if value is None:
        try:
            value = int(ipaddress.IPv6Address(text))
        except ValueError:
            return None
    return value


_HEX = frozenset("0123456789abcdefABCDEF")


def _ipv4_int(text: str) -> int | None:
    """A dotted quad as Go and `ipaddress` read it: four decimal parts of 0-255, no leading zeros."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part.isdigit() or not part.isascii() or len(part) > 3 or (part[0] == "0" and len(part) > 1):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def _ipv6_int(text: str) -> int | None:
    """Hextets only (no embedded IPv4): eight groups, or fewer with one "::" standing for at least one group.
    None for anything else, which `_ip_value` then hands to `ipaddress` to accept or refuse."""
    head, sep, tail = text.partition("::")
    if "::" in tail:
        return None
    groups = head.split(":") if head else []
    rest = tail.split(":") if tail else []
    if sep:
        if len(groups) + len(rest) > 7:
            return None
    elif len(groups) != 8:
        return None
    value = 0
    for group in groups:
        if not 0 < len(group) <= 4 or not _HEX.issuperset(group):
            return None
        value = value << 16 | int(group, 16)
    if sep:
        value <<= 16 * (8 - len(groups) - len(rest))
        for group in rest:
            if not 0 < len(group) <= 4 or not _HEX.issuperset(group):
                return None
            value = value << 16 | int(group, 16)
    return value


class RangeIndex:
    """Which addresses a set of ranges holds, answered in O(log n): the ranges merged per family into sorted,
    disjoint intervals searched with bisect. Checking every node and service IP against a pool of 40,000 entries
    one range at a time was a pairwise loop."""

    __slots__ = ("_firsts", "_lasts")

    def __init__(self, ranges: Iterable[AddressRange]) -> None:
        self._firsts: dict[int, list[int]] = {4: [], 6: []}
        self._lasts: dict[int, list[int]] = {4: [], 6: []}
        for rng in sorted(ranges, key=lambda r: (r.version, r.first)):
            firsts, lasts = self._firsts[rng.version], self._lasts[rng.version]
            if lasts and rng.first <= lasts[-1] + 1:
                lasts[-1] = max(lasts[-1], rng.last)
            else:
                firsts.append(rng.first)
                lasts.append(rng.last)

    def holds(self, ip: str) -> bool:
        """Whether the address `ip` (text) lies in one of the ranges; False for text that is not an address."""
        value = _ip_value(ip)
        if value is None:
            return False
        family, number = value
        at = bisect.bisect_right(self._firsts[family], number) - 1
        return at >= 0 and number <= self._lasts[family][at]


def canonical_ip(text: str) -> str:
    """The canonical text of an address (compressed IPv6, like Go's `net.IP.String()`); `text` if unparsable."""
    ip = parse_ip(text)
    return str(ip) if ip is not None else text


def format_address(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def overlapping_pairs(ranges: Sequence[AddressRange], owners: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Pairs `(k, j)` of positions: `ranges[k]` overlaps `ranges[j]`, which has another owner and sorts before it
    (by family, first address, then position). Every range that overlaps an earlier range of another owner gives
    exactly one pair, so the result is empty exactly when no two ranges of different owners overlap.

    One sort and a sweep (n log n; the pairwise loop took 19 s for a thousand entries). Per family the sweep
    remembers the furthest-reaching range, and the furthest-reaching one of any other owner: whichever of the two
    belongs to another owner than the current range reaches furthest among those that may overlap it."""
    best: int | None = None  # position of the range reaching furthest so far, this family
    second: int | None = None  # the one reaching furthest among owners other than best's
    version = None
    pairs: list[tuple[int, int]] = []
    for k in sorted(range(len(ranges)), key=lambda k: (ranges[k].version, ranges[k].first, k)):
        rng, owner = ranges[k], owners[k]
        if rng.version != version:
            version, best, second = rng.version, None, None
        candidate = best if best is None or owners[best] != owner else second
        if candidate is not None and rng.first <= ranges[candidate].last:
            pairs.append((k, candidate))
        if best is None or rng.last > ranges[best].last:
            if best is not None and owners[best] != owner:
                second = best
            best = k
        elif owners[best] != owner and (second is None or rng.last > ranges[second].last):
            second = k
    return pairs
