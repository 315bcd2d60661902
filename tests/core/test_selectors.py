from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from l2core.selectors import label_key_error, parse_selector

LABELS = {"zone": "a", "role": "edge", "node.kubernetes.io/exclude-from-external-load-balancers": ""}


def sel(raw: object):  # type: ignore[no-untyped-def]
    s, problems = parse_selector(raw, obj="T x", path="spec.sel")
    assert problems == [], problems
    assert s is not None
    return s


def test_empty_selector_matches_everything() -> None:
    assert sel({}).matches({}) and sel(None).matches(LABELS)


def test_match_labels_and_expressions_are_anded() -> None:
    s = sel({"matchLabels": {"zone": "a"}, "matchExpressions": [{"key": "role", "operator": "In", "values": ["db"]}]})
    assert not s.matches(LABELS)
    assert s.matches({"zone": "a", "role": "db"})


def test_notin_and_doesnotexist_match_objects_without_the_key() -> None:
    assert sel({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}]}).matches(LABELS)
    assert sel({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}).matches(LABELS)
    assert not sel({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}).matches(LABELS)
    assert not sel({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}).matches(LABELS)


def test_exists_matches_an_empty_value() -> None:
    key = "node.kubernetes.io/exclude-from-external-load-balancers"
    assert sel({"matchExpressions": [{"key": key, "operator": "Exists"}]}).matches(LABELS)


def problems_of(raw: object) -> list[str]:
    s, problems = parse_selector(raw, obj="L2Advertisement metallb-system/lan", path="spec.nodeSelectors[0]")
    assert s is None
    return [str(p) for p in problems]


def test_invalid_selectors_are_field_addressed() -> None:
    assert problems_of({"matchExpressions": [{"key": "zone", "operator": "Within", "values": ["a"]}]}) == [
        "L2Advertisement metallb-system/lan: spec.nodeSelectors[0].matchExpressions[0].operator: 'Within' is not a "
        "valid operator (use In, NotIn, Exists, DoesNotExist)"
    ]
    (msg,) = problems_of({"matchExpressions": [{"key": "zone", "operator": "In", "values": []}]})
    assert "matchExpressions[0].values: operator In needs at least one value" in msg
    (msg,) = problems_of({"matchExpressions": [{"key": "zone", "operator": "Exists", "values": ["a"]}]})
    assert "operator Exists takes no values" in msg
    (msg,) = problems_of({"matchLabels": {"bad key!": "x"}})
    assert "matchLabels['bad key!']" in msg and "invalid" in msg
    (msg,) = problems_of({"matchLabels": {"zone": "-bad-"}})
    assert "label value '-bad-' is invalid" in msg
    (msg,) = problems_of({"matchExpressions": [{"key": "z", "operator": "In", "values": ["a", "a"]}]})
    assert "values[1]: duplicate value 'a'" in msg
    (msg,) = problems_of("zone=a")
    assert "must be an object" in msg


def test_duplicate_expressions_are_refused() -> None:
    expr = {"key": "zone", "operator": "Exists"}
    (msg,) = problems_of({"matchExpressions": [expr, expr]})
    assert "matchExpressions[1]: duplicate expression for key 'zone'" in msg


def test_label_keys_follow_the_qualified_name_rules() -> None:
    assert label_key_error("node.kubernetes.io/exclude-from-external-load-balancers") is None
    assert label_key_error("a" * 63) is None
    assert label_key_error("a" * 64) is not None
    assert label_key_error("Example.com/x") is not None  # prefix must be lower-case DNS
    assert label_key_error("/x") is not None
    assert label_key_error("") is not None


label_text = st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?\Z")


@given(st.dictionaries(label_text, label_text, max_size=5), st.dictionaries(label_text, label_text, max_size=5))
def test_match_labels_selects_exactly_the_supersets(wanted: dict[str, str], extra: dict[str, str]) -> None:
    s = sel({"matchLabels": wanted})
    assert s.matches({**extra, **wanted})
    assert s.matches(extra) == all(extra.get(k) == v for k, v in wanted.items())


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    )
)
def test_parsing_never_raises_on_any_json(raw: object) -> None:
    s, problems = parse_selector(raw, obj="x", path="p")
    assert (s is None) == bool(problems)
