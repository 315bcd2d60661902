"""The log lines of every l2guard process (`l2guard.logs`, one set-up for the webhook, the speaker and announce):
structured fields travel in `extra={"fields": ...}`, never as `key=value` text in the message (one logging style,
issue 7 item 7); the JSON formatter writes valid UTF-8 whatever the fields hold, and the text formatter shows the
fields after the message, quoted when a value would be ambiguous or steer the terminal (issue 8, part 1)."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import sys
from pathlib import Path

import pytest

from l2guard.logs import JSONFormatter, TextFormatter, setup

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("l2guard", "webhook", "speaker")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
KEY_VALUE = re.compile(r"\b[a-z_]+=")


def _log_messages() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
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
                found.append((str(path.relative_to(ROOT)), call.lineno, call.args[0].value))
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
    assert line.endswith("allowed x\\udfffy event=admission node=worker-1")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("cannot parse x", '"cannot parse x"'),  # a space would read as the start of the next pair
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("", '""'),
        ("line\nbreak", '"line\\nbreak"'),  # one record, one line
        ("\x1b[31mred", '"\\u001b[31mred"'),  # an escape sequence from a Node name must not recolour the terminal
        ("evil\u202eabc", '"evil\\u202eabc"'),  # nor a bidirectional override reverse it
        ("lone\udfff", '"lone\\udfff"'),
        (42, "42"),
        ("192.0.2.1", "192.0.2.1"),
    ],
)
def test_text_lines_quote_field_values_that_would_be_ambiguous_or_steer_the_terminal(value: object, shown: str) -> None:
    line = TextFormatter().format(_record(event="admission", reason=value))
    assert line.endswith(f"allowed x\\udfffy event=admission reason={shown}")
    assert "\n" not in line


def test_text_fields_stay_on_the_message_line_above_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("l2guard.x", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info())
    record.fields = {"event": "crash", "node": "worker-1"}
    first, *rest = TextFormatter().format(record).splitlines()
    assert first.endswith("failed x event=crash node=worker-1")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


@pytest.mark.parametrize(
    ("fmt", "tty", "json_lines"),
    [("json", True, True), ("text", False, False), ("auto", False, True), ("auto", True, False)],
)
def test_setup_writes_json_off_a_terminal_and_text_on_one(
    monkeypatch: pytest.MonkeyPatch, fmt: str, tty: bool, json_lines: bool
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(stream, "isatty", lambda: tty)
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup(fmt, "info")
        logging.getLogger("l2guard.probe").info("hello %s", "there", extra={"fields": {"event": "probe"}})
        logging.getLogger("l2guard.probe").debug("not shown")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    (line,) = stream.getvalue().splitlines()
    if json_lines:
        doc = json.loads(line)
        assert (doc["msg"], doc["event"], doc["level"], doc["logger"]) == (
            "hello there",
            "probe",
            "info",
            "l2guard.probe",
        )
    else:
        assert line.endswith(" INFO l2guard.probe: hello there event=probe")


def test_a_message_from_input_cannot_forge_or_recolour_a_text_line() -> None:
    """A Node named `cp\x1b[31mRED\r\nFAKE...` made the text log print a second, forged line (found in review)."""
    record = logging.LogRecord(
        "webhook.app", logging.INFO, __file__, 1, "stripped %s", ("cp\x1b[31mRED\r\nFAKE",), None
    )
    line = TextFormatter().format(record)
    assert line.endswith("stripped cp\\x1b[31mRED\\r\\nFAKE")
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
