"""Request dependencies as ``Annotated`` aliases: connection, transaction, settings, principal,
authorization, and the load-or-404 dependencies of path parameters."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPBearer

from app import storable
from app.audit.recorder import AuditRecord, committed, record_of, set_principal, stage
from app.auth import access
from app.auth.authn import CredentialRejected, authenticate, bearer
from app.auth.principal import Principal
from app.auth.ratelimit import RateLimiter
from app.cluster.backend import ClusterError
from app.cluster.logs import PodLogs
from app.config import Settings
from app.db import Conn, Database
from app.errors import Unavailable, ValidationFailed
from app.observability import route_template
from app.projects import service as projects
from app.projects.repository import ProjectRow
from app.workloads import service as workloads
from app.workloads.repository import WorkloadRow

# Every dependency is ``async def``: FastAPI runs sync ones in its thread pool, and each hop
# costs more than these functions do.


def database_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def pod_logs_of(request: Request) -> PodLogs | None:
    """The kubernetes backend's pod log reader of this process (None: the simulated cluster),
    made on first use."""
    if settings_of(request).cluster != "kubernetes":
        return None
    logs: PodLogs | None = getattr(request.app.state, "pod_logs", None)
    if logs is None:
        from app.cluster.kubernetes import environment_client

        try:
            logs = request.app.state.pod_logs = PodLogs(environment_client())
        except ClusterError as exc:
            raise Unavailable(str(exc)) from exc
    return logs


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_connection(request: Request) -> AsyncIterator[Conn]:
    """The request's connection (autocommit), shared by every dependency that asks for it."""
    async with database_of(request).connection() as conn:
        yield conn


# scope="function": the connection goes back to the pool, and a transaction commits, before
# the response is sent; so a 201 always means the row is stored, with its audit entry.
ConnDep = Annotated[Conn, Depends(get_connection, scope="function")]


async def get_transaction(request: Request, conn: ConnDep) -> AsyncIterator[Conn]:
    """The request's connection in a transaction that also writes the audit entry."""
    async with conn.transaction():
        yield conn
        await stage(request.scope, conn)
    committed(request.scope)
    for callback in getattr(request.state, "after_commit", ()):
        callback()


def after_commit(request: Request, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the request's transaction has committed (never if it rolls back)."""
    if not hasattr(request.state, "after_commit"):
        request.state.after_commit = []
    request.state.after_commit.append(callback)


TxDep = Annotated[Conn, Depends(get_transaction, scope="function")]


class Authorize(HTTPBearer):
    """The one security dependency of every API route, in one step (each dependency FastAPI
    solves per request costs more than the work of these checks):

    1. authenticate the bearer credential (401): no thread hop and, once a token is known to
       this process, no database round trip (app.auth.authn);
    2. apply the caller's rate limit (429);
    3. the route-level access decision (app.auth.access: 404 out of scope, 403 too small a
       role); routers finish body and resource checks;
    4. refuse a path or query parameter, or a value anywhere in a JSON body, that cannot be
       stored (422; app.storable), before any endpoint reads the request.

    As an ``HTTPBearer`` it also declares the ``bearerAuth`` scheme on every operation, so that
    generated clients send the header and /docs has an Authorize button.
    """

    async def __call__(self, request: Request) -> access.Access:  # type: ignore[override]
        principal = await _authenticate(request)
        limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
        if limiter is not None:
            limiter.check(principal.id)
        decision = access.check_route(
            principal,
            method=request.method,
            template=route_template(request.scope),
            path_params=request.path_params,
        )
        await _refuse_unstorable(request)
        return access.Access(principal, decision)


AUTHORIZE = Authorize(
    scheme_name="bearerAuth",
    description="An API token (`rp_...`), the bootstrap admin token, or an OIDC JWT.",
    auto_error=False,
)
AccessDep = Annotated[access.Access, Security(AUTHORIZE)]


async def _authenticate(request: Request) -> Principal:
    try:
        principal = await authenticate(
            bearer(request.headers.get("authorization")),
            db=database_of(request),
            admin_token=settings_of(request).effective_admin_token,
            oidc=getattr(request.app.state, "oidc", None),
            cache=request.app.state.credentials,
        )
    except CredentialRejected as exc:
        set_principal(request.scope, exc.principal, accepted=False)
        raise
    set_principal(request.scope, principal)
    return principal


async def _refuse_unstorable(request: Request) -> None:
    found = [
        {"field": name, "message": problem}
        for name, value in (*request.path_params.items(), *request.query_params.multi_items())
        if (problem := storable.text_problem(str(value))) is not None
    ]
    body = await request.body()
    if (
        body
        and "json" in request.headers.get("content-type", "json")
        and not storable.plainly_storable(body)
    ):
        try:
            document = await request.json()  # already parsed, when the route takes a body
        except ValueError:
            document = None  # a route without a body ignores one it cannot parse
        found += storable.problems(document)
    if found:
        raise ValidationFailed(
            "The request holds values that cannot be stored; see `errors`.", errors=found
        )


async def get_principal(access: AccessDep) -> Principal:
    return access.principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_audit_record(request: Request) -> AuditRecord:
    return record_of(request.scope)


AuditDep = Annotated[AuditRecord, Depends(get_audit_record)]

# --- load-or-404 ----------------------------------------------------------------------------------

ProjectName = Annotated[str, Path(max_length=63, description="Project name.")]


async def load_project(
    conn: ConnDep, principal: CurrentPrincipal, project: ProjectName
) -> ProjectRow:
    return await projects.get_by_name(conn, project, visible_to=principal)


ProjectDep = Annotated[ProjectRow, Depends(load_project)]
WorkloadId = Annotated[uuid.UUID, Path(alias="workloadId", description="Workload id.")]


async def load_workload(
    conn: ConnDep, principal: CurrentPrincipal, workload_id: WorkloadId
) -> WorkloadRow:
    return await workloads.get(conn, workload_id, visible_to=principal)


WorkloadDep = Annotated[WorkloadRow, Depends(load_workload)]
