"""Field-addressed problems found while parsing or validating Kubernetes objects.

A problem names the object and the field path (`spec.addresses[1]`) so that an operator can find it at once. The
core returns problems; it never raises them at the user and never logs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one field of one object."""

    obj: str  # "IPAddressPool metallb-system/lan", or "" when the object itself could not be named
    path: str  # field path inside the object, "" for the object as a whole
    message: str
    omitted: int = 0  # > 0: not a problem but the count of those `capped` left out ("and N more problems")

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.obj, self.path) if part)
        return f"{where}: {self.message}" if where else self.message


MAX_PROBLEMS = 20  # per object: a hostile object with 8,000 bad entries gets 20 lines and a count, not 8,000


def capped(obj: str, problems: list[Problem], limit: int = MAX_PROBLEMS, *, noun: str = "problems") -> list[Problem]:
    """The first `limit` problems (or warnings: `noun`), then one that counts the rest (its `omitted`)."""
    if len(problems) <= limit:
        return problems
    rest = len(problems) - limit
    return [*problems[:limit], Problem(obj, "", f"and {rest} more {noun}", omitted=rest)]


def total(problems: Iterable[Problem]) -> int:
    """How many problems a capped list stands for: those listed plus those counted as omitted."""
    return sum(p.omitted or 1 for p in problems)
