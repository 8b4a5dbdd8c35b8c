"""What the active reconciler observed of the cluster, kept for the API to read: each project's
usage and each node pool's capacity. Written when it changes, never by a request."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, Numeric, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class ProjectUsage(Base):
    __tablename__ = "project_usage"

    # By name (immutable and unique): the reconciler finds a workload's project by its label.
    project: Mapped[str] = mapped_column(
        String(40), ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True
    )
    # {"allocated": {gpu, cpu, memory}, "waiting": {...}}, base units as decimal strings.
    usage: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class NodePool(Base):
    __tablename__ = "node_pools"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    nodes: Mapped[int] = mapped_column(Integer)
    # {gpu, cpu, memory} in base units as decimal strings.
    allocatable: Mapped[dict[str, Any]] = mapped_column(JSONB)
    allocated: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # GPUs of its largest node, and the most free on one node: whether a pod of a size fits.
    largest_node: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    largest_free: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
