"""The FastAPI application: routers, problem+json handlers, middleware, lifespan."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import migrations
from app.audit.recorder import AuditMiddleware
from app.audit.router import router as audit_router
from app.auth.oidc import OidcVerifier
from app.auth.ratelimit import RateLimiter
from app.auth.router import router as tokens_router
from app.config import Settings, get_settings
from app.db import Database
from app.deps import authorize
from app.errors import PROBLEM_JSON, AppError, problem_body
from app.observability import BodyTooLarge, RequestContextMiddleware
from app.openapi import responses
from app.policies.router import router as policies_router
from app.projects.router import router as projects_router
from app.schemas import Problem
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
DB_RETRY_AFTER_SECONDS = 2
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
    db: Database | None = None,
    on_startup: Callable[[FastAPI], None] | None = None,
    reconcile: bool | None = None,
) -> FastAPI:
    """The app. ``reconcile`` runs the reconciler in a thread (default: when the settings say;
    tests pass False and drive cycles themselves)."""
    settings = settings or get_settings()
    if reconcile is None:
        reconcile = settings.run_reconciler and db is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup(app)
        stop = threading.Event()
        thread = None
        if reconcile and hasattr(app.state, "db"):
            thread = _start_reconciler(app.state.db, settings, stop)
        # Everything loaded so far (schemas, the Kubernetes client's models...) lives as long as
        # the process: keep the cyclic GC from re-scanning it, which paused requests ~100 ms.
        gc.freeze()
        yield
        stop.set()
        if thread is not None:
            thread.join(timeout=30)
        if db is None and hasattr(app.state, "db"):
            app.state.db.dispose()

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
    if db is not None:
        app.state.db = db
    elif settings.database_url:
        app.state.db = Database.from_url(
            settings.database_url, pool_size=settings.database_pool_size
        )

    app.state.oidc = OidcVerifier.from_settings(settings)
    if settings.rate_limit_per_minute:
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)

    # authorize() authenticates first (401), rate-limits (429), then applies the route's
    # access decision (404 out of scope, 403 too small a role); see app.auth.access.
    api = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(authorize)],
        responses={**responses(401, 403, 422), **TOO_MANY_REQUESTS, **INFRASTRUCTURE},
    )
    api.include_router(projects_router)
    api.include_router(policies_router)
    api.include_router(workloads_router)
    api.include_router(tokens_router)
    api.include_router(audit_router)
    app.include_router(api)
    app.include_router(_ops_router())

    _install_error_handlers(app)
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


def _start_reconciler(db: Database, settings: Settings, stop: threading.Event) -> threading.Thread:
    from app.cluster.factory import make_backend
    from app.reconciler.loop import Reconciler

    reconciler = Reconciler(
        db=db, backend=make_backend(settings, db), pending_timeout=settings.pending_timeout
    )
    thread = threading.Thread(
        target=reconciler.run,
        args=(stop,),
        kwargs={"interval": settings.reconcile_interval},
        name="reconciler",
        daemon=True,
    )
    thread.start()
    return thread


def _ops_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", operation_id="getHealth", response_model=dict[str, str])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        operation_id="getReadiness",
        response_model=dict[str, str],
        responses=responses(503),
    )
    def readyz(request: Request) -> Any:
        db: Database | None = getattr(request.app.state, "db", None)
        if db is None:
            return _problem(
                request,
                503,
                "Service unavailable",
                "service-unavailable",
                "No database is configured.",
            )
        try:
            at_head = migrations.is_at_head(db.engine)
        except Exception as exc:  # any driver error means: not ready
            log.warning("readiness: database unreachable: %s", exc)
            return _problem(
                request,
                503,
                "Service unavailable",
                "service-unavailable",
                "The database is unreachable.",
            )
        if not at_head:
            return _problem(
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
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def _problem(
    request: Request,
    status: int,
    title: str,
    slug: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(
        status=status,
        title=title,
        slug=slug,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_of(loc: tuple[Any, ...]) -> str:
    # ("body", "spec", "compute", "gpuDevicesRequest") -> "spec.compute.gpuDevicesRequest";
    # query and path parameters keep their name; list indexes become [n].
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and ("[" in part or part.startswith("function-after")):
            continue  # pydantic's validator-step labels say nothing to a user
        else:
            out += ("." if out else "") + str(part)
    return out or str(loc[0] if loc else "body")


def validation_errors(errors: Any) -> tuple[str, list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    detail = "The request is not valid; see `errors`."
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = "The request body is not valid JSON."
            ctx = err.get("ctx", {})
            items.append(
                {"field": "body", "message": f"invalid JSON: {ctx.get('error', 'syntax error')}"}
            )
            continue
        message = str(err.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        if err.get("type") == "missing":
            message = "is required"
        elif err.get("type") == "extra_forbidden":
            message = "unknown field"
        items.append({"field": _field_of(tuple(err.get("loc", ()))), "message": message})
    return detail, items


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            _capped(exc.problem(request.url.path)),
            status_code=exc.status,
            media_type=PROBLEM_JSON,
            headers=exc.headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, items = validation_errors(exc.errors())
        body = problem_body(
            status=422,
            title="Validation failed",
            slug="validation-failed",
            detail=detail,
            instance=request.url.path,
            errors=items,
        )
        return JSONResponse(_capped(body), status_code=422, media_type=PROBLEM_JSON)

    @app.exception_handler(sa_exc.DBAPIError)
    async def database_error(request: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        if _is_connection_error(exc):
            return _database_unavailable(request, exc)
        if isinstance(exc, sa_exc.DataError):
            # A value PostgreSQL cannot store (a NUL character in text or JSON, a number out of
            # range) that slipped past the schemas: the client's mistake, not a 500.
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
            return _problem(
                request,
                422,
                "Validation failed",
                "validation-failed",
                f"A value in the request cannot be stored: {reason}.",
                errors=[{"field": "request", "message": reason}],
            )
        raise exc  # a bug: RequestContextMiddleware answers 500 and logs it

    @app.exception_handler(psycopg.OperationalError)
    async def driver_error(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return _database_unavailable(request, exc)

    @app.exception_handler(sa_exc.TimeoutError)
    async def pool_timeout(request: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        # Every pooled connection stayed busy for pool_timeout: overloaded, not broken.
        return _database_unavailable(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):
            # A body without Content-Length ran over the limit while FastAPI read it, and
            # FastAPI wrapped that as a parse error: let RequestContextMiddleware answer 413.
            raise exc.__cause__
        if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
            # FastAPI's answer when json.loads fails with anything but JSONDecodeError: a body
            # that is not UTF-8, or nested deeper than the parser recurses. The same 422 as any
            # other unreadable JSON.
            why = next(
                (
                    text
                    for cls, text in _BODY_PARSE_CAUSES.items()
                    if isinstance(exc.__cause__, cls)
                ),
                "it cannot be parsed",
            )
            return _problem(
                request,
                422,
                "Validation failed",
                "validation-failed",
                f"The request body is not valid JSON: {why}.",
                errors=[{"field": "body", "message": f"invalid JSON: {why}"}],
            )
        titles = {404: "Not found", 405: "Method not allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}."
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}."
        title = titles.get(exc.status_code, "Error")
        return _problem(
            request,
            exc.status_code,
            title,
            title.lower().replace(" ", "-"),
            detail,
            headers=dict(exc.headers) if exc.headers else None,
        )


# A document with 50,000 unknown keys would otherwise be answered with a 5 MB list.
MAX_PROBLEM_ERRORS = 1000


def _capped(body: dict[str, Any]) -> dict[str, Any]:
    errors = body.get("errors")
    if isinstance(errors, list) and len(errors) > MAX_PROBLEM_ERRORS:
        body["detail"] += (
            f" The first {MAX_PROBLEM_ERRORS} of {len(errors)} problems are listed in `errors`."
        )
        body["errors"] = errors[:MAX_PROBLEM_ERRORS]
    return body


# What FastAPI's HTTPException says when a body cannot be decoded (fastapi/routing.py).
BODY_PARSE_ERROR = "There was an error parsing the body"
_BODY_PARSE_CAUSES: dict[type[BaseException], str] = {
    UnicodeDecodeError: "it is not UTF-8 text",
    RecursionError: "it is nested too deeply",
}


def _is_connection_error(exc: sa_exc.DBAPIError) -> bool:
    """A lost or refused connection, or the server shedding load (too many connections,
    shutting down, a statement cancelled): retrying later is the cure. psycopg raises these
    as OperationalError; SQLAlchemy flags a connection it had to throw away."""
    return (
        exc.connection_invalidated
        or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        or isinstance(exc.orig, psycopg.OperationalError)
    )


def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "database unavailable on %s %s: %s",
        request.method,
        request.url.path,
        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
    )
    return _problem(
        request,
        503,
        "Service unavailable",
        "service-unavailable",
        "The database is unavailable; retry shortly.",
        headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
    )


__all__ = ["API_PREFIX", "Problem", "create_app"]
