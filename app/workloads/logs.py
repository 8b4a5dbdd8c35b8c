"""A workload's logs (``GET /workloads/{id}/logs``): which pod and container, which source, and
the bounds every answer keeps.

Bounds: without ``tailLines`` an answer starts :data:`DEFAULT_TAIL_LINES` lines from the end;
``tailLines`` is at most :data:`MAX_TAIL_LINES`; an answer (a followed one too) stops after
``limitBytes`` (default :data:`DEFAULT_LIMIT_BYTES`, at most :data:`MAX_LIMIT_BYTES`). When a
workload finishes, the reconciler keeps the last :data:`HISTORY_LINES` lines of each of its
pods' containers, which answer once the pods are gone.

Sources: the ``kubernetes`` backend streams the pod log API (app.cluster.logs); the
``simulated`` one computes its containers' lines (app.cluster.simulated_logs); a finished
workload's history comes from the database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.cluster import simulated_logs
from app.cluster.backend import ClusterError
from app.cluster.logs import LogNotFound, LogRefused, PodLogs
from app.db import Database
from app.domain.phases import FINAL_PHASES
from app.errors import NotFound, Unavailable, ValidationFailed
from app.reconciler.pods import PodView, main_pod
from app.workloads import repository
from app.workloads.repository import WorkloadRow

DEFAULT_TAIL_LINES = 1000
MAX_TAIL_LINES = 100_000
DEFAULT_LIMIT_BYTES = 10 * 1024 * 1024
MAX_LIMIT_BYTES = 1024 * 1024 * 1024
HISTORY_LINES = 200
# A simulated container's followed log looks for new lines (and its end) this often.
SIMULATED_FOLLOW_SECONDS = 1.0

# {pod: {container: ["<RFC 3339 time> <line>", ...]}}
History = dict[str, dict[str, list[str]]]


@dataclass(frozen=True, slots=True)
class LogQuery:
    pod: str
    container: str
    tail_lines: int | None
    since_seconds: int | None
    timestamps: bool
    previous: bool
    follow: bool
    limit_bytes: int


def choose(
    pods: Sequence[PodView], *, pod: str | None, container: str | None
) -> tuple[PodView, str] | None:
    """The pod (default: the first of the main role) and container (default: its first);
    None when no pod is named and the workload has none (yet): its log is empty."""
    if pod is None:
        chosen = main_pod(pods)
        if chosen is None:
            return None
    else:
        found = [p for p in pods if p["name"] == pod]
        if not found:
            raise NotFound(f"The workload has no pod {pod!r}.")
        chosen = found[0]
    names = [c["name"] for c in chosen.get("containers") or ()]
    if container is None:
        if not names:
            raise NotFound(f"Pod {chosen['name']} has no containers.")
        return chosen, names[0]
    if container not in names:
        raise NotFound(
            f"Pod {chosen['name']} has no container {container!r}; it has {', '.join(names)}."
        )
    return chosen, container


def stamp(at: datetime) -> str:
    """The kubelet's timestamp: RFC 3339 with nanoseconds, in UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _stamped_time(line: str) -> datetime | None:
    head = line.split(" ", 1)[0]
    try:
        return datetime.fromisoformat(head[:26].replace("Z", "") + "+00:00")
    except ValueError:
        return None


def select(lines: Sequence[str], query: LogQuery, *, now: datetime) -> list[str]:
    """Timestamped lines (``<time> <text>``) as the query wants them: since, tail, with or
    without their timestamps."""
    chosen = list(lines)
    if query.since_seconds is not None:
        since = now - timedelta(seconds=query.since_seconds)
        chosen = [line for line in chosen if (at := _stamped_time(line)) is None or at >= since]
    tail = DEFAULT_TAIL_LINES if query.tail_lines is None else query.tail_lines
    chosen = chosen[-tail:] if tail else []
    if not query.timestamps:
        chosen = [line.split(" ", 1)[1] if " " in line else line for line in chosen]
    return chosen


