"""The audit log: who did what to which resource, when, and how it ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        # Newest first is the id order; the filters narrow by actor or by time.
        Index("ix_audit_log_actor", "actor", "id"),
        Index("ix_audit_log_time", "time"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The principal's display name ("anonymous" when no credential was accepted) and its
    # stable id ("admin", "token:<uuid>", "oidc:<sub>").
    actor: Mapped[str] = mapped_column(String(255))
    actor_id: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str | None] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    # The route template ("/api/v1/projects/{project}"), not the raw path.
    route: Mapped[str] = mapped_column(String(255))
    target: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[int] = mapped_column(Integer)
    dry_run: Mapped[bool] = mapped_column(default=False, server_default="false")
    request_id: Mapped[str | None] = mapped_column(String(128))
    # Policy documents before and after the change (null when there is none).
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
