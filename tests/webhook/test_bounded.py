"""Bounded work on hostile reviews (issue 7, item 2): decisions run off the event loop within the API server's
`?timeout=`, so a slow review is answered in time (a denial for config, allowed for a Node), queued decisions
cannot starve Node reviews of their answer, and /healthz stays prompt meanwhile. Real HTTPS on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from l2core.policy import Mode
from webhook.app import DECIDE_WORKERS, MUTATE_NODE, VALIDATE_POOL
from webhook.review import request_timeout
from webhook.settings import WebhookSettings

from .conftest import PKI, Running, api_documents, captured, check_response
from .hostile import slow_pool

WARN = WebhookSettings(node_policy=Mode.WARN)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3s", 3.0),
        ("2500ms", 2.5),
        ("2.5s", 2.5),
        ("1m", 30.0),  # clamped to the API server's own maximum timeoutSeconds
        ("1m30s", 30.0),
        ("10s", 10.0),
        ("1500000us", 1.5),
        (None, 3.0),
        ("", 3.0),
        ("3", 3.0),  # Go requires a unit (except for "0")
        ("-3s", 3.0),
        ("3 s", 3.0),
        ("1e3s", 3.0),
        ("9" * 400 + "h", 3.0),  # too long to be a duration the API server sends
        ("0.1s", 1.0),  # clamped to the minimum timeoutSeconds
    ],
)
def test_request_timeout_reads_go_durations(text: str | None, seconds: float) -> None:
    assert request_timeout(text) == seconds


def _post_in_thread(pki: PKI, url: str, body: bytes, results: list[Any]) -> threading.Thread:
    def run() -> None:
        with httpx.Client(verify=pki.client_context(), timeout=60) as client:
            resp = client.post(url, content=body, headers={"content-type": "application/json"})
            results.append((resp.status_code, resp.json()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _slow_reviews_in_flight(pki: PKI, r: Running, count: int, *, timeout: str) -> tuple[list[Any], Callable[[], None]]:
    body = json.dumps(slow_pool()).encode()
    results: list[Any] = []
    threads = [_post_in_thread(pki, f"{r.url}{VALIDATE_POOL}?timeout={timeout}", body, results) for _ in range(count)]
    # Wait until they are being decided: the executor has started a worker for each (up to its size) and queued
    # the rest (a fixed sleep was too short on a loaded machine). A bound that catches a hang.
    pool = r.server.state.decide_pool
    deadline = time.monotonic() + 30
    while len(pool._threads) < min(count, DECIDE_WORKERS) or pool._work_queue.qsize() < count - DECIDE_WORKERS:
        assert time.monotonic() < deadline, "the slow reviews never reached the decision workers"
        time.sleep(0.01)

    def join() -> None:
        for t in threads:
            t.join(60)
            assert not t.is_alive()

    return results, join


def test_a_config_review_that_outlasts_its_budget_is_denied_in_time(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    review = slow_pool()
    began = time.monotonic()
    resp = r.post(f"{VALIDATE_POOL}?timeout=1s", review)
    elapsed = time.monotonic() - began
    assert resp.status_code == 200
    body = resp.json()
    check_response(review, body)
    assert body["response"]["allowed"] is False
    assert "validation took too long (over 0.8 s)" in body["response"]["status"]["message"]
    assert elapsed < 10  # a hang catcher: the API server itself would have given up after 1 s
    # With the API server's usual 3 s an ordinary pool is still validated as before.
    assert r.review(VALIDATE_POOL, captured("ipaddresspool-create"))["response"]["allowed"] is True


def test_a_slow_delete_of_a_pool_is_allowed_with_a_warning_not_refused(serve) -> None:  # type: ignore[no-untyped-def]
    """A DELETE's verdict only ever warns; one that outlasts the budget was denied as too slow (found in review)."""
    r = serve(WARN, documents=api_documents())
    review = slow_pool(uid="slow-delete")
    request = review["request"]
    request["operation"], request["oldObject"], request["object"] = "DELETE", request["object"], None
    resp = r.post(f"{VALIDATE_POOL}?timeout=1s", review)
    assert resp.status_code == 200
    body = resp.json()["response"]
    assert body["allowed"] is True
    assert any("could not decide within 0.8 s" in w for w in body.get("warnings", [])), body


