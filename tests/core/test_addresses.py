from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2core.addresses import RangeIndex, canonical_ip, parse_ip, parse_range


def test_cidr_host_bits_are_masked_like_metallb() -> None:
    rng, err = parse_range("192.0.2.77/24")
    assert err is None and rng is not None
    assert (rng.first, rng.last) == (int(ipaddress.ip_address("192.0.2.0")), int(ipaddress.ip_address("192.0.2.255")))


def test_ranges_of_both_families_with_spaces_around_the_dash() -> None:
    v4, _ = parse_range("192.0.2.10 - 192.0.2.20")
    v6, _ = parse_range("2001:db8::10-2001:db8::1f")
    assert v4 is not None and v4.size == 11 and v4.version == 4
    assert v6 is not None and v6.size == 16 and v6.version == 6
    assert ipaddress.ip_address("2001:db8::1a") in v6
    assert ipaddress.ip_address("192.0.2.21") not in v4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.0.2.20-192.0.2.10", "is reversed"),
        ("192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"),
        ("192.0.2.300/24", "not a valid CIDR"),
        ("192.0.2.1", "not a CIDR or range"),
        ("banana-split", "not a valid range"),
        ("", "non-empty string"),
        (42, "non-empty string"),
    ],
)
def test_bad_entries_say_what_is_wrong(text: object, message: str) -> None:
    rng, err = parse_range(text)
    assert rng is None and err is not None and message in err


def test_overlap_is_per_family() -> None:
    a, _ = parse_range("192.0.2.0/25")
    b, _ = parse_range("192.0.2.100-192.0.2.200")
    c, _ = parse_range("2001:db8::/120")
    assert a is not None and b is not None and c is not None
    assert a.overlaps(b) and b.overlaps(a) and not a.overlaps(c)


def test_canonical_ip_compresses_ipv6_like_go() -> None:
    assert canonical_ip("2001:0db8:0000::0100") == "2001:db8::100"
    assert canonical_ip("192.0.2.1") == "192.0.2.1"


# Go's behaviour, pinned as literals (net.ParseCIDR / net.ParseIP / net.IP.String(), as MetalLB's config.parseCIDR
# uses them): a CIDR is parsed untrimmed, only the range form trims around the dash.
@pytest.mark.parametrize("text", [" 192.0.2.0/24", "192.0.2.0/24 ", "198.51.100.0/255.255.255.0", "fe80::1%eth0/64"])
def test_cidrs_go_refuses_are_refused(text: str) -> None:
    rng, err = parse_range(text)
    assert rng is None and err is not None and "not a valid CIDR" in err


@pytest.mark.parametrize(
    ("text", "go_string"),
    [
        ("::ffff:192.0.2.100", "192.0.2.100"),  # IPv4-mapped prints as IPv4 in Go
        ("2001:DB8:0:0::100", "2001:db8::100"),
        ("192.0.2.7", "192.0.2.7"),
    ],
)
def test_canonical_ip_is_gos_ip_string(text: str, go_string: str) -> None:
    assert canonical_ip(text) == go_string


@pytest.mark.parametrize("text", [" 192.0.2.1", "192.0.2.1 ", "fe80::1%eth0", "2001:db8::1%2"])
def test_addresses_go_refuses_are_not_addresses(text: str) -> None:
    assert parse_ip(text) is None


def test_an_ipv4_mapped_service_ip_lies_in_an_ipv4_pool() -> None:
    pool, _ = parse_range("192.0.2.0/24")
    assert pool is not None and RangeIndex([pool]).holds("::ffff:192.0.2.100")


def _reference_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """What `parse_ip` means, written with `ipaddress` alone: Go's rules (no spaces, no zone, mapped is IPv4)."""
    if text != text.strip() or "%" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _reference_cidr(text: str) -> tuple[int, int, int] | None:
    """Go's net.ParseCIDR, with `ipaddress`: an address written with ':' takes a prefix of up to 128 bits and is
    masked as 16 bytes; a masked result inside ::ffff:0:0/96 with a prefix of 96 or more is that IPv4 network."""
    address, _, prefix = text.partition("/")
    if not prefix.isascii() or not prefix.isdigit() or "%" in address or address != address.strip():
        return None
    n = int(prefix)
    if ":" in address:
        try:
            v6 = ipaddress.IPv6Address(address)
        except ValueError:
            return None
        if n > 128:
            return None
        net6 = ipaddress.IPv6Network(f"{v6}/{n}", strict=False)
        if n >= 96 and net6.network_address.ipv4_mapped is not None:
            first = int(net6.network_address) & 0xFFFFFFFF
            return 4, first, int(net6.broadcast_address) & 0xFFFFFFFF
        return 6, int(net6.network_address), int(net6.broadcast_address)
    ip = _reference_ip(address)
    if ip is None or n > ip.max_prefixlen:
        return None
    net = ipaddress.ip_network(f"{ip}/{n}", strict=False)
    return net.version, int(net.network_address), int(net.broadcast_address)


