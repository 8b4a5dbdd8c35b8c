"""The node_pools table: the reconciler writes what it observed when it changes; the API reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
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
    largest_node: Decimal
    largest_free: Decimal
    updated_at: datetime


async def all_pools(conn: Conn) -> list[NodePoolRow]:
    return await fetch_all(conn, NodePoolRow, f"SELECT {columns(NodePoolRow)} FROM node_pools")


async def list_after(conn: Conn, *, after: str | None, limit: int) -> list[NodePoolRow]:
    return await fetch_all(
        conn,
        NodePoolRow,
        f"SELECT {columns(NodePoolRow)} FROM node_pools"
        " WHERE %(after)s::text IS NULL OR name > %(after)s ORDER BY name LIMIT %(limit)s",
        {"after": after, "limit": limit},
    )


async def replace(conn: Conn, pools: list[dict[str, Any]]) -> None:
    """Make the table hold exactly these pools (app.reconciler.usage.NodePool.to_dict)."""
    async with conn.transaction():
        await conn.execute(
            """
            INSERT INTO node_pools (name, nodes, allocatable, allocated, largest_node,
                                    largest_free)
            SELECT x->>'name', (x->>'nodes')::int, x->'allocatable', x->'allocated',
                   (x->>'largest_node')::numeric, (x->>'largest_free')::numeric
            FROM jsonb_array_elements(%(pools)s::jsonb) AS x
            ON CONFLICT (name) DO UPDATE SET nodes = excluded.nodes,
                allocatable = excluded.allocatable, allocated = excluded.allocated,
                largest_node = excluded.largest_node, largest_free = excluded.largest_free,
                updated_at = now()
            """,
            {"pools": Jsonb(pools)},
        )
        await conn.execute(
            "DELETE FROM node_pools WHERE name <> ALL(%s)", ([p["name"] for p in pools],)
        )
