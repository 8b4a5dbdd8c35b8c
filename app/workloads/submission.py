"""The submission path: where a workload goes, the policy applied, rendering, one statement.

A warm API process stores a submission with one SQL statement, in autocommit, on the driver's
connection. The project and the policy versions a submission is checked against (its
:class:`Target`) are cached per process; the statement that stores the workload reads them
again and stores nothing when they changed (a policy update, a project change, a write by
another process), and the submission is then checked again against fresh ones. So the cache
can never let a workload in under a policy it was not checked against, and API processes need
no invalidation messages between them.

:func:`prepare` is pure: policy, cross-field checks and rendering, no I/O.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any
from weakref import WeakKeyDictionary

import orjson
import psycopg
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from app import rendering
from app.batching import Batcher
from app.config import Settings
from app.db import Database, Driver, json_dumps
from app.errors import Conflict, NotFound, PolicyViolation, ValidationFailed
from app.fieldpath import error_message, field_path
from app.lru import Lru
from app.policies import engine
from app.policies import service as policies
from app.policies.fields import map_paths
from app.workloads import schemas
from app.workloads.spec import SPEC_MODELS, WorkloadType, missing_required

ACCEPTED = "Accepted; waiting to be applied to the cluster."
# A policy that keeps changing under a submission (three times in a row) gets a 409, not a loop.
ATTEMPTS = 3


@dataclass(frozen=True)
class ProjectInfo:
    """What a submission needs of its project."""

    id: uuid.UUID
    name: str
    namespace: str
    queue: str | None
    scheduler: str | None


@dataclass(frozen=True)
class Target:
    """Where a submission goes: the project, and the effective policy with its versions."""

    project: ProjectInfo
    token: policies.VersionToken
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
        return object_refs(self.manifests)


# --- the target: read once, then cached and re-checked by the statement that stores -----------

# Everything a submission depends on, in one row: the project and the versions of the global and
# the project policy of the type. Read on a cache miss; re-read inside the storing statement.
_TARGET = """
    SELECT p.id, p.name, p.namespace, p.queue, p.scheduler,
           g.id AS g_id, g.version AS g_version,
           pp.id AS p_id, pp.version AS p_version, pp.inherit_global AS p_inherit
    FROM projects p
    LEFT JOIN policies g ON g.project_id IS NULL AND g.workload_type = %(type)s
    LEFT JOIN policies pp ON pp.project_id = p.id AND pp.workload_type = %(type)s
    WHERE p.name = %(project)s
