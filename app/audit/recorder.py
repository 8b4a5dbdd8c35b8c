"""Recording the audit entry of every mutating API request.

A successful change is recorded in its own transaction: :class:`AuditedRoute` notes the status
the endpoint answered, and the transaction dependency adds the entry just before it commits (see
``app.deps.get_transaction``), so there is no change without its entry and no entry without its
change. A request whose transaction rolled back (a 4xx raised as an error, a 500), or that was
refused before it reached an endpoint (401, 403, 404, 422, 429), is recorded by
:class:`AuditMiddleware` in a transaction of its own, before the answer leaves the process.

Entries hold who, the method, the route template, the target, the status, the request id and,
for policies, the documents before and after. Never a request body or a header: no secret can
reach the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import storable
from app.audit import repository
from app.auth.principal import Principal
from app.db import Conn, Database
from app.observability import route_template

log = logging.getLogger("runplane")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/v1/"
_STATE_KEY = "audit"


@dataclass
class AuditRecord:
    """What the request contributes to its entry, kept in the ASGI scope's state."""

    target: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    status: int | None = None  # the endpoint's answer, set by AuditedRoute
    staged: bool = False  # an entry is part of the request's transaction
    committed: bool = False  # ... and that transaction committed
    settled: bool = False  # the middleware has dealt with this request


def record_of(scope: Scope) -> AuditRecord:
    state: dict[str, Any] = scope.setdefault("state", {})
    record = state.get(_STATE_KEY)
    if not isinstance(record, AuditRecord):
        record = state[_STATE_KEY] = AuditRecord()
    return record


def set_principal(scope: Scope, principal: Principal, *, accepted: bool = True) -> None:
    """Who is asking; a rejected (expired, revoked) token still names its owner in the log."""
    scope.setdefault("state", {})["principal" if accepted else "rejected_principal"] = principal


def audited(scope: Scope) -> bool:
    return (
        scope.get("type") == "http"
        and scope.get("method") in MUTATING
        and str(scope.get("path", "")).startswith(API_PREFIX)
        and route_template(scope) != "<unmatched>"
    )


def entry_values(scope: Scope, status: int) -> dict[str, Any]:
    state = scope.get("state", {})
    record = record_of(scope)
    principal = state.get("principal") or state.get("rejected_principal")
    params = scope.get("path_params") or {}
    # The entry of a request refused for text PostgreSQL cannot store (a NUL in its path) must
    # not be lost for that text.
    target = storable.scrub(record.target or ("/".join(str(v) for v in params.values()) or None))
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    dry_run = query.get("dryRun", [""])[-1].lower() in ("1", "true", "yes", "on")
    return {
        "actor": principal.name if isinstance(principal, Principal) else "anonymous",
        "actor_id": principal.id if isinstance(principal, Principal) else None,
        "role": principal.role if isinstance(principal, Principal) else None,
        "method": scope["method"],
        "route": route_template(scope)[:255],
        "target": target[:255] if target else None,
        "status": status,
        "dry_run": dry_run,
        "request_id": state.get("request_id"),
        "before": storable.scrub(record.before),
        "after": storable.scrub(record.after),
    }


# --- in the request's transaction -------------------------------------------------------------


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def noting_status(handler: Handler) -> Handler:

    async def audited_handler(request: Request) -> Response:
        response = await handler(request)
        record_of(request.scope).status = response.status_code
        return response

    return audited_handler


class AuditedRoute(APIRoute):
    """Notes the status the endpoint answered, before the session dependency commits."""

    def get_route_handler(self) -> Handler:
        return noting_status(self.answering_handler())

    def answering_handler(self) -> Handler:
        """What answers a request (FastAPI's handler here; a subclass may answer otherwise)."""
        return super().get_route_handler()


async def stage(scope: Scope, conn: Conn) -> None:
    """Write the entry in the transaction about to commit (the transaction dependency calls it)."""
    record = record_of(scope)
    if record.staged or record.status is None or not audited(scope):
        return
    await repository.insert(conn, [entry_values(scope, record.status)])
    record.staged = True


def committed(scope: Scope) -> None:
    record = record_of(scope)
    record.committed = record.staged


# --- after a rollback, or when no endpoint ran ------------------------------------------------


class AuditMiddleware:
    """Records what the request's own transaction did not, before the answer is sent.

    It sits outside the request-context middleware so that it sees every final status (413,
    500 included) and the request id that middleware assigned.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in MUTATING:
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._settle(scope, int(message["status"]))
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def _settle(self, scope: Scope, status: int) -> None:
        record = record_of(scope)
        if record.settled or record.committed or not audited(scope):
            return
        record.settled = True
        app = scope.get("app")
        db: Database | None = getattr(getattr(app, "state", None), "db", None)
        if db is None:
            return
        values = entry_values(scope, status)
        try:
            async with db.connection() as conn:
                await repository.insert(conn, [values])
        except Exception:
            # The answer stands even when its record cannot be written; say so loudly.
            log.error(
                "could not write the audit entry of %s %s (%s)",
                values["method"],
                values["route"],
                values["status"],
                exc_info=True,
            )
