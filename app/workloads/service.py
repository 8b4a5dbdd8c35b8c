"""The submission path and the workload resource: policy, validation, rendering, storage, lifecycle.

A submission costs two statements on the hot path: one reads the project with the versions of
the policies that reach it (the effective policy itself comes from the cache), one inserts the
workload and its first event together.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, func, insert, literal, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, aliased, undefer
from sqlalchemy.sql.selectable import CTE

from app import rendering
from app.auth.access import Access, visible
from app.auth.principal import Principal
from app.config import Settings
from app.errors import Conflict, NotFound, PolicyViolation, ValidationFailed
from app.models import IdempotencyKey, Policy, Project, Workload, WorkloadEvent
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
    project: Project
    spec: dict[str, Any]
    submitted_spec: dict[str, Any]
    applied_defaults: list[str]
    policy: schemas.PolicyRef
    manifests: list[dict[str, Any]]


# --- reading a project with its policy versions in one round trip ------------------------------


def _project_and_policy(
    session: Session, *, project_name: str, workload_type: WorkloadType
) -> tuple[Project, policies.Resolved]:
    g = aliased(Policy)
    p = aliased(Policy)
    row = session.execute(
        select(Project, g.id, g.version, p.id, p.version, p.inherit_global)
        .select_from(Project)
        .outerjoin(g, and_(g.project_id.is_(None), g.workload_type == workload_type))
        .outerjoin(p, and_(p.project_id == Project.id, p.workload_type == workload_type))
        .where(Project.name == project_name)
    ).one_or_none()
    if row is None:
        raise NotFound(f"Project {project_name!r} does not exist.")
    project, g_id, g_version, p_id, p_version, p_inherit = row
    token: policies.VersionToken = (
        (g_id, g_version) if g_id else None,
        (p_id, p_version, p_inherit) if p_id else None,
    )
    return project, policies.resolve(
        session, project_id=project.id, workload_type=workload_type, token=token
    )


def render_context(
    *,
    workload_id: uuid.UUID,
    name: str,
    project: Project,
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


def store(
    session: Session,
    *,
    workload_type: WorkloadType,
    name: str,
    prepared: Prepared,
    audit_entry: Callable[[CTE], CTE] | None = None,
) -> schemas.Workload:
    """Insert the workload and its first event in one statement; 409 if the name is taken.

    ``audit_entry`` builds the request's audit insert from the workload CTE, so that the
    submission records itself in that same statement and the hot path stays at two.
    """
    objects = object_refs(prepared.manifests)
    message = "Accepted; waiting to be applied to the cluster."
    values = {
        "id": prepared.id,
        "name": name,
        "project_id": prepared.project.id,
        "project": prepared.project.name,
        "namespace": prepared.project.namespace,
        "type": workload_type,
        "spec": prepared.spec,
        "submitted_spec": prepared.submitted_spec,
        "applied_defaults": prepared.applied_defaults,
        "policy_source": prepared.policy.source,
        "policy_version": prepared.policy.version,
        "manifests": prepared.manifests,
        "objects": objects,
        "desired_phase": "Running",
        "phase": "Creating",
        "phase_message": message,
        "conditions": [],
        "pods": {},
        "generation": 1,
        "applied_generation": 0,
    }
    workload = (
        pg_insert(Workload)
        .values(values)
        .on_conflict_do_nothing(
            index_elements=["project_id", "name"], index_where=Workload.deleted_at.is_(None)
        )
        .returning(Workload.id, Workload.created_at)
        .cte("w")
    )
    event = (
        insert(WorkloadEvent)
        .from_select(
            ["workload_id", "type", "phase", "reason", "message"],
            select(
                workload.c.id,
                literal("Submitted"),
                literal("Creating"),
                literal("Submitted"),
                literal(message),
            ),
        )
        .cte("e")
    )
    statement = select(workload.c.created_at).add_cte(event)
    if audit_entry is not None:
        statement = statement.add_cte(audit_entry(workload))
    created_at = session.execute(statement).scalar_one_or_none()
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
