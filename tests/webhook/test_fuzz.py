"""Fuzzing the endpoints over real HTTPS with hypothesis: any bytes, any JSON, and captured reviews with any value
spliced in. Never a 500, never a traceback; every 200 obeys the wire rules (patches applied with jsonpatch)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2core.model import EXCLUDE_LABEL
from l2core.policy import Mode
from webhook.app import MUTATE_NODE, VALIDATE_ADVERTISEMENT, VALIDATE_NODE, VALIDATE_POOL
from webhook.settings import WebhookSettings

from .conftest import PKI, Running, api_documents, captured, check_response, start_server

PATHS = [MUTATE_NODE, VALIDATE_NODE, VALIDATE_POOL, VALIDATE_ADVERTISEMENT]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def servers(pki: PKI) -> Iterator[dict[Mode, Running]]:
    running = {
        m: start_server(pki, WebhookSettings(node_policy=m), documents=api_documents()) for m in (Mode.STRIP, Mode.DENY)
    }
    yield running
    for r in running.values():
        r.stop()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.text(st.characters(exclude_categories=[]), max_size=5),  # lone surrogates are valid JSON escapes
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def _check(resp_status: int, text: str, review: Any = None) -> None:
    assert resp_status in (200, 400), (resp_status, text)
    assert "Traceback" not in text and "Internal Server Error" not in text
    body = json.loads(text)
    if resp_status == 400:
        assert set(body) == {"error"} and "\n" not in body["error"]
    elif review is not None:
        check_response(review, body)


@FUZZ
@given(body=st.binary(max_size=2000), path=st.sampled_from(PATHS))
def test_any_bytes(servers: dict[Mode, Running], body: bytes, path: str) -> None:
    resp = servers[Mode.STRIP].post(path, body)
    _check(resp.status_code, resp.text)


@FUZZ
@given(doc=json_values, path=st.sampled_from(PATHS))
def test_any_json(servers: dict[Mode, Running], doc: Any, path: str) -> None:
    resp = servers[Mode.STRIP].post(path, json.dumps(doc).encode())
    _check(resp.status_code, resp.text)


REVIEWS = [
    "node-label-exclude-empty",
    "node-status-patch-adds-exclude",
    "node-create",
    "ipaddresspool-create",
    "ipaddresspool-update-merge-patch",
    "l2advertisement-create",
    "l2advertisement-delete",
]
SPOTS = [
    ("object",),
    ("oldObject",),
    ("object", "metadata"),
    ("object", "metadata", "labels"),
    ("object", "metadata", "labels", EXCLUDE_LABEL),
    ("object", "metadata", "annotations"),
    ("object", "spec"),
    ("object", "spec", "addresses"),
    ("object", "spec", "nodeSelectors"),
    ("object", "spec", "ipAddressPools"),
    ("oldObject", "metadata", "labels"),
    ("uid",),
    ("userInfo",),
    ("userInfo", "groups"),
    ("operation",),
    ("name",),
    ("object", "metadata", "name"),
    ("object", "metadata", "namespace"),
    ("dryRun",),
    ("kind",),
]


@FUZZ
@given(
    name=st.sampled_from(REVIEWS),
    spot=st.sampled_from(SPOTS),
    value=json_values,
    path=st.sampled_from(PATHS),
    mode=st.sampled_from([Mode.STRIP, Mode.DENY]),
)
def test_captured_reviews_with_any_value_spliced_in(
    servers: dict[Mode, Running], name: str, spot: tuple[str, ...], value: Any, path: str, mode: Mode
) -> None:
    review = captured(name)
    target: Any = review["request"]
    for key in spot[:-1]:
        if not isinstance(target, dict) or not isinstance(target.get(key), dict):
            target = None
            break
        target = target[key]
    if isinstance(target, dict):
        target[spot[-1]] = value
    resp = servers[mode].post(path, json.dumps(review).encode())
    _check(resp.status_code, resp.text, review)


@pytest.mark.parametrize("mode", [Mode.STRIP, Mode.DENY])
@pytest.mark.parametrize("spot", [("uid",), ("object", "metadata", "labels", EXCLUDE_LABEL), ("userInfo", "username")])
def test_lone_surrogates_are_echoed_not_a_500(servers: dict[Mode, Running], mode: Mode, spot: tuple[str, ...]) -> None:
    """Found in review: `"\\ud800"` is a valid JSON escape but cannot be encoded as UTF-8 on the way back out."""
    review = captured("node-label-exclude-empty")
    target: Any = review["request"]
    for key in spot[:-1]:
        target = target[key]
    target[spot[-1]] = "x\ud800y"
    resp = servers[mode].post(MUTATE_NODE, json.dumps(review).encode())
    _check(resp.status_code, resp.text)
    assert resp.status_code == 200
    if spot == ("uid",):
        assert json.loads(resp.text)["response"]["uid"] == "x\ud800y"
