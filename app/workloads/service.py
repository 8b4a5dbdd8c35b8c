"""The workload resource: its read model, reading, listing, events and lifecycle requests.

Submissions live in :mod:`app.workloads.submission`.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from app.auth.access import Access
from app.auth.principal import Principal
from app.db import Conn
from app.domain.phases import FINAL_PHASES
from app.errors import Conflict, NotFound
from app.schemas import (
    ROW_ID,
    PageParams,
    decode_cursor,
    decode_time_cursor,
    encode_cursor,
    encode_time_cursor,
)
from app.sql import page, scope
from app.workloads import repository
from app.workloads.repository import Event, EventRow, WorkloadRow

POD_COUNTS = ("requested", "running", "pending", "succeeded", "failed")


def to_read(w: WorkloadRow) -> dict[str, Any]:
    """The workload as the API shows it (:class:`app.workloads.schemas.Workload`, camelCase):
    the one serialiser of every answer that carries a workload."""
    return {
        "id": w.id,
        "name": w.name,
        "project": w.project,
        "type": w.type,
        "createdAt": w.created_at,
        "updatedAt": w.updated_at,
        "spec": w.spec,
        "submittedSpec": w.submitted_spec,
        "appliedDefaults": w.applied_defaults,
        "policy": {"source": w.policy_source, "version": w.policy_version},
        "desiredPhase": w.desired_phase,
        "phase": w.phase,
        "phaseMessage": w.phase_message,
        "phaseUpdatedAt": w.phase_updated_at,
        "conditions": [
            {
                "type": c["type"],
                "status": c["status"],
                "reason": c.get("reason", ""),
                "message": c.get("message", ""),
                "lastTransitionTime": c.get("lastTransitionTime"),
            }
            for c in w.conditions
        ],
        "pods": {k: w.pods.get(k, 0) for k in POD_COUNTS},
        "urls": w.urls,
        "cluster": {"namespace": w.namespace, "objects": w.objects},
        "deletedAt": w.deleted_at,
    }


def dumps(document: Any) -> bytes:
    """JSON as pydantic writes it (UTC times with a ``Z``), by orjson."""
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


def to_json(w: WorkloadRow) -> bytes:
    return dumps(to_read(w))


# --- reading ------------------------------------------------------------------------------------


def not_found(workload_id: uuid.UUID) -> NotFound:
    return NotFound(f"Workload {workload_id} does not exist.")


async def get(conn: Conn, workload_id: uuid.UUID, *, visible_to: Principal) -> WorkloadRow:
    """The workload, or 404 when it does not exist or its project lies outside the scope."""
    workload = await repository.get(conn, workload_id, scope=scope(visible_to))
    if workload is None:
        raise not_found(workload_id)
    return workload


async def list_page(
    conn: Conn,
    page_params: PageParams,
    *,
    visible_to: Principal,
    project: str | None,
    workload_type: str | None,
    phase: str | None,
    deleted: bool,
) -> tuple[list[WorkloadRow], str | None]:
    rows = await repository.list_page(
        conn,
        scope=scope(visible_to),
        before=decode_time_cursor(page_params.cursor) if page_params.cursor else None,
        limit=page_params.limit + 1,
        project=project,
        workload_type=workload_type,
        phase=phase,
        deleted=deleted,
    )
    return page(rows, page_params.limit, lambda w: encode_time_cursor(w.created_at, w.id))


async def events_page(
    conn: Conn, workload: WorkloadRow, page_params: PageParams
) -> tuple[list[EventRow], str | None]:
    after = decode_cursor(page_params.cursor, ROW_ID)[0] if page_params.cursor else None
    rows = await repository.events_page(conn, workload.id, after=after, limit=page_params.limit + 1)
    return page(rows, page_params.limit, lambda e: encode_cursor(e.id))


# --- lifecycle requests -------------------------------------------------------------------------


async def _locked(conn: Conn, workload_id: uuid.UUID, access: Access) -> WorkloadRow:
    """Lock the workload for a change: 404 out of scope, then 403 for too small a role."""
    workload = await repository.lock(conn, workload_id, scope=scope(access.principal))
    if workload is None:
        raise not_found(workload_id)
    access.require()
    return workload


async def _request(
    conn: Conn, workload: WorkloadRow, *, desired: str, reason: str, message: str
) -> WorkloadRow:
    event = Event(
        workload.id,
        "Requested",
        "Deleting" if desired == "Deleted" else workload.phase,
        reason,
        message,
    )
    return await repository.request_phase(conn, workload.id, desired=desired, event=event)


async def suspend(conn: Conn, workload_id: uuid.UUID, *, access: Access) -> WorkloadRow:
    workload = await _locked(conn, workload_id, access)
    if workload.deleted_at is not None:
        raise Conflict("The workload is deleted; it cannot be suspended.")
    if workload.phase in FINAL_PHASES:
        raise Conflict(f"The workload is {workload.phase}; there is nothing to suspend.")
    if workload.desired_phase == "Stopped":
        return workload
    return await _request(
        conn,
        workload,
        desired="Stopped",
        reason="SuspendRequested",
        message=f"Suspend requested by {access.principal.name}.",
    )


async def resume(conn: Conn, workload_id: uuid.UUID, *, access: Access) -> WorkloadRow:
    workload = await _locked(conn, workload_id, access)
    if workload.deleted_at is not None:
        raise Conflict("The workload is deleted; it cannot be resumed.")
    if workload.phase in FINAL_PHASES:
        raise Conflict(
            f"The workload is {workload.phase}; a finished workload cannot be resumed. "
            "Submit it again instead."
        )
    if workload.desired_phase == "Running":
        return workload
    return await _request(
        conn,
        workload,
        desired="Running",
        reason="ResumeRequested",
        message=f"Resume requested by {access.principal.name}.",
    )


async def delete(conn: Conn, workload_id: uuid.UUID, *, access: Access) -> WorkloadRow:
    workload = await _locked(conn, workload_id, access)
    if workload.deleted_at is not None:
        raise Conflict("The workload is already deleted.")
    return await _request(
        conn,
        workload,
        desired="Deleted",
        reason="DeleteRequested",
        message=f"Deletion requested by {access.principal.name}.",
    )
