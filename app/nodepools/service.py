"""Node pools as the API reads them."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, TypeAdapter

from app.db import Conn
from app.nodepools import repository, schemas
from app.nodepools.repository import NodePoolRow
from app.rendering.syntax import label_value_problem
from app.schemas import PageParams, decode_cursor, encode_cursor
from app.sql import page


def _label_value(value: str) -> str:
    problem = label_value_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# A page's cursor: the last node pool's name, a label value.
POOL = TypeAdapter(tuple[Annotated[str, AfterValidator(_label_value)]])


def to_read(row: NodePoolRow) -> schemas.NodePool:
    def capacity(resource: str) -> schemas.Capacity:
        allocatable = Decimal(row.allocatable.get(resource, "0"))
        allocated = Decimal(row.allocated.get(resource, "0"))
        return schemas.Capacity(
            allocatable=allocatable, allocated=allocated, free=max(allocatable - allocated, 0)
        )

    return schemas.NodePool(
        name=row.name,
        nodes=row.nodes,
        gpu=capacity("gpu"),
        cpu=capacity("cpu"),
        memory=capacity("memory"),
        updated_at=row.updated_at,
    )


async def list_page(conn: Conn, page_params: PageParams) -> tuple[list[NodePoolRow], str | None]:
    after = decode_cursor(page_params.cursor, POOL)[0] if page_params.cursor else None
    rows = await repository.list_after(conn, after=after, limit=page_params.limit + 1)
    return page(rows, page_params.limit, lambda p: encode_cursor(p.name))
