"""Checks of option values that several commands share, so that `l2guard webhook` and `l2guard announce` accept
and refuse the same things with the same words.

Pure: no I/O. Each check returns a one-line problem, or None when the value is fine.
"""

from __future__ import annotations


def port_problem(flag: str, port: int) -> str | None:
    """A TCP port must be 0-65535 (0: the kernel picks a free one); anything else is `flag`'s problem."""
    if 0 <= port <= 65535:
        return None
    return f"{flag} must be a port number, not {port}"
