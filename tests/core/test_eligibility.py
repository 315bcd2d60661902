from __future__ import annotations

import pytest

from l2core.eligibility import Reason, label_excludes, node_wide_reasons
from l2core.model import EXCLUDE_LABEL, EligibilitySettings, LabelSemantics, Node

PRESENCE = EligibilitySettings()
TRUE_ONLY = EligibilitySettings(label_semantics=LabelSemantics.TRUE_ONLY)
IGNORE = EligibilitySettings(ignore_exclude_label=True)


@pytest.mark.parametrize(
    ("value", "presence", "true_only"),
    [
        ("", True, True),
        ("true", True, True),
        ("false", True, False),
        ("False", True, False),
        ("karpenter", True, True),
        (None, False, False),
    ],
)
def test_label_semantics(value: str | None, presence: bool, true_only: bool) -> None:
    labels = {} if value is None else {EXCLUDE_LABEL: value}
    assert label_excludes(labels, PRESENCE) is presence  # MetalLB: any value excludes, even "false"
    assert label_excludes(labels, TRUE_ONLY) is true_only
    assert label_excludes(labels, IGNORE) is False


def test_node_wide_reasons_accumulate() -> None:
    node = Node("cp-1", labels={EXCLUDE_LABEL: ""}, network_unavailable=True)
    assert node_wide_reasons(node, PRESENCE, alive=False) == {
        Reason.EXCLUDED_BY_LABEL,
        Reason.NETWORK_UNAVAILABLE,
        Reason.SPEAKER_NOT_ALIVE,
    }
    assert node_wide_reasons(Node("w"), PRESENCE, alive=True) == frozenset()


def test_settings_validate() -> None:
    assert PRESENCE.validate() == []
    assert EligibilitySettings(load_balancer_class="").validate() != []
