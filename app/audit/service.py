"""Reading the audit log: filters and newest-first keyset pages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ValidationFailed
from app.models import AuditEntry
from app.schemas import PageParams, decode_cursor, encode_cursor


def list_page(
    session: Session,
    page: PageParams,
    *,
    actor: str | None,
    method: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[AuditEntry], str | None]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(page.limit + 1)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if method is not None:
        query = query.where(AuditEntry.method == method.upper())
    if since is not None:
        query = query.where(AuditEntry.time >= since)
    if until is not None:
        query = query.where(AuditEntry.time < until)
    if page.cursor:
        (before_id,) = decode_cursor(page.cursor, 1)
        if not isinstance(before_id, int):
            raise ValidationFailed(
                "The cursor is not one this API issued.",
                errors=[{"field": "cursor", "message": "invalid cursor; use the `next` of a page"}],
            )
        query = query.where(AuditEntry.id < before_id)
    rows = list(session.scalars(query))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, encode_cursor(rows[-1].id) if more else None
