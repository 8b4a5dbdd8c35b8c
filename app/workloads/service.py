"""The workload resource: reading, listing, events and lifecycle requests.

Submissions live in :mod:`app.workloads.submission`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session, undefer

from app.auth.access import Access, visible
from app.auth.principal import Principal
from app.errors import Conflict, NotFound, ValidationFailed
from app.models import Workload, WorkloadEvent
from app.models.workload import FINAL_PHASES
from app.schemas import (
    PageParams,
    decode_cursor,
    decode_time_cursor,
    encode_cursor,
    encode_time_cursor,
)
from app.workloads import schemas

# --- reading ------------------------------------------------------------------------------------


def to_read(w: Workload) -> schemas.Workload:
    return schemas.Workload(
        id=w.id,
        name=w.name,
        project=w.project,
        type=w.type,
        created_at=w.created_at,
        updated_at=w.updated_at,
        spec=w.spec,
        submitted_spec=w.submitted_spec,
        applied_defaults=w.applied_defaults,
        policy=schemas.PolicyRef(source=w.policy_source, version=w.policy_version),
        desired_phase=w.desired_phase,
        phase=w.phase,
        phase_message=w.phase_message,
        phase_updated_at=w.phase_updated_at,
        conditions=[schemas.Condition.model_validate(c) for c in w.conditions],
        pods=schemas.PodCounts.model_validate(w.pods),
        cluster=schemas.ClusterRef(
            namespace=w.namespace,
            objects=[schemas.ObjectRef.model_validate(o) for o in w.objects],
        ),
        deleted_at=w.deleted_at,
    )


def get(
    session: Session, workload_id: uuid.UUID, *, visible_to: Principal, manifests: bool = False
) -> Workload:
    """The workload, or 404 when it does not exist or its project lies outside the scope."""
    query = select(Workload).where(
        Workload.id == workload_id, visible(visible_to, Workload.project)
    )
    if manifests:
        query = query.options(undefer(Workload.manifests))
    workload = session.scalars(query).one_or_none()
    if workload is None:
        raise NotFound(f"Workload {workload_id} does not exist.")
    return workload


def list_page(
    session: Session,
    page: PageParams,
    *,
    visible_to: Principal,
    project: str | None,
    workload_type: str | None,
    phase: str | None,
    deleted: bool,
) -> tuple[list[Workload], str | None]:
    query = (
        select(Workload)
        .where(visible(visible_to, Workload.project))
        .order_by(Workload.created_at.desc(), Workload.id.desc())
        .limit(page.limit + 1)
    )
    query = query.where(
        Workload.deleted_at.is_not(None) if deleted else Workload.deleted_at.is_(None)
    )
    if project is not None:
        query = query.where(Workload.project == project)
    if workload_type is not None:
        query = query.where(Workload.type == workload_type)
    if phase is not None:
        query = query.where(Workload.phase == phase)
    if page.cursor:
        query = query.where(
            tuple_(Workload.created_at, Workload.id) < tuple_(*decode_time_cursor(page.cursor))
        )
    rows = list(session.scalars(query))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, encode_time_cursor(rows[-1].created_at, rows[-1].id) if more else None


def events_page(
    session: Session, workload: Workload, page: PageParams
) -> tuple[list[WorkloadEvent], str | None]:
    query = (
        select(WorkloadEvent)
        .where(WorkloadEvent.workload_id == workload.id)
        .order_by(WorkloadEvent.id)
        .limit(page.limit + 1)
    )
    if page.cursor:
        (after,) = decode_cursor(page.cursor, 1)
        if not isinstance(after, int):
            raise ValidationFailed(
                "The cursor is not one this API issued.",
                errors=[{"field": "cursor", "message": "invalid cursor"}],
            )
        query = query.where(WorkloadEvent.id > after)
    rows = list(session.scalars(query))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, encode_cursor(rows[-1].id) if more else None


# --- lifecycle requests -------------------------------------------------------------------------


def _locked(session: Session, workload_id: uuid.UUID, access: Access) -> Workload:
    """Lock the workload for a change: 404 out of scope, then 403 for too small a role."""
    workload = session.scalars(
        select(Workload)
        .where(Workload.id == workload_id, access.visible(Workload.project))
        .with_for_update()
    ).one_or_none()
    if workload is None:
        raise NotFound(f"Workload {workload_id} does not exist.")
    access.require()
    return workload


def _request(
    session: Session, workload: Workload, *, desired: str, reason: str, message: str
) -> None:
    values: dict[str, Any] = {
        "desired_phase": desired,
        "generation": Workload.generation + 1,
        "updated_at": func.now(),
    }
    if desired == "Deleted":
        values.update(
            deleted_at=func.now(),
            phase="Deleting",
            phase_message=message,
            phase_updated_at=func.now(),
        )
    session.execute(
        update(Workload)
        .where(Workload.id == workload.id)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    session.add(
        WorkloadEvent(
            workload_id=workload.id,
            type="Requested",
            phase="Deleting" if desired == "Deleted" else workload.phase,
            reason=reason,
            message=message,
        )
    )
    session.flush()
    session.refresh(workload)


def suspend(session: Session, workload_id: uuid.UUID, *, access: Access) -> Workload:
    actor = access.principal.name
    workload = _locked(session, workload_id, access)
    if workload.deleted_at is not None:
        raise Conflict("The workload is deleted; it cannot be suspended.")
    if workload.phase in FINAL_PHASES:
        raise Conflict(f"The workload is {workload.phase}; there is nothing to suspend.")
    if workload.desired_phase != "Stopped":
        _request(
            session,
            workload,
            desired="Stopped",
            reason="SuspendRequested",
            message=f"Suspend requested by {actor}.",
        )
    return workload


def resume(session: Session, workload_id: uuid.UUID, *, access: Access) -> Workload:
    actor = access.principal.name
    workload = _locked(session, workload_id, access)
    if workload.deleted_at is not None:
        raise Conflict("The workload is deleted; it cannot be resumed.")
    if workload.phase in FINAL_PHASES:
        raise Conflict(
            f"The workload is {workload.phase}; a finished workload cannot be resumed. "
            "Submit it again instead."
        )
    if workload.desired_phase != "Running":
        _request(
            session,
            workload,
            desired="Running",
            reason="ResumeRequested",
            message=f"Resume requested by {actor}.",
        )
    return workload


def delete(session: Session, workload_id: uuid.UUID, *, access: Access) -> Workload:
    actor = access.principal.name
    workload = _locked(session, workload_id, access)
    if workload.deleted_at is not None:
        raise Conflict("The workload is already deleted.")
    _request(
        session,
        workload,
        desired="Deleted",
        reason="DeleteRequested",
        message=f"Deletion requested by {actor}.",
    )
    return workload
