"""Small text helpers shared by the core's messages: one way to name a few things and count the rest, and one way
to show an input value in a message without printing all of it.

No I/O, standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SHOWN_CHARS = 80


def and_more(names: Sequence[str], limit: int) -> str:
    """`a, b, c and 2 more`: at most `limit` names, then how many were left out."""
    head = ", ".join(names[:limit])
    more = len(names) - limit
    return f"{head} and {more} more" if more > 0 else head


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """An input value for a problem message, as repr writes it but bounded: a string longer than `limit` is cut
    and ends in '…' inside its quotes; a list or an object is named with its size and never walked.

    A plain repr printed a 1 MB address entry whole, and expanded a YAML alias bomb (one list shared 9^9 times) until
    memory ran out. The cost here depends on `limit`, not on the value."""
    if isinstance(value, str | bytes):
        if len(value) <= limit:
            return repr(value)
        cut = repr(value[:limit])  # at most a few characters per character: escapes like \x1b
        return f"{cut[:-1]}…{cut[-1]}"
    if isinstance(value, Mapping):
        return f"an object with {len(value)} field(s)"
    if isinstance(value, list | tuple | set | frozenset):
        return f"a list of {len(value)} item(s)"
    # YAML reads 0x... of any length, and repr raises past 4300 decimal digits (Python 3.11 int_max_str_digits)
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)  # None, a bool, a number or a timestamp
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def escaped(text: str) -> str:
    """`text` with every character that is not printable (control, format such as bidirectional overrides, line
    separators, lone surrogates, unassigned) written as its Python escape, so input text cannot steer a terminal
    or split one line into two."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
