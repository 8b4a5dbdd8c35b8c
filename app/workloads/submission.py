"""The submission path: where a workload goes, the policy applied, rendering, one statement.

A warm API process stores a submission with one SQL statement, in autocommit. The project and
the policy versions a submission is checked against (its :class:`Target`) are cached per
process; the statement that stores the workload reads them again and stores nothing when they
changed (a policy update, a project change, a write by another process), and the submission is
then checked again against fresh ones. So the cache can never let a workload in under a policy
it was not checked against, and API processes need no invalidation messages between them.

:func:`prepare` is pure: policy, cross-field checks and rendering, no I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any
from weakref import WeakKeyDictionary

from cachetools import LRUCache
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from app import rendering
from app.auth.access import project_not_found
from app.batching import Batcher
from app.config import Settings
from app.db import Conn, Database
from app.domain.fields import map_paths
from app.domain.spec import SPEC_MODELS, WorkloadType, missing_required
from app.errors import Conflict, PolicyViolation, ValidationFailed
from app.fieldpath import error_message, field_path
from app.policies import engine
from app.policies import repository as policy_store
from app.policies import service as policies
from app.projects.repository import ProjectRow
from app.sql import Scope
from app.workloads import repository, schemas
from app.workloads.repository import Event, WorkloadRow
from app.workloads.service import to_json

ACCEPTED = "Accepted; waiting to be applied to the cluster."
# A policy that keeps changing under a submission (three times in a row) gets a 409, not a loop.
ATTEMPTS = 3


@dataclass(frozen=True)
class Target:
    """Where a submission goes: the project, and the effective policy with its versions."""

    project: ProjectRow
    token: policy_store.VersionToken
    resolved: policies.Resolved


@dataclass(frozen=True)
class Prepared:
    """A submission that passed every check, ready to store (or to show, for a dry run)."""

    id: uuid.UUID
    target: Target
    workload_type: WorkloadType
    name: str
    spec: dict[str, Any]
    submitted_spec: dict[str, Any]
    applied_defaults: list[str]
    policy: schemas.PolicyRef
    manifests: list[dict[str, Any]]

    @cached_property
    def objects(self) -> list[dict[str, str]]:
        """The cluster objects the manifests make (stored, and in the answer)."""
        return rendering.object_refs(self.manifests)


# --- the target: read once, then cached and re-checked by the statement that stores -----------

_targets: LRUCache[tuple[str, str], Target] = LRUCache(maxsize=4096)


async def target(
    db: Database,
    *,
    project_name: str,
    workload_type: WorkloadType,
    scope: Scope,
    refresh: bool = False,
) -> Target:
    """The cached target, or a fresh one (one statement; the policy documents only when the
    effective policy is not cached either). 404 when the project does not exist, or is not
    in ``scope``: the name may belong to another project than the caller's by now."""
    key = (project_name, workload_type)
    cached = None if refresh else _targets.get(key)
    if cached is not None and (scope is None or cached.project.id in scope):
        return cached
    # Not cached, or cached for another project of that name (deleted, then made again).
    async with db.connection() as conn:
        read = await policy_store.target(conn, project=project_name, workload_type=workload_type)
        if read is None:
            _targets.pop(key, None)
            raise project_not_found(project_name)
        project, token = read
        resolved = await policies.resolve(
            conn, project_id=project.id, workload_type=workload_type, token=token
        )
    fresh = _targets[key] = Target(project, token, resolved)
    if scope is not None and project.id not in scope:
        raise project_not_found(project_name)
    return fresh


# --- checking and rendering (pure) --------------------------------------------------------------


def render_context(
    *,
    workload_id: uuid.UUID,
    name: str,
    project: ProjectRow,
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
        maps = map_paths(SPEC_MODELS[workload_type])
        errors.extend(
            {
                "field": field_path(err["loc"], prefix="spec", maps=maps),
                "message": error_message(err),
            }
            for err in exc.errors()
        )
    return errors


def prepare(
    target: Target,
    *,
    workload_type: WorkloadType,
    body: schemas.Submission,
    settings: Settings,
) -> Prepared:
    """Apply the policy, validate and render; raise 422 listing every problem."""
    resolved = target.resolved
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
            project=target.project,
            workload_type=workload_type,
            spec=result.spec,
            settings=settings,
        )
        try:
            manifests = rendering.render(ctx)  # it checks first
        except rendering.RenderError as exc:
            errors = [
                {"field": f if f in ("name", "project") else f"spec.{f}", "message": m}
                for f, m in exc.problems
            ]
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
        target=target,
        workload_type=workload_type,
        name=body.name,
        spec=result.spec,
        submitted_spec=submitted,
        applied_defaults=result.applied_defaults,
        policy=schemas.PolicyRef(source=resolved.policy.source, version=resolved.version),
        manifests=manifests,
    )


