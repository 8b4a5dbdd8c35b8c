"""Workload endpoints (thin): submit the four types, read, list, events, manifests, lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse

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
    pod_logs_of,
    settings_of,
)
from app.domain.phases import Phase
from app.domain.spec import WorkloadType
from app.openapi import links, responses
from app.responses import MANIFESTS_RESPONSE
from app.responses import manifests as manifests_response
from app.schemas import PageParams, page_params
from app.sql import scope
from app.workloads import admission, logs, repository, schemas, service, submission
from app.workloads import watch as watch_
from app.workloads.repository import ListFilter, WorkloadRow
from app.workloads.submission_route import SubmissionRoute

router = APIRouter(prefix="/workloads", tags=["workloads"], route_class=AuditedRoute)
JSON = "application/json"


def utcnow() -> datetime:
    return datetime.now(UTC)


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
            db,
            workload_type=workload_type,
            body=body,
            settings=settings,
            scope=scope(access.principal),
            refresh=True,
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
        scope=scope(access.principal),
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
    router.add_api_route(
        f"/{collection}",
        submit,
        methods=["POST"],
        operation_id=f"submit{workload_type.title()}",
        status_code=201,
        response_model=None,
        responses=SUBMIT_RESPONSES,
        route_class_override=SubmissionRoute,
    )


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


EVENT_STREAM = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=32,
        description="Resume a watch after the event of this id: what changed since is sent first.",
    ),
]
TimeoutSeconds = Annotated[
    int | None,
    Query(
        alias="timeoutSeconds",
        ge=1,
        le=86400,
        description="End the watch after this many seconds (default: when the client leaves).",
    ),
]
_SSE_DESCRIPTION = (
    "Server-Sent Events: `event: workload`, `data:` the workload as it reads now, on every "
    "change of phase, conditions, pods or URLs; `id:` when it was written; a comment line as "
    "a heartbeat."
)


def _sse_event_schema(*events: str) -> dict[str, Any]:
    """One Server-Sent Event, as OpenAPI 3.2 describes a stream's items."""
    return {
        "type": "object",
        "properties": {
            "event": {"type": "string", "enum": list(events)},
            "id": {"type": "string", "description": "When it was written: resume after it."},
            "retry": {"type": "integer"},
            "data": {
                "type": "string",
                "contentMediaType": JSON,
                "contentSchema": {"$ref": "#/components/schemas/Workload"},
            },
        },
    }


def _events(stream: Any) -> StreamingResponse:
    return StreamingResponse(stream, media_type=EVENT_STREAM, headers=SSE_HEADERS)


@router.get(
    "",
    operation_id="listWorkloads",
    response_model=None,
    responses={
        200: {
            "model": schemas.WorkloadPage,
            "description": "A page of workloads; with `watch=true`, a stream of their changes "
            "(the first page first, or what changed since `Last-Event-ID`). "
            + _SSE_DESCRIPTION
            + " `event: removed`, the workload as it reads now, when one the stream sent no "
            "longer matches the filters (another phase, deleted).",
            "content": {EVENT_STREAM: {"schema": _sse_event_schema("workload", "removed")}},
        }
    },
)
async def list_workloads(
    request: Request,
    conn: ConnDep,
    principal: CurrentPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    project: Annotated[str | None, Query(max_length=63, description="Project name.")] = None,
    workload_type: Annotated[
        schemas.WorkloadTypeName | None, Query(alias="type", description="Workload type.")
    ] = None,
    phase: Annotated[Phase | None, Query(description="Current phase.")] = None,
    deleted: Annotated[bool, Query(description="List deleted workloads instead.")] = False,
    watch: Annotated[
        bool, Query(description="Stream changes as Server-Sent Events (text/event-stream).")
    ] = False,
    last_event_id: LastEventId = None,
    timeout_seconds: TimeoutSeconds = None,
) -> Response:
    if watch:
        filters = ListFilter(scope(principal), project, workload_type, phase, deleted)
        return _events(
            watch_.watch_list(
                request.app.state.changes,
                database_of(request),
                filters,
                last_event_id=last_event_id,
                limit=page.limit,
                heartbeat=settings_of(request).sse_heartbeat_seconds,
                timeout=timeout_seconds,
            )
        )
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
                source=e.source,
                count=e.count,
                first_seen=e.first_seen,
                last_seen=e.last_seen,
                involved_object=e.involved_object,
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


