"""Project rules: naming, namespaces, quotas, and what blocks deletion."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from app.auth.access import project_not_found
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.domain import quota
from app.domain.resources import ProjectUsage
from app.errors import Conflict
from app.projects import repository, schemas
from app.projects.repository import ProjectRow
from app.rendering.project import ProjectContext, project_objects
from app.schemas import NAME, ApiModel, PageParams, decode_cursor, encode_cursor
from app.sql import page, scope


def to_read(project: ProjectRow, usage: Mapping[str, Any] | None = None) -> schemas.Project:
    """The project as the API reads it, with ``usage`` as the reconciler stored it."""
    return schemas.Project(
        id=project.id,
        name=project.name,
        namespace=project.namespace,
        description=project.description,
        quota=quota_read(project.quota),
        usage=usage_read(quota.from_document(project.quota), ProjectUsage.from_dict(usage)),
        cluster=schemas.ProjectCluster(
            synced=project.applied_generation >= project.generation and not project.cluster_message,
            message=project.cluster_message,
        ),
        node_pools=list(project.node_pools),
        queue=project.queue or project.name,
        scheduler=project.scheduler,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


def manifests(project: ProjectRow, settings: Settings) -> list[dict[str, Any]]:
    """The project's own objects as the reconciler applies them (app.rendering.project)."""
    return project_objects(
        ProjectContext.of(
            name=project.name,
            namespace=project.namespace,
            queue=project.queue,
            scheduler=project.scheduler,
            quota=project.quota,
            default_scheduler=settings.scheduler,
        )
    )


async def get_by_name(conn: Conn, name: str, *, visible_to: Principal) -> ProjectRow:
    """The project, or 404 when it does not exist or lies outside the principal's scope."""
    project = await repository.get_by_name(conn, name, scope=scope(visible_to))
    if project is None:
        raise project_not_found(name)
    return project


def quota_read(doc: dict[str, Any]) -> schemas.QuotaRead:
    """The stored quota as the API reads it: GPUs as numbers, CPU and memory as written."""

    def entry(resource: str, model: type[ApiModel]) -> Any:
        stored = doc.get(resource)
        return None if not stored else model.model_validate(stored)

    return schemas.QuotaRead(
        gpu=entry("gpu", schemas.GpuQuotaRead),
        cpu=entry("cpu", schemas.QuantityQuotaRead),
        memory=entry("memory", schemas.QuantityQuotaRead),
    )


def usage_read(limits: quota.Quota, usage: ProjectUsage) -> schemas.Usage:
    def entry(resource: quota.Resource) -> schemas.ResourceUsage:
        allocated = usage.allocated.of(resource)
        deserved, cap = limits.of(resource).deserved, limits.of(resource).cap
        return schemas.ResourceUsage(
            allocated=allocated,
            waiting=usage.waiting.of(resource),
            over_quota=0 if deserved is None else max(allocated - deserved, 0),
            over_limit=0 if cap is None else max(allocated - cap, 0),
        )

    return schemas.Usage(gpu=entry("gpu"), cpu=entry("cpu"), memory=entry("memory"))


async def usage_of(conn: Conn, projects: list[ProjectRow]) -> dict[str, dict[str, Any]]:
    """The stored usage of these projects, by name (one query)."""
    return await repository.usage_of(conn, [p.name for p in projects])


def _quota_columns(quota: schemas.Quota | None) -> dict[str, Any]:
    return {"quota": quota.document() if quota is not None else {}}


async def create(conn: Conn, data: schemas.ProjectCreate) -> ProjectRow:
    namespace = data.namespace or f"runplane-{data.name}"
    try:
        return await repository.insert(
            conn,
            {
                "id": uuid.uuid4(),
                "name": data.name,
                "namespace": namespace,
                "description": data.description,
                **_quota_columns(data.quota),
                "node_pools": data.node_pools,
                "queue": data.queue,
                "scheduler": data.scheduler,
            },
        )
    except repository.NameTaken as taken:
        if taken.field == "namespace":
            raise Conflict(
                f"Namespace {namespace!r} already belongs to another project.",
                errors=[{"field": "namespace", "message": "already in use"}],
            ) from None
        raise Conflict(
            f"A project named {data.name!r} already exists.",
            errors=[{"field": "name", "message": "already in use"}],
        ) from None


async def list_page(
    conn: Conn, page_params: PageParams, *, visible_to: Principal
) -> tuple[list[ProjectRow], str | None]:
    after = decode_cursor(page_params.cursor, NAME)[0] if page_params.cursor else None
    rows = await repository.list_after(
        conn,
        after=after,
        limit=page_params.limit + 1,
        scope=scope(visible_to),
    )
    return page(rows, page_params.limit, lambda p: encode_cursor(p.name))


async def update(conn: Conn, project: ProjectRow, data: schemas.ProjectUpdate) -> ProjectRow:
    fields = data.model_fields_set
    values: dict[str, Any] = {}
    if "description" in fields and data.description is not None:
        values["description"] = data.description
    if "quota" in fields:
        values.update(_quota_columns(data.quota))
    if "node_pools" in fields:
        values["node_pools"] = data.node_pools or []
    if "queue" in fields:
        values["queue"] = data.queue
    if "scheduler" in fields:
        values["scheduler"] = data.scheduler
    return await repository.update(conn, project.id, values)


async def delete(conn: Conn, project: ProjectRow) -> None:
    if not await repository.delete_if_idle(conn, project.id):
        raise Conflict(f"Project {project.name!r} still has active workloads; delete them first.")
