"""Project endpoints (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from app.audit.recorder import AuditedRoute
from app.deps import AuditDep, CurrentPrincipal, SessionDep
from app.models import Project as ProjectRow
from app.openapi import links, responses
from app.projects import schemas, service
from app.schemas import PageParams, page_params

router = APIRouter(prefix="/projects", tags=["projects"], route_class=AuditedRoute)

ProjectName = Annotated[str, Path(max_length=63, description="Project name.")]


def load_project(
    session: SessionDep, principal: CurrentPrincipal, project: ProjectName
) -> ProjectRow:
    return service.get_by_name(session, project, visible_to=principal)


ProjectDep = Annotated[ProjectRow, Depends(load_project)]


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
def create_project(
    session: SessionDep, audit: AuditDep, body: schemas.ProjectCreate, response: Response
) -> schemas.Project:
    audit.target = body.name
    project = service.create(session, body)
    response.headers["Location"] = f"/api/v1/projects/{project.name}"
    return service.to_read(project)


@router.get(
    "", operation_id="listProjects", response_model=schemas.ProjectPage, responses=responses(422)
)
def list_projects(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
) -> schemas.ProjectPage:
    rows, nxt = service.list_page(session, page, visible_to=principal)
    return schemas.ProjectPage(items=[service.to_read(p) for p in rows], next=nxt)


@router.get(
    "/{project}",
    operation_id="getProject",
    response_model=schemas.Project,
    responses=responses(404),
)
def get_project(project: ProjectDep) -> schemas.Project:
    return service.to_read(project)


@router.patch(
    "/{project}",
    operation_id="updateProject",
    response_model=schemas.Project,
    responses=responses(404, 422),
)
def update_project(
    session: SessionDep, project: ProjectDep, body: schemas.ProjectUpdate
) -> schemas.Project:
    return service.to_read(service.update(session, project, body))


@router.delete(
    "/{project}",
    operation_id="deleteProject",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(404, 409),
)
def delete_project(session: SessionDep, project: ProjectDep) -> Response:
    service.delete(session, project)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
