"""Policy rules: writing with versions, the effective-policy cache and the dry-run impact."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from cachetools import LRUCache

from app.auth.principal import Principal
from app.db import Conn
from app.domain.spec import COLLECTION_TO_TYPE, WorkloadType
from app.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from app.policies import engine, repository, schemas
from app.policies.engine import EffectivePolicy
from app.policies.repository import PolicyRow, VersionToken
from app.projects.repository import ProjectRow
from app.schemas import PageParams, decode_time_cursor, encode_time_cursor
from app.sql import page, scope

# Effective policies by (project id, workload type), with the token of the versions they were
# built from: a cached one is used only while the token still matches what the database holds,
# which keeps API processes in step without any messaging.
_effective: LRUCache[tuple[uuid.UUID, str], tuple[VersionToken, EffectivePolicy]] = LRUCache(
    maxsize=4096
)


@dataclass(frozen=True)
class Resolved:
    """An effective policy and the versions it was built from."""

    policy: EffectivePolicy
    global_version: int | None
    project_version: int | None

    @property
    def version(self) -> int | None:
        """The version a workload records: the project's when it has a policy, else the global."""
        return self.project_version if self.project_version is not None else self.global_version


def workload_type_of(collection: str) -> WorkloadType:
    return COLLECTION_TO_TYPE[collection]


def etag(policy: PolicyRow) -> str:
    return f'"{policy.id}.{policy.version}"'


def to_read(policy: PolicyRow, project_name: str | None) -> schemas.Policy:
    return schemas.Policy(
        id=policy.id,
        scope="global" if policy.project_id is None else "project",
        project=project_name,
        workload_type=policy.workload_type,
        defaults=policy.defaults,
        rules=policy.rules,
        inherit_global=policy.inherit_global,
        version=policy.version,
        created_at=policy.created_at,
        updated_at=policy.updated_at,
        updated_by=policy.updated_by,
    )


def document(policy: PolicyRow | None) -> dict[str, Any] | None:
    """What the audit log keeps of a policy, before and after a change."""
    if policy is None:
        return None
    return {
        "defaults": policy.defaults,
        "rules": policy.rules,
        "inheritGlobal": policy.inherit_global,
        "version": policy.version,
    }


def _nowhere(project: ProjectRow | None, workload_type: str) -> NotFound:
    where = "globally" if project is None else f"in project {project.name!r}"
    return NotFound(f"No {workload_type} policy is set {where}.")


async def get(conn: Conn, *, project: ProjectRow | None, workload_type: str) -> PolicyRow:
    policy = await repository.find(
        conn, project_id=project.id if project else None, workload_type=workload_type
    )
    if policy is None:
        raise _nowhere(project, workload_type)
    return policy


def _check_document(
    workload_type: WorkloadType, body: schemas.PolicyWrite, *, project: ProjectRow | None
) -> None:
    problems = engine.validate_policy(workload_type, defaults=body.defaults, rules=body.rules)
    if project is None and body.inherit_global:
        problems.append(
            engine.PolicyProblem(
                "inheritGlobal", "only a project policy can inherit the global one"
            )
        )
    if problems:
        raise ValidationFailed(
            f"The {workload_type} policy is not valid; see `errors`.",
            errors=[p.to_dict() for p in problems],
        )


async def _check_merged(conn: Conn, workload_type: WorkloadType, body: schemas.PolicyWrite) -> None:
    """A project default may break a global rule once merged: refuse that too."""
    global_policy = await repository.find(conn, project_id=None, workload_type=workload_type)
    if global_policy is None:
        return
    merged = engine.resolve_effective(
        workload_type,
        global_policy={"defaults": global_policy.defaults, "rules": global_policy.rules},
        project_policy={"defaults": body.defaults, "rules": body.rules},
        inherit_global=True,
    )
    problems = engine.check_defaults(merged)
    if problems:
        raise ValidationFailed(
            "Merged with the global policy (inheritGlobal), the defaults break a rule.",
            errors=[p.to_dict() for p in problems],
        )


