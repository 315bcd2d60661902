"""Read Kubernetes objects from files or stdin: multi-document YAML, a `kind: List`, or `kubectl get -o json`.

This is the file adapter shared by `l2guard explain` and the webhook's `--cluster-state` mode. Every failure is an
`InputError` with a one-line message naming the file; no parser exception escapes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

import yaml


class InputError(Exception):
    """Input that cannot be read or parsed; the message is one line, fit for an operator."""


def parse_text(text: str, *, source: str) -> list[object]:
    """The documents in one file's text. JSON is tried first: it is what kubectl emits and YAML parses it slowly."""
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{source}: empty input (expected Kubernetes objects as YAML or JSON)")
    if stripped[0] in "{[":
        try:
            doc = json.loads(stripped)
        except RecursionError as exc:
            raise InputError(f"{source}: JSON nested too deeply to be Kubernetes objects") from exc
        except ValueError:
            pass  # flow-style YAML also starts with { or [
        else:
            return doc if isinstance(doc, list) else [doc]
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InputError(f"{source}: malformed YAML{where}: {problem}") from exc
    except RecursionError as exc:
        raise InputError(f"{source}: YAML nested too deeply to be Kubernetes objects") from exc
    except ValueError as exc:  # a scalar YAML resolves but cannot build, e.g. the date 2024-02-30
        raise InputError(f"{source}: invalid YAML value: {exc}") from exc
    if not docs:
        raise InputError(f"{source}: no documents found (expected Kubernetes objects as YAML or JSON)")
    return docs


def load_documents(paths: Iterable[str]) -> list[object]:
    """Documents from each path in order; "-" reads stdin."""
    docs: list[object] = []
    for path in paths:
        source = "<stdin>" if path == "-" else path
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InputError(f"{source}: cannot read: {reason}") from exc
        docs.extend(parse_text(text, source=source))
    return docs
