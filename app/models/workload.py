"""Workloads and their events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin


class Workload(IdMixin, TimestampMixin, Base):
    __tablename__ = "workloads"
    __table_args__ = (
        # A name is unique among the project's non-deleted workloads; deleting frees it at once.
        Index(
            "uq_workloads_project_name_live",
            "project_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # Keyset pagination, newest first, with and without the common filters.
        Index("ix_workloads_created", "created_at", "id"),
        Index("ix_workloads_project_created", "project", "created_at", "id"),
        # A scoped caller's lists: its projects, by id (app.sql.scope).
        Index("ix_workloads_project_id_created", "project_id", "created_at", "id"),
        # The reconciler's working sets: everything not deleted, and the outbox.
        Index("ix_workloads_active", "id", postgresql_where=text("phase <> 'Deleted'")),
        Index(
            "ix_workloads_outbox",
            "created_at",
            postgresql_where=text("applied_generation < generation"),
        ),
    )

    name: Mapped[str] = mapped_column(String(40))
    # Cleared when the project is deleted: its deleted workloads stay readable by id (SPEC §4).
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL")
    )
    # Project names are immutable, so reads need no join.
    project: Mapped[str] = mapped_column(String(40))
    namespace: Mapped[str] = mapped_column(String(63))
    type: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    submitted_spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Defaults live in the database (server_default), so that every INSERT, whichever path it
    # takes, gets the same ones.
    applied_defaults: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'"))
    policy_source: Mapped[str] = mapped_column(String(8))
    policy_version: Mapped[int | None] = mapped_column(Integer)
    # What was rendered at submission (the running form), and its object references, kept
    # apart so that reads and lists need not load the manifests.
    manifests: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'"), deferred=True
    )
    objects: Mapped[list[dict[str, str]]] = mapped_column(JSONB, server_default=text("'[]'"))
    desired_phase: Mapped[str] = mapped_column(String(16), server_default="Running")
    phase: Mapped[str] = mapped_column(String(16), server_default="Creating")
    phase_message: Mapped[str] = mapped_column(Text, server_default="")
    phase_updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'"))
    pods: Mapped[dict[str, int]] = mapped_column(JSONB, server_default=text("'{}'"))
    # Each pod as the API shows it (app.reconciler.pods); a finished workload keeps its pods'
    # final states after they are gone.
    pod_list: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'"))
    # Where to reach it (app.reconciler.urls), as observed.
    urls: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'"))
    # The last lines of each pod's containers' logs, kept when the workload finishes:
    # {pod: {container: [line, ...]}}.
    log_history: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'"), deferred=True
    )
    # The outbox: desired state changes bump `generation`; the reconciler brings the cluster to
    # it and records `applied_generation`. A workload committed while the cluster is away is
    # applied when it returns.
    generation: Mapped[int] = mapped_column(Integer, server_default="1")
    applied_generation: Mapped[int] = mapped_column(Integer, server_default="0")
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WorkloadEvent(Base):
    __tablename__ = "workload_events"
    __table_args__ = (
        Index("ix_workload_events_workload", "workload_id", "id"),
        # A Kubernetes event is stored once and updated as it repeats (its count grows).
        Index(
            "uq_workload_events_uid",
            "workload_id",
            "uid",
            unique=True,
            postgresql_where=text("uid IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    workload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    type: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(128), server_default="")
    message: Mapped[str] = mapped_column(Text, server_default="")
    # runplane (phase transitions, lifecycle) or kubernetes (the cluster's events, whose
    # ``type`` is Normal or Warning).
    source: Mapped[str] = mapped_column(String(16), server_default="runplane")
    uid: Mapped[str | None] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, server_default="1")
    first_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    involved_object: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
