"""The core's message helpers: input values are shown bounded, however large or shared they are."""

from __future__ import annotations

import time
from typing import Any

import pytest

from l2core.addresses import parse_range
from l2core.parse import build_cluster
from l2core.selectors import parse_selector
from l2core.text import shown
from tests.builders import advertisement, pool, service

MB = 1 << 20
BOUND = 600  # a problem line naming a few values of at most 80 characters each; far from a megabyte


def shared_tree(levels: int, width: int) -> list[Any]:
    """What a YAML alias bomb loads as: one list shared `width` times on each of `levels` levels."""
    tree: list[Any] = ["lol"] * width
    for _ in range(levels):
        tree = [tree] * width
    return tree


def deep(levels: int) -> list[Any]:
    tree: list[Any] = []
    for _ in range(levels):
        tree = [tree]
    return tree


def test_short_values_are_shown_as_repr_writes_them() -> None:
    assert shown("192.0.2.300/24") == "'192.0.2.300/24'"
    assert shown("it's") == '"it\'s"'
    assert shown(None) == "None" and shown(True) == "True" and shown(7) == "7" and shown(1.5) == "1.5"


def test_a_long_string_is_cut_inside_its_quotes() -> None:
    assert shown("x" * MB) == "'" + "x" * 80 + "…'"
    assert shown("abcdef", limit=3) == "'abc…'"
    assert shown(b"\x00" * 1000, limit=2) == "b'\\x00\\x00…'"


def test_containers_are_named_with_their_size_never_walked() -> None:
    assert shown(shared_tree(levels=12, width=9)) == "a list of 9 item(s)"  # 9**13 strings if walked
    assert shown({"a": 1, "b": deep(10_000)}) == "an object with 2 field(s)"
    assert shown(()) == "a list of 0 item(s)"


def test_a_huge_integer_is_named_by_its_size() -> None:
    assert shown(16**5000 - 1) == "an integer of 20000 bits"  # YAML's 0xfff... (5000 digits); repr would raise
    assert shown(2**64 - 1) == "18446744073709551615"


BIG = "1" * MB
HOSTILE: list[tuple[str, dict[str, Any]]] = [
    ("cidr", pool("p", BIG + "/8")),
    ("range", pool("p", BIG + "-192.0.2.1")),
    ("bare word", pool("p", BIG)),
    ("spaced cidr", pool("p", " 10.0.0.0/8" + " " * MB)),
    ("shared autoAssign", pool("p", "192.0.2.0/24", autoAssign=shared_tree(5, 9))),
    ("deep avoidBuggyIPs", pool("p", "192.0.2.0/24", avoidBuggyIPs=deep(900))),
    ("priority", pool("p", "192.0.2.0/24", serviceAllocation={"priority": BIG})),
    ("duplicate namespace", pool("p", "192.0.2.0/24", serviceAllocation={"namespaces": [BIG, BIG]})),
    ("weight", advertisement("a", preferredNodeSelectors=[{"weight": 16**5000, "preference": {}}])),
    ("weight text", advertisement("a", preferredNodeSelectors=[{"weight": BIG, "preference": {}}])),
    ("duplicate pool name", advertisement("a", ipAddressPools=[BIG, BIG])),
    ("label key", advertisement("a", nodeSelectors=[{"matchLabels": {"k" * MB: "v"}}])),
    ("label prefix", advertisement("a", nodeSelectors=[{"matchLabels": {"P" * MB + "/k": "v"}}])),
    ("label value", advertisement("a", nodeSelectors=[{"matchLabels": {"k": "v" * MB}}])),
    ("unknown selector fields", advertisement("a", nodeSelectors=[{f"{i}{BIG}": 1 for i in range(10)}])),
    ("operator", advertisement("a", nodeSelectors=[{"matchExpressions": [{"key": "k", "operator": BIG}]}])),
]


@pytest.mark.parametrize(("what", "raw"), HOSTILE, ids=[w for w, _ in HOSTILE])
def test_a_huge_or_shared_value_gives_a_bounded_problem_message_fast(what: str, raw: dict[str, Any]) -> None:
    start = time.monotonic()
    problems = build_cluster([raw]).problems
    assert problems, what
    assert all(len(str(p)) <= BOUND for p in problems), [str(p)[:200] for p in problems]
    assert time.monotonic() - start < 10  # a hang guard only; the bound is what this test is about


def test_huge_selector_values_and_ingress_ips_give_bounded_messages() -> None:
    value = "v" * MB
    expr = {"key": "k", "operator": "In", "values": ["a", "a"]}
    _, problems = parse_selector(
        {"matchExpressions": [expr, expr, {"key": "k", "operator": "In", "values": [value]}]}, obj="T x", path="s"
    )
    assert problems and all(len(str(p)) <= BOUND for p in problems)
    svc = service("web", BIG)
    problems_svc = build_cluster([svc]).problems
    assert [p.path for p in problems_svc] == ["status.loadBalancer.ingress[0].ip"]
    assert len(str(problems_svc[0])) <= BOUND


def test_a_bare_address_hint_names_the_prefix_of_its_family() -> None:
    assert parse_range("192.0.2.7")[1] == "'192.0.2.7' is not a CIDR or range (write a single address as 192.0.2.7/32)"
    assert parse_range("2001:db8::7")[1] == (
        "'2001:db8::7' is not a CIDR or range (write a single address as 2001:db8::7/128)"
    )
