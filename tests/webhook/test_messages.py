"""The warning texts under the line budget: the summary and the reason for a fallback always survive."""

from __future__ import annotations

import re

from l2core.plan import Move
from l2core.policy import Action, Exemption, Impact, LabelChange, Mode, NodeDecision
from l2core.problems import Problem
from webhook import messages
from webhook.app import VALIDATE_POOL
from webhook.messages import move_text, node_warnings
from webhook.review import MAX_WARNING_CHARS, MAX_WARNINGS, clean_text, clean_warnings
from webhook.settings import WebhookSettings

from .conftest import api_documents
from .hostile import pool_review


def decision(moves: int, *, exemption: Exemption | None) -> NodeDecision:
    impact = Impact(
        tuple(
            Move(f"default/s{i}", (f"192.0.2.{i}",), "cp-1", None if i % 2 == 0 else "worker-2") for i in range(moves)
        )
    )
    return NodeDecision(Action.WARN, LabelChange.ADDED, "cp-1", "", Mode.STRIP, exemption=exemption, impact=impact)


def test_the_exemption_line_survives_many_moves() -> None:
    lines = node_warnings(decision(6, exemption=Exemption.UNSCHEDULABLE))
    assert clean_warnings(lines) == lines  # nothing folded away by the response builder
    assert len(lines) == MAX_WARNINGS
    assert lines[0].startswith("node cp-1 excluded from LoadBalancer announcements: 3 services lose their IPs")
    assert lines[-1] == "not stripped: the node is unschedulable (a drain is in progress)"
    assert lines[-2] == "and 4 more (run l2guard explain for the full picture)"


def test_at_most_three_services_are_named() -> None:
    for n in range(1, 8):
        lines = node_warnings(decision(n, exemption=None))
        named = [line for line in lines if line.startswith("LoadBalancer ")]
        assert len(named) == min(n, 3)
        assert (lines[-1].startswith(f"and {n - 3} more")) == (n > 3)


def test_a_long_service_is_shortened_in_the_middle_not_at_the_verdict() -> None:
    move = Move("team-" + "x" * 80 + "/checkout-" + "y" * 40, ("2001:db8::1", "192.0.2.1"), "a", None)
    text = move_text(move)
    assert len(text) <= MAX_WARNING_CHARS
    assert text.startswith("LoadBalancer 2001:db8::1 +1 (team-") and text.endswith("yyy) will have NO announcing node")


def test_a_huge_message_is_cut_before_it_is_cleaned() -> None:
    # 40 M characters: cleaning them one by one took seconds and hundreds of MB (a MemoryError under a cap).
    huge = "spec.addresses[1]: 10.0.0.0/8 overlaps\n" * 1_000_000
    line = clean_text(huge, 120)
    assert len(line) == 120 and line.endswith("…") and "\n" not in line
    assert line.startswith("spec.addresses[1]: 10.0.0.0/8 overlaps spec.addresses[1]")


def test_the_summary_counts_moves_and_losses_the_same_way_in_services() -> None:
    summaries = {n: node_warnings(decision(n, exemption=None))[0] for n in (2, 4)}
    assert summaries == {
        2: "node cp-1 excluded from LoadBalancer announcements: 1 service loses its IP, 1 service moves to another "
        "node",
        4: "node cp-1 excluded from LoadBalancer announcements: 2 services lose their IPs, 2 services move to another "
        "node",
    }


def test_a_denial_for_thousands_of_problems_fits_the_message_and_keeps_the_count(serve) -> None:  # type: ignore[no-untyped-def]
    """8,000 bad entries: the object is named once, whole problems are listed while they fit the 1,024-character
    message, and the count of the rest survives (it used to be cut off with the tail of the message)."""
    r = serve(WebhookSettings(), documents=api_documents())
    review = pool_review([f"bad-{i}" for i in range(8000)])
    message = r.review(VALIDATE_POOL, review)["response"]["status"]["message"]
    assert len(message) <= 1024 and not message.endswith("…")
    assert message.startswith("invalid IPAddressPool metallb-system/lan: spec.addresses[0]: 'bad-0' is not a valid")
    assert message.count("metallb-system/lan") == 1
    shown = message.count("spec.addresses[")
    more = re.fullmatch(r".*; and (\d+) more problems", message)
    assert more is not None and shown >= 3 and shown + int(more.group(1)) == 8000


def test_problems_message_counts_what_does_not_fit_in_an_uncapped_list() -> None:
    problems = [Problem("L2Advertisement metallb-system/a", f"spec.interfaces[{i}]", "x" * 90) for i in range(50)]
    text = messages.problems_message("L2Advertisement", problems)
    shown = text.count("spec.interfaces[")
    assert len(text) <= 1024 and text.endswith(f"; and {50 - shown} more problems") and 0 < shown < 50
    one = messages.problems_message("L2Advertisement", [Problem("", "", "the request carries no object")])
    assert one == "invalid L2Advertisement: the request carries no object"