"""

_targets: Lru[tuple[str, str], Target] = Lru(maxsize=4096)


async def target(
    db: Database, *, project_name: str, workload_type: WorkloadType, refresh: bool = False
) -> Target:
    """The cached target, or a fresh one (one statement; the policy documents only when the
    effective policy is not cached either). 404 when the project does not exist."""
    key = (project_name, workload_type)
    if not refresh:
        cached = _targets.get(key)
        if cached is not None:
            return cached
    async with db.driver() as driver:
        row = await driver.fetchone(_TARGET, {"project": project_name, "type": workload_type})
    if row is None:
        _targets.pop(key)
        raise NotFound(f"Project {project_name!r} does not exist.")
    pid, name, namespace, queue, scheduler, g_id, g_version, p_id, p_version, p_inherit = row
    token: policies.VersionToken = (
        (g_id, g_version) if g_id else None,
        (p_id, p_version, p_inherit) if p_id else None,
    )
    resolved = policies.cached(project_id=pid, workload_type=workload_type, token=token)
    if resolved is None:  # a new policy version: read its documents (rare, so a thread)
        resolved = await run_in_threadpool(_resolve, db, pid, workload_type, token)
    fresh = Target(ProjectInfo(pid, name, namespace, queue, scheduler), token, resolved)
    _targets.put(key, fresh)
    return fresh


def _resolve(
    db: Database, project_id: uuid.UUID, workload_type: WorkloadType, token: policies.VersionToken
) -> policies.Resolved:
    with db.session() as session:
        return policies.resolve(
            session, project_id=project_id, workload_type=workload_type, token=token
        )


# --- checking and rendering (pure) --------------------------------------------------------------


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
    refresh: bool = False,
) -> Prepared:
    """:func:`prepare` against the cached target; a refusal is only ever given against a fresh
    one (the policy may have changed since the cache saw it, and now supply what is missing)."""
    where = await target(
        db, project_name=body.project, workload_type=workload_type, refresh=refresh
    )
    try:
        return prepare(where, workload_type=workload_type, body=body, settings=settings)
    except (PolicyViolation, ValidationFailed):
        if refresh:
            raise
        fresh = await target(
            db, project_name=body.project, workload_type=workload_type, refresh=True
        )
        if (fresh.project, fresh.token) == (where.project, where.token):
            raise
    return prepare(fresh, workload_type=workload_type, body=body, settings=settings)


# --- storing: one statement for a batch of submissions ------------------------------------

# The target as the submission saw it, the workload, its first event and its audit entry, for
# every submission of the batch at once. The batch is one JSON parameter (orjson writes it far
# faster than the driver dumps arrays), so the statement is the same, and prepared, for any
# batch size. A submission whose target changed meanwhile is not stored (``fresh`` is
# false), nor one whose name is taken (no ``created_at``): each row of the answer says which.
_STORE = """
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(%(batch)s::jsonb) AS t(id uuid, name text,
            project text, type text, project_id uuid, namespace text, queue text,
            scheduler text, g_id uuid, g_version int, p_id uuid, p_version int, p_inherit bool,
            spec jsonb, submitted_spec jsonb, applied_defaults jsonb, policy_source text,
            policy_version int, manifests jsonb, objects jsonb, actor text, actor_id text,
            role text, method text, route text, status int, request_id text)
    ),
    fresh AS (
        SELECT i.* FROM input i
        JOIN projects p ON p.name = i.project
        LEFT JOIN policies g ON g.project_id IS NULL AND g.workload_type = i.type
        LEFT JOIN policies pp ON pp.project_id = p.id AND pp.workload_type = i.type
        WHERE (p.id, p.namespace, p.queue, p.scheduler, g.id, g.version, pp.id, pp.version,
                pp.inherit_global)
            IS NOT DISTINCT FROM (i.project_id, i.namespace, i.queue, i.scheduler, i.g_id,
                i.g_version, i.p_id, i.p_version, i.p_inherit)
    ),
    w AS (
        INSERT INTO workloads (id, name, project_id, project, namespace, type, spec,
            submitted_spec, applied_defaults, policy_source, policy_version, manifests, objects,
            desired_phase, phase, phase_message, phase_updated_at, conditions, pods, generation,
            applied_generation, created_at, updated_at)
        SELECT id, name, project_id, project, namespace, type, spec, submitted_spec,
            applied_defaults, policy_source, policy_version, manifests, objects, 'Running',
            'Creating', %(message)s, now(), '[]', '{}', 1, 0, now(), now()
        FROM fresh
        ON CONFLICT (project_id, name) WHERE deleted_at IS NULL DO NOTHING
        RETURNING id, created_at
    ),
    e AS (
        INSERT INTO workload_events (workload_id, created_at, type, phase, reason, message)
        SELECT id, created_at, 'Submitted', 'Creating', 'Submitted', %(message)s FROM w
    ),
    a AS (
        INSERT INTO audit_log (time, actor, actor_id, role, method, route, target, status,
            dry_run, request_id)
        SELECT w.created_at, i.actor, i.actor_id, i.role, i.method, i.route, i.id::text,
            i.status, false, i.request_id
        FROM w JOIN input i USING (id)
    )
    SELECT i.id, f.id IS NOT NULL, w.created_at
    FROM input i LEFT JOIN fresh f USING (id) LEFT JOIN w USING (id)
