"""The policies table: every statement about policies, and the policy row.

A submission is checked against its *target*: the project and the versions of the global and the
project policy of its type (:data:`TARGET_FROM`). The submission path reads the target before
checking, and its storing statement reads it again (app.workloads.repository): one definition of
the join, so both always compare the same thing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from app.db import Conn
from app.projects.repository import ProjectRow
from app.sql import Scope, columns, fetch_all, fetch_one, in_scope, where


@dataclass(frozen=True, slots=True)
class PolicyRow:
    id: uuid.UUID
    project_id: uuid.UUID | None
    workload_type: str
    defaults: dict[str, Any]
    rules: dict[str, Any]
    inherit_global: bool
    version: int
    updated_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ListedPolicy:
    """A policy with its project's name (None for the global one)."""

    policy: PolicyRow
    project: str | None


_COLUMNS = columns(PolicyRow)
_P_COLUMNS = columns(PolicyRow, "pol")

# (policy id, version) of the global and the project policy (with inheritGlobal): a new row or a
# new version changes it, so comparing tokens tells whether a cached effective policy is current.
VersionToken = tuple[tuple[uuid.UUID, int] | None, tuple[uuid.UUID, int, bool] | None]

# The target of a (project, type): ``FROM projects p`` + these joins, for ``{type}`` an SQL
# expression of the workload type. TARGET_KEY is what must not change under a submission.
TARGET_JOINS: LiteralString = """
    LEFT JOIN policies g ON g.project_id IS NULL AND g.workload_type = {type}
    LEFT JOIN policies pp ON pp.project_id = p.id AND pp.workload_type = {type}
"""
TARGET_KEY: tuple[LiteralString, ...] = (
    "p.id",
    "p.namespace",
    "p.queue",
    "p.scheduler",
    "g.id",
    "g.version",
    "pp.id",
    "pp.version",
    "pp.inherit_global",
)


def target_key(project: ProjectRow, token: VersionToken) -> list[str | None]:
    """TARGET_KEY's values, in its order, as text: what the storing statement compares."""
    g, p = token
    values: tuple[Any, ...] = (
        project.id,
        project.namespace,
        project.queue,
        project.scheduler,
        *(g or (None, None)),
        *(p or (None, None, None)),
    )
    return [
        None if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in values
    ]


def target_joins(workload_type: LiteralString) -> LiteralString:
    return TARGET_JOINS.replace("{type}", workload_type)


async def target(
    conn: Conn, *, project: str, workload_type: str
) -> tuple[ProjectRow, VersionToken] | None:
    """The project and the version token of its policies of this type, in one statement."""
    cursor = await conn.execute(
        f"SELECT {columns(ProjectRow, 'p')}, g.id, g.version, pp.id, pp.version,"
        f" pp.inherit_global FROM projects p {target_joins('%(type)s')} WHERE p.name = %(name)s",
        {"name": project, "type": workload_type},
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    width = len(ProjectRow.__dataclass_fields__)
    g_id, g_version, p_id, p_version, p_inherit = row[width:]
    token: VersionToken = (
        (g_id, g_version) if g_id else None,
        (p_id, p_version, p_inherit) if p_id else None,
    )
    return ProjectRow(*row[:width]), token


async def documents(conn: Conn, ids: list[uuid.UUID]) -> dict[uuid.UUID, PolicyRow]:
    if not ids:
        return {}
    rows = await fetch_all(
        conn, PolicyRow, f"SELECT {_COLUMNS} FROM policies WHERE id = ANY(%s)", (ids,)
    )
    return {r.id: r for r in rows}


async def find(
    conn: Conn, *, project_id: uuid.UUID | None, workload_type: str, lock: bool = False
) -> PolicyRow | None:
    return await fetch_one(
        conn,
        PolicyRow,
        f"SELECT {_COLUMNS} FROM policies WHERE workload_type = %(type)s"
        " AND project_id IS NOT DISTINCT FROM %(project)s" + (" FOR UPDATE" if lock else ""),
        {"type": workload_type, "project": project_id},
    )


async def of_type(conn: Conn, workload_type: str) -> list[PolicyRow]:
    """Every policy of a type (the global one and each project's)."""
    return await fetch_all(
        conn,
        PolicyRow,
        f"SELECT {_COLUMNS} FROM policies WHERE workload_type = %s",
        (workload_type,),
    )


class ProjectGone(Exception):
    """The project was deleted while its policy was being written."""


async def save(
    conn: Conn,
    *,
    policy_id: uuid.UUID,
    project_id: uuid.UUID | None,
    workload_type: str,
    defaults: dict[str, Any],
    rules: dict[str, Any],
    inherit_global: bool,
    updated_by: str,
    expected_version: int | None,
) -> PolicyRow | None:
    """Insert the policy (``expected_version`` None) or replace that version of it.

    None when someone else created or replaced it first."""
    values = {
        "id": policy_id,
        "project": project_id,
        "type": workload_type,
        "defaults": Jsonb(defaults),
        "rules": Jsonb(rules),
        "inherit": inherit_global,
        "by": updated_by,
        "expected": expected_version,
    }
    if expected_version is None:
        query: LiteralString = f"""
            INSERT INTO policies (id, project_id, workload_type, defaults, rules, inherit_global,
                                  version, updated_by)
            VALUES (%(id)s, %(project)s, %(type)s, %(defaults)s, %(rules)s, %(inherit)s, 1, %(by)s)
            ON CONFLICT DO NOTHING RETURNING {_COLUMNS}
        """
    else:
        query = f"""
            UPDATE policies SET defaults = %(defaults)s, rules = %(rules)s,
                inherit_global = %(inherit)s, version = version + 1, updated_by = %(by)s,
                updated_at = now()
            WHERE id = %(id)s AND version = %(expected)s RETURNING {_COLUMNS}
        """
    try:
        return await fetch_one(conn, PolicyRow, query, values)
    except psycopg.errors.ForeignKeyViolation:
        raise ProjectGone() from None


async def delete(conn: Conn, policy_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM policies WHERE id = %s", (policy_id,))


async def list_page(
    conn: Conn,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    scope: Scope,
    global_scope: bool | None,
    project_id: uuid.UUID | None,
    workload_type: str | None,
) -> list[ListedPolicy]:
    condition, params = where(
        # Global policies bind everyone; project policies show only within scope.
        ("(pol.project_id IS NULL OR " + in_scope("pol.project_id") + ")", {"scope": scope}),
        None
        if global_scope is None
        else ("pol.project_id IS NULL" if global_scope else "pol.project_id IS NOT NULL", {}),
        ("pol.project_id = %(project_id)s", {"project_id": project_id}),
        ("pol.workload_type = %(type)s", {"type": workload_type}),
        after and ("(pol.created_at, pol.id) > (%(t)s, %(i)s)", {"t": after[0], "i": after[1]}),
    )
    query = sql.SQL(
        "SELECT {}, p.name FROM policies pol LEFT JOIN projects p ON p.id = pol.project_id"
        " WHERE {} ORDER BY pol.created_at, pol.id LIMIT %(limit)s"
    ).format(sql.SQL(_P_COLUMNS), condition)
    params["limit"] = limit
    cursor = await conn.execute(query, params)
    width = len(PolicyRow.__dataclass_fields__)
    return [ListedPolicy(PolicyRow(*r[:width]), r[width]) for r in await cursor.fetchall()]
