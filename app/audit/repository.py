"""The audit log table: writing entries, reading them newest first, and retention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

from psycopg import sql
from psycopg.types.json import Jsonb

from app.db import Conn
from app.sql import JSON_ROW, JSON_ROWS, columns, fetch_all, where
from app.sql import insert_select as sql_insert_select


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    time: datetime
    actor: str
    actor_id: str | None
    role: str | None
    method: str
    route: str
    target: str | None
    status: int
    dry_run: bool
    request_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


# What an entry is written with (``app.audit.recorder.entry_values`` makes them); the database
# gives it its id and, unless told, its time.
ENTRY_COLUMNS: tuple[LiteralString, ...] = (
    "actor",
    "actor_id",
    "role",
    "method",
    "route",
    "target",
    "status",
    "dry_run",
    "request_id",
    "before",
    "after",
)


def insert_select(
    *, source: LiteralString, record: LiteralString, time: LiteralString
) -> LiteralString:
    """The INSERT of entries given as JSON objects (see app.sql.insert_select)."""
    return sql_insert_select(
        "audit_log", ENTRY_COLUMNS, source=source, record=record, overrides={"time": time}
    )


_INSERT = insert_select(source=JSON_ROWS, record=JSON_ROW, time="now()")


async def insert(conn: Conn, entries: Sequence[Mapping[str, Any]]) -> None:
    await conn.execute(
        _INSERT, {"rows": Jsonb([{c: e.get(c) for c in ENTRY_COLUMNS} for e in entries])}
    )


async def list_page(
    conn: Conn,
    *,
    before_id: int | None,
    limit: int,
    actor: str | None,
    method: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[AuditRow]:
    condition, params = where(
        ("actor = %(actor)s", {"actor": actor}),
        ("method = %(method)s", {"method": method}),
        ("time >= %(since)s", {"since": since}),
        ("time < %(until)s", {"until": until}),
        ("id < %(before)s", {"before": before_id}),
    )
    query = sql.SQL("SELECT {} FROM audit_log WHERE {} ORDER BY id DESC LIMIT %(limit)s")
    rows = sql.SQL(columns(AuditRow))
    return await fetch_all(
        conn, AuditRow, query.format(rows, condition), {**params, "limit": limit}
    )


async def purge(conn: Conn, *, older_than_days: float) -> int:
    cursor = await conn.execute(
        "DELETE FROM audit_log WHERE time < now() - make_interval(secs => %s)",
        (older_than_days * 86400,),
    )
    return cursor.rowcount