"""
AUDIT_COLUMNS = ("actor", "actor_id", "role", "method", "route", "status", "request_id")


class Stale(Exception):
    """The project or its policies changed since the target was read; nothing was stored."""


@dataclass(frozen=True)
class Storing:
    """One submission to store: what passed the checks, and its audit entry's columns."""

    prepared: Prepared
    audit: Mapping[str, Any]


def object_refs(manifests: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {"apiVersion": m["apiVersion"], "kind": m["kind"], "name": m["metadata"]["name"]}
        for m in manifests
    ]


def _columns(item: Storing) -> dict[str, Any]:
    p = item.prepared
    project, (g, pp) = p.target.project, p.target.token
    return {
        "id": p.id,
        "name": p.name,
        "project": project.name,
        "type": p.workload_type,
        "project_id": project.id,
        "namespace": project.namespace,
        "queue": project.queue,
        "scheduler": project.scheduler,
        "g_id": g[0] if g else None,
        "g_version": g[1] if g else None,
        "p_id": pp[0] if pp else None,
        "p_version": pp[1] if pp else None,
        "p_inherit": pp[2] if pp else None,
        "spec": p.spec,
        "submitted_spec": p.submitted_spec,
        "applied_defaults": p.applied_defaults,
        "policy_source": p.policy.source,
        "policy_version": p.policy.version,
        "manifests": p.manifests,
        "objects": p.objects,
        **{column: item.audit.get(column) for column in AUDIT_COLUMNS},
    }


async def store(driver: Driver, batch: Sequence[Storing]) -> list[Stored]:
    """Store a batch with one statement; per submission, what :data:`Stored` says."""
    params = {"batch": json_dumps([_columns(item) for item in batch]), "message": ACCEPTED}
    answers = {
        ident: (fresh, created) for ident, fresh, created in await driver.fetchall(_STORE, params)
    }
    return [_outcome(item, *answers[item.prepared.id]) for item in batch]


def _outcome(item: Storing, fresh: bool, created_at: datetime | None) -> Stored:
    p = item.prepared
    project = p.target.project
    if not fresh:
        return Stale()
    if created_at is None:
        return Conflict(
            f"A workload named {p.name!r} already exists in project {project.name!r}.",
            errors=[{"field": "name", "message": "already in use in this project"}],
        )
    return Accepted(p.id, _answer(p, created_at))


@dataclass(frozen=True)
class Accepted:
    """A stored submission: its id and its answer, the :class:`schemas.Workload` as JSON."""

    id: uuid.UUID
    json: bytes

    @property
    def location(self) -> str:
        return f"/api/v1/workloads/{self.id}"


def _answer(p: Prepared, created_at: datetime) -> bytes:
    """The :class:`schemas.Workload` of a new submission, written by orjson: the same bytes as
    pydantic's ``model_dump_json`` (tests/api/test_submission_path.py holds them equal), in a
    fifth of the time."""
    project = p.target.project
    return orjson.dumps(
        {
            "id": p.id,
            "name": p.name,
            "project": project.name,
            "type": p.workload_type,
            "createdAt": created_at,
            "updatedAt": created_at,
            "spec": p.spec,
            "submittedSpec": p.submitted_spec,
            "appliedDefaults": p.applied_defaults,
            "policy": {"source": p.policy.source, "version": p.policy.version},
            "desiredPhase": "Running",
            "phase": "Creating",
            "phaseMessage": ACCEPTED,
            "phaseUpdatedAt": created_at,
            "conditions": [],
            "pods": {"requested": 0, "running": 0, "pending": 0, "succeeded": 0, "failed": 0},
            "cluster": {"namespace": project.namespace, "objects": p.objects},
            "deletedAt": None,
        },
        option=orjson.OPT_UTC_Z,
    )


# The workload as stored, or why not: a 409 (the name is taken), :class:`Stale`, or the error
# the database gave this submission alone.
Stored = Accepted | Exception


