"""Logging set-up for the webhook process: JSON lines in the cluster, readable text in a terminal.

Log calls elsewhere use `logging.getLogger(__name__)` with lazy `%s` arguments; structured fields travel in
`extra={"fields": {...}}` with the fixed vocabulary (node, service, ip, pool, reason, event, user, operation).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


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


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def setup(fmt: str, level: str) -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # one line per request is too many
