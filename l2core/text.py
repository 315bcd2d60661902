"""Small text helpers shared by the core's messages: one way to name a few things and count the rest.

No I/O, standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence


def and_more(names: Sequence[str], limit: int) -> str:
    """`a, b, c and 2 more`: at most `limit` names, then how many were left out."""
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    return f"{shown} and {more} more" if more > 0 else shown