async def checked(
    db: Database,
    *,
    workload_type: WorkloadType,
    body: schemas.Submission,
    settings: Settings,
    scope: Scope,
    refresh: bool = False,
) -> Prepared:
    """:func:`prepare` against the cached target; a refusal is only ever given against a fresh
    one (the policy may have changed since the cache saw it, and now supply what is missing)."""
    where = await target(
        db, project_name=body.project, workload_type=workload_type, scope=scope, refresh=refresh
    )
    try:
        return prepare(where, workload_type=workload_type, body=body, settings=settings)
    except (PolicyViolation, ValidationFailed):
        if refresh:
            raise
        fresh = await target(
            db, project_name=body.project, workload_type=workload_type, scope=scope, refresh=True
        )
        if (fresh.project, fresh.token) == (where.project, where.token):
            raise
    return prepare(fresh, workload_type=workload_type, body=body, settings=settings)


# --- storing: one statement for a batch of submissions ------------------------------------


class Stale(Exception):
    """The project or its policies changed since the target was read; nothing was stored."""


@dataclass(frozen=True)
class Storing:
    """One submission to store: what passed the checks, and its audit entry's values."""

    prepared: Prepared
    audit: Mapping[str, Any]

    def submitted(self) -> repository.Submitted:
        p = self.prepared
        project = p.target.project
        return repository.Submitted(
            key=policy_store.target_key(project, p.target.token),
            row={
                "id": p.id,
                "name": p.name,
                "project_id": project.id,
                "project": project.name,
                "namespace": project.namespace,
                "type": p.workload_type,
                "spec": p.spec,
                "submitted_spec": p.submitted_spec,
                "applied_defaults": p.applied_defaults,
                "policy_source": p.policy.source,
                "policy_version": p.policy.version,
                "manifests": p.manifests,
                "objects": p.objects,
                "phase_message": ACCEPTED,
            },
            event=Event(p.id, "Submitted", "Creating", "Submitted", ACCEPTED),
            audit={**self.audit, "target": str(p.id)},
        )


@dataclass(frozen=True)
class Accepted:
    """A stored submission: the :class:`schemas.Workload` it reads as, and as JSON."""

    workload: WorkloadRow
    json: bytes

    @property
    def location(self) -> str:
        return f"/api/v1/workloads/{self.workload.id}"


def _stored(p: Prepared, created_at: datetime) -> Accepted:
    """The new workload as a read would show it, without reading it back."""
    project = p.target.project
    row = WorkloadRow(
        id=p.id,
        name=p.name,
        project=project.name,
        project_id=project.id,
        type=p.workload_type,
        namespace=project.namespace,
        spec=p.spec,
        submitted_spec=p.submitted_spec,
        applied_defaults=p.applied_defaults,
        policy_source=p.policy.source,
        policy_version=p.policy.version,
        objects=p.objects,
        desired_phase="Running",
        phase="Creating",
        phase_message=ACCEPTED,
        phase_updated_at=created_at,
        conditions=[],
        pods={},
        urls=[],
        created_at=created_at,
        updated_at=created_at,
        deleted_at=None,
    )
    return Accepted(row, to_json(row))


# The workload as stored, or why not: a 409 (the name is taken), :class:`Stale`, or the error
# this submission alone met.
Stored = Accepted | Exception


async def store(conn: Conn, batch: Sequence[Storing]) -> list[Stored]:
    """Store a batch with one statement; per submission, what :data:`Stored` says."""
    answers = await repository.store_submissions(conn, [item.submitted() for item in batch])
    out: list[Stored] = []
    for item in batch:
        p = item.prepared
        fresh, created_at = answers[p.id]
        if not fresh:
            out.append(Stale())
        elif created_at is None:
            out.append(
                Conflict(
                    f"A workload named {p.name!r} already exists in project "
                    f"{p.target.project.name!r}.",
                    errors=[{"field": "name", "message": "already in use in this project"}],
                )
            )
        else:
            out.append(_stored(p, created_at))
    return out


