"""The FastAPI apps: the admission endpoints (HTTPS) and the health/metrics endpoints (plain HTTP).

This is the only module that imports fastapi. Handlers read the raw body (capped at 4 MiB while streaming), parse
it with `webhook.review` (no pydantic model of the review: it would validate a 30 KB Node status just to read
labels), decide with `webhook.handlers` on the current cluster snapshot (pool and advertisement reviews in live
mode on the pools and advertisements read live first, see `_read_live`), and write the JSON response. They never
return HTTP 500: bad input is a 400 with a one-line JSON error, an internal error fails open on the node path and
denies with an explicit message on the pool path. One log line per decision that warned, stripped or denied.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from webhook import handlers
from webhook.handlers import NodeEndpoint, Outcome
from webhook.metrics import CONTENT_TYPE, Metrics
from webhook.review import MAX_BODY, BadReview, error_body, parse_review
from webhook.review import Request as Review
from webhook.settings import WebhookSettings
from webhook.view import ClusterView

log = logging.getLogger(__name__)

MUTATE_NODE = "/mutate-v1-node"
VALIDATE_NODE = "/validate-v1-node"
VALIDATE_POOL = "/validate-metallb-io-v1beta1-ipaddresspool"
VALIDATE_ADVERTISEMENT = "/validate-metallb-io-v1beta1-l2advertisement"

# Live reads of pools and advertisements (issue 7, item 4) take at most this share of a review's budget and at most
# LIVE_READ_MAX seconds, so that validating after a slow read still answers within the API server's timeout.
LIVE_READ_SHARE = 0.5
LIVE_READ_MAX = 1.5
REVIEW_BUDGET = 3.0  # seconds: the timeoutSeconds of manifests/webhook; the API server sends it as ?timeout=3s

Objects = Sequence[Mapping[str, Any]]
ConfigReader = Callable[[float], Awaitable[tuple[Objects, Objects]]]  # timeout -> (pools, advertisements)


@dataclass
class AppState:
    settings: WebhookSettings
    view: ClusterView
    metrics: Metrics = field(default_factory=Metrics)
    tls_loaded: Callable[[], bool] = lambda: True
    tls_problem: Callable[[], str | None] = lambda: None  # why the served certificate is unfit (expired), or None
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

    def node_decider(endpoint: NodeEndpoint) -> Callable[[Review, LiveConfig | None], Outcome]:
        def decide(review: Review, live: LiveConfig | None) -> Outcome:  # live is None: nodes are not read live
            if _request_kind(review) not in ("", "Node"):
                return handlers.ALLOWED
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

    def endpoint(
        name: str, decide: Callable[[Review, LiveConfig | None], Outcome], *, fail_open: bool, read_live: bool
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
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
            live = await _read_live(state, REVIEW_BUDGET) if read_live else None  # issue 7, item 4
            try:
                outcome = decide(review, live)
            except Exception as exc:
                log.exception("admission failed event=internal-error endpoint=%s", name)
                outcome = handlers.node_internal_error(exc) if fail_open else handlers.config_internal_error(exc)
            # ASCII JSON: a uid or label value with a lone surrogate (valid JSON escapes) must echo back, not crash.
            payload = json.dumps(outcome.response(review.uid), separators=(",", ":")).encode()
            metrics.requests.labels(name, outcome.result.value).inc()
            metrics.latency.labels(name).observe(time.perf_counter() - start)
            if outcome.log:
                _log_decision(name, review, outcome)
            return Response(payload, media_type="application/json")

        return handle

    routes = (  # path, name, decide, fail open (nodes), read pools and advertisements live (config)
        (MUTATE_NODE, "mutate-v1-node", node_decider(NodeEndpoint.MUTATE), True, False),
        (VALIDATE_NODE, "validate-v1-node", node_decider(NodeEndpoint.VALIDATE), True, False),
        (VALIDATE_POOL, "validate-ipaddresspool", config_decider("IPAddressPool"), False, True),
        (VALIDATE_ADVERTISEMENT, "validate-l2advertisement", config_decider("L2Advertisement"), False, True),
    )
    for path, name, decide, fail_open, read_live in routes:
        # A plain Starlette route: the handler takes the raw Request, so FastAPI's body/dependency machinery is
        # skipped (it costs ~0.1 ms a request and we parse the body ourselves).
        handle = endpoint(name, decide, fail_open=fail_open, read_live=read_live)
        app.router.add_route(path, handle, methods=["POST"])
    return app


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
    fields = {k: v for k, v in fields.items() if v is not None}
    log.info(
        "%s %s %s: %s",
        outcome.result.value,
        review.operation,
        outcome.node or f"{review.namespace}/{review.name}",
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
        state.metrics.synced.set(1 if synced else 0)
        ready = tls_problem is None and synced
        body: dict[str, object] = {"ready": ready, "tls_loaded": tls, "cluster_view_synced": synced}
        reasons = [r for r in (tls_problem, None if synced else "the cluster view has not synced yet") if r]
        if reasons:
            body["reason"] = "; ".join(reasons)
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        state.metrics.synced.set(1 if state.view.synced else 0)
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    app.router.add_route("/healthz", healthz, methods=["GET"])
    app.router.add_route("/readyz", readyz, methods=["GET"])
    app.router.add_route("/metrics", metrics, methods=["GET"])
    return app
