"""Request dependencies as ``Annotated`` aliases: session, settings, principal."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database
from app.errors import Unauthorized


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    # scope="function" below: the transaction commits before the response is sent, so a 201
    # always means the row is stored.
    with get_database(request).session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]


@dataclass(frozen=True)
class Principal:
    """Who is calling. Until access control lands, the bootstrap admin token is the only one."""

    name: str
    role: str


def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    expected = get_settings_dep(request).effective_admin_token
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("The bearer token is not valid.")
    return Principal(name="admin", role="admin")


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
