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
from dataclasses import dataclass
from typing import Any

_sha256 = hashlib.sha256


def _utf8(text: str) -> bytes:
    """UTF-8 bytes as Go sees the string: Go's encoding/json decodes a lone surrogate escape (`"\\udfff"`) to
    U+FFFD, while Python keeps it and cannot encode it. Valid text (every real node name) takes the fast path."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def election_prefix(node: str) -> Any:
    """The sha256 state after `node#`: copying it and feeding the IP costs less than hashing the whole string, and
    the planner keeps one per node (a hashlib object; typed Any because hashlib's type is private)."""
    return _sha256(_utf8(f"{node}#"))


def digest_from(prefix: Any, ip: str) -> bytes:
    """sha256(node + "#" + ip) from the node's `election_prefix`."""
    h = prefix.copy()
    h.update(_utf8(ip))
    digest: bytes = h.digest()
    return digest


@dataclass(frozen=True, slots=True)
class Rank:
    """A candidate's place in one IP's election: the key is (-weight, digest), smallest first. `node` None stands
    for "there is no such candidate"."""

    node: str | None
    weight: int
    digest: bytes

    @property
    def key(self) -> tuple[int, bytes]:
        return (-self.weight, self.digest)


NO_CANDIDATE = Rank(None, 0, b"")
_LAST = (1, b"")  # sorts after every (-weight, digest) key: weights are >= 0
_LAST_DIGEST = b"\xff" * 33  # sorts after every 32-byte digest


def elect_top2(
    candidates: Iterable[str], ip: str, *, weights: Mapping[str, int], prefixes: Mapping[str, Any]
) -> tuple[Rank, Rank]:
    """The planner's election: the winner and the runner-up (each NO_CANDIDATE when missing).

    The plan keeps both, so that when the winner leaves, the runner-up takes over without hashing every node again,
    and a node that joins is compared with them at the cost of one hash. `prefixes` maps every candidate to its
    `election_prefix`; weights of zero may be omitted."""
    pool = list(candidates)
    if not pool:
        return NO_CANDIDATE, NO_CANDIDATE
    suffix = _utf8(ip)
    digests = []
    for name in pool:
        h = prefixes[name].copy()
        h.update(suffix)
        digests.append(h.digest())
    if weights:
        keys: list[tuple[int, bytes]] = [(-weights.get(n, 0), d) for n, d in zip(pool, digests, strict=True)]
        first = keys.index(min(keys))
        keys[first] = _LAST
        second = keys.index(min(keys)) if len(pool) > 1 else -1
    else:  # the common case: compare the digests themselves, no tuples
        plain = list(digests)
        first = plain.index(min(plain))
        plain[first] = _LAST_DIGEST
        second = plain.index(min(plain)) if len(pool) > 1 else -1
    winner = Rank(pool[first], weights.get(pool[first], 0), digests[first])
    if second < 0:
        return winner, NO_CANDIDATE
    return winner, Rank(pool[second], weights.get(pool[second], 0), digests[second])
