"""What every repository shares: typed rows, keyset pages, and the caller's project scope."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from typing import Any, LiteralString, TypeVar

from psycopg import sql
from psycopg.rows import class_row

from app.auth.principal import Principal
from app.db import Conn

R = TypeVar("R")


def columns(row_type: type[Any], alias: str = "") -> LiteralString:
    """The select list of a row dataclass: its fields are its table's columns."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + f.name for f in dataclasses.fields(row_type))


async def fetch_one(
    conn: Conn, row_type: type[R], query: LiteralString, params: Any = None
) -> R | None:
    cursor = conn.cursor(row_factory=class_row(row_type))
    await cursor.execute(query, params)
    return await cursor.fetchone()


async def fetch_all(conn: Conn, row_type: type[R], query: Any, params: Any = None) -> list[R]:
    cursor = conn.cursor(row_factory=class_row(row_type))
    await cursor.execute(query, params)
    return await cursor.fetchall()


def page(
    rows: Sequence[R], limit: int, cursor_of: Callable[[R], str]
) -> tuple[list[R], str | None]:
    """A keyset page from ``limit + 1`` rows: the items, and the next cursor if there are more."""
    items = list(rows[:limit])
    return items, cursor_of(items[-1]) if len(rows) > limit and items else None


Scope = list[uuid.UUID] | None


def scope(principal: Principal | None) -> Scope:
    """The ids of the projects a principal may see, for ``%(scope)s``; None means every project.
    By id, never by name: a name is taken again once its project is deleted."""
    if principal is None or principal.is_admin:
        return None
    return sorted(principal.projects.values())


# `project_id = ANY(%(scope)s)` for a scoped principal; true for everyone else.
IN_SCOPE: LiteralString = "(%(scope)s::uuid[] IS NULL OR {column} = ANY(%(scope)s::uuid[]))"


def in_scope(column: LiteralString) -> LiteralString:
    return IN_SCOPE.replace("{column}", column)


Filter = tuple[LiteralString, dict[str, Any]] | None


def where(*filters: Filter) -> tuple[sql.Composed, dict[str, Any]]:
    """The AND of the given ``(condition, its parameters)``. A filter that is None, or any of
    whose parameters is None (a query parameter not given), is left out, so that each statement
    holds only the conditions asked for and the planner picks the index that serves them."""
    present = [f for f in filters if f is not None and None not in f[1].values()]
    params = {k: v for _, p in present for k, v in p.items()}
    return sql.SQL(" AND ").join(sql.SQL(c) for c, _ in present or [("true", {})]), params


def insert_select(
    table: LiteralString,
    columns: tuple[LiteralString, ...],
    *,
    source: LiteralString,
    record: LiteralString,
    overrides: dict[LiteralString, LiteralString] | None = None,
    where: LiteralString = "true",
) -> LiteralString:
    """``INSERT INTO table (columns)`` from JSON objects, one per row of ``source``: each row's
    ``record`` (a jsonb expression) is read as a row of the table, so every column keeps its type
    and every column not listed gets its database default. ``overrides`` are column -> SQL
    expressions taken from ``source`` instead (a time set by the same statement); ``where``
    filters the rows of ``source``."""
    extra = overrides or {}
    names = ", ".join((*columns, *extra))
    values = ", ".join((*(f"r.{c}" for c in columns), *extra.values()))
    return (
        f"INSERT INTO {table} ({names}) SELECT {values}"
        f" FROM {source}, jsonb_populate_record(NULL::{table}, {record}) r WHERE {where}"
    )


# ``source`` for insert_select over a JSON array parameter ``%(rows)s``, one object per row.
JSON_ROWS: LiteralString = "jsonb_array_elements(%(rows)s::jsonb) AS x"
JSON_ROW: LiteralString = "x.value"