def _check_if_match(existing: PolicyRow | None, if_match: str | None) -> None:
    if if_match is None:
        return
    if if_match.strip() == "*":
        if existing is None:
            raise PreconditionFailed("If-Match: * but no policy exists yet.")
        return
    if existing is None or etag(existing) not in [t.strip() for t in if_match.split(",")]:
        raise PreconditionFailed(
            "The policy changed since you read it (If-Match does not match the current ETag); "
            "GET it again and retry."
        )


async def put(
    conn: Conn,
    *,
    project: ProjectRow | None,
    workload_type: WorkloadType,
    body: schemas.PolicyWrite,
    if_match: str | None,
    actor: str,
    dry_run: bool = False,
) -> tuple[PolicyRow | None, PolicyRow, bool]:
    """Create or replace a policy (in the caller's transaction): (before, after, created).
    With ``dry_run`` nothing is stored and ``after`` is what would be."""
    _check_document(workload_type, body, project=project)
    if project is not None and body.inherit_global:
        await _check_merged(conn, workload_type, body)
    project_id = project.id if project else None
    existing = await repository.find(
        conn, project_id=project_id, workload_type=workload_type, lock=True
    )
    _check_if_match(existing, if_match)
    if dry_run:
        now = datetime.now(UTC)
        preview = PolicyRow(
            id=existing.id if existing else uuid.uuid4(),
            project_id=project_id,
            workload_type=workload_type,
            defaults=body.defaults,
            rules=body.rules,
            inherit_global=body.inherit_global,
            version=existing.version + 1 if existing else 1,
            updated_by=actor,
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        return existing, preview, existing is None
    try:
        saved = await repository.save(
            conn,
            policy_id=existing.id if existing else uuid.uuid4(),
            project_id=project_id,
            workload_type=workload_type,
            defaults=body.defaults,
            rules=body.rules,
            inherit_global=body.inherit_global,
            updated_by=actor,
            expected_version=existing.version if existing else None,
        )
    except repository.ProjectGone:
        assert project is not None
        raise NotFound(f"Project {project.name!r} does not exist.") from None
    if saved is None:
        raise Conflict("The policy was created concurrently; GET it and retry.")
    return existing, saved, existing is None


async def delete(
    conn: Conn, *, project: ProjectRow | None, workload_type: str, if_match: str | None
) -> PolicyRow:
    """Delete the policy (in the caller's transaction); return what was deleted."""
    policy = await repository.find(
        conn, project_id=project.id if project else None, workload_type=workload_type, lock=True
    )
    if policy is None:
        raise _nowhere(project, workload_type)
    _check_if_match(policy, if_match)
    await repository.delete(conn, policy.id)
    return policy


async def list_page(
    conn: Conn,
    page_params: PageParams,
    *,
    visible_to: Principal,
    scope_filter: str | None,
    project: ProjectRow | None,
    workload_type: str | None,
) -> tuple[list[repository.ListedPolicy], str | None]:
    rows = await repository.list_page(
        conn,
        after=decode_time_cursor(page_params.cursor) if page_params.cursor else None,
        limit=page_params.limit + 1,
        scope=scope(visible_to),
        global_scope=None if scope_filter is None else scope_filter == "global",
        project_id=project.id if project else None,
        workload_type=workload_type,
    )
    return page(
        rows,
        page_params.limit,
        lambda r: encode_time_cursor(r.policy.created_at, r.policy.id),
    )


# --- the effective policy -------------------------------------------------------------------------


async def resolve(
    conn: Conn, *, project_id: uuid.UUID, workload_type: WorkloadType, token: VersionToken
) -> Resolved:
    """The effective policy of (project, type) for these versions: from the cache, or built
    from the documents (read only then)."""
    g, p = token
    key = (project_id, workload_type)
    entry = _effective.get(key)
    if entry is not None and entry[0] == token:
        effective = entry[1]
    else:
        docs = await repository.documents(conn, [t[0] for t in (g, p) if t is not None])
        try:
            effective = engine.resolve_effective(
                workload_type,
                global_policy=_doc(docs.get(g[0])) if g else None,
                project_policy=_doc(docs.get(p[0])) if p else None,
                inherit_global=bool(p and p[2]),
            )
        except engine.InvalidPolicyError as exc:
            # Only possible when the spec models changed under a stored policy.
            raise Conflict(
                f"The {workload_type} policy in effect here no longer fits the workload spec; "
                "an administrator must rewrite it.",
                errors=[problem.to_dict() for problem in exc.problems],
            ) from None
        _effective[key] = (token, effective)
    return Resolved(
        policy=effective,
        global_version=g[1] if g else None,
        project_version=p[1] if p else None,
    )


def _doc(row: PolicyRow | None) -> dict[str, Any] | None:
    return None if row is None else {"defaults": row.defaults, "rules": row.rules}


async def resolve_for(conn: Conn, project: ProjectRow, workload_type: WorkloadType) -> Resolved:
    """The effective policy of a project as it stands now."""
    found = await repository.target(conn, project=project.name, workload_type=workload_type)
    if found is None:
        raise NotFound(f"Project {project.name!r} does not exist.")
    return await resolve(conn, project_id=project.id, workload_type=workload_type, token=found[1])


def effective_read(project: ProjectRow, resolved: Resolved) -> schemas.EffectivePolicy:
    doc = resolved.policy.to_dict()
    return schemas.EffectivePolicy(
        project=project.name,
        workload_type=resolved.policy.workload_type,
        source=doc["source"],
        defaults=doc["defaults"],
        rules=doc["rules"],
        fields={k: schemas.FieldSource(**v) for k, v in doc["fields"].items()},
        global_version=resolved.global_version,
        project_version=resolved.project_version,
    )


# --- dry-run impact -------------------------------------------------------------------------------

MAX_REPORTED = 100


class Submitted(Protocol):
    """What the impact report needs of an active workload."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def project_id(self) -> uuid.UUID: ...
    @property
    def submitted_spec(self) -> dict[str, Any]: ...


async def impact(
    conn: Conn,
    *,
    project: ProjectRow | None,
    workload_type: WorkloadType,
    body: schemas.PolicyWrite,
    active: AsyncIterable[Submitted],
) -> tuple[int, list[schemas.RejectedWorkload]]:
    """Which of the ``active`` workloads of the type the new policy would reject at admission."""
    new_doc = {"defaults": body.defaults, "rules": body.rules}
    others = {row.project_id: row for row in await repository.of_type(conn, workload_type)}
    global_doc = _doc(others.pop(None, None))

    def policy_for(project_id: uuid.UUID) -> EffectivePolicy | None:
        own = others.get(project_id)
        if project is not None:
            if project_id != project.id:
                return None
            return engine.resolve_effective(
                workload_type,
                global_policy=global_doc,
                project_policy=new_doc,
                inherit_global=body.inherit_global,
            )
        if own is not None and not own.inherit_global:
            return None  # the global policy does not reach this project
        return engine.resolve_effective(
            workload_type,
            global_policy=new_doc,
            project_policy=_doc(own),
            inherit_global=own is not None,
        )

    per_project: dict[uuid.UUID, EffectivePolicy | None] = {}
    checked = 0
    rejected: list[schemas.RejectedWorkload] = []
    async for workload in active:
        if workload.project_id not in per_project:
            per_project[workload.project_id] = policy_for(workload.project_id)
        effective = per_project[workload.project_id]
        if effective is None:
            continue
        checked += 1
        result = engine.apply_policy(workload_type, workload.submitted_spec, effective)
        if result.violations and len(rejected) < MAX_REPORTED:
            rejected.append(
                schemas.RejectedWorkload(
                    id=workload.id,
                    name=workload.name,
                    project=workload.project,
                    violations=[v.to_dict() for v in result.violations],
                )
            )
    return checked, rejected