@router.get(
    "/{workloadId}/pods",
    operation_id="listWorkloadPods",
    response_model=schemas.PodList,
    responses=responses(404),
)
async def list_workload_pods(conn: ConnDep, workload: WorkloadDep) -> Response:
    return _workloads({"items": await repository.pod_list(conn, workload.id)})


TEXT_PLAIN = "text/plain; charset=utf-8"


@router.get(
    "/{workloadId}/logs",
    operation_id="getWorkloadLogs",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The container's log as text, streamed (`follow=true`: until the "
            "container ends or the client goes away). Without `tailLines`, the last "
            f"{logs.DEFAULT_TAIL_LINES} lines; never more than `limitBytes`. A finished "
            f"workload answers from the last {logs.HISTORY_LINES} lines of each container, "
            "kept when it finished.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **responses(404, 503),
    },
)
async def get_workload_logs(
    request: Request,
    workload: WorkloadDep,
    pod: Annotated[
        str | None,
        Query(max_length=253, description="Pod name (default: the first of the main role)."),
    ] = None,
    container: Annotated[
        str | None, Query(max_length=63, description="Container name (default: the first).")
    ] = None,
    tail_lines: Annotated[
        int | None,
        Query(
            alias="tailLines",
            ge=0,
            le=logs.MAX_TAIL_LINES,
            description=f"Lines from the end (default {logs.DEFAULT_TAIL_LINES}).",
        ),
    ] = None,
    since_seconds: Annotated[
        int | None,
        Query(alias="sinceSeconds", ge=1, le=10**9, description="Only lines this recent."),
    ] = None,
    timestamps: Annotated[bool, Query(description="Prefix each line with its time.")] = False,
    previous: Annotated[
        bool, Query(description="The last terminated run of the container (a crash loop's).")
    ] = False,
    follow: Annotated[
        bool, Query(description="Stream lines as they are written until the container ends.")
    ] = False,
    limit_bytes: Annotated[
        int,
        Query(
            alias="limitBytes",
            ge=1,
            le=logs.MAX_LIMIT_BYTES,
            description="Stop after this many bytes.",
        ),
    ] = logs.DEFAULT_LIMIT_BYTES,
) -> StreamingResponse:
    stream = await logs.open_log(
        database_of(request),
        workload,
        pod=pod,
        container=container,
        tail_lines=tail_lines,
        since_seconds=since_seconds,
        timestamps=timestamps,
        previous=previous,
        follow=follow,
        limit_bytes=limit_bytes,
        pod_logs=pod_logs_of(request),
        # Tests of the simulated cluster run it on their own clock.
        clock=getattr(request.app.state, "clock", utcnow),
    )
    return StreamingResponse(stream, media_type=TEXT_PLAIN)


@router.get(
    "/{workloadId}/watch",
    operation_id="watchWorkload",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The workload now (unless `Last-Event-ID` is its latest), then on "
            "every change. " + _SSE_DESCRIPTION,
            "content": {EVENT_STREAM: {"schema": _sse_event_schema("workload")}},
        },
        **responses(404),
    },
)
async def watch_workload(
    request: Request,
    workload: WorkloadDep,
    last_event_id: LastEventId = None,
    timeout_seconds: TimeoutSeconds = None,
) -> StreamingResponse:
    return _events(
        watch_.watch_workload(
            request.app.state.changes,
            database_of(request),
            workload,
            last_event_id=last_event_id,
            heartbeat=settings_of(request).sse_heartbeat_seconds,
            timeout=timeout_seconds,
        )
    )


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
