"""Project rules: naming, namespaces, quotas, and what blocks deletion."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.access import visible
from app.auth.principal import Principal
from app.errors import Conflict, NotFound
from app.models import Project, Workload
from app.projects import schemas
from app.schemas import PageParams, decode_cursor, encode_cursor


def to_read(project: Project) -> schemas.Project:
    return schemas.Project(
        id=project.id,
        name=project.name,
        namespace=project.namespace,
        description=project.description,
        quota=schemas.QuotaRead(
            gpu=project.quota_gpu, cpu=project.quota_cpu, memory=project.quota_memory
        ),
        node_pools=list(project.node_pools),
        queue=project.queue or project.name,
        scheduler=project.scheduler,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


def get_by_name(session: Session, name: str, *, visible_to: Principal) -> Project:
    """The project, or 404 when it does not exist or lies outside the principal's scope."""
    project = session.scalars(
        select(Project).where(Project.name == name, visible(visible_to, Project.name))
    ).one_or_none()
    if project is None:
        raise NotFound(f"Project {name!r} does not exist.")
    return project


def create(session: Session, data: schemas.ProjectCreate) -> Project:
    quota = data.quota or schemas.Quota()
    project = Project(
        name=data.name,
        namespace=data.namespace or f"runplane-{data.name}",
        description=data.description,
        quota_gpu=quota.gpu,
        quota_cpu=quota.cpu,
        quota_memory=quota.memory,
        node_pools=data.node_pools,
        queue=data.queue,
        scheduler=data.scheduler,
    )
    try:
        with session.begin_nested():
            session.add(project)
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", "")
        if constraint == "uq_projects_namespace":
            raise Conflict(
                f"Namespace {project.namespace!r} already belongs to another project.",
                errors=[{"field": "namespace", "message": "already in use"}],
            ) from None
        raise Conflict(
            f"A project named {data.name!r} already exists.",
            errors=[{"field": "name", "message": "already in use"}],
        ) from None
    session.refresh(project)
    return project


def list_page(
    session: Session, page: PageParams, *, visible_to: Principal
) -> tuple[list[Project], str | None]:
    query = (
        select(Project)
        .where(visible(visible_to, Project.name))
        .order_by(Project.name)
        .limit(page.limit + 1)
    )
    if page.cursor:
        (after,) = decode_cursor(page.cursor, 1)
        query = query.where(Project.name > str(after))
    rows = list(session.scalars(query))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, encode_cursor(rows[-1].name) if more else None


def update(session: Session, project: Project, data: schemas.ProjectUpdate) -> Project:
    fields = data.model_fields_set
    if "description" in fields and data.description is not None:
        project.description = data.description
    if "quota" in fields:
        quota = data.quota or schemas.Quota()
        project.quota_gpu, project.quota_cpu, project.quota_memory = (
            quota.gpu,
            quota.cpu,
            quota.memory,
        )
    if "node_pools" in fields:
        project.node_pools = data.node_pools or []
    if "queue" in fields:
        project.queue = data.queue
    if "scheduler" in fields:
        project.scheduler = data.scheduler
    session.flush()
    session.refresh(project)
    return project


def delete(session: Session, project: Project) -> None:
    active = session.scalar(
        select(exists().where(Workload.project_id == project.id, Workload.phase != "Deleted"))
    )
    if active:
        raise Conflict(f"Project {project.name!r} still has active workloads; delete them first.")
    session.delete(project)
    session.flush()
