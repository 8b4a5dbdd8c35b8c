"""Projects: a team's space, one Kubernetes namespace each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin


class Project(IdMixin, TimestampMixin, Base):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(40), unique=True)
    namespace: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(String(1024), default="", server_default="")
    # Per resource {deserved, limit, overQuotaWeight}, amounts as the client wrote them ("0.5",
    # "500m", "64Gi"), validated on write (app.domain.quota); a resource left out is unlimited.
    quota: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    node_pools: Mapped[list[str]] = mapped_column(
        ARRAY(String(63)), default=list, server_default="{}"
    )
    # Scheduler queue name (KAI queue or Kueue LocalQueue); None means the project name.
    queue: Mapped[str | None] = mapped_column(String(63))
    # Per-project override of the deployment's scheduler setting.
    scheduler: Mapped[str | None] = mapped_column(String(16))
    # The outbox of its own cluster objects (scheduler queues, ResourceQuota): every change
    # moves ``generation``; the reconciler records what it applied, or why it could not.
    generation: Mapped[int] = mapped_column(Integer, server_default="1")
    applied_generation: Mapped[int] = mapped_column(Integer, server_default="0")
    cluster_message: Mapped[str] = mapped_column(Text, server_default="")
