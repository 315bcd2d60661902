"""The AdmissionReview wire format (`admission.k8s.io/v1`): typed shapes, request parsing, the response builder.

Everything here is pure: bytes in, dicts out. Parsing reads only what the webhook needs (uid, operation, the
objects, userInfo) and never validates the whole Node with a schema library: a kubelet status with 50 images is
30 KB that nobody needs to check (FIELD-NOTES: pydantic-validating the review costs more than the framework).

The response builder enforces the wire rules in one place: same apiVersion/kind, `response.uid` copied,
`status` only on denial, `patchType: JSONPatch` with a base64 patch only when there is one, `warnings` only when
there is something to say, each warning at most 120 printable characters, at most 5. It must not do I/O.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
MAX_BODY = 4 * 1024 * 1024  # 4 MiB; the API server's own request limit is 3 MiB
MAX_WARNINGS = 5
MAX_WARNING_CHARS = 120
MAX_MESSAGE_CHARS = 1024
DEFAULT_TIMEOUT = 3.0  # seconds; the manifests' timeoutSeconds, and what the API server sends without one
MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 30.0  # the range the API server allows for a webhook's timeoutSeconds


class Status(TypedDict):
    code: int
    message: str


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    warnings: NotRequired[list[str]]


class AdmissionReviewResponse(TypedDict):
    apiVersion: str
    kind: str
    response: AdmissionResponse


class BadReview(Exception):
    """The body is not an AdmissionReview we can answer; the message is one line, safe to return."""


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of an AdmissionReview request the handlers read."""

    uid: str
    operation: str
    sub_resource: str
    username: str
    groups: tuple[str, ...]
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None
    dry_run: bool
    name: str = ""
    namespace: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def _mapping_or_none(value: object, what: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadReview(f"request.{what} must be an object")
    return value


def parse_review(body: bytes) -> Request:
    """Parse a request body. Raises BadReview for anything that is not an `admission.k8s.io/v1` review."""
    if len(body) > MAX_BODY:
        raise BadReview(f"body larger than {MAX_BODY} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadReview("body is not JSON") from exc
    if not isinstance(doc, dict):
        raise BadReview("body is not a JSON object")
    if doc.get("kind") != KIND or doc.get("apiVersion") != API_VERSION:
        raise BadReview(f"unsupported review: expected apiVersion {API_VERSION} and kind {KIND}")
    req = doc.get("request")
    if not isinstance(req, dict):
        raise BadReview("missing request")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("missing request.uid")
    user = req.get("userInfo")
    user = user if isinstance(user, dict) else {}
    username = user.get("username")
    groups = user.get("groups")
    operation = req.get("operation")
    sub = req.get("subResource")
    return Request(
        uid=uid,
        operation=operation if isinstance(operation, str) else "",
        sub_resource=sub if isinstance(sub, str) else "",
        username=username if isinstance(username, str) else "",
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        object=_mapping_or_none(req.get("object"), "object"),
        old_object=_mapping_or_none(req.get("oldObject"), "oldObject"),
        dry_run=req.get("dryRun") is True,
        name=req["name"] if isinstance(req.get("name"), str) else "",
        namespace=req["namespace"] if isinstance(req.get("namespace"), str) else "",
        raw=req,
    )


def clean_text(text: str, limit: int) -> str:
    """One printable line of at most `limit` characters: control and format characters become spaces (the API
    server silently drops a warning containing a newline), runs of spaces collapse, an overlong text ends in '…'."""
    # Cut first, clean after: cleaning a 1 MB message character by character cost seconds and a MemoryError under
    # a memory cap. Collapsing spaces only shortens, so a few times the limit keeps every line that could fit.
    window = 4 * limit + 16
    cut = len(text) > window
    chars = [" " if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in text[:window]]
    line = " ".join("".join(chars).split())
    if len(line) > limit or (cut and line):
        line = line[: limit - 1].rstrip() + "…"
    return line


def clean_warnings(warnings: Iterable[str]) -> list[str]:
    """At most 5 clean, non-empty, distinct warnings; when more were given the last says how many were left out."""
    out: list[str] = []
    for w in warnings:
        line = clean_text(w, MAX_WARNING_CHARS)
        if line and line not in out:
            out.append(line)
    if len(out) > MAX_WARNINGS:
        out = [*out[: MAX_WARNINGS - 1], f"... and {len(out) - MAX_WARNINGS + 1} more warnings"]
    return out


def encode_patch(ops: Sequence[Mapping[str, Any]]) -> str:
    return base64.b64encode(json.dumps(list(ops), separators=(",", ":")).encode()).decode("ascii")


def build_response(
    uid: str,
    allowed: bool,
    *,
    warnings: Iterable[str] = (),
    patch: Sequence[Mapping[str, Any]] = (),
    status_code: int = 403,
    message: str = "",
) -> AdmissionReviewResponse:
    """The exact AdmissionReview response. `status` only on denial, the patch only when non-empty."""
    response: AdmissionResponse = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": status_code, "message": clean_text(message or "denied", MAX_MESSAGE_CHARS)}
    if patch and allowed:
        response["patchType"] = "JSONPatch"
        response["patch"] = encode_patch(patch)
    cleaned = clean_warnings(warnings)
    if cleaned:
        response["warnings"] = cleaned
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


# A Go `time.Duration` as `Duration.String()` prints it and `time.ParseDuration` reads it: a sequence of decimal
# numbers with a unit each (`3s`, `2.5s`, `1m30s`, `2500ms`). The API server calls webhooks with `?timeout=<that>`
# (client-go's `Request.Timeout`, set from the webhook's timeoutSeconds).
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(rf"[+]?(?:{_DURATION_PART.pattern})+")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def request_timeout(text: str | None) -> float:
    """The seconds the API server waits for our answer, from its `?timeout=` query value; DEFAULT_TIMEOUT when the
    value is missing or not a Go duration, and clamped to the range a webhook's timeoutSeconds may have."""
    if not text or len(text) > 64 or not _DURATION.fullmatch(text):
        return DEFAULT_TIMEOUT
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    return min(max(seconds, MIN_TIMEOUT), MAX_TIMEOUT)


def error_body(message: str) -> dict[str, str]:
    """The JSON body of an HTTP 400: one line, no traceback."""
    return {"error": clean_text(message, 200)}
