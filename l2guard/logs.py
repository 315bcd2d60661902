"""The one logging set-up of every `l2guard` process (webhook, speaker, announce): JSON lines in the cluster,
readable text in a terminal, chosen by `--log-format auto|json|text` (`L2GUARD_LOG_FORMAT`, see
`l2guard.settings`).

Log calls elsewhere use `logging.getLogger(__name__)` with lazy `%s` arguments; structured fields travel in
`extra={"fields": {...}}` with the fixed vocabulary (event, node, service, ip, pool, iface, reason, user, ...),
never as `key=value` text inside the message. Both formats show the fields: as keys of the JSON object, or as
`key=value` after the message. This module formats; it must not decide what is logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from l2core.text import escaped

# A text value shown bare: printable, and nothing that would make `key=value` pairs ambiguous.
_BARE = re.compile(r'[^\s="\\]+')


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        line = json.dumps(doc, ensure_ascii=False, default=str)
        # Readable UTF-8, except that a lone surrogate (a valid JSON escape in a review, e.g. a Node name) cannot be
        # encoded as UTF-8 and would make a strict stream fail. Inside a JSON string, backslashreplace writes it as
        # the very escape (`\udfff`) that reads back as the same character.
        return line.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_value(value: object) -> str:
    """`value` for a `key=value` pair: bare when unambiguous, else a JSON string (logfmt's quoting) with every
    character a terminal would obey (escape sequences, bidirectional overrides, lone surrogates) escaped."""
    text = str(value)
    if _BARE.fullmatch(text) and text.isprintable():
        return text
    return escaped(json.dumps(text, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The message line with the fields after it; `format` adds a traceback below, if any. Characters of the
        message a terminal would obey (a name from a review can hold ESC, CR, LF, U+202E) are escaped, so that no
        input can forge a log line or recolour one."""
        line = escaped(super().formatMessage(record))
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        return line


def setup(fmt: str, level: str) -> None:
    """Log to stderr in `fmt` (auto: text when stderr is a terminal, else JSON) from `level` up (debug, info,
    warning, error); replaces any handler set before."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