async def limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """At most ``limit`` bytes of a stream, which is closed once they are sent."""
    sent = 0
    try:
        async for chunk in chunks:
            if sent + len(chunk) >= limit:
                yield chunk[: limit - sent]
                return
            sent += len(chunk)
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def _lines(lines: Sequence[str]) -> AsyncIterator[bytes]:
    for line in lines:
        yield (line + "\n").encode()


def from_history(
    history: Mapping[str, Any], query: LogQuery, *, now: datetime
) -> AsyncIterator[bytes] | None:
    """The kept lines of a finished workload's container, or None if none were kept."""
    kept = (history.get(query.pod) or {}).get(query.container)
    if kept is None or query.previous:
        return None
    return _lines(select(kept, query, now=now))


# --- the simulated cluster ---------------------------------------------------------------------


def simulated_lines(
    *,
    workload_id: uuid.UUID,
    workload_type: str,
    pod: PodView,
    container: str,
    previous: bool,
    now: datetime,
    start: int = 0,
    last: int | None = None,
) -> tuple[list[str], int] | None:
    """A simulated container's lines with their timestamps (from index ``start``, or its
    ``last`` ones) and how many it has written in all; None when the requested run does not
    exist (``previous`` without an earlier run)."""
    status = next(c for c in pod["containers"] if c["name"] == container)
    run = simulated_logs.window(status, previous=previous)
    if run is None:
        return None if previous else ([], 0)
    seed = f"{workload_id}/{pod['name']}/{container}/{run.start.isoformat()}"
    lines = simulated_logs.container_log(
        seed=seed, workload_type=workload_type, run=run, now=now, start=start, last=last
    )
    return [f"{stamp(at)} {text}" for at, text in lines], simulated_logs.line_count(run, now)


def simulated_open(
    *,
    workload_id: uuid.UUID,
    workload_type: str,
    pod: PodView,
    query: LogQuery,
    reload: Callable[[], Awaitable[PodView | None]],
    clock: Callable[[], datetime],
    interval: float = SIMULATED_FOLLOW_SECONDS,
) -> AsyncIterator[bytes]:
    """The lines so far; following, the new ones as they are written, until the container
    stops running (its state read again from the database each ``interval``). Raises before
    anything is sent when the run asked for does not exist."""

    def lines(view: PodView, *, start: int = 0, last: int | None = None) -> tuple[list[str], int]:
        found = simulated_lines(
            workload_id=workload_id,
            workload_type=workload_type,
            pod=view,
            container=query.container,
            previous=query.previous,
            now=clock(),
            start=start,
            last=last,
        )
        if found is None:
            raise ValidationFailed(
                f"Container {query.container} of pod {pod['name']} has no previous run.",
                errors=[{"field": "previous", "message": "no terminated container to read"}],
            )
        return found

    tail = DEFAULT_TAIL_LINES if query.tail_lines is None else query.tail_lines
    first, written = lines(pod, last=tail)

    async def stream() -> AsyncIterator[bytes]:
        for line in select(first, query, now=clock()):
            yield line.encode() + b"\n"
        if not query.follow or query.previous:
            return
        sent = written
        view: PodView | None = pod
        while view is not None and _running(view, query.container):
            await asyncio.sleep(interval)
            view = await reload()
            if view is None:
                return
            new, sent = lines(view, start=sent)
            for line in new:
                yield ((line if query.timestamps else line.split(" ", 1)[1]) + "\n").encode()

    return stream()


# --- the history kept when a workload finishes -------------------------------------------------


@dataclass(frozen=True, slots=True)
class TailRequest:
    """The last ``lines`` lines (with their timestamps) of a pod's container, wanted ``now``."""

    namespace: str
    workload_id: uuid.UUID
    workload_type: str
    pod: PodView
    container: str
    lines: int
    now: datetime


LogTail = Callable[[TailRequest], list[str]]


