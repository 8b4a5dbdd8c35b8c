"""The projects table: every statement about projects, and the project row."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from app.db import Conn
from app.sql import Scope, columns, fetch_all, fetch_one, in_scope


@dataclass(frozen=True, slots=True)
class ProjectRow:
    id: uuid.UUID
    name: str
    namespace: str
    description: str
    quota: dict[str, Any]
    node_pools: list[str]
    queue: str | None
    scheduler: str | None
    generation: int
    applied_generation: int
    cluster_message: str
    created_at: datetime
    updated_at: datetime


_COLUMNS = columns(ProjectRow)


class NameTaken(Exception):
    """The name or the namespace belongs to another project; ``field`` says which."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


async def get_by_name(conn: Conn, name: str, *, scope: Scope) -> ProjectRow | None:
    return await fetch_one(
        conn,
        ProjectRow,
        f"SELECT {_COLUMNS} FROM projects WHERE name = %(name)s AND {in_scope('id')}",
        {"name": name, "scope": scope},
    )


async def ids_by_name(conn: Conn, names: Collection[str]) -> dict[str, uuid.UUID]:
    """The id of each of these names that is a project's now; the others are left out."""
    if not names:
        return {}
    cursor = await conn.execute(
        "SELECT name, id FROM projects WHERE name = ANY(%s)", (sorted(set(names)),)
    )
    return dict(await cursor.fetchall())


def _json_columns(values: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k == "quota" else v for k, v in values.items()}


async def insert(conn: Conn, values: dict[str, Any]) -> ProjectRow:
    """Insert a project from ``values`` (column -> value); the database fills the rest."""
    values = _json_columns(values)
    names = ", ".join(values)
    placeholders = ", ".join(f"%({k})s" for k in values)
    try:
        row = await fetch_one(
            conn,
            ProjectRow,
            f"INSERT INTO projects ({names}) VALUES ({placeholders}) RETURNING {_COLUMNS}",
            values,
        )
    except psycopg.errors.UniqueViolation as exc:
        taken = "namespace" if "namespace" in (exc.diag.constraint_name or "") else "name"
        raise NameTaken(taken) from None
    assert row is not None
    return row


async def update(conn: Conn, project_id: uuid.UUID, values: dict[str, Any]) -> ProjectRow:
    values = _json_columns(values)
    assignments = "".join(f"{k} = %({k})s, " for k in values)
    row = await fetch_one(
        conn,
        ProjectRow,
        f"UPDATE projects SET {assignments}generation = generation + 1, updated_at = now()"
        " WHERE id = %(id)s"
        f" RETURNING {_COLUMNS}",
        {**values, "id": project_id},
    )
    assert row is not None
    return row


async def list_after(
    conn: Conn, *, after: str | None, limit: int, scope: Scope
) -> list[ProjectRow]:
    return await fetch_all(
        conn,
        ProjectRow,
        f"SELECT {_COLUMNS} FROM projects WHERE {in_scope('id')}"
        " AND (%(after)s::text IS NULL OR name > %(after)s) ORDER BY name LIMIT %(limit)s",
        {"after": after, "limit": limit, "scope": scope},
    )


async def delete_if_idle(conn: Conn, project_id: uuid.UUID) -> bool:
    """Delete the project unless one of its workloads is not yet ``Deleted``; whether it was.

    Its deleted workloads stay readable by id (SPEC §4): they keep the project's name, and their
    link to the project row is cleared (``ON DELETE SET NULL``)."""
    cursor = await conn.execute(
        "DELETE FROM projects p WHERE p.id = %s AND NOT EXISTS"
        " (SELECT 1 FROM workloads w WHERE w.project_id = p.id AND w.phase <> 'Deleted')"
        " RETURNING p.id",
        (project_id,),
    )
    return await cursor.fetchone() is not None


async def every(conn: Conn) -> list[ProjectRow]:
    """Every project (the reconciler keeps their objects in the cluster)."""
    return await fetch_all(conn, ProjectRow, f"SELECT {_COLUMNS} FROM projects ORDER BY name")


async def record_applied(conn: Conn, name: str, *, generation: int, message: str) -> None:
    """What the reconciler made of a project's objects at this generation (unless it moved)."""
    await conn.execute(
        "UPDATE projects SET applied_generation = %(g)s, cluster_message = %(m)s"
        " WHERE name = %(n)s AND generation = %(g)s",
        {"n": name, "g": generation, "m": message},
    )


async def quotas(conn: Conn) -> list[tuple[str, dict[str, Any]]]:
    """Every project's stored quota, by name (for the scheduler and the reconciler)."""
    cursor = await conn.execute("SELECT name, quota FROM projects")
    return await cursor.fetchall()


# --- usage: what the reconciler observed ----------------------------------------------------------


async def usage_of(conn: Conn, names: list[str]) -> dict[str, dict[str, Any]]:
    """The observed usage of these projects (those without any are left out)."""
    cursor = await conn.execute(
        "SELECT project, usage FROM project_usage WHERE project = ANY(%s)", (names,)
    )
    return dict(await cursor.fetchall())


async def write_usage(
    conn: Conn, changed: dict[str, dict[str, Any]], *, keep: list[str] | None = None
) -> None:
    """Store each project's new usage (projects that no longer exist are skipped); with
    ``keep``, forget the usage of every project not in it."""
    if changed:
        await conn.execute(
            """
            INSERT INTO project_usage (project, usage)
            SELECT p.name, x.value FROM jsonb_each(%s::jsonb) AS x
            JOIN projects p ON p.name = x.key
            ON CONFLICT (project) DO UPDATE SET usage = excluded.usage, updated_at = now()
            """,
            (Jsonb(changed),),
        )
    if keep is not None:
        await conn.execute("DELETE FROM project_usage WHERE project <> ALL(%s)", (keep,))


async def quotas_and_usage(conn: Conn) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """Every project's quota and its observed usage (None: nothing observed)."""
    cursor = await conn.execute(
        "SELECT p.name, p.quota, u.usage FROM projects p"
        " LEFT JOIN project_usage u ON u.project = p.name"
    )
    return await cursor.fetchall()
