"""Would-be MetalLB configuration validation: MetalLB parity (deny) and the warnings beyond it."""

from __future__ import annotations

from typing import Any

from l2core.addresses import overlapping_pairs
from l2core.diagnose import fixes
from l2core.model import EligibilitySettings
from l2core.parse import build_cluster, pool_overlaps
from l2core.plan import plan
from l2core.validate import NoteCode, validate_advertisement_change, validate_pool_change
from tests.builders import advertisement, cluster, endpoints, excluded, node, pool, service

NS = "metallb-system"
S = EligibilitySettings()


def _pool(op: str, new: dict[str, Any] | None, old: dict[str, Any] | None = None, c=None):  # type: ignore[no-untyped-def]
    return validate_pool_change(op, new, old, cluster=c or cluster(), settings=S, metallb_namespace=NS)


def _ad(op: str, new: dict[str, Any] | None, old: dict[str, Any] | None = None, c=None):  # type: ignore[no-untyped-def]
    return validate_advertisement_change(op, new, old, cluster=c or cluster(), settings=S, metallb_namespace=NS)


def _messages(verdict) -> str:  # type: ignore[no-untyped-def]
    return " | ".join(str(p) for p in verdict.problems)


def test_pool_parse_errors_deny() -> None:
    cases = {
        "must list at least one": pool("p"),
        "not a valid CIDR": pool("p", "192.0.2.0/33"),
        "is reversed": pool("p", "192.0.2.20-192.0.2.10"),
        "overlaps 192.0.2.0/24": pool("p", "192.0.2.0/24", "192.0.2.5-192.0.2.6"),
    }
    for expected, raw in cases.items():
        v = _pool("CREATE", raw)
        assert not v.allowed and expected in _messages(v), (expected, _messages(v))


def test_pool_overlapping_another_pool_is_denied_but_its_own_old_version_is_not() -> None:
    c = cluster(pool("a", "192.0.2.0/24"), pool("b", "198.51.100.0/24"))
    v = _pool("CREATE", pool("c", "192.0.2.128/25"), c=c)
    assert not v.allowed and "overlaps 192.0.2.0/24 of pool metallb-system/a" in _messages(v)
    assert _pool("UPDATE", pool("a", "192.0.2.0/25"), pool("a", "192.0.2.0/24"), c=c).allowed


def test_pool_host_bits_are_masked_and_allowed() -> None:
    assert _pool("CREATE", pool("p", "192.0.2.77/24")).allowed


def test_pool_service_allocation_duplicates_and_selectors_deny() -> None:
    raw = pool("p", "192.0.2.0/24")
    raw["spec"]["serviceAllocation"] = {"namespaces": ["a", "a"]}
    assert "duplicate namespace 'a'" in _messages(_pool("CREATE", raw))
    raw["spec"]["serviceAllocation"] = {"serviceSelectors": [{"matchExpressions": [{"key": "k", "operator": "In"}]}]}
    assert "needs at least one value" in _messages(_pool("CREATE", raw))


def test_create_outside_the_metallb_namespace_is_denied() -> None:
    v = _pool("CREATE", pool("p", "192.0.2.0/24", namespace="default"))
    assert not v.allowed and "must be created in the MetalLB namespace" in _messages(v)
    v = _ad("CREATE", advertisement("a", namespace="default"))
    assert not v.allowed and "metadata.namespace" in _messages(v)


