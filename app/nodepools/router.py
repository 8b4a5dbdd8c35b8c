"""The node pools endpoint (thin): what the reconciler last observed of the cluster's nodes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.audit.recorder import AuditedRoute
from app.deps import ConnDep
from app.nodepools import schemas, service
from app.openapi import responses
from app.schemas import PageParams, page_params

router = APIRouter(prefix="/nodepools", tags=["nodepools"], route_class=AuditedRoute)


@router.get(
    "",
    operation_id="listNodePools",
    response_model=schemas.NodePoolPage,
    responses=responses(422),
)
async def list_node_pools(
    conn: ConnDep, page: Annotated[PageParams, Depends(page_params)]
) -> schemas.NodePoolPage:
    rows, nxt = await service.list_page(conn, page)
    return schemas.NodePoolPage(items=[service.to_read(r) for r in rows], next=nxt)
