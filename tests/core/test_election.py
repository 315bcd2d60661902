"""The election must match MetalLB's: weight descending, then sha256(node + "#" + ip) ascending, first wins."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from l2core.election import NO_CANDIDATE, digest_from, elect, elect_top2, election_digest, election_prefix, ranked

names = st.lists(st.from_regex(r"\A[a-z][a-z0-9-]{0,12}\Z"), min_size=1, max_size=12, unique=True)
ips = st.sampled_from(["192.0.2.100", "198.51.100.7", "203.0.113.250", "2001:db8::100", "2001:db8:1::1"])


def reference_winner(nodes: list[str], ip: str) -> str:
    """Written out the way MetalLB's Go code reads: sort by the digest bytes, take the first."""
    return sorted(nodes, key=lambda n: hashlib.sha256((n + "#" + ip).encode()).digest())[0]


def test_known_answer_for_the_captured_cluster() -> None:
    digests = {n: election_digest(n, "192.0.2.100").hex()[:8] for n in ("cp-1", "worker-1", "worker-2")}
    winner = min(digests, key=lambda n: election_digest(n, "192.0.2.100"))
    assert elect(["cp-1", "worker-1", "worker-2"], "192.0.2.100") == winner
    assert elect(["worker-1", "worker-2"], "192.0.2.100") == reference_winner(["worker-1", "worker-2"], "192.0.2.100")


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