def test_advertisement_selector_errors_deny() -> None:
    bad = {
        "label key": [{"matchLabels": {"bad key!": "x"}}],
        "not a valid operator": [{"matchExpressions": [{"key": "k", "operator": "Has"}]}],
        "needs at least one value": [{"matchExpressions": [{"key": "k", "operator": "NotIn"}]}],
        "takes no values": [{"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["x"]}]}],
        "duplicate selector": [{"matchLabels": {"a": "b"}}, {"matchLabels": {"a": "b"}}],
    }
    for expected, selectors in bad.items():
        v = _ad("CREATE", advertisement("a", nodeSelectors=selectors))
        assert not v.allowed and expected in _messages(v), (expected, _messages(v))


def test_advertisement_duplicate_pool_names_deny_and_missing_pools_are_fine() -> None:
    assert "duplicate pool name 'x'" in _messages(_ad("CREATE", advertisement("a", ipAddressPools=["x", "x"])))
    assert _ad("CREATE", advertisement("a", ipAddressPools=["does-not-exist-yet"])).allowed


def test_advertisement_whose_nodes_are_all_ineligible_warns() -> None:
    c = cluster(excluded("cp-1"), node("w", unavailable=True), node("other", labels={"zone": "b"}))
    v = _ad(
        "CREATE",
        advertisement("a", nodeSelectors=[{"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}]),
        c=c,
    )
    assert v.allowed
    assert [n.code for n in v.notes] == [NoteCode.NO_ELIGIBLE_NODE] and v.notes[0].subjects == ("cp-1", "w")
    v = _ad("CREATE", advertisement("a", nodeSelectors=[{"matchLabels": {"zone": "c"}}]), c=c)
    assert [n.code for n in v.notes] == [NoteCode.NO_SELECTED_NODE]


def test_pool_nobody_announces_and_node_ip_overlap_warn() -> None:
    c = cluster(node("cp-1", ip="192.0.2.10"))
    v = _pool("CREATE", pool("p", "192.0.2.0/24"), c=c)
    assert v.allowed
    assert {n.code for n in v.notes} == {NoteCode.POOL_NOT_ANNOUNCED, NoteCode.POOL_OVERLAPS_NODE_IP}
    assert "cp-1 (192.0.2.10)" in v.notes[1].message


def test_deleting_or_shrinking_a_pool_in_use_warns_naming_services() -> None:
    c = cluster(
        pool("p", "192.0.2.0/24"), advertisement("a"), *[service(f"s{i}", f"192.0.2.{200 + i}") for i in range(5)]
    )
    v = _pool("DELETE", None, pool("p", "192.0.2.0/24"), c=c)
    assert v.allowed and [n.code for n in v.notes] == [NoteCode.ADDRESSES_IN_USE]
    assert v.notes[0].message.endswith("and 2 more") and "192.0.2.200 (default/s0)" in v.notes[0].message
    v = _pool("UPDATE", pool("p", "192.0.2.0/25"), pool("p", "192.0.2.0/24"), c=c)
    assert v.allowed and [n.code for n in v.notes] == [NoteCode.ADDRESSES_IN_USE]
    assert _pool("UPDATE", pool("p", "192.0.2.128/25"), pool("p", "192.0.2.0/24"), c=c).notes == ()


def test_deleting_the_only_advertisement_warns_about_unannounced_pools() -> None:
    c = cluster(pool("p", "192.0.2.0/24"), advertisement("a"), node("cp-1"))
    v = _ad("DELETE", None, advertisement("a"), c=c)
    assert v.allowed and [n.code for n in v.notes] == [NoteCode.POOL_NOT_ANNOUNCED]


# ----- overlap checks are a sort and a sweep: same verdicts as the pairwise definition, at any size ---------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from l2core.addresses import parse_range  # noqa: E402
from l2core.parse import parse_pool  # noqa: E402

_cidrs = st.builds(lambda a, p: f"198.51.100.{a}/{p}", st.integers(0, 255), st.integers(26, 32))


def _pairwise_overlap(left: list[str], right: list[str]) -> bool:
    """The definition, written as the pairwise loop the code no longer runs."""
    lr = [parse_range(t)[0] for t in left]
    rr = [parse_range(t)[0] for t in right]
    return any(a.first <= b.last and b.first <= a.last for a in lr for b in rr if a and b)


@given(st.lists(_cidrs, min_size=1, max_size=8), st.lists(_cidrs, min_size=1, max_size=8))
def test_cross_pool_overlap_denies_exactly_when_some_pair_overlaps(mine: list[str], theirs: list[str]) -> None:
    within = any(_pairwise_overlap([a], [b]) for i, a in enumerate(mine) for b in mine[:i])
    others = cluster(*(pool(f"old{i}", t) for i, t in enumerate(theirs)))  # one range each: no overlap within
    verdict = _pool("CREATE", pool("new", *mine), c=others)
    assert (not verdict.allowed) == (within or _pairwise_overlap(mine, theirs))


@given(st.lists(_cidrs, min_size=1, max_size=10))
def test_within_pool_overlap_names_an_entry_exactly_when_some_pair_overlaps(entries: list[str]) -> None:
    expected = any(_pairwise_overlap([a], [b]) for i, a in enumerate(entries) for b in entries[:i])
    _, problems = parse_pool(pool("p", *entries))
    assert any("overlaps" in p.message for p in problems) == expected


def test_a_thousand_repeated_entries_give_a_capped_problem_list() -> None:
    _, problems = parse_pool(pool("p", *["10.0.0.0/8"] * 1000))
    assert len(problems) == 21
    assert problems[0].path == "spec.addresses[1]" and "overlaps 10.0.0.0/8 (spec.addresses[0])" in problems[0].message
    assert problems[-1].message == "and 979 more problems"


def test_eight_thousand_host_routes_overlapping_another_pool_are_denied_with_a_capped_list() -> None:
    mine = [f"10.{i // 256}.{i % 256}.1/32" for i in range(8000)]
    verdict = _pool("CREATE", pool("new", *mine), c=cluster(pool("old", "10.0.0.0/8")))
    assert not verdict.allowed
    assert len(verdict.problems) == 21 and verdict.problems[-1].message == "and 7980 more problems"
    assert "10.0.0.1/32 overlaps 10.0.0.0/8 of pool metallb-system/old" in verdict.problems[0].message


def test_duplicate_interfaces_are_accepted_as_metallb_copies_them_verbatim() -> None:
    verdict = _ad("CREATE", advertisement("a", interfaces=["eth0", "eth0"]))
    assert verdict.allowed


def test_duplicate_interfaces_warn_once_per_name() -> None:
    verdict = _ad("CREATE", advertisement("a", interfaces=["eth0", "bond0", "eth0", "eth1", "eth1", "eth1"]))
    assert verdict.allowed
    dups = [(n.obj, n.message) for n in verdict.notes if n.code is NoteCode.DUPLICATE_INTERFACE]
    assert dups == [
        ("L2Advertisement metallb-system/a", "spec.interfaces: interface eth0 is listed twice"),
        ("L2Advertisement metallb-system/a", "spec.interfaces: interface eth1 is listed 3 times"),
    ]
    assert not [n for n in _ad("CREATE", advertisement("a", interfaces=["eth0", "eth1"])).notes]
    parsed = build_cluster([advertisement("a", interfaces=["eth0", "eth0"])])
    assert sorted(parsed.cluster.advertisements) == ["metallb-system/a"]
    assert [str(w) for w in parsed.warnings] == [
        "L2Advertisement metallb-system/a: spec.interfaces: interface eth0 is listed twice"
    ]


# ----- overlaps between the pools of one configuration: MetalLB refuses the whole configuration ---------------


@given(st.lists(st.tuples(_cidrs, st.integers(0, 3)), min_size=1, max_size=12))
def test_overlapping_pairs_is_empty_exactly_when_ranges_of_different_owners_overlap(
    items: list[tuple[str, int]],
) -> None:
    ranges = [parse_range(t)[0] for t, _ in items]
    owners = [o for _, o in items]
    assert all(r is not None for r in ranges)
    pairs = overlapping_pairs(ranges, owners)  # type: ignore[arg-type]
    expected = any(
        owners[i] != owners[j] and _pairwise_overlap([items[i][0]], [items[j][0]])
        for i in range(len(items))
        for j in range(i)
    )
    assert bool(pairs) == expected
    for k, j in pairs:  # every pair reported is a real overlap of two owners
        assert owners[k] != owners[j] and _pairwise_overlap([items[k][0]], [items[j][0]])


@given(st.lists(st.lists(_cidrs, min_size=1, max_size=3), min_size=1, max_size=5))
def test_build_cluster_reports_a_pool_overlap_exactly_when_two_pools_overlap(pools: list[list[str]]) -> None:
    docs = [pool(f"p{i}", *entries) for i, entries in enumerate(pools)]
    parsed = build_cluster(docs)
    valid = [entries for i, entries in enumerate(pools) if f"metallb-system/p{i}" in parsed.cluster.pools]
    expected = any(_pairwise_overlap(a, b) for i, a in enumerate(valid) for b in valid[:i])
    assert bool(parsed.pool_overlaps) == expected == bool(parsed.refusals)


def test_a_24_and_a_32_in_two_pools_name_both_pools_and_the_shared_address() -> None:
    docs = [
        node("n1"),
        service("web", "198.51.100.5"),
        endpoints("web", ["n1"]),
        pool("a", "198.51.100.0/24"),
        pool("b", "203.0.113.0/28", "198.51.100.5/32"),
        advertisement("b", ipAddressPools=["b"]),
    ]
    parsed = build_cluster(docs)
    assert parsed.problems == ()  # both pools are valid on their own; together MetalLB refuses them
    assert [str(p) for p in parsed.refusals] == [
        "IPAddressPool metallb-system/b: spec.addresses[1]: 198.51.100.5/32 overlaps 198.51.100.0/24 of pool "
        "metallb-system/a (both hold 198.51.100.5): MetalLB refuses the whole configuration"
    ]
    p = plan(parsed.cluster, EligibilitySettings())
    # The only fix that helps: "create an L2Advertisement for pool a" would be refused along with the rest.
    assert fixes(p, "default/web", pool_overlaps=parsed.pool_overlaps) == [
        "MetalLB refuses the whole configuration: pool metallb-system/b entry 198.51.100.5/32 overlaps "
        "198.51.100.0/24 of pool metallb-system/a (both hold 198.51.100.5); make the pools disjoint, nothing else "
        "takes effect until then"
    ]
    wide = pool_overlaps(
        build_cluster([pool("a", "198.51.100.0/25"), pool("b", "198.51.100.64-198.51.100.200")]).cluster.pools
    )
    assert [(o.pool, o.other, o.shared) for o in wide] == [
        ("metallb-system/b", "metallb-system/a", "198.51.100.64-198.51.100.127")
    ]


def test_a_pool_outside_the_metallb_namespace_makes_no_overlap() -> None:
    parsed = build_cluster([pool("a", "198.51.100.0/24"), pool("a", "198.51.100.0/24", namespace="default")])
    assert parsed.pool_overlaps == () and parsed.refusals == ()