def simulated_tail(request: TailRequest) -> list[str]:
    found = simulated_lines(
        workload_id=request.workload_id,
        workload_type=request.workload_type,
        pod=request.pod,
        container=request.container,
        previous=False,
        now=request.now,
        last=request.lines,
    )
    return found[0] if found else []


def kubernetes_tail(pod_logs: PodLogs) -> LogTail:
    def tail(request: TailRequest) -> list[str]:
        try:
            return pod_logs.tail(
                namespace=request.namespace,
                pod=request.pod["name"],
                container=request.container,
                lines=request.lines,
            )
        except ClusterError:
            return []  # the cluster is away: what it had is lost with the pods

    return tail


def history(
    tail: LogTail,
    *,
    namespace: str,
    workload_id: uuid.UUID,
    workload_type: str,
    pods: Sequence[PodView],
    now: datetime,
) -> History:
    """The last :data:`HISTORY_LINES` lines of every container of every pod."""
    return {
        pod["name"]: {
            c["name"]: tail(
                TailRequest(
                    namespace=namespace,
                    workload_id=workload_id,
                    workload_type=workload_type,
                    pod=pod,
                    container=c["name"],
                    lines=HISTORY_LINES,
                    now=now,
                )
            )
            for c in pod.get("containers") or ()
        }
        for pod in pods
    }


# --- answering a request ------------------------------------------------------------------------


async def open_log(
    db: Database,
    workload: WorkloadRow,
    *,
    pod: str | None,
    container: str | None,
    tail_lines: int | None,
    since_seconds: int | None,
    timestamps: bool,
    previous: bool,
    follow: bool,
    limit_bytes: int,
    pod_logs: PodLogs | None,
    clock: Callable[[], datetime],
) -> AsyncIterator[bytes]:
    """The log asked for, from the kept history, the cluster, or the simulation; every problem
    (no such pod or container, no previous run, the cluster away) raised before it streams."""
    async with db.connection() as conn:
        pods = await repository.pod_list(conn, workload.id)
        history = (
            await repository.log_history(conn, workload.id) if finished(workload.phase) else {}
        )
    chosen = choose(pods, pod=pod, container=container)
    if chosen is None:
        return _lines([])
    view, name = chosen
    query = LogQuery(
        pod=view["name"],
        container=name,
        tail_lines=tail_lines,
        since_seconds=since_seconds,
        timestamps=timestamps,
        previous=previous,
        follow=follow,
        limit_bytes=limit_bytes,
    )
    kept = from_history(history, query, now=clock())
    if kept is not None:
        return limited(kept, limit_bytes)
    if pod_logs is None:
        workload_id = workload.id

        async def reload() -> PodView | None:
            async with db.connection() as conn:
                current = await repository.pod_list(conn, workload_id)
            return next((p for p in current if p["name"] == query.pod), None)

        stream = simulated_open(
            workload_id=workload.id,
            workload_type=workload.type,
            pod=view,
            query=query,
            reload=reload,
            clock=clock,
        )
        return limited(stream, limit_bytes)
    try:
        stream = await pod_logs.open(
            namespace=workload.namespace,
            pod=query.pod,
            container=name,
            follow=follow,
            tail_lines=DEFAULT_TAIL_LINES if tail_lines is None else tail_lines,
            since_seconds=since_seconds,
            timestamps=timestamps,
            previous=previous,
            limit_bytes=limit_bytes,
        )
    except LogNotFound as exc:
        raise NotFound(f"Pod {query.pod} is not in the cluster (any more): {exc}") from exc
    except LogRefused as exc:
        raise ValidationFailed(
            str(exc),
            errors=[{"field": "previous" if previous else "container", "message": str(exc)}],
        ) from exc
    except ClusterError as exc:
        raise Unavailable(f"The cluster cannot answer: {exc}") from exc
    return limited(stream, limit_bytes)


def _running(pod: PodView, container: str) -> bool:
    return any(c["name"] == container and c["state"] == "running" for c in pod["containers"])


def finished(phase: str) -> bool:
    return phase in FINAL_PHASES
