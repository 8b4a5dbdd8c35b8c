"""The node_pools table: the reconciler writes what it observed when it changes; the API reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from app.db import Conn
from app.sql import columns, fetch_all


@dataclass(frozen=True, slots=True)
class NodePoolRow:
    name: str
    nodes: int
    allocatable: dict[str, str]
    allocated: dict[str, str]
    updated_at: datetime


async def list_after(conn: Conn, *, after: str | None, limit: int) -> list[NodePoolRow]:
    return await fetch_all(
        conn,
        NodePoolRow,
        f"SELECT {columns(NodePoolRow)} FROM node_pools"
        " WHERE %(after)s::text IS NULL OR name > %(after)s ORDER BY name LIMIT %(limit)s",
        {"after": after, "limit": limit},
    )


async def replace(conn: Conn, pools: list[dict[str, Any]]) -> None:
    """Make the table hold exactly these pools (``{name, nodes, allocatable, allocated}``)."""
    async with conn.transaction():
        await conn.execute(
            """
            INSERT INTO node_pools (name, nodes, allocatable, allocated)
            SELECT x->>'name', (x->>'nodes')::int, x->'allocatable', x->'allocated'
            FROM jsonb_array_elements(%(pools)s::jsonb) AS x
            ON CONFLICT (name) DO UPDATE SET nodes = excluded.nodes,
                allocatable = excluded.allocatable, allocated = excluded.allocated,
                updated_at = now()
            """,
            {"pools": Jsonb(pools)},
        )
        await conn.execute(
            "DELETE FROM node_pools WHERE name <> ALL(%s)", ([p["name"] for p in pools],)
        )
