"""Workload endpoints (thin): submit the four types, read, list, events, manifests, lifecycle."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse, Response

from app.audit.recorder import AuditedRoute, committed, entry_values, record_of
from app.auth import access as access_
from app.deps import (
    AccessDep,
    ConnDep,
    CurrentPrincipal,
    TxDep,
    WorkloadDep,
    WorkloadId,
    database_of,
    settings_of,
)
from app.domain.phases import Phase
from app.domain.spec import WorkloadType
from app.openapi import links, responses
from app.responses import MANIFESTS_RESPONSE
from app.responses import manifests as manifests_response
from app.schemas import PageParams, page_params
from app.workloads import admission, repository, schemas, service, submission
from app.workloads.repository import WorkloadRow

router = APIRouter(prefix="/workloads", tags=["workloads"], route_class=AuditedRoute)
JSON = "application/json"

DryRun = Annotated[
    bool,
    Query(
        alias="dryRun",
        description="Resolve, validate and render; answer 200 with the result; store nothing.",
    ),
]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Replays the first answer for 24 h; the same key with another body is 422.",
    ),
]
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": schemas.DryRun, "description": "Dry run: what would be stored and applied"},
    201: {
        "model": schemas.Workload,
        "description": "Accepted",
        **links(
            "workloadId",
            "id",
            "getWorkload",
            "listWorkloadEvents",
            "getWorkloadManifests",
            "suspendWorkload",
            "resumeWorkload",
            "deleteWorkload",
        ),
    },
    **responses(404, 409),
}


async def _submit(
    request: Request,
    access: access_.Access,
    *,
    workload_type: WorkloadType,
    body: schemas.Submission,
    dry_run: bool,
    idempotency_key: str | None,
) -> Response:
    # Without a connection dependency: the submission path takes its own connections
    # (app.workloads.submission), and on a warm process makes one statement.
    db, settings = database_of(request), settings_of(request)
    audit = record_of(request.scope)
    audit.target = f"{body.project}/{body.name}"
    access.check_project(body.project)
    if dry_run:
        prepared = await submission.checked(
            db, workload_type=workload_type, body=body, settings=settings, refresh=True
        )
        async with db.connection() as conn:
            verdict = await admission.verdict(
                conn,
                project=body.project,
                workload_type=workload_type,
                spec=prepared.spec,
                manifests=prepared.manifests,
            )
        result = schemas.DryRun(
            spec=prepared.spec,
            applied_defaults=prepared.applied_defaults,
            policy=prepared.policy,
            manifests=prepared.manifests,
            admission=verdict,
        )
        return JSONResponse(result.model_dump(mode="json"))
    idempotency = None
    if idempotency_key:
        # Keys are the caller's own: scoped by the principal's stable id, not its display name.
        idempotency = submission.IdempotencyKey(
            principal=access.principal.id,
            key=idempotency_key,
            digest=submission.request_hash(request.url.path, body),
        )
        answer = await submission.replay(db, idempotency)
        if answer is not None:
            headers = {"Location": answer.location} if answer.location else None
            return JSONResponse(answer.response, status_code=answer.status, headers=headers)
    accepted = await submission.submit(
        db,
        workload_type=workload_type,
        body=body,
        settings=settings,
        audit=entry_values(request.scope, 201),
        idempotency=idempotency,
    )
    # The audit entry was stored with the workload, in the same statement.
    audit.target, audit.staged = str(accepted.workload.id), True
    committed(request.scope)
    return Response(
        accepted.json, status_code=201, media_type=JSON, headers={"Location": accepted.location}
    )


def _add_submission_route(
    workload_type: WorkloadType, collection: str, model: type[schemas.Submission]
) -> None:
    """``POST /workloads/<collection>``: the same path for every type, each with the body model
    of its own type (so the OpenAPI document and generated clients are precise)."""

    async def submit(
        request: Request,
        access: AccessDep,
        body: Any,
        dry_run: DryRun = False,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        return await _submit(
            request,
            access,
            workload_type=workload_type,
            body=body,
            dry_run=dry_run,
            idempotency_key=idempotency_key,
        )

    submit.__annotations__["body"] = model
    submit.__name__ = f"submit_{workload_type}"
    router.post(
        f"/{collection}",
        operation_id=f"submit{workload_type.title()}",
        status_code=201,
        response_model=None,
        responses=SUBMIT_RESPONSES,
    )(submit)


_SUBMISSIONS: tuple[tuple[WorkloadType, str, type[schemas.Submission]], ...] = (
    ("interactive", "interactives", schemas.InteractiveSubmission),
    ("training", "trainings", schemas.TrainingSubmission),
    ("distributed", "distributed", schemas.DistributedSubmission),
    ("inference", "inferences", schemas.InferenceSubmission),
)
for _type, _collection, _model in _SUBMISSIONS:
    _add_submission_route(_type, _collection, _model)


def _workloads(document: Any, status_code: int = 200) -> Response:
    return Response(service.dumps(document), status_code=status_code, media_type=JSON)


@router.get(
    "",
    operation_id="listWorkloads",
    response_model=None,
    responses={200: {"model": schemas.WorkloadPage, "description": "A page of workloads"}},
)
async def list_workloads(
    conn: ConnDep,
    principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    project: Annotated[str | None, Query(max_length=63, description="Project name.")] = None,
    workload_type: Annotated[
        schemas.WorkloadTypeName | None, Query(alias="type", description="Workload type.")
    ] = None,
    phase: Annotated[Phase | None, Query(description="Current phase.")] = None,
    deleted: Annotated[bool, Query(description="List deleted workloads instead.")] = False,
) -> Response:
    rows, nxt = await service.list_page(
        conn,
        page,
        visible_to=principal,
        project=project,
        workload_type=workload_type,
        phase=phase,
        deleted=deleted,
    )
    return _workloads({"items": [service.to_read(w) for w in rows], "next": nxt})


@router.get(
    "/{workloadId}",
    operation_id="getWorkload",
    response_model=None,
    responses={200: {"model": schemas.Workload, "description": "The workload"}, **responses(404)},
)
async def get_workload(workload: WorkloadDep) -> Response:
    return _workloads(service.to_read(workload))


@router.get(
    "/{workloadId}/events",
    operation_id="listWorkloadEvents",
    response_model=schemas.WorkloadEventPage,
    responses=responses(404),
)
async def list_workload_events(
    conn: ConnDep,
    workload: WorkloadDep,
    page: Annotated[PageParams, Depends(page_params)],
) -> schemas.WorkloadEventPage:
    rows, nxt = await service.events_page(conn, workload, page)
    return schemas.WorkloadEventPage(
        items=[
            schemas.WorkloadEvent(
                id=e.id,
                time=e.created_at,
                type=e.type,
                phase=e.phase,
                reason=e.reason,
                message=e.message,
            )
            for e in rows
        ],
        next=nxt,
    )


@router.get(
    "/{workloadId}/manifests",
    operation_id="getWorkloadManifests",
    response_model=list[dict[str, Any]],
    responses={
        200: {
            **MANIFESTS_RESPONSE,
            "description": "The rendered Kubernetes objects; multi-document YAML on request",
        },
        **responses(404),
    },
)
async def get_workload_manifests(
    conn: ConnDep,
    workload: WorkloadDep,
    accept: Annotated[str | None, Header(alias="Accept")] = None,
) -> Response:
    return manifests_response(await repository.manifests(conn, workload.id), accept)


def _accepted(workload: WorkloadRow) -> Response:
    return _workloads(service.to_read(workload), status.HTTP_202_ACCEPTED)


LIFECYCLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": schemas.Workload, "description": "Accepted; the reconciler does the work"},
    **responses(404, 409),
}


@router.post(
    "/{workloadId}/suspend",
    operation_id="suspendWorkload",
    status_code=202,
    response_model=None,
    responses=LIFECYCLE_RESPONSES,
)
async def suspend_workload(conn: TxDep, access: AccessDep, workload_id: WorkloadId) -> Response:
    return _accepted(await service.suspend(conn, workload_id, access=access))


@router.post(
    "/{workloadId}/resume",
    operation_id="resumeWorkload",
    status_code=202,
    response_model=None,
    responses=LIFECYCLE_RESPONSES,
)
async def resume_workload(conn: TxDep, access: AccessDep, workload_id: WorkloadId) -> Response:
    return _accepted(await service.resume(conn, workload_id, access=access))


@router.delete(
    "/{workloadId}",
    operation_id="deleteWorkload",
    status_code=202,
    response_model=None,
    responses=LIFECYCLE_RESPONSES,
)
async def delete_workload(conn: TxDep, access: AccessDep, workload_id: WorkloadId) -> Response:
    return _accepted(await service.delete(conn, workload_id, access=access))