class Storer:
    """Stores the submissions of one process, concurrent ones together (app.batching): one
    statement, one commit and one round trip for all the submissions that arrived while the
    previous batch was being written."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.batcher: Batcher[Storing, Stored] = Batcher(self._store)

    async def _store(self, batch: Sequence[Storing]) -> list[Stored]:
        try:
            async with self.db.driver() as driver:
                return await store(driver, batch)
        except (psycopg.DataError, psycopg.IntegrityError):
            if len(batch) == 1:
                raise
        # One submission's value the database refuses must not fail the others: each alone.
        return [await self._alone(item) for item in batch]

    async def _alone(self, item: Storing) -> Stored:
        try:
            return (await self._store([item]))[0]
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            return exc


_storers: WeakKeyDictionary[Database, Storer] = WeakKeyDictionary()


def storer(db: Database) -> Storer:
    found = _storers.get(db)
    if found is None:
        found = _storers[db] = Storer(db)
    return found


# --- idempotency --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The first answer to an Idempotency-Key, replayed for 24 hours."""

    status: int
    response: dict[str, Any]
    location: str | None


def request_hash(route: str, body: schemas.Submission) -> str:
    canonical = json.dumps(
        body.model_dump(mode="json", exclude_unset=True), separators=(",", ":"), sort_keys=True
    )
    return hashlib.sha256(route.encode() + b"\0" + canonical.encode()).hexdigest()


async def replay(db: Database, *, principal: str, key: str, digest: str) -> Answer | None:
    """The stored answer for this key, if any; 422 if the key was used for another request."""
    async with db.driver() as driver:
        row = await driver.fetchone(
            "SELECT request_hash, status, response, location FROM idempotency_keys"
            " WHERE principal = %s AND key = %s AND created_at > now() - interval '24 hours'",
            (principal, key),
        )
    if row is None:
        return None
    if row[0] != digest:
        raise ValidationFailed(
            "This Idempotency-Key was already used with a different request.",
            errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
        )
    return Answer(status=row[1], response=row[2], location=row[3])


async def remember(
    driver: Driver, *, principal: str, key: str, digest: str, answer: Answer
) -> None:
    # An expired row for the same key is replaced; a live one means a concurrent duplicate.
    stored = await driver.fetchone(
        """
        INSERT INTO idempotency_keys (principal, key, request_hash, status, response, location)
        VALUES (%s, %s, %s, %s, %s::jsonb, %s)
        ON CONFLICT (principal, key) DO UPDATE SET request_hash = excluded.request_hash,
            status = excluded.status, response = excluded.response,
            location = excluded.location, created_at = now()
        WHERE idempotency_keys.created_at <= now() - interval '24 hours'
        RETURNING key
        """,
        (principal, key, digest, answer.status, json_dumps(answer.response), answer.location),
    )
    if stored is None:
        raise Conflict("A request with this Idempotency-Key is in progress or just completed.")


# --- the whole path -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IdempotencyKey:
    principal: str
    key: str
    digest: str


async def submit(
    db: Database,
    *,
    workload_type: WorkloadType,
    body: schemas.Submission,
    settings: Settings,
    audit: Mapping[str, Any],
    idempotency: IdempotencyKey | None = None,
) -> Accepted:
    """Check, render and store a submission (and remember its answer under ``idempotency``)."""
    for attempt in range(ATTEMPTS):
        prepared = await checked(
            db, workload_type=workload_type, body=body, settings=settings, refresh=attempt > 0
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


async def _store_remembering(db: Database, item: Storing, idempotency: IdempotencyKey) -> Stored:
    """The submission and its Idempotency-Key's answer, in one transaction."""
    async with db.driver() as driver, driver.transaction():
        (outcome,) = await store(driver, [item])
        if isinstance(outcome, Accepted):
            answer = Answer(201, orjson.loads(outcome.json), outcome.location)
            await remember(
                driver,
                principal=idempotency.principal,
                key=idempotency.key,
                digest=idempotency.digest,
                answer=answer,
            )
        return outcome
