"""The webhook's log lines: structured fields travel in `extra={"fields": ...}`, never as `key=value` text in the
message (one logging style, issue 7 item 7), and the JSON formatter writes valid UTF-8 whatever the fields hold."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
from pathlib import Path

import pytest

from webhook.logs import JSONFormatter, TextFormatter

WEBHOOK = Path(__file__).resolve().parents[2] / "webhook"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
KEY_VALUE = re.compile(r"\b[a-z_]+=")


def _log_messages() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(WEBHOOK.glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in LEVELS
                and isinstance(call.func.value, ast.Name)
                and call.func.value.id == "log"
                and call.args
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)
            ):
                found.append((path.name, call.lineno, call.args[0].value))
    return found


def test_no_log_message_carries_key_value_text() -> None:
    messages = _log_messages()
    assert len(messages) >= 10  # the scan sees the log calls at all
    offenders = [(name, line, text) for name, line, text in messages if KEY_VALUE.search(text)]
    assert offenders == []


def _record(**fields: object) -> logging.LogRecord:
    record = logging.LogRecord("webhook.app", logging.INFO, __file__, 1, "allowed %s", ("x\udfffy",), None)
    record.fields = fields
    return record


@pytest.mark.parametrize("value", ["\udfff", "a\ud800b", "\ud83d", "ok"])
def test_json_lines_are_valid_utf8_and_keep_lone_surrogates_as_json_escapes(value: str) -> None:
    line = JSONFormatter().format(_record(node=value, **{"user" + value: "u"}))
    encoded = line.encode("utf-8")  # strict: a raw lone surrogate cannot be encoded, and a strict stream would fail
    doc = json.loads(encoded)
    assert doc["node"] == value and doc["user" + value] == "u" and doc["msg"] == "allowed x\udfffy"


def test_a_strict_utf8_stream_takes_the_json_line() -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    handler.handleError = lambda record: (_ for _ in ()).throw(AssertionError("the handler failed"))  # type: ignore[method-assign]
    handler.emit(_record(node="\udfff"))
    stream.flush()
    assert b'"node": "\\udfff"' in stream.buffer.getvalue()  # type: ignore[attr-defined]


def test_text_lines_show_fields_after_the_message() -> None:
    line = TextFormatter().format(_record(event="admission", node="worker-1"))
    assert line.endswith("allowed x\udfffy event=admission node=worker-1")
