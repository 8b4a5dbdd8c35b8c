"""The audit log endpoint (admin only; see app.auth.access)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator, BeforeValidator

from app.audit import schemas, service
from app.audit.recorder import AuditedRoute
from app.deps import ConnDep
from app.errors import ValidationFailed
from app.openapi import responses
from app.schemas import PageParams, in_utc, page_params

router = APIRouter(prefix="/audit", tags=["audit"], route_class=AuditedRoute)

Method = Literal["POST", "PUT", "PATCH", "DELETE"]
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339(value: object) -> object:
    # Pydantic would also read "0.5" as a Unix timestamp; the contract says RFC 3339.
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time, e.g. 2026-01-01T00:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(in_utc)]


@router.get(
    "",
    operation_id="listAuditEntries",
    response_model=schemas.AuditPage,
    responses=responses(422),
)
async def list_audit_entries(
    conn: ConnDep,
    page: Annotated[PageParams, Depends(page_params)],
    actor: Annotated[str | None, Query(max_length=255, description="Exactly this actor.")] = None,
    method: Annotated[Method | None, Query(description="HTTP method.")] = None,
    since: Annotated[
        Timestamp | None, Query(alias="from", description="At or after this time (RFC 3339).")
    ] = None,
    until: Annotated[
        Timestamp | None, Query(alias="to", description="Before this time (RFC 3339).")
    ] = None,
) -> schemas.AuditPage:
    for name, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(
                f"`{name}` needs a time zone.",
                errors=[{"field": name, "message": "must carry a UTC offset, e.g. Z"}],
            )
    rows, nxt = await service.list_page(
        conn, page, actor=actor, method=method, since=since, until=until
    )
    return schemas.AuditPage(items=[schemas.AuditEntry.model_validate(r) for r in rows], next=nxt)
