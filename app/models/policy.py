"""Policies: defaults and rules per workload type, at global or project scope."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin


class Policy(IdMixin, TimestampMixin, Base):
    __tablename__ = "policies"
    __table_args__ = (
        # One policy per (scope, project, type); NULL project ids need their own index.
        Index(
            "uq_policies_global_type",
            "workload_type",
            unique=True,
            postgresql_where=text("project_id IS NULL"),
        ),
        Index(
            "uq_policies_project_type",
            "project_id",
            "workload_type",
            unique=True,
            postgresql_where=text("project_id IS NOT NULL"),
        ),
    )

    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE")
    )
    workload_type: Mapped[str] = mapped_column(String(16))
    defaults: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    rules: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    inherit_global: Mapped[bool] = mapped_column(default=False, server_default="false")
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(255), default="")

    @property
    def scope(self) -> str:
        return "global" if self.project_id is None else "project"
