"""The submission path and the workload resource: policy, validation, rendering, storage, lifecycle.

A submission costs two statements on the hot path: one reads the project with the versions of
the policies that reach it (the effective policy itself comes from the cache), one inserts the
workload and its first event together.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, undefer

from app import rendering
from app.auth.access import Access, visible
from app.auth.principal import Principal
from app.config import Settings
from app.db import json_dumps
from app.errors import Conflict, NotFound, PolicyViolation, ValidationFailed
from app.models import IdempotencyKey, Workload, WorkloadEvent
from app.models.workload import FINAL_PHASES
from app.policies import engine
from app.policies import service as policies
from app.schemas import (
    PageParams,
    decode_cursor,
    decode_time_cursor,
    encode_cursor,
    encode_time_cursor,
)
from app.workloads import schemas
from app.workloads.spec import SPEC_MODELS, WorkloadType, missing_required

IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Prepared:
    """A submission that passed every check, ready to store (or to show, for a dry run)."""

    id: uuid.UUID
    project: ProjectInfo
    spec: dict[str, Any]
    submitted_spec: dict[str, Any]
    applied_defaults: list[str]
    policy: schemas.PolicyRef
    manifests: list[dict[str, Any]]


# --- reading a project with its policy versions in one round trip ------------------------------


@dataclass(frozen=True)
class ProjectInfo:
    """What a submission needs of its project."""

    id: uuid.UUID
    name: str
    namespace: str
    queue: str | None
    scheduler: str | None


# Prepared once: on the hot path SQLAlchemy then only binds parameters.
_PROJECT_AND_POLICY_VERSIONS = text(
    """
    SELECT p.id, p.name, p.namespace, p.queue, p.scheduler,
           g.id AS g_id, g.version AS g_version,
           pp.id AS p_id, pp.version AS p_version, pp.inherit_global AS p_inherit
    FROM projects p
    LEFT JOIN policies g ON g.project_id IS NULL AND g.workload_type = :workload_type
    LEFT JOIN policies pp ON pp.project_id = p.id AND pp.workload_type = :workload_type
    WHERE p.name = :name
    """
)


def _project_and_policy(
    session: Session, *, project_name: str, workload_type: WorkloadType
) -> tuple[ProjectInfo, policies.Resolved]:
    row = session.execute(
        _PROJECT_AND_POLICY_VERSIONS, {"name": project_name, "workload_type": workload_type}
    ).one_or_none()
    if row is None:
        raise NotFound(f"Project {project_name!r} does not exist.")
    project = ProjectInfo(row.id, row.name, row.namespace, row.queue, row.scheduler)
    token: policies.VersionToken = (
        (row.g_id, row.g_version) if row.g_id else None,
        (row.p_id, row.p_version, row.p_inherit) if row.p_id else None,
    )
    return project, policies.resolve(
        session, project_id=project.id, workload_type=workload_type, token=token
    )


def render_context(
    *,
    workload_id: uuid.UUID,
    name: str,
    project: ProjectInfo,
    workload_type: str,
    spec: dict[str, Any],
    settings: Settings,
    stopped: bool = False,
) -> rendering.RenderContext:
    return rendering.RenderContext(
        workload_id=str(workload_id),
        name=name,
        project=project.name,
        namespace=project.namespace,
        workload_type=workload_type,  # type: ignore[arg-type]
        spec=spec,
        scheduler=(project.scheduler or settings.scheduler),  # type: ignore[arg-type]
        queue=project.queue,
        stopped=stopped,
        node_pool_label_key=settings.node_pool_label_key,
        node_type_label_key=settings.node_type_label_key,
        pytorch_native=settings.pytorch_native,
    )


def _spec_errors(workload_type: WorkloadType, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec model's own checks on the resolved spec (cross-field rules, required fields)."""
    errors = [
        {"field": f"spec.{field}", "rule": "required", "message": message}
        for field, message in missing_required(workload_type, spec)
    ]
    try:
        SPEC_MODELS[workload_type].model_validate(spec)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"] if not str(part).startswith("function"))
            errors.append(
                {
                    "field": f"spec.{loc}" if loc else "spec",
                    "message": str(err["msg"]).removeprefix("Value error, "),
                }
            )
    return errors


