"""Request dependencies as ``Annotated`` aliases: session, settings, principal, authorization."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.audit.recorder import AuditRecord, committed, record_of, set_principal, stage
from app.auth import access
from app.auth.authn import (
    BOOTSTRAP_ADMIN,
    CredentialRejected,
    authenticate,
    bearer,
    is_bootstrap,
)
from app.auth.principal import Principal
from app.auth.ratelimit import RateLimiter
from app.config import Settings
from app.db import Database
from app.observability import route_template

# Dependencies that do no I/O are ``async def``: FastAPI runs sync ones in its thread pool, and
# each hop costs more than these functions do.


def database_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    return database_of(request)


async def get_settings_dep(request: Request) -> Settings:
    return settings_of(request)


def get_session(request: Request) -> Iterator[Session]:
    # scope="function" below: the transaction commits before the response is sent, so a 201
    # always means the row is stored, and the audit entry of a change commits with it.
    with database_of(request).session() as session:
        yield session
        stage(request.scope, session)
    committed(request.scope)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_principal(request: Request) -> Principal:
    """Authenticate the bearer credential (401), then apply the caller's rate limit (429).

    The bootstrap token costs no I/O; an API token or an OIDC JWT is checked in a worker
    thread (a database lookup, maybe a key fetch), in its own short transaction.
    """
    settings = settings_of(request)
    credential = bearer(request.headers.get("authorization"))
    admin_token = settings.effective_admin_token
    try:
        if is_bootstrap(credential, admin_token):
            principal = BOOTSTRAP_ADMIN
        else:
            principal = await run_in_threadpool(
                authenticate,
                credential,
                db=database_of(request),
                admin_token=admin_token,
                oidc=getattr(request.app.state, "oidc", None),
            )
    except CredentialRejected as exc:
        set_principal(request.scope, exc.principal, accepted=False)
        raise
    set_principal(request.scope, principal)
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.check(principal.id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def authorize(request: Request, principal: CurrentPrincipal) -> access.Access:
    """The route-level decision (app.auth.access); routers finish body and resource checks."""
    decision = access.check_route(
        principal,
        method=request.method,
        template=route_template(request.scope),
        path_params=request.path_params,
    )
    return access.Access(principal, decision)


AccessDep = Annotated[access.Access, Depends(authorize)]


async def get_audit_record(request: Request) -> AuditRecord:
    return record_of(request.scope)


AuditDep = Annotated[AuditRecord, Depends(get_audit_record)]
