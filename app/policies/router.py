"""Policy endpoints: global and project policies, the effective policy, and explain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse

from app.audit.recorder import AuditedRoute
from app.deps import AuditDep, CurrentPrincipal, SessionDep
from app.errors import NotFound
from app.models import Project
from app.openapi import responses
from app.policies import explain, schemas, service
from app.projects.router import ProjectDep
from app.projects.service import get_by_name
from app.schemas import PageParams, page_params

router = APIRouter(tags=["policies"], route_class=AuditedRoute)
# Its own router: one tag per operation (generated clients make a class per tag, and a second
# tag made them export the operation twice).
explain_router = APIRouter(tags=["explain"], route_class=AuditedRoute)

Collection = Annotated[
    schemas.WorkloadCollection,
    Path(alias="workloadType", description="interactives, trainings, distributed or inferences."),
]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description="The ETag you read; a stale one answers 412."),
]
DryRun = Annotated[
    bool, Query(alias="dryRun", description="Validate and report the impact; store nothing.")
]
PUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": schemas.PolicyPutResult,
        "description": "Replaced (or, with dryRun, what would be stored and its impact)",
    },
    201: {"model": schemas.Policy, "description": "Created"},
    **responses(404, 409, 412),
}


def _put(
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: AuditDep,
    *,
    project: Project | None,
    collection: str,
    body: schemas.PolicyWrite,
    if_match: str | None,
    dry_run: bool,
) -> JSONResponse:
    workload_type = service.workload_type_of(collection)
    # Locked, so the "before" of the audit entry is the version this write replaces.
    audit.before = service.document(
        service.find(session, project=project, workload_type=workload_type, lock=True)
    )
    policy, created = service.put(
        session,
        project=project,
        workload_type=workload_type,
        body=body,
        if_match=if_match,
        actor=principal.name,
        dry_run=dry_run,
    )
    audit.after = service.document(policy)
    read = service.to_read(policy, project.name if project else None)
    if dry_run:
        checked, rejected = service.impact(
            session, project=project, workload_type=workload_type, body=body
        )
        report = schemas.PolicyDryRun(
            policy=read, checked_workloads=checked, rejected_workloads=rejected
        )
        return JSONResponse(report.model_dump(mode="json"))
    return JSONResponse(
        read.model_dump(mode="json"),
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        headers={"ETag": service.etag(policy)},
    )


def _get(
    session: SessionDep, response: Response, project: Project | None, collection: str
) -> schemas.Policy:
    policy = service.get(
        session, project=project, workload_type=service.workload_type_of(collection)
    )
    response.headers["ETag"] = service.etag(policy)
    return service.to_read(policy, project.name if project else None)


@router.get(
    "/policies/global/{workloadType}",
    operation_id="getGlobalPolicy",
    response_model=schemas.Policy,
    responses=responses(404),
)
def get_global_policy(
    session: SessionDep, response: Response, collection: Collection
) -> schemas.Policy:
    return _get(session, response, None, collection)


@router.put(
    "/policies/global/{workloadType}",
    operation_id="putGlobalPolicy",
    response_model=None,
    responses=PUT_RESPONSES,
)
def put_global_policy(
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: AuditDep,
    collection: Collection,
    body: schemas.PolicyWrite,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
) -> JSONResponse:
    return _put(
        session,
        principal,
        audit,
        project=None,
        collection=collection,
        body=body,
        if_match=if_match,
        dry_run=dry_run,
    )


@router.delete(
    "/policies/global/{workloadType}",
    operation_id="deleteGlobalPolicy",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(404, 412),
)
def delete_global_policy(
    session: SessionDep, audit: AuditDep, collection: Collection, if_match: IfMatch = None
) -> Response:
    _delete(session, audit, project=None, collection=collection, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _delete(
    session: SessionDep,
    audit: AuditDep,
    *,
    project: Project | None,
    collection: str,
    if_match: str | None,
) -> None:
    workload_type = service.workload_type_of(collection)
    audit.before = service.document(
        service.find(session, project=project, workload_type=workload_type, lock=True)
    )
    service.delete(session, project=project, workload_type=workload_type, if_match=if_match)


@router.get(
    "/projects/{project}/policies/{workloadType}",
    operation_id="getProjectPolicy",
    response_model=schemas.Policy,
    responses=responses(404),
)
def get_project_policy(
    session: SessionDep, response: Response, project: ProjectDep, collection: Collection
) -> schemas.Policy:
    return _get(session, response, project, collection)


@router.put(
    "/projects/{project}/policies/{workloadType}",
    operation_id="putProjectPolicy",
    response_model=None,
    responses=PUT_RESPONSES,
)
def put_project_policy(
    session: SessionDep,
    principal: CurrentPrincipal,
    audit: AuditDep,
    project: ProjectDep,
    collection: Collection,
    body: schemas.PolicyWrite,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
) -> JSONResponse:
    return _put(
        session,
        principal,
        audit,
        project=project,
        collection=collection,
        body=body,
        if_match=if_match,
        dry_run=dry_run,
    )


@router.delete(
    "/projects/{project}/policies/{workloadType}",
    operation_id="deleteProjectPolicy",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(404, 412),
)
def delete_project_policy(
    session: SessionDep,
    audit: AuditDep,
    project: ProjectDep,
    collection: Collection,
    if_match: IfMatch = None,
) -> Response:
    _delete(session, audit, project=project, collection=collection, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/projects/{project}/policies/{workloadType}/effective",
    operation_id="getEffectivePolicy",
    response_model=schemas.EffectivePolicy,
    responses=responses(404),
)
def get_effective_policy(
    session: SessionDep, project: ProjectDep, collection: Collection
) -> schemas.EffectivePolicy:
    resolved = service.resolve(
        session, project_id=project.id, workload_type=service.workload_type_of(collection)
    )
    return service.effective_read(project, resolved)


@router.get(
    "/policies",
    operation_id="listPolicies",
    response_model=schemas.PolicyPage,
    responses=responses(404),
)
def list_policies(
    session: SessionDep,
    principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    scope: Annotated[schemas.Scope | None, Query(description="global or project.")] = None,
    project: Annotated[str | None, Query(max_length=63, description="Project name.")] = None,
    workload_type: Annotated[
        schemas.WorkloadTypeName | None, Query(alias="workloadType", description="Workload type.")
    ] = None,
) -> schemas.PolicyPage:
    project_row = get_by_name(session, project, visible_to=principal) if project else None
    rows, nxt = service.list_page(
        session,
        page,
        visible_to=principal,
        scope=scope,
        project=project_row,
        workload_type=workload_type,
    )
    return schemas.PolicyPage(items=[service.to_read(p, n) for p, n in rows], next=nxt)


@explain_router.get(
    "/explain/{workloadType}",
    operation_id="explainWorkloadType",
    response_model=schemas.Explanation,
    responses=responses(404),
)
def explain_fields(
    session: SessionDep,
    principal: CurrentPrincipal,
    collection: Collection,
    field: Annotated[
        str | None,
        Query(max_length=256, description="A dotted field path, e.g. compute.gpuDevicesRequest."),
    ] = None,
    project: Annotated[
        str | None, Query(max_length=63, description="Show the defaults and rules in effect here.")
    ] = None,
) -> schemas.Explanation:
    project_row = get_by_name(session, project, visible_to=principal) if project else None
    return explain.explain(
        session,
        workload_type=service.workload_type_of(collection),
        field=field,
        project=project_row,
    )


__all__ = ["NotFound", "explain_router", "router"]