def test_node_reviews_queued_behind_slow_decisions_fail_open_in_time(serve, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    results, join = _slow_reviews_in_flight(pki, r, 3, timeout="30s")
    review = captured("node-label-exclude-empty")  # not the fast path: it needs the impact analysis
    resp = r.post(f"{MUTATE_NODE}?timeout=1s", review)
    assert resp.status_code == 200
    body = resp.json()
    check_response(review, body)
    assert body["response"]["allowed"] is True
    assert body["response"]["warnings"] == [
        "l2guard could not decide within 0.8 s; the request was allowed unchecked (see the webhook log)"
    ]
    # The fast path (an unrelated label) does not queue at all: it is answered as usual.
    assert "warnings" not in r.review(MUTATE_NODE, captured("node-label-unrelated"))["response"]
    join()
    assert [status for status, _ in results] == [200, 200, 200]
    metrics = r.health.get("/metrics").text
    assert 'l2guard_webhook_requests_total{endpoint="mutate-v1-node",outcome="timeout"} 1.0' in metrics


def test_healthz_stays_prompt_while_hostile_reviews_are_decided(serve, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    results, join = _slow_reviews_in_flight(pki, r, 2, timeout="30s")  # seconds of work each
    for _ in range(3):
        began = time.monotonic()
        assert r.health.get("/healthz").status_code == 200
        assert time.monotonic() - began < 3  # generous: it is milliseconds; on the event loop it was 7+ s
    join()
    assert [status for status, _ in results] == [200, 200]
    for _, body in results:
        assert body["response"]["uid"] == "slow-pool" and isinstance(body["response"]["allowed"], bool)


# ----- slow clients ----------------------------------------------------------------------------------------------


def _trickle_until_closed(sock: socket.socket, head: bytes, *, limit: int = 15) -> float | None:
    """Send `head`, then one byte a second (at most `limit`); the seconds until the server closed, or None."""
    began = time.monotonic()
    sock.sendall(head)
    sock.settimeout(1.0)
    for _ in range(limit):
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - began
        except TimeoutError:
            pass
        except (ConnectionError, ssl.SSLError):
            return time.monotonic() - began
        try:
            sock.sendall(b"x")
        except (ConnectionError, ssl.SSLError):
            return time.monotonic() - began
    return None


def test_a_client_trickling_headers_is_closed_while_others_are_served(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(replace(WARN, request_timeout=1.0), documents=api_documents())
    with socket.create_connection(("127.0.0.1", r.server.health_port), timeout=5) as slow:
        result: list[float | None] = []
        trickler = threading.Thread(
            target=lambda: result.append(_trickle_until_closed(slow, b"GET /healthz HTTP/1.1\r\nX-"))
        )
        trickler.start()
        assert r.health.get("/healthz").status_code == 200  # a normal client meanwhile
        assert r.review(MUTATE_NODE, captured("node-label-unrelated"))["response"]["allowed"] is True
        trickler.join(30)
    assert result and result[0] is not None, "the trickling connection was never closed"
    assert result[0] < 10  # generous: --request-timeout is 1 s here


def test_a_client_trickling_a_body_over_tls_is_closed(serve, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    r = serve(replace(WARN, request_timeout=1.0), documents=api_documents())
    head = (
        f"POST {MUTATE_NODE}?timeout=3s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000\r\n\r\n{"
    ).encode()
    raw = socket.create_connection(("127.0.0.1", r.server.port), timeout=5)
    with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as slow:
        closed_after = _trickle_until_closed(slow, head)
    assert closed_after is not None, "the trickling connection was never closed"
    assert closed_after < 10


def test_an_idle_keep_alive_connection_outlives_the_request_timeout(serve) -> None:  # type: ignore[no-untyped-def]
    """The request timeout bounds receiving a request, not the idle time between requests (keep-alive: 120 s)."""
    r = serve(replace(WARN, request_timeout=1.0), documents=api_documents())
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", r.server.health_port), timeout=5) as conn:
        for _ in range(2):
            conn.sendall(request)
            reply = conn.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200"), reply
            time.sleep(2.5)  # idle for longer than the request timeout