def prepare(
    session: Session,
    *,
    workload_type: WorkloadType,
    body: schemas.Submission,
    settings: Settings,
) -> Prepared:
    """Resolve the policy, apply it, validate and render; raise 422 listing every problem."""
    project, resolved = _project_and_policy(
        session, project_name=body.project, workload_type=workload_type
    )
    submitted = body.spec.model_dump(mode="json", exclude_unset=True)
    result = engine.apply_policy(workload_type, submitted, resolved.policy)
    violations = [{**v.to_dict(), "field": f"spec.{v.field}"} for v in result.violations]
    errors = violations + _spec_errors(workload_type, result.spec)
    workload_id = uuid.uuid4()
    manifests: list[dict[str, Any]] = []
    if not errors:
        ctx = render_context(
            workload_id=workload_id,
            name=body.name,
            project=project,
            workload_type=workload_type,
            spec=result.spec,
            settings=settings,
        )
        problems = rendering.check(ctx)
        if problems:
            errors = [
                {"field": f if f in ("name", "project") else f"spec.{f}", "message": m}
                for f, m in problems
            ]
        else:
            manifests = rendering.render(ctx)
    if errors:
        error_class = PolicyViolation if violations else ValidationFailed
        raise error_class(
            f"The {workload_type} workload cannot be accepted: "
            + "; ".join(f"{e['field']} {e['message']}" for e in errors[:3])
            + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""),
            errors=errors,
        )
    return Prepared(
        id=workload_id,
        project=project,
        spec=result.spec,
        submitted_spec=submitted,
        applied_defaults=result.applied_defaults,
        policy=schemas.PolicyRef(source=resolved.policy.source, version=resolved.version),
        manifests=manifests,
    )


def object_refs(manifests: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {"apiVersion": m["apiVersion"], "kind": m["kind"], "name": m["metadata"]["name"]}
        for m in manifests
    ]


_INSERT_WORKLOAD = """
    INSERT INTO workloads (id, name, project_id, project, namespace, type, spec, submitted_spec,
        applied_defaults, policy_source, policy_version, manifests, objects, desired_phase, phase,
        phase_message, phase_updated_at, conditions, pods, generation, applied_generation,
        created_at, updated_at)
    VALUES (:id, :name, :project_id, :project, :namespace, :type, CAST(:spec AS JSONB),
        CAST(:submitted_spec AS JSONB), CAST(:applied_defaults AS JSONB), :policy_source,
        :policy_version, CAST(:manifests AS JSONB), CAST(:objects AS JSONB), 'Running', 'Creating',
        :message, now(), '[]', '{}', 1, 0, now(), now())
    ON CONFLICT (project_id, name) WHERE deleted_at IS NULL DO NOTHING
    RETURNING id, created_at
"""
_INSERT_EVENT = """
    INSERT INTO workload_events (workload_id, created_at, type, phase, reason, message)
    SELECT id, created_at, 'Submitted', 'Creating', 'Submitted', :message FROM w
"""
_INSERT_AUDIT = """
    INSERT INTO audit_log (time, actor, actor_id, role, method, route, target, status, dry_run,
        request_id)
    SELECT created_at, :actor, :actor_id, :role, :method, :route, :target, :status, false,
        :request_id
    FROM w
"""
# The submission in one statement, prepared once: the workload, its first event and (when the
# request is audited) its audit entry. SQLAlchemy only binds parameters on the hot path.
_STORE = text(f"WITH w AS ({_INSERT_WORKLOAD}), e AS ({_INSERT_EVENT}) SELECT created_at FROM w")
_STORE_AUDITED = text(
    f"WITH w AS ({_INSERT_WORKLOAD}), e AS ({_INSERT_EVENT}), a AS ({_INSERT_AUDIT}) "
    "SELECT created_at FROM w"
)
AUDIT_COLUMNS = ("actor", "actor_id", "role", "method", "route", "target", "status", "request_id")


