"""The FastAPI apps: the admission endpoints (HTTPS) and the health/metrics endpoints (plain HTTP).

This is the only module that imports fastapi. Handlers read the raw body (capped at 4 MiB while streaming), parse
it with `webhook.review` (no pydantic model of the review: it would validate a 30 KB Node status just to read
labels), decide with `webhook.handlers` on the current cluster snapshot (pool and advertisement reviews in live
mode on the pools and advertisements read live first, see `_read_live`), and write the JSON response. The Node
fast path is decided on the event loop (microseconds); every other decision runs on a small worker pool under the
API server's `?timeout=` (80% of it), so a hostile object cannot stall /healthz or other reviews, and a decision
that runs out of time is answered anyway: allowed with a warning for a Node, denied for a pool or advertisement.
They never return HTTP 500: bad input is a 400 with a one-line JSON error, an internal error fails open on the node
path and denies with an explicit message on the pool path. One log line per decision that warned, stripped or
denied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from l2guard.view import ClusterView
from webhook import handlers
from webhook.handlers import NodeEndpoint, Outcome
from webhook.metrics import CONTENT_TYPE, Metrics
from webhook.review import MAX_BODY, BadReview, error_body, parse_review, request_timeout
from webhook.review import Request as Review
from webhook.settings import WebhookSettings

log = logging.getLogger(__name__)

MUTATE_NODE = "/mutate-v1-node"
VALIDATE_NODE = "/validate-v1-node"
VALIDATE_POOL = "/validate-metallb-io-v1beta1-ipaddresspool"
VALIDATE_ADVERTISEMENT = "/validate-metallb-io-v1beta1-l2advertisement"
DECIDE_WORKERS = 2  # threads for decisions off the event loop: one per core here; hostile reviews queue, not pile up
ANSWER_SHARE = 0.8  # answer within this share of the API server's timeout, leaving the rest for the network


def _decide_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=DECIDE_WORKERS, thread_name_prefix="l2guard-decide")


# Live reads of pools and advertisements (issue 7, item 4) take at most this share of a review's budget and at most
# LIVE_READ_MAX seconds, so that validating after a slow read still answers within the API server's timeout.
LIVE_READ_SHARE = 0.5
LIVE_READ_MAX = 1.5

Objects = Sequence[Mapping[str, Any]]
ConfigReader = Callable[[float], Awaitable[tuple[Objects, Objects]]]  # timeout -> (pools, advertisements)


@dataclass
class AppState:
    settings: WebhookSettings
    view: ClusterView
    metrics: Metrics = field(default_factory=Metrics)
    tls_loaded: Callable[[], bool] = lambda: True
    tls_problem: Callable[[], str | None] = lambda: None  # why the served certificate is unfit (expired), or None
    # Self-managed mode: why the Secret or a webhook configuration's caBundle is not right (missing, mismatched)
    ca_problem: Callable[[], str | None] = lambda: None
    # Where decisions that depend on the object's size or the cluster's run, so that /healthz and the Node fast
    # path never wait for them. A bounded pool, not asyncio.to_thread: a decision that ran out of time keeps its
    # thread until it finishes (threads cannot be stopped), so only a fixed worker count bounds the threads, and
    # a queued decision whose caller gave up is cancelled before it starts.
    decide_pool: ThreadPoolExecutor = field(default_factory=_decide_pool)
    read_config: ConfigReader | None = None  # live mode: a live read of pools and advertisements; file mode: None


@dataclass(frozen=True)
class LiveConfig:
    """What the live read gave one pool or advertisement review: the objects, or why it failed."""

    pools: Objects = ()
    advertisements: Objects = ()
    failure: str = ""


async def _read_live(state: AppState, budget: float) -> LiveConfig | None:
    """Read the pools and advertisements live for a config review (None in file mode: there is nothing to read).

    The watched cache can lag a write admitted a moment ago: pool A created and at once pool B overlapping it was
    admitted, because the cache had not seen A yet. MetalLB's webhooks read live (controller-runtime's uncached
    `GetAPIReader()`), and pool and advertisement writes are rare. A failed read does not fail the review: it is
    decided on the cache, with a warning. Never raises."""
    if state.read_config is None:
        return None
    try:
        pools, ads = await state.read_config(min(LIVE_READ_MAX, budget * LIVE_READ_SHARE))
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        state.metrics.config_reads.labels("fallback").inc()
        log.warning(
            "live read of pools and advertisements failed; validating against the cache",
            extra={"fields": {"event": "live-read-failed", "reason": reason}},
        )
        return LiveConfig(failure=reason)
    state.metrics.config_reads.labels("live").inc()
    return LiveConfig(pools, ads)


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise BadReview(f"body larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BadReview(f"body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _request_kind(review: Review) -> str:
    kind = review.raw.get("kind")
    value = kind.get("kind") if isinstance(kind, dict) else None
    return value if isinstance(value, str) else ""


def create_app(state: AppState) -> FastAPI:
    app = FastAPI(title="l2guard webhook", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = state.metrics
    settings = state.settings
    policy = settings.policy

    def no_fast_path(review: Review) -> Outcome | None:
        return None

    def node_fast_path(endpoint: NodeEndpoint) -> Callable[[Review], Outcome | None]:
        def fast(review: Review) -> Outcome | None:
            if _request_kind(review) not in ("", "Node"):
                return handlers.ALLOWED
            return handlers.node_fast_path(review, endpoint, policy=policy)

        return fast

    def node_decider(endpoint: NodeEndpoint) -> Callable[[Review, LiveConfig | None], Outcome]:
        def decide(review: Review, live: LiveConfig | None) -> Outcome:  # live is None: nodes are not read live
            return handlers.review_node(review, endpoint, policy=policy, snapshot=state.view.snapshot)

        return decide

    def config_decider(kind: str) -> Callable[[Review, LiveConfig | None], Outcome]:
        def decide(review: Review, live: LiveConfig | None) -> Outcome:
            snapshot = state.view.snapshot
            if live is not None and not live.failure:
                snapshot = snapshot.with_config(live.pools, live.advertisements)
            outcome = handlers.review_config(
                review,
                kind,
                settings=settings.eligibility,
                metallb_namespace=settings.metallb_namespace,
                snapshot=snapshot,
            )
            return handlers.cache_fallback(outcome, live.failure) if live is not None and live.failure else outcome

        return decide

    async def decide_in_time(
        decide: Callable[[Review, LiveConfig | None], Outcome],
        review: Review,
        live: LiveConfig | None,
        *,
        budget: float,
        deadline: float,
        fail_open: bool,
    ) -> Outcome:
        """`decide(review, live)` on a worker thread, or the too-slow outcome (which names the `budget` in seconds) at
        `deadline` (a `time.perf_counter()` value)."""
        loop = asyncio.get_running_loop()
        left = max(deadline - time.perf_counter(), 0.0)
        try:
            return await asyncio.wait_for(loop.run_in_executor(state.decide_pool, decide, review, live), left)
        except TimeoutError:
            return handlers.node_too_slow(budget) if fail_open else handlers.config_too_slow(budget)

    def endpoint(
        name: str,
        fast: Callable[[Review], Outcome | None],
        decide: Callable[[Review, LiveConfig | None], Outcome],
        *,
        fail_open: bool,
        read_live: bool,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                return await answer(request)
            except Exception as exc:  # nothing may become a 500: not even counting a bad request under a memory cap
                with contextlib.suppress(Exception):  # logging itself may fail there
                    log.warning(
                        "request unanswerable: %s",
                        type(exc).__name__,
                        extra={"fields": {"event": "unanswerable", "endpoint": name, "reason": type(exc).__name__}},
                    )
                return Response(_UNANSWERABLE, status_code=400, media_type="application/json")

        async def answer(request: Request) -> Response:
            budget = ANSWER_SHARE * request_timeout(request.query_params.get("timeout"))
            deadline = time.perf_counter() + budget  # from the handler's start: reading the body counts too
            try:
                body = await _read_body(request)
                start = time.perf_counter()
                review = parse_review(body)
            except BadReview as exc:
                metrics.requests.labels(name, "bad-request").inc()
                return JSONResponse(error_body(str(exc)), status_code=400)
            except Exception as exc:  # a client that went away mid-body, a broken stream
                metrics.requests.labels(name, "bad-request").inc()
                return JSONResponse(error_body(f"cannot read the request: {type(exc).__name__}"), status_code=400)
            # Everything after parsing is under one guard: deciding, encoding, counting and logging. Whatever
            # fails there, the answer is still a 200 AdmissionReview: allowed with a warning for a Node (never
            # block the cluster), a denial that names the failure for a pool or an advertisement.
            # A DELETE is never refused for being slow or for our failure: its verdict only ever warns (an IP that
            # loses its pool), so it fails open like a Node review.
            opens = fail_open or review.operation == "DELETE"
            try:
                try:
                    outcome = fast(review)  # microseconds, on the loop: the common Node request
                    if outcome is None:
                        # Pool and advertisement reviews read the config live first (issue 7, item 4), within a
                        # share of the budget; the decision gets what is left of it.
                        live = await _read_live(state, budget) if read_live else None
                        outcome = await decide_in_time(
                            decide, review, live, budget=budget, deadline=deadline, fail_open=opens
                        )
                except Exception as exc:
                    log.exception("admission failed", extra={"fields": {"event": "internal-error", "endpoint": name}})
                    outcome = handlers.node_internal_error(exc) if opens else handlers.config_internal_error(exc)
                return _answer(name, review, outcome, start=start, metrics=metrics)
            except Exception as exc:
                return _failed_answer(name, review, exc, fail_open=opens)

        return handle

    routes = (  # path, name, fast path, decide, fail open (nodes), read pools and advertisements live (config)
        (
            MUTATE_NODE,
            "mutate-v1-node",
            node_fast_path(NodeEndpoint.MUTATE),
            node_decider(NodeEndpoint.MUTATE),
            True,
            False,
        ),
        (
            VALIDATE_NODE,
            "validate-v1-node",
            node_fast_path(NodeEndpoint.VALIDATE),
            node_decider(NodeEndpoint.VALIDATE),
            True,
            False,
        ),
        (VALIDATE_POOL, "validate-ipaddresspool", no_fast_path, config_decider("IPAddressPool"), False, True),
        (
            VALIDATE_ADVERTISEMENT,
            "validate-l2advertisement",
            no_fast_path,
            config_decider("L2Advertisement"),
            False,
            True,
        ),
    )
    for path, name, fast, decide, fail_open, read_live in routes:
        # A plain Starlette route: the handler takes the raw Request, so FastAPI's body/dependency machinery is
        # skipped (it costs ~0.1 ms a request and we parse the body ourselves).
        handle = endpoint(name, fast, decide, fail_open=fail_open, read_live=read_live)
        app.router.add_route(path, handle, methods=["POST"])
    return app


def _answer(name: str, review: Review, outcome: Outcome, *, start: float, metrics: Metrics) -> Response:
    # ASCII JSON: a uid or label value with a lone surrogate (valid JSON escapes) must echo back, not crash.
    payload = json.dumps(outcome.response(review.uid), separators=(",", ":")).encode()
    metrics.requests.labels(name, outcome.result.value).inc()
    metrics.latency.labels(name).observe(time.perf_counter() - start)
    if outcome.log:
        _log_decision(name, review, outcome)
    return Response(payload, media_type="application/json")


# The answer of last resort, when even the error answer cannot be built (memory exhausted): without the request's
# uid the API server treats it as a failed call and applies the webhook's failurePolicy.
_LAST_RESORT = {
    True: json.dumps(handlers.node_internal_error(Exception()).response("")).encode(),
    False: json.dumps(handlers.config_internal_error(Exception()).response("")).encode(),
}


_UNANSWERABLE = json.dumps(error_body("cannot read the request")).encode()


def _failed_answer(name: str, review: Review, exc: Exception, *, fail_open: bool) -> Response:
    """The answer when answering failed: fail open for Nodes, deny for pools and advertisements, never a 500."""
    try:
        log.error(
            "answering failed: %s",
            type(exc).__name__,
            extra={"fields": {"event": "internal-error", "endpoint": name, "reason": type(exc).__name__}},
        )
        outcome = handlers.node_internal_error(exc) if fail_open else handlers.config_internal_error(exc)
        payload = json.dumps(outcome.response(review.uid), separators=(",", ":")).encode()
    except Exception:
        payload = _LAST_RESORT[fail_open]
    return Response(payload, media_type="application/json")


MAX_LOG_FIELD_CHARS = 256


def _short(text: str) -> str:
    return text if len(text) <= MAX_LOG_FIELD_CHARS else text[: MAX_LOG_FIELD_CHARS - 1] + "…"


def _log_decision(endpoint: str, review: Review, outcome: Outcome) -> None:
    fields = {
        "event": "admission",
        "endpoint": endpoint,
        "outcome": outcome.result.value,
        "reason": outcome.reason,
        "uid": review.uid,
        "node": outcome.node or None,
        "user": review.username,
        "operation": review.operation,
        "dry_run": review.dry_run,
        **dict(outcome.details),
    }
    # Bounded: a uid or user name is whatever the request says, and one line must not carry megabytes of it.
    fields = {k: _short(v) if isinstance(v, str) else v for k, v in fields.items() if v is not None}
    log.info(
        "%s %s %s: %s",
        outcome.result.value,
        review.operation,
        _short(outcome.node or f"{review.namespace}/{review.name}"),
        outcome.reason,
        extra={"fields": fields},
    )


def create_health_app(state: AppState) -> FastAPI:
    app = FastAPI(title="l2guard webhook health", docs_url=None, redoc_url=None, openapi_url=None)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        tls, synced = state.tls_loaded(), state.view.synced
        tls_problem = state.tls_problem() if tls else "no certificate loaded"
        ca_problem = state.ca_problem()
        state.metrics.synced.set(1 if synced else 0)
        ready = tls_problem is None and ca_problem is None and synced
        body: dict[str, object] = {"ready": ready, "tls_loaded": tls, "cluster_view_synced": synced}
        not_synced = None if synced else "the cluster view has not synced yet"
        reasons = [r for r in (tls_problem, ca_problem, not_synced) if r]
        if reasons:
            body["reason"] = "; ".join(reasons)
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        snapshot = state.view.snapshot
        state.metrics.synced.set(1 if snapshot.synced else 0)
        state.metrics.stale_objects.set(len(snapshot.stale))
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    app.router.add_route("/healthz", healthz, methods=["GET"])
    app.router.add_route("/readyz", readyz, methods=["GET"])
    app.router.add_route("/metrics", metrics, methods=["GET"])
    return app
