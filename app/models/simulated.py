"""The simulated cluster's store: what was applied for each workload, and when."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class SimulatedWorkload(Base):
    """One workload's applied objects in the simulated cluster (no foreign key: it is a cluster)."""

    __tablename__ = "simulated_workloads"

    workload_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    manifests: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Pins the simulated scheduler's placement once made (see app.cluster.simulation.SimInput).
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The simulated scheduler's last eviction of it (to reclaim quota), and its words for it.
    preempted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    preempted_by: Mapped[str | None] = mapped_column(Text)


class SimulatedProject(Base):
    """The objects a project (``owner``; "" for what projects share) applied to the simulated
    cluster: its namespace and scheduler queues."""

    __tablename__ = "simulated_projects"

    owner: Mapped[str] = mapped_column(String(63), primary_key=True)
    manifests: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
