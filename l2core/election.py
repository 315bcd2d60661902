"""The layer-2 election, compatible with MetalLB's speaker (`speaker/layer2_controller.go`).

Candidates sort by the total weight of matching preferred node selectors, descending; ties break by
`sha256(node_name + "#" + ip)` compared as bytes, ascending; the first node wins. `ip` is the canonical text of the
service's first ingress IP, so in dual-stack one node serves both families (MetalLB: "Using the first IP should
work for both single and dual stack"). The candidate set must be built only from cluster-wide data, or speakers
disagree and the IP is announced twice or not at all (MetalLB history: node-local filtering once split the brain).

No I/O, standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

_sha256 = hashlib.sha256


def election_digest(node: str, ip: str) -> bytes:
    return _sha256(f"{node}#{ip}".encode()).digest()


def ranked(candidates: Iterable[str], ip: str, *, weights: Mapping[str, int] | None = None) -> list[str]:
    """All candidates in election order: the first one wins."""
    w = weights or {}
    return sorted(set(candidates), key=lambda n: (-w.get(n, 0), election_digest(n, ip)))


def elect(candidates: Iterable[str], ip: str, *, weights: Mapping[str, int] | None = None) -> str | None:
    """The winning node, or None when there is no candidate."""
    best: tuple[int, bytes, str] | None = None
    w = weights or {}
    for node in set(candidates):
        key = (-w.get(node, 0), election_digest(node, ip), node)
        if best is None or key < best:
            best = key
    return best[2] if best else None


def election_prefix(node: str) -> Any:
    """The sha256 state after `node#`: copying it and feeding the IP costs less than hashing the whole string, and
    the planner keeps one per node (a hashlib object; typed Any because hashlib's type is private)."""
    return _sha256(f"{node}#".encode())


def digest_from(prefix: Any, ip: str) -> bytes:
    """`election_digest(node, ip)` from the node's `election_prefix`."""
    h = prefix.copy()
    h.update(ip.encode())
    digest: bytes = h.digest()
    return digest


def elect_with_digest(
    candidates: Iterable[str], ip: str, *, weights: Mapping[str, int], prefixes: Mapping[str, Any]
) -> tuple[str | None, bytes]:
    """The fast path of `elect` for the planner: also returns the winner's digest, which the plan keeps so that a
    node change costs one hash per service instead of one per candidate. `prefixes` maps every candidate to its
    `election_prefix`; weights of zero may be omitted."""
    pool = list(candidates)
    if not pool:
        return None, b""
    if weights:
        top = max(weights.get(n, 0) for n in pool)
        pool = [n for n in pool if weights.get(n, 0) == top]
    suffix = ip.encode()
    digests = []
    for name in pool:
        h = prefixes[name].copy()
        h.update(suffix)
        digests.append(h.digest())
    best = min(digests)
    return pool[digests.index(best)], best