_ADDRESS_TEXT = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEFg:.%", max_size=45),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda ip: ip.exploded),
    st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}"),
    st.lists(st.text(alphabet="0123456789abcdef", min_size=0, max_size=5), min_size=1, max_size=10).map(":".join),
    st.lists(st.text(alphabet="0123456789", min_size=0, max_size=4), min_size=1, max_size=5).map(".".join),
)


@settings(max_examples=3000)
@given(_ADDRESS_TEXT)
def test_the_fast_address_reader_agrees_with_ipaddress(text: str) -> None:
    assert parse_ip(text) == _reference_ip(text)


@settings(max_examples=1500)
@given(_ADDRESS_TEXT, st.integers(0, 140))
def test_the_fast_cidr_reader_agrees_with_ipaddress(address: str, prefix: int) -> None:
    text = f"{address}/{prefix}"
    rng, _ = parse_range(text)
    expected = _reference_cidr(text) if text == text.strip() else None
    assert (None if rng is None else (rng.version, rng.first, rng.last)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.01", None),  # a leading zero: Go 1.17+ refuses it
        ("192.0.2.256", None),
        ("2001:db8::", "2001:db8::"),
        ("::", "::"),
        ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
        ("1:2:3:4:5:6:7:8::", None),
        ("2001:db8::1::2", None),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8:00001::", None),
        ("::ffff:c000:264", "192.0.2.100"),  # the mapped form written in hextets is still IPv4
        ("::ffff:192.0.2.100", "192.0.2.100"),
        ("2001:db8::192.0.2.1", "2001:db8::c000:201"),
        ("١٩٢.0.2.1", None),  # Arabic-Indic digits are digits to str.isdigit, not to Go
    ],
)
def test_address_forms(text: str, expected: str | None) -> None:
    ip = parse_ip(text)
    assert (None if ip is None else str(ip)) == expected


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), max_size=30),
    st.lists(st.integers(0, 400), max_size=40),
)
def test_the_range_index_holds_exactly_what_some_range_holds(spans: list[tuple[int, int]], probes: list[int]) -> None:
    """Against the plain definition: an address is held when one of the ranges contains it (touching and nested
    ranges included, as the merge must keep them)."""
    base = int(ipaddress.IPv4Address("198.51.100.0"))
    ranges = [
        parse_range(f"{ipaddress.IPv4Address(base + a)}-{ipaddress.IPv4Address(base + a + n)}")[0] for a, n in spans
    ]
    index = RangeIndex([r for r in ranges if r is not None])
    for probe in probes:
        ip = str(ipaddress.IPv4Address(base + probe))
        assert index.holds(ip) == any(a <= probe <= a + n for a, n in spans)
    assert not index.holds("2001:db8::1") and not index.holds("not an address")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::ffff:192.0.2.0/120", (4, "192.0.2.0", "192.0.2.255")),  # MetalLB accepts it: 192.0.2.0/24
        ("::ffff:192.0.2.1/128", (4, "192.0.2.1", "192.0.2.1")),
        ("::ffff:192.0.2.1/32", (6, "::", "::ffff:ffff:ffff:ffff:ffff:ffff")),  # Go: the IPv6 network ::/32
        ("192.0.2.0/33", None),
    ],
)
def test_ipv4_mapped_cidrs_are_read_as_go_reads_them(text: str, expected: tuple[int, str, str] | None) -> None:
    rng, _ = parse_range(text)
    got = (
        None
        if rng is None
        else (
            rng.version,
            str(ipaddress.ip_address(rng.first) if rng.version == 4 else ipaddress.IPv6Address(rng.first)),
            str(ipaddress.ip_address(rng.last) if rng.version == 4 else ipaddress.IPv6Address(rng.last)),
        )
    )
    assert got == expected
