"""Every error as RFC 9457 ``application/problem+json``: the app's exception handlers.

Business errors (``AppError``), request validation, unknown routes and methods, unreadable
bodies, and a database that is away (503 with ``Retry-After``) all answer here; anything else
is a bug, answered 500 by ``RequestContextMiddleware`` with a request id.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.domain.fields import map_paths
from app.domain.spec import SPEC_MODELS
from app.errors import PROBLEM_JSON, AppError, problem_body
from app.fieldpath import error_message, field_path
from app.observability import BodyTooLarge

log = logging.getLogger("runplane")

DB_RETRY_AFTER_SECONDS = 2


def problem_response(
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


# Request bodies hold a spec under "spec" (submissions); its labels and annotations are maps.
_REQUEST_MAPS = frozenset(
    f"spec.{path}" for model in SPEC_MODELS.values() for path in map_paths(model)
)


def _field_of(loc: tuple[Any, ...]) -> str:
    # ("body", "spec", "compute", "gpuDevicesRequest") -> "spec.compute.gpuDevicesRequest";
    # query and path parameters keep their name.
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    return field_path(parts, maps=_REQUEST_MAPS) or str(loc[0] if loc else "body")


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
        items.append({"field": _field_of(tuple(err.get("loc", ()))), "message": error_message(err)})
    return detail, items


def install_error_handlers(app: FastAPI) -> None:
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
            return _unstorable(request, exc.orig)
        raise exc  # a bug: RequestContextMiddleware answers 500 and logs it

    @app.exception_handler(psycopg.DataError)
    async def driver_data_error(request: Request, exc: psycopg.DataError) -> JSONResponse:
        return _unstorable(request, exc)  # the submission path talks to the driver directly

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
            return problem_response(
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
        return problem_response(
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


def _unstorable(request: Request, exc: BaseException | None) -> JSONResponse:
    """A value PostgreSQL refused (out of range, text it cannot hold) that slipped past the
    checks at the edge (app.storable, the models' bounds): still the client's 422, but the answer
    does not repeat PostgreSQL's words, which name its types, not the request's fields. The log
    says which, so that the missing check can be added."""
    reason = str(exc).splitlines()[0] if exc is not None and str(exc) else type(exc).__name__
    log.warning("PostgreSQL refused a value on %s %s: %s", request.method, request.url.path, reason)
    return problem_response(
        request,
        422,
        "Validation failed",
        "validation-failed",
        "A value in the request cannot be stored.",
        errors=[{"field": "request", "message": "a value cannot be stored"}],
    )


def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "database unavailable on %s %s: %s",
        request.method,
        request.url.path,
        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
    )
    return problem_response(
        request,
        503,
        "Service unavailable",
        "service-unavailable",
        "The database is unavailable; retry shortly.",
        headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
    )
