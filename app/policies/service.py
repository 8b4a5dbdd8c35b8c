"""Policy storage, versions, the effective-policy cache and the dry-run impact report."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.access import visible
from app.auth.principal import Principal
from app.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from app.lru import Lru
from app.models import Policy, Project, Workload
from app.policies import engine, schemas
from app.policies.engine import EffectivePolicy
from app.schemas import PageParams, decode_time_cursor, encode_time_cursor
from app.workloads.spec import COLLECTION_TO_TYPE, WorkloadType

# (policy id, version) of the global and the project policy: a new row or a new version changes
# it, so comparing tokens invalidates the cache across API processes without any messaging.
VersionToken = tuple[tuple[uuid.UUID, int] | None, tuple[uuid.UUID, int, bool] | None]


class EffectiveCache:
    """Resolved effective policies by (project id, workload type), each with its token."""

    def __init__(self, maxsize: int = 4096) -> None:
        self._lru: Lru[tuple[uuid.UUID, str], tuple[VersionToken, EffectivePolicy]] = Lru(maxsize)

    def get(self, key: tuple[uuid.UUID, str], token: VersionToken) -> EffectivePolicy | None:
        entry = self._lru.get(key)
        return entry[1] if entry is not None and entry[0] == token else None

    def put(self, key: tuple[uuid.UUID, str], token: VersionToken, value: EffectivePolicy) -> None:
        self._lru.put(key, (token, value))


cache = EffectiveCache()


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


def etag(policy: Policy) -> str:
    return f'"{policy.id}.{policy.version}"'


def to_read(policy: Policy, project_name: str | None) -> schemas.Policy:
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


def find(
    session: Session, *, project: Project | None, workload_type: str, lock: bool = False
) -> Policy | None:
    query = select(Policy).where(Policy.workload_type == workload_type)
    query = query.where(
        Policy.project_id.is_(None) if project is None else Policy.project_id == project.id
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def document(policy: Policy | None) -> dict[str, Any] | None:
    """What the audit log keeps of a policy, before and after a change."""
    if policy is None:
        return None
    return {
        "defaults": policy.defaults,
        "rules": policy.rules,
        "inheritGlobal": policy.inherit_global,
        "version": policy.version,
    }


def get(session: Session, *, project: Project | None, workload_type: str) -> Policy:
    policy = find(session, project=project, workload_type=workload_type)
    if policy is None:
        where = "globally" if project is None else f"in project {project.name!r}"
        raise NotFound(f"No {workload_type} policy is set {where}.")
    return policy


def _check_document(
    workload_type: WorkloadType, body: schemas.PolicyWrite, *, project: Project | None
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


def _check_merged(session: Session, workload_type: WorkloadType, body: schemas.PolicyWrite) -> None:
    """A project default may break a global rule once merged: refuse that too."""
    global_policy = find(session, project=None, workload_type=workload_type)
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


def _check_if_match(existing: Policy | None, if_match: str | None) -> None:
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


def put(
    session: Session,
    *,
    project: Project | None,
    workload_type: WorkloadType,
    body: schemas.PolicyWrite,
    if_match: str | None,
    actor: str,
    dry_run: bool = False,
) -> tuple[Policy, bool]:
    """Create or replace a policy; returns (policy, created). With ``dry_run`` nothing is stored."""
    _check_document(workload_type, body, project=project)
    if project is not None and body.inherit_global:
        _check_merged(session, workload_type, body)
    query = select(Policy).where(Policy.workload_type == workload_type).with_for_update()
    query = query.where(
        Policy.project_id.is_(None) if project is None else Policy.project_id == project.id
    )
    existing = session.scalars(query).one_or_none()
    _check_if_match(existing, if_match)
    if existing is None:
        policy = Policy(
            id=uuid.uuid4(),
            project_id=project.id if project else None,
            workload_type=workload_type,
            version=1,
        )
    else:
        policy = existing
        if not dry_run:
            policy.version = existing.version + 1
    if dry_run:
        now = datetime.now(UTC)
        preview = Policy(
            id=policy.id,
            project_id=policy.project_id,
            workload_type=workload_type,
            defaults=body.defaults,
            rules=body.rules,
            inherit_global=body.inherit_global,
            version=policy.version + (1 if existing else 0),
            updated_by=actor,
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        return preview, existing is None
    policy.defaults = body.defaults
    policy.rules = body.rules
    policy.inherit_global = body.inherit_global
    policy.updated_by = actor
    try:
        with session.begin_nested():
            session.add(policy)
    except IntegrityError:
        raise Conflict("The policy was created concurrently; GET it and retry.") from None
    session.refresh(policy)
    return policy, existing is None


def delete(
    session: Session, *, project: Project | None, workload_type: str, if_match: str | None
) -> None:
    policy = get(session, project=project, workload_type=workload_type)
    _check_if_match(policy, if_match)
    session.delete(policy)
    session.flush()


def list_page(
    session: Session,
    page: PageParams,
    *,
    visible_to: Principal,
    scope: str | None,
    project: Project | None,
    workload_type: str | None,
) -> tuple[list[tuple[Policy, str | None]], str | None]:
    query = (
        select(Policy, Project.name)
        .outerjoin(Project, Project.id == Policy.project_id)
        # Global policies bind everyone; project policies show only within scope.
        .where(or_(Policy.project_id.is_(None), visible(visible_to, Project.name)))
        .order_by(Policy.created_at, Policy.id)
        .limit(page.limit + 1)
    )
    if scope == "global":
        query = query.where(Policy.project_id.is_(None))
    elif scope == "project":
        query = query.where(Policy.project_id.is_not(None))
    if project is not None:
        query = query.where(Policy.project_id == project.id)
    if workload_type is not None:
        query = query.where(Policy.workload_type == workload_type)
    if page.cursor:
        query = query.where(
            tuple_(Policy.created_at, Policy.id) > tuple_(*decode_time_cursor(page.cursor))
        )
    rows: list[tuple[Policy, str | None]] = [(p, n) for p, n in session.execute(query).all()]
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    nxt = encode_time_cursor(rows[-1][0].created_at, rows[-1][0].id) if more else None
    return rows, nxt


# --- the effective policy -------------------------------------------------------------------------


def cached(
    *, project_id: uuid.UUID, workload_type: WorkloadType, token: VersionToken
) -> Resolved | None:
    """The effective policy for these versions if this process has it already (no I/O)."""
    effective = cache.get((project_id, workload_type), token)
    return None if effective is None else _resolved(effective, token)


def _resolved(effective: EffectivePolicy, token: VersionToken) -> Resolved:
    g, p = token
    return Resolved(
        policy=effective,
        global_version=g[1] if g else None,
        project_version=p[1] if p else None,
    )


def resolve(
    session: Session,
    *,
    project_id: uuid.UUID,
    workload_type: WorkloadType,
    token: VersionToken | None = None,
) -> Resolved:
    """The effective policy of (project, type), from the cache when the versions still match.

    ``token`` may come from a query the caller already made (the submission path reads it in
    the same round trip as the project); otherwise one small query reads it.
    """
    if token is None:
        token = version_token(
            session.execute(
                select(Policy.id, Policy.project_id, Policy.version, Policy.inherit_global).where(
                    Policy.workload_type == workload_type,
                    or_(Policy.project_id.is_(None), Policy.project_id == project_id),
                )
            ).all()
        )
    g, p = token
    key = (project_id, workload_type)
    effective = cache.get(key, token)
    if effective is None:
        ids = [t[0] for t in (g, p) if t is not None]
        docs = {
            row.id: {"defaults": row.defaults, "rules": row.rules}
            for row in (session.scalars(select(Policy).where(Policy.id.in_(ids))) if ids else [])
        }
        try:
            effective = engine.resolve_effective(
                workload_type,
                global_policy=docs.get(g[0]) if g else None,
                project_policy=docs.get(p[0]) if p else None,
                inherit_global=bool(p and p[2]),
            )
        except engine.InvalidPolicyError as exc:
            # Only possible when the spec models changed under a stored policy.
            raise Conflict(
                f"The {workload_type} policy in effect here no longer fits the workload spec; "
                "an administrator must rewrite it.",
                errors=[p.to_dict() for p in exc.problems],
            ) from None
        cache.put(key, token, effective)
    return _resolved(effective, token)


def version_token(rows: Sequence[Any]) -> VersionToken:
    """Build the token from ``(id, project_id, version, inherit_global)`` rows."""
    g: tuple[uuid.UUID, int] | None = None
    p: tuple[uuid.UUID, int, bool] | None = None
    for ident, project_id, version, inherit in rows:
        if project_id is None:
            g = (ident, version)
        else:
            p = (ident, version, inherit)
    return g, p


def effective_read(project: Project, resolved: Resolved) -> schemas.EffectivePolicy:
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


def impact(
    session: Session,
    *,
    project: Project | None,
    workload_type: WorkloadType,
    body: schemas.PolicyWrite,
) -> tuple[int, list[schemas.RejectedWorkload]]:
    """Active workloads of the type that the new policy would reject at admission."""
    new_doc = {"defaults": body.defaults, "rules": body.rules}
    others = {
        row.project_id: row
        for row in session.scalars(select(Policy).where(Policy.workload_type == workload_type))
    }
    global_row = others.pop(None, None)
    global_doc = (
        {"defaults": global_row.defaults, "rules": global_row.rules} if global_row else None
    )

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
            project_policy={"defaults": own.defaults, "rules": own.rules} if own else None,
            inherit_global=own is not None,
        )

    query = select(
        Workload.id, Workload.name, Workload.project, Workload.project_id, Workload.submitted_spec
    ).where(
        Workload.type == workload_type,
        Workload.deleted_at.is_(None),
        Workload.phase.not_in(("Completed", "Failed", "Deleted")),
    )
    if project is not None:
        query = query.where(Workload.project_id == project.id)
    per_project: dict[uuid.UUID, EffectivePolicy | None] = {}
    checked = 0
    rejected: list[schemas.RejectedWorkload] = []
    for ident, name, project_name, project_id, submitted in session.execute(
        query.execution_options(yield_per=500)
    ):
        if project_id not in per_project:
            per_project[project_id] = policy_for(project_id)
        effective = per_project[project_id]
        if effective is None:
            continue
        checked += 1
        result = engine.apply_policy(workload_type, submitted, effective)
        if result.violations and len(rejected) < MAX_REPORTED:
            rejected.append(
                schemas.RejectedWorkload(
                    id=ident,
                    name=name,
                    project=project_name,
                    violations=[v.to_dict() for v in result.violations],
                )
            )
    return checked, rejected
