"""Policy endpoints: global and project policies, the effective policy, and explain."""

# No `from __future__ import annotations`: the routes of both scopes are defined in one function
# (_add_scope_routes), whose local annotations FastAPI must see evaluated.

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse

from app.audit.recorder import AuditedRoute
from app.deps import AuditDep, ConnDep, CurrentPrincipal, ProjectDep, TxDep, load_project
from app.openapi import responses
from app.policies import explain, schemas, service
from app.projects.repository import ProjectRow
from app.projects.service import get_by_name
from app.schemas import PageParams, page_params
from app.workloads.repository import active_submissions

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


async def no_project() -> None:
    """The global scope's "project": none."""
    return None


ScopeProject = Callable[..., Awaitable[ProjectRow | None]]


def _add_scope_routes(path: str, name: str, project_of: ScopeProject) -> None:
    """GET, PUT and DELETE of the policies at ``path``: the global scope's or a project's. One
    definition for both; ``project_of`` is the project they belong to (None: global)."""
    Project = Annotated[ProjectRow | None, Depends(project_of)]

    @router.get(
        path,
        operation_id=f"get{name}Policy",
        summary=f"Get {name} Policy",
        response_model=schemas.Policy,
        responses=responses(404),
    )
    async def get_policy(
        conn: ConnDep, response: Response, project: Project, collection: Collection
    ) -> schemas.Policy:
        policy = await service.get(
            conn, project=project, workload_type=service.workload_type_of(collection)
        )
        response.headers["ETag"] = service.etag(policy)
        return service.to_read(policy, project.name if project else None)

    @router.put(
        path,
        operation_id=f"put{name}Policy",
        summary=f"Put {name} Policy",
        response_model=None,
        responses=PUT_RESPONSES,
    )
    async def put_policy(
        conn: TxDep,
        principal: CurrentPrincipal,
        audit: AuditDep,
        project: Project,
        collection: Collection,
        body: schemas.PolicyWrite,
        if_match: IfMatch = None,
        dry_run: DryRun = False,
    ) -> JSONResponse:
        workload_type = service.workload_type_of(collection)
        before, policy, created = await service.put(
            conn,
            project=project,
            workload_type=workload_type,
            body=body,
            if_match=if_match,
            actor=principal.name,
            dry_run=dry_run,
        )
        # The "before" was read locked: the version this write replaces.
        audit.before, audit.after = service.document(before), service.document(policy)
        read = service.to_read(policy, project.name if project else None)
        if dry_run:
            checked, rejected = await service.impact(
                conn,
                project=project,
                workload_type=workload_type,
                body=body,
                active=active_submissions(
                    conn, workload_type=workload_type, project_id=project.id if project else None
                ),
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

    @router.delete(
        path,
        operation_id=f"delete{name}Policy",
        summary=f"Delete {name} Policy",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=responses(404, 412),
    )
    async def delete_policy(
        conn: TxDep,
        audit: AuditDep,
        project: Project,
        collection: Collection,
        if_match: IfMatch = None,
    ) -> Response:
        deleted = await service.delete(
            conn,
            project=project,
            workload_type=service.workload_type_of(collection),
            if_match=if_match,
        )
        audit.before = service.document(deleted)
        return Response(status_code=status.HTTP_204_NO_CONTENT)


_add_scope_routes("/policies/global/{workloadType}", "Global", no_project)
_add_scope_routes("/projects/{project}/policies/{workloadType}", "Project", load_project)


@router.get(
    "/projects/{project}/policies/{workloadType}/effective",
    operation_id="getEffectivePolicy",
    response_model=schemas.EffectivePolicy,
    responses=responses(404),
)
async def get_effective_policy(
    conn: ConnDep, project: ProjectDep, collection: Collection
) -> schemas.EffectivePolicy:
    resolved = await service.resolve_for(conn, project, service.workload_type_of(collection))
    return service.effective_read(project, resolved)


@router.get(
    "/policies",
    operation_id="listPolicies",
    response_model=schemas.PolicyPage,
    responses=responses(404),
)
async def list_policies(
    conn: ConnDep,
    principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    scope: Annotated[schemas.Scope | None, Query(description="global or project.")] = None,
    project: Annotated[str | None, Query(max_length=63, description="Project name.")] = None,
    workload_type: Annotated[
        schemas.WorkloadTypeName | None, Query(alias="workloadType", description="Workload type.")
    ] = None,
) -> schemas.PolicyPage:
    project_row = await get_by_name(conn, project, visible_to=principal) if project else None
    rows, nxt = await service.list_page(
        conn,
        page,
        visible_to=principal,
        scope_filter=scope,
        project=project_row,
        workload_type=workload_type,
    )
    return schemas.PolicyPage(items=[service.to_read(r.policy, r.project) for r in rows], next=nxt)


@explain_router.get(
    "/explain/{workloadType}",
    operation_id="explainWorkloadType",
    response_model=schemas.Explanation,
    responses=responses(404),
)
async def explain_fields(
    conn: ConnDep,
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
    project_row = await get_by_name(conn, project, visible_to=principal) if project else None
    return await explain.explain(
        conn,
        workload_type=service.workload_type_of(collection),
        field=field,
        project=project_row,
    )
