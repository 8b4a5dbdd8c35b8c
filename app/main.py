"""The FastAPI application: routers, problem+json handlers, middleware, lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import migrations
from app.audit.recorder import AuditMiddleware
from app.audit.router import router as audit_router
from app.auth.authn import CredentialCache
from app.auth.oidc import OidcVerifier
from app.auth.ratelimit import RateLimiter
from app.auth.router import router as tokens_router
from app.config import Settings, get_settings
from app.db import Database
from app.deps import AUTHORIZE
from app.errors import PROBLEM_JSON
from app.nodepools.router import router as nodepools_router
from app.observability import RequestContextMiddleware
from app.openapi import responses
from app.policies.router import explain_router
from app.policies.router import router as policies_router
from app.problems import install_error_handlers, problem_response
from app.projects.router import router as projects_router
from app.schemas import Problem
from app.workloads.changes import ChangeFeed
from app.workloads.router import router as workloads_router

log = logging.getLogger("runplane")

API_PREFIX = "/api/v1"
TOO_MANY_REQUESTS: dict[int | str, dict[str, Any]] = {
    429: {
        "model": Problem,
        "description": "Rate limit exceeded; `Retry-After` says when to retry",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
    }
}
# Any API request can meet these: a body over the limit (RequestContextMiddleware) and a
# database that is away or overloaded (the handlers below); a 503 says when to retry.
INFRASTRUCTURE: dict[int | str, dict[str, Any]] = {
    **responses(413),
    503: {
        "model": Problem,
        "description": "The database is unreachable or overloaded; retry after `Retry-After`",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
    },
}


def create_app(
    settings: Settings | None = None,
    *,
    on_startup: Callable[[FastAPI], None] | None = None,
    reconcile: bool | None = None,
) -> FastAPI:
    """The app. ``reconcile`` runs the reconciler in a thread (default: when the settings say;
    tests pass False and drive cycles themselves)."""
    settings = settings or get_settings()
    if reconcile is None:
        reconcile = settings.run_reconciler

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup(app)
        db: Database | None = getattr(app.state, "db", None)
        if db is not None:
            await db.open()
        stop = threading.Event()
        thread = None
        if reconcile and settings.database_url:
            thread = _start_reconciler(settings, stop)
        changes: ChangeFeed | None = getattr(app.state, "changes", None)
        restore_signals = _end_streams_on_stop(changes) if changes is not None else None
        # Everything loaded so far (schemas, the Kubernetes client's models...) lives as long as
        # the process: keep the cyclic GC from re-scanning it, which paused requests ~100 ms.
        gc.freeze()
        yield
        if restore_signals is not None:
            restore_signals()
        stop.set()
        if thread is not None:
            thread.join(timeout=30)
        if changes is not None:
            await changes.close()
        if db is not None:
            await db.close()

    app = FastAPI(
        title="Runplane",
        version="0.1.0",
        summary="An open control plane for ML workloads on Kubernetes.",
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    if settings.database_url:
        app.state.db = Database(
            settings.database_url,
            size=settings.database_pool_size,
            timeout=settings.database_pool_timeout,
        )
        app.state.changes = ChangeFeed(app.state.db)
    app.state.credentials = CredentialCache(settings.credential_cache_seconds)

    app.state.oidc = OidcVerifier.from_settings(settings)
    if settings.rate_limit_per_minute:
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)

    # AUTHORIZE authenticates (401), rate-limits (429), applies the route's access decision
    # (404 out of scope, 403 too small a role) and refuses what no model, engine or table may
    # meet (422), in one dependency (app.deps.Authorize).
    # Each router is included directly, busiest first: FastAPI matches a request against the
    # routes of every included router in turn, and again inside the one selected, so nesting
    # the API under one more router would scan them all a third time.
    for router in (
        workloads_router,
        projects_router,
        policies_router,
        explain_router,
        tokens_router,
        audit_router,
        nodepools_router,
    ):
        app.include_router(
            router,
            prefix=API_PREFIX,
            dependencies=[Security(AUTHORIZE)],
            responses={**responses(401, 403, 422), **TOO_MANY_REQUESTS, **INFRASTRUCTURE},
        )
    app.include_router(_ops_router())

    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "Location", "X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    # Outermost: it sees every final status, including the 413s and 500s made above.
    app.add_middleware(AuditMiddleware)
    return app


def _end_streams_on_stop(feed: ChangeFeed) -> Callable[[], None]:
    """On SIGTERM or SIGINT, end the Server-Sent Events streams, then do what was done before
    (uvicorn's graceful shutdown). uvicorn waits for every open response before it shuts the app
    down, and a stream never ends by itself: each would hold the process for the whole
    graceful-shutdown timeout. Returns what puts the previous handlers back.

    Signals are the main thread's: where the app runs elsewhere (tests), nothing is done.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stopping(signum: int, frame: FrameType | None) -> None:
        handler = previous[signal.Signals(signum)]
        if handler == signal.SIG_IGN:
            return
        loop.call_soon_threadsafe(feed.end_streams)
        if callable(handler):
            handler(signum, frame)
        else:  # the default: die of it
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for sig in previous:
        signal.signal(sig, stopping)

    def restore() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is stopping:
                signal.signal(sig, handler)

    return restore


def _start_reconciler(settings: Settings, stop: threading.Event) -> threading.Thread:
    from app.reconciler.loop import run_reconciler

    thread = threading.Thread(
        target=run_reconciler, args=(settings, stop), name="reconciler", daemon=True
    )
    thread.start()
    return thread


def _ops_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", operation_id="getHealth", response_model=dict[str, str])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        operation_id="getReadiness",
        response_model=dict[str, str],
        responses=responses(503),
    )
    async def readyz(request: Request) -> Any:
        db: Database | None = getattr(request.app.state, "db", None)
        if db is None:
            return problem_response(
                request,
                503,
                "Service unavailable",
                "service-unavailable",
                "No database is configured.",
            )
        try:
            async with db.connection() as conn:
                at_head = await migrations.is_current(conn)
        except Exception as exc:  # any driver error means: not ready
            log.warning("readiness: database unreachable: %s", exc)
            return problem_response(
                request,
                503,
                "Service unavailable",
                "service-unavailable",
                "The database is unreachable.",
            )
        if not at_head:
            return problem_response(
                request,
                503,
                "Service unavailable",
                "service-unavailable",
                "The database schema is not at head; run `runplane migrate`.",
            )
        return {"status": "ready"}

    @router.get(
        "/metrics",
        operation_id="getMetrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


__all__ = ["API_PREFIX", "Problem", "create_app"]
