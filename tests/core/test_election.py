"""The election must match MetalLB's: weight descending, then sha256(node + "#" + ip) ascending, first wins."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2core.election import NO_CANDIDATE, digest_from, elect_top2, election_prefix
from tests.core.election_reference import election_digest, ranked

names = st.lists(st.from_regex(r"\A[a-z][a-z0-9-]{0,12}\Z"), min_size=1, max_size=12, unique=True)
ips = st.sampled_from(["192.0.2.100", "198.51.100.7", "203.0.113.250", "2001:db8::100", "2001:db8:1::1"])


def reference_winner(nodes: list[str], ip: str) -> str:
    """Written out the way MetalLB's Go code reads: sort by the digest bytes, take the first."""
    return sorted(nodes, key=lambda n: hashlib.sha256((n + "#" + ip).encode()).digest())[0]


# Literal vectors, computed once outside the project with `hashlib.sha256((node + "#" + ip).encode()).hexdigest()`
# and ordered ascending as MetalLB's speaker/layer2_controller.go does (bytes.Compare on the digests, first wins).
# First 8 hex digits of each digest, in election order:
#   192.0.2.100:   cp-1 15bde924, worker-1 45c8c791, worker-2 8fbbf9ef
#   2001:db8::100: worker-1 03a906fa, cp-1 2fadd316, worker-2 352da66c
#   203.0.113.7:   cp-1 4a0f1845, worker-2 719c3afe, worker-1 fa9a78a6
KNOWN_ANSWERS = [
    ("192.0.2.100", ["cp-1", "worker-1", "worker-2"], "15bde924"),
    ("2001:db8::100", ["worker-1", "cp-1", "worker-2"], "03a906fa"),
    ("203.0.113.7", ["cp-1", "worker-2", "worker-1"], "4a0f1845"),
]
CLUSTER = ["worker-2", "cp-1", "worker-1"]


def elect(candidates: list[str], ip: str, *, weights: dict[str, int] | None = None) -> str | None:
    """The winner by the code under test, `elect_top2`."""
    pool = set(candidates)
    winner, _ = elect_top2(pool, ip, weights=weights or {}, prefixes={n: election_prefix(n) for n in pool})
    return winner.node


@pytest.mark.parametrize(("ip", "order", "winner_digest"), KNOWN_ANSWERS)
def test_known_answers_match_literal_vectors(ip: str, order: list[str], winner_digest: str) -> None:
    assert election_digest(order[0], ip).hex()[:8] == winner_digest
    assert ranked(CLUSTER, ip) == order
    assert elect(CLUSTER, ip) == order[0]
    winner, runner = elect_top2(CLUSTER, ip, weights={}, prefixes={n: election_prefix(n) for n in CLUSTER})
    assert (winner.node, runner.node) == (order[0], order[1])


def test_weight_beats_the_literal_hash_order() -> None:
    # worker-2 ranks last by hash for 192.0.2.100; a preferred-node weight puts it first, then the hash order.
    assert ranked(CLUSTER, "192.0.2.100", weights={"worker-2": 50}) == ["worker-2", "cp-1", "worker-1"]


def test_a_lone_surrogate_in_a_node_name_hashes_as_go_decodes_it() -> None:
    # Go's encoding/json turns the escape "\udfff" into U+FFFD (bytes ef bf bd); sha256("a\xef\xbf\xbd#192.0.2.1")
    # computed with hashlib on the literal bytes.
    expected = hashlib.sha256(b"a\xef\xbf\xbd#192.0.2.1").digest()
    assert digest_from(election_prefix("a\udfff"), "192.0.2.1") == expected
    assert elect(["a\udfff", "b"], "192.0.2.1") in ("a\udfff", "b")


def test_prefix_digests_equal_whole_digests() -> None:
    assert digest_from(election_prefix("worker-1"), "2001:db8::1") == election_digest("worker-1", "2001:db8::1")


def test_no_candidates_means_no_winner() -> None:
    assert elect([], "192.0.2.1") is None
    assert elect_top2([], "192.0.2.1", weights={}, prefixes={}) == (NO_CANDIDATE, NO_CANDIDATE)
    only, runner = elect_top2(["n1"], "192.0.2.1", weights={}, prefixes={"n1": election_prefix("n1")})
    assert (only.node, runner) == ("n1", NO_CANDIDATE)


def test_weight_beats_hash() -> None:
    nodes = ["a", "b", "c", "d"]
    natural = elect(nodes, "192.0.2.5")
    other = next(n for n in nodes if n != natural)
    assert elect(nodes, "192.0.2.5", weights={other: 10}) == other
    assert ranked(nodes, "192.0.2.5", weights={other: 10})[0] == other


@given(names, ips, st.randoms())
def test_any_permutation_gives_the_same_owner(nodes: list[str], ip: str, rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(nodes)
    rnd.shuffle(shuffled)
    assert elect(shuffled, ip) == elect(nodes, ip) == reference_winner(nodes, ip)
    prefixes = {n: election_prefix(n) for n in nodes}
    winner, runner = elect_top2(shuffled, ip, weights={}, prefixes=prefixes)
    assert winner.node == reference_winner(nodes, ip)
    assert runner.node == (reference_winner([n for n in nodes if n != winner.node], ip) if len(nodes) > 1 else None)


@given(names, ips, st.from_regex(r"\A[a-z][a-z0-9-]{0,12}\Z"))
def test_adding_or_removing_a_node_that_is_not_the_owner_never_moves_the_ip(
    nodes: list[str], ip: str, extra: str
) -> None:
    owner = elect(nodes, ip)
    with_extra = elect([*nodes, extra], ip)
    assert with_extra in (owner, extra)  # only the newcomer itself can take over
    for loser in nodes:
        if loser != owner:
            assert elect([n for n in nodes if n != loser], ip) == owner


@given(names, ips, st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9-]{0,12}\Z"), st.integers(1, 100), max_size=4))
def test_weighted_owner_is_the_best_hash_among_the_heaviest(nodes: list[str], ip: str, weights: dict[str, int]) -> None:
    owner = elect(nodes, ip, weights=weights)
    top = max(weights.get(n, 0) for n in nodes)
    heaviest = [n for n in nodes if weights.get(n, 0) == top]
    assert owner == reference_winner(heaviest, ip)
    prefixes = {n: election_prefix(n) for n in nodes}
    winner, runner = elect_top2(nodes, ip, weights=weights, prefixes=prefixes)
    assert winner.node == owner and winner.weight == top
    rest = [n for n in nodes if n != owner]
    assert runner.node == (elect(rest, ip, weights=weights) if rest else None)
