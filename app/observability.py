"""Logging, Prometheus metrics, request ids, security headers, body limits and last-resort
errors (pure ASGI)."""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PROBLEM_JSON, problem_body

log = logging.getLogger("runplane")

HTTP_REQUESTS = Counter(
    "runplane_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "runplane_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_CYCLES = Counter("runplane_reconcile_cycles_total", "Reconcile cycles", ["outcome"])
RECONCILE_DURATION = Histogram(
    "runplane_reconcile_cycle_seconds",
    "Reconcile cycle wall time",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ORPHAN_OBJECTS = Gauge(
    "runplane_orphan_objects", "Managed cluster objects with no live workload", ["kind"]
)
IS_LEADER = Gauge("runplane_reconciler_leader", "1 while this process holds the reconciler lock")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# On every answer: a browser must not guess a type other than the one declared (a problem
# document or a log rendered as HTML). API answers carry tenants' data and secrets (a new
# token): no cache may keep them, unless a route says otherwise.
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")
_API_PATH = "/api/"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(*, level: str, json_logs: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates every plugin it loads at INFO.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


class RequestContextMiddleware:
    """Request ids, metrics by route template, security headers, body limit, and a problem+json
    500."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status_code = 500
        started = False
        extra = [(b"x-request-id", request_id.encode()), _NOSNIFF]
        if str(scope.get("path", "")).startswith(_API_PATH):
            extra.append(_NO_STORE)

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code, started
            if message["type"] == "http.response.start":
                started = True
                status_code = message["status"]
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                message["headers"] = headers + [(k, v) for k, v in extra if k not in present]
            await send(message)

        # A body over the limit is refused when it is first read, not here: by then the request
        # is routed, so that its refusal is audited with the route it was meant for.
        receive = _limited(receive, self.max_body_bytes, declared=_content_length(scope))
        try:
            await self.app(scope, receive, send_wrapper)
        except BodyTooLarge:
            if not started:
                await _send_problem(
                    send_wrapper,
                    scope,
                    status=413,
                    title="Payload too large",
                    slug="payload-too-large",
                    detail=f"The request body exceeds {self.max_body_bytes} bytes.",
                )
        except Exception:
            log.error(
                "unhandled error on %s %s",
                scope.get("method"),
                scope.get("path"),
                extra={"request_id": request_id},
                exc_info=True,
            )
            if started:
                raise
            await _send_problem(
                send_wrapper,
                scope,
                status=500,
                title="Internal server error",
                slug="internal",
                detail=f"An unexpected error occurred; quote request id {request_id}.",
                requestId=request_id,
            )
        finally:
            _observe(scope.get("method", ""), route_template(scope), status_code, start)


# The series of each (method, route template, status): labels() looks them up under a lock on
# every call; methods, templates and statuses are few, so keep them.
_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _observe(method: str, template: str, status: int, start: float) -> None:
    series = _SERIES.get((method, template, status))
    if series is None:
        series = _SERIES[(method, template, status)] = (
            HTTP_REQUESTS.labels(method, template, str(status)),
            HTTP_LATENCY.labels(method, template),
        )
    series[0].inc()
    series[1].observe(time.perf_counter() - start)


class BodyTooLarge(Exception):
    pass


def _limited(receive: Receive, limit: int, *, declared: int | None) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        if declared is not None and declared > limit:
            raise BodyTooLarge  # without reading any of it
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return wrapped


def route_template(scope: Scope) -> str:
    # FastAPI keeps included routes unflattened: the full template (with the include prefix)
    # lives on the effective route context; plain Starlette routes carry it themselves.
    # tests/api/test_errors.py::test_metrics_by_route_template guards this against upgrades.
    context = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(
        scope.get("route"), "path_format", None
    )
    return template if isinstance(template, str) else "<unmatched>"


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID_RE.match(candidate):
                return candidate
            break
    # Not a secret, only unique: no need for the OS's random source (a syscall per request).
    return f"{random.getrandbits(128):032x}"


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_problem(send: Send, scope: Scope, *, status: int, **fields: Any) -> None:
    body = json.dumps(
        problem_body(status=status, instance=scope.get("path", ""), **fields)
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
