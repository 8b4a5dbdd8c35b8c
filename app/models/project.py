"""Projects: a team's space, one Kubernetes namespace each."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import ARRAY, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin


class Project(IdMixin, TimestampMixin, Base):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(40), unique=True)
    namespace: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(String(1024), default="", server_default="")
    quota_gpu: Mapped[Decimal | None] = mapped_column(Numeric(12, 3))
    # Quantities as the client wrote them ("16", "500m", "64Gi"); validated on write.
    quota_cpu: Mapped[str | None] = mapped_column(String(64))
    quota_memory: Mapped[str | None] = mapped_column(String(64))
    node_pools: Mapped[list[str]] = mapped_column(
        ARRAY(String(63)), default=list, server_default="{}"
    )
    # Scheduler queue name (KAI queue or Kueue LocalQueue); None means the project name.
    queue: Mapped[str | None] = mapped_column(String(63))
    # Per-project override of the deployment's scheduler setting.
    scheduler: Mapped[str | None] = mapped_column(String(16))
