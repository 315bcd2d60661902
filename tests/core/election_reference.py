"""The election rule written as plainly as MetalLB's sort, for tests to check the planner's fast path against.

It shares no code with `l2core.election`: digests come straight from hashlib, and a lone surrogate is replaced by
U+FFFD as Go's encoding/json decodes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def election_digest(node: str, ip: str) -> bytes:
    text = f"{node}#{ip}".encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return hashlib.sha256(text.encode()).digest()


def ranked(candidates: Iterable[str], ip: str, *, weights: Mapping[str, int] | None = None) -> list[str]:
    """All candidates in election order (weight descending, then digest bytes ascending); the first one wins."""
    w = weights or {}
    return sorted(set(candidates), key=lambda n: (-w.get(n, 0), election_digest(n, ip)))


def reference_owner(candidates: Iterable[str], ip: str, *, weights: Mapping[str, int] | None = None) -> str | None:
    order = ranked(candidates, ip, weights=weights)
    return order[0] if order else None