def store(
    session: Session,
    *,
    workload_type: WorkloadType,
    name: str,
    prepared: Prepared,
    audit: Mapping[str, Any] | None = None,
) -> schemas.Workload:
    """Insert the workload and its first event in one statement; 409 if the name is taken.

    ``audit`` (the audit entry's columns) records the request in that same statement, so the
    hot path stays at two statements.
    """
    objects = object_refs(prepared.manifests)
    message = "Accepted; waiting to be applied to the cluster."
    params: dict[str, Any] = {
        "id": prepared.id,
        "name": name,
        "project_id": prepared.project.id,
        "project": prepared.project.name,
        "namespace": prepared.project.namespace,
        "type": workload_type,
        "spec": json_dumps(prepared.spec),
        "submitted_spec": json_dumps(prepared.submitted_spec),
        "applied_defaults": json_dumps(prepared.applied_defaults),
        "policy_source": prepared.policy.source,
        "policy_version": prepared.policy.version,
        "manifests": json_dumps(prepared.manifests),
        "objects": json_dumps(objects),
        "message": message,
    }
    if audit is not None:
        params.update({column: audit.get(column) for column in AUDIT_COLUMNS})
    created_at = session.execute(
        _STORE_AUDITED if audit is not None else _STORE, params
    ).scalar_one_or_none()
    if created_at is None:
        raise Conflict(
            f"A workload named {name!r} already exists in project {prepared.project.name!r}.",
            errors=[{"field": "name", "message": "already in use in this project"}],
        )
    return schemas.Workload(
        id=prepared.id,
        name=name,
        project=prepared.project.name,
        type=workload_type,
        created_at=created_at,
        updated_at=created_at,
        spec=prepared.spec,
        submitted_spec=prepared.submitted_spec,
        applied_defaults=prepared.applied_defaults,
        policy=prepared.policy,
        desired_phase="Running",
        phase="Creating",
        phase_message=message,
        phase_updated_at=created_at,
        conditions=[],
        pods=schemas.PodCounts(),
        cluster=schemas.ClusterRef(
            namespace=prepared.project.namespace,
            objects=[schemas.ObjectRef.model_validate(o) for o in objects],
        ),
    )


# --- idempotency --------------------------------------------------------------------------------


def request_hash(route: str, body: bytes) -> str:
    return hashlib.sha256(route.encode() + b"\0" + body).hexdigest()


def replay(session: Session, *, principal: str, key: str, digest: str) -> IdempotencyKey | None:
    """The stored answer for this key, if any; 422 if the key was used for another request."""
    row = session.get(IdempotencyKey, (principal, key))
    if row is None or row.created_at < datetime.now(UTC) - IDEMPOTENCY_TTL:
        return None
    if row.request_hash != digest:
        raise ValidationFailed(
            "This Idempotency-Key was already used with a different request.",
            errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
        )
    return row


def remember(
    session: Session,
    *,
    principal: str,
    key: str,
    digest: str,
    status: int,
    response: dict[str, Any],
    location: str | None,
) -> None:
    base = pg_insert(IdempotencyKey).values(
        principal=principal,
        key=key,
        request_hash=digest,
        status=status,
        response=response,
        location=location,
    )
    # An expired row for the same key is replaced; a live one means a concurrent duplicate.
    stmt = base.on_conflict_do_update(
        index_elements=["principal", "key"],
        set_={
            "request_hash": base.excluded.request_hash,
            "status": base.excluded.status,
            "response": base.excluded.response,
            "location": base.excluded.location,
            "created_at": func.now(),
        },
        where=IdempotencyKey.created_at < func.now() - IDEMPOTENCY_TTL,
    ).returning(IdempotencyKey.key)
    if session.execute(stmt).scalar_one_or_none() is None:
        raise Conflict("A request with this Idempotency-Key is in progress or just completed.")


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


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
