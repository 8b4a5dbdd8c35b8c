"""Reading the audit log: filters and newest-first keyset pages."""

from __future__ import annotations

from datetime import datetime

from app.audit import repository
from app.audit.repository import AuditRow
from app.db import Conn
from app.schemas import ROW_ID, PageParams, decode_cursor, encode_cursor
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
    before_id = decode_cursor(page_params.cursor, ROW_ID)[0] if page_params.cursor else None
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
