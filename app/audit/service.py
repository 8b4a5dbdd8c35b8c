"""Reading the audit log: filters and newest-first keyset pages."""

from __future__ import annotations

from datetime import datetime

from app.audit import repository
from app.audit.repository import AuditRow
from app.db import Conn
from app.errors import ValidationFailed
from app.schemas import PageParams, decode_cursor, encode_cursor
from app.sql import page


async def list_page(
    conn: Conn,
    page_params: PageParams,
    *,
    actor: str | None,
    method: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[AuditRow], str | None]:
    before_id = None
    if page_params.cursor:
        (before_id,) = decode_cursor(page_params.cursor, 1)
        # An id: a bigint, never a bool (JSON's true is not 1 here).
        if type(before_id) is not int or not 0 <= before_id < 2**63:
            raise ValidationFailed(
                "The cursor is not one this API issued.",
                errors=[{"field": "cursor", "message": "invalid cursor; use the `next` of a page"}],
            )
    rows = await repository.list_page(
        conn,
        before_id=before_id,
        limit=page_params.limit + 1,
        actor=actor,
        method=method.upper() if method else None,
        since=since,
        until=until,
    )
    return page(rows, page_params.limit, lambda r: encode_cursor(r.id))
