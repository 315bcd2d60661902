"""Fail-static: what a speaker announces while it is cut off from the API server.

In contact, a node announces what its plan says (`Plan.announcements(node)`: IP -> interfaces, None meaning all
eligible interfaces; the caller maps None to the data plane's ALL_INTERFACES). Cut off (watches failing, lease
renewal failing), its view is stale, and replanning from it would withdraw IPs for no reason: clients must keep
working while the control plane hiccups. So it keeps what it announced when contact was lost, and
`l2core.liveness` stops judging peers dead meanwhile.

One exception, the split-brain rule: if, while cut off, the data plane sees another node claim one of our IPs
(conflict detection), that node was elected from a fresher view (ours may miss that we were excluded, or that a
peer came back), so we yield the IP. Two nodes answering for one IP is the one outcome worse than a stale view.
After reconnecting, the caller re-lists and announces from the plan again; a yielded IP comes back only if the new
plan gives it to us.

Pure: no I/O, no clock, no logging, standard library only. It must not import the data plane (`speaker/`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

Announcements = Mapping[str, frozenset[str] | None]  # IP -> interfaces, None: all eligible interfaces


def held(announced: Announcements, contested: Collection[str]) -> dict[str, frozenset[str] | None]:
    """What to announce while cut off: `announced` without the IPs in `contested`, the IPs that another node
    claimed since contact was lost (the data plane's conflicts seen while cut off). A contested IP is yielded on
    every interface: the other node holds the fresher view of all of it.

    `announced` is what was handed to the data plane when contact was lost; applying `held` to its own result as
    new conflicts arrive gives the same as applying it once to all of them, so yielded IPs stay yielded."""
    return {ip: where for ip, where in announced.items() if ip not in contested}
