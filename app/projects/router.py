"""Project endpoints (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status

from app.audit.recorder import AuditedRoute
from app.deps import AuditDep, ConnDep, CurrentPrincipal, ProjectDep, TxDep, settings_of
from app.openapi import links, responses
from app.projects import schemas, service
from app.responses import MANIFESTS_RESPONSE
from app.responses import manifests as manifests_response
from app.schemas import PageParams, page_params

router = APIRouter(prefix="/projects", tags=["projects"], route_class=AuditedRoute)


@router.post(
    "",
    operation_id="createProject",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Project,
    responses={
        201: links(
            "project",
            "name",
            "getProject",
            "updateProject",
            "deleteProject",
            "putProjectPolicy",
            "getEffectivePolicy",
        ),
        **responses(409, 422),
    },
)
async def create_project(
    conn: TxDep, audit: AuditDep, body: schemas.ProjectCreate, response: Response
) -> schemas.Project:
    audit.target = body.name
    project = await service.create(conn, body)
    response.headers["Location"] = f"/api/v1/projects/{project.name}"
    return service.to_read(project)


@router.get(
    "", operation_id="listProjects", response_model=schemas.ProjectPage, responses=responses(422)
)
async def list_projects(
    conn: ConnDep,
    principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
) -> schemas.ProjectPage:
    rows, nxt = await service.list_page(conn, page, visible_to=principal)
    usage = await service.usage_of(conn, rows)
    return schemas.ProjectPage(
        items=[service.to_read(p, usage.get(p.name)) for p in rows], next=nxt
    )


@router.get(
    "/{project}",
    operation_id="getProject",
    response_model=schemas.Project,
    responses=responses(404),
)
async def get_project(conn: ConnDep, project: ProjectDep) -> schemas.Project:
    usage = await service.usage_of(conn, [project])
    return service.to_read(project, usage.get(project.name))


@router.get(
    "/{project}/manifests",
    operation_id="getProjectManifests",
    response_model=list[dict[str, Any]],
    responses={
        200: {
            **MANIFESTS_RESPONSE,
            "description": "The project's own objects (its namespace, scheduler queues or "
            "ResourceQuota, and those its scheduler's projects share), as the reconciler "
            "applies them; multi-document YAML on request",
        },
        **responses(404),
    },
)
async def get_project_manifests(
    request: Request,
    project: ProjectDep,
    accept: Annotated[str | None, Header(alias="Accept")] = None,
) -> Response:
    return manifests_response(service.manifests(project, settings_of(request)), accept)


@router.patch(
    "/{project}",
    operation_id="updateProject",
    response_model=schemas.Project,
    responses=responses(404, 422),
)
async def update_project(
    conn: TxDep, project: ProjectDep, body: schemas.ProjectUpdate
) -> schemas.Project:
    updated = await service.update(conn, project, body)
    usage = await service.usage_of(conn, [updated])
    return service.to_read(updated, usage.get(updated.name))


@router.delete(
    "/{project}",
    operation_id="deleteProject",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(404, 409),
)
async def delete_project(conn: TxDep, project: ProjectDep) -> Response:
    await service.delete(conn, project)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
