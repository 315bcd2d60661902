"""Kubernetes errors, translated at the adapter's boundary into one small tree, so that callers never see the
client's `ApiException` or urllib3's and the socket module's errors:

    KubeError            anything the API call did not do; `reason` is one line for a log field or /status
    ├── Unreachable      no HTTP answer: connection refused or reset, a timeout, a TLS or protocol failure
    ├── Forbidden        401, 403: the credentials or the RBAC rules are wrong
    ├── NotFound         404
    ├── Conflict         409: a stale resourceVersion, or AlreadyExists on a create
    ├── Gone             410: the resourceVersion is too old (re-list)
    ├── Invalid          400, 422: the request was malformed or rejected by validation
    └── ServerError      5xx, 429, and any other status

`translate` maps one client exception; callers write `except TRANSLATED as exc: raise translate(exc) from exc`.
It must not retry, log or decide anything.
"""

from __future__ import annotations

import json

import urllib3
from kubernetes.client.exceptions import ApiException

MAX_REASON = 300  # characters; a server can send anything in a Status message
MAX_STATUS_BYTES = 1024 * 1024  # a larger error body is not parsed for its message

# What the client raises for a failed call: an HTTP error status, or no usable answer at all.
TRANSLATED = (ApiException, urllib3.exceptions.HTTPError, OSError)


class KubeError(Exception):
    def __init__(self, reason: str, *, status: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status  # the HTTP status, 0 when there was no answer


class Unreachable(KubeError):
    pass


class Forbidden(KubeError):
    pass


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Gone(KubeError):
    pass


class Invalid(KubeError):
    pass


class ServerError(KubeError):
    pass


_BY_STATUS: dict[int, type[KubeError]] = {
    400: Invalid,
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


def _status_message(exc: ApiException) -> str:
    """The `message` of the Status body the API server sends with an error, or the HTTP reason phrase."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and 0 < len(body) <= MAX_STATUS_BYTES:
        try:
            status = json.loads(body)
        except ValueError:
            status = None
        if isinstance(status, dict) and isinstance(status.get("message"), str) and status["message"]:
            return str(status["message"])
    return str(exc.reason or "no reason given")


def translate(exc: BaseException) -> KubeError:
    """The KubeError for one exception the client raised (one of TRANSLATED)."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        if status == 0:  # the client raises ApiException(status=0) for a few local failures
            return Unreachable(one_line(f"no answer: {exc.reason}"))
        cls = _BY_STATUS.get(status, ServerError)
        return cls(one_line(f"HTTP {status}: {_status_message(exc)}"), status=status)
    # urllib3 wraps the socket error several times (MaxRetryError -> NewConnectionError -> ConnectionRefusedError);
    # its own text names the innermost cause.
    return Unreachable(one_line(f"API server unreachable: {exc}"))