class Storer:
    """Stores the submissions of one process, concurrent ones together (app.batching): one
    statement, one commit and one round trip for all the submissions that arrived while the
    previous batch was being written."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.batcher: Batcher[Storing, Stored] = Batcher(self._store)

    async def _store(self, batch: Sequence[Storing]) -> list[Stored]:
        if len(batch) == 1:
            return [await self._alone(batch[0])]
        try:
            async with self.db.connection() as conn:
                return await store(conn, batch)
        except PoolTimeout:
            raise  # no statement was sent: the database is away or busy, for every item alike
        except Exception:
            # Submissions stored together must not fail together: one tenant's values cannot
            # cost another its submission. Whatever failed the statement (a value PostgreSQL
            # refused, orjson could not write, a statement cancelled), each goes alone, and
            # fails alone, with what it alone meets.
            pass
        return list(await asyncio.gather(*(self._alone(item) for item in batch)))

    async def _alone(self, item: Storing) -> Stored:
        try:
            async with self.db.connection() as conn:
                (outcome,) = await store(conn, [item])
        except Exception as exc:
            return exc
        return outcome


_storers: WeakKeyDictionary[Database, Storer] = WeakKeyDictionary()


def storer(db: Database) -> Storer:
    found = _storers.get(db)
    if found is None:
        found = _storers[db] = Storer(db)
    return found


# --- idempotency --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdempotencyKey:
    principal: str
    key: str
    digest: str


@dataclass(frozen=True)
class Answer:
    """The first answer to an Idempotency-Key, replayed for 24 hours."""

    status: int
    response: Any
    location: str | None


def request_hash(route: str, body: schemas.Submission) -> str:
    canonical = json.dumps(
        body.model_dump(mode="json", exclude_unset=True), separators=(",", ":"), sort_keys=True
    )
    return hashlib.sha256(route.encode() + b"\0" + canonical.encode()).hexdigest()


async def replay(db: Database, idempotency: IdempotencyKey) -> Answer | None:
    """The stored answer for this key, if any; 422 if the key was used for another request."""
    async with db.connection() as conn:
        found = await repository.replay(conn, principal=idempotency.principal, key=idempotency.key)
    if found is None:
        return None
    digest, status, response, location = found
    if digest != idempotency.digest:
        raise ValidationFailed(
            "This Idempotency-Key was already used with a different request.",
            errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
        )
    return Answer(status, response, location)


async def _store_remembering(db: Database, item: Storing, idempotency: IdempotencyKey) -> Stored:
    """The submission and its Idempotency-Key's answer, in one transaction."""
    async with db.transaction() as conn:
        (outcome,) = await store(conn, [item])
        if isinstance(outcome, Accepted) and not await repository.remember(
            conn,
            principal=idempotency.principal,
            key=idempotency.key,
            digest=idempotency.digest,
            status=201,
            response=json.loads(outcome.json),
            location=outcome.location,
        ):
            raise Conflict("A request with this Idempotency-Key is in progress or just completed.")
        return outcome


# --- the whole path -----------------------------------------------------------------------------


async def submit(
    db: Database,
    *,
    workload_type: WorkloadType,
    body: schemas.Submission,
    settings: Settings,
    audit: Mapping[str, Any],
    scope: Scope,
    idempotency: IdempotencyKey | None = None,
) -> Accepted:
    """Check, render and store a submission (and remember its answer under ``idempotency``);
    ``scope`` is the caller's (``app.sql.scope``)."""
    for attempt in range(ATTEMPTS):
        prepared = await checked(
            db,
            workload_type=workload_type,
            body=body,
            settings=settings,
            scope=scope,
            refresh=attempt > 0,
        )
        item = Storing(prepared, audit)
        if idempotency is None:
            outcome = await storer(db).batcher(item)
        else:
            outcome = await _store_remembering(db, item, idempotency)
        if isinstance(outcome, Stale):
            continue
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    raise Conflict(
        f"The policies of project {body.project!r} changed while the workload was being "
        "submitted; submit it again."
    )
