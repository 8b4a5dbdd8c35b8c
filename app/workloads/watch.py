"""Server-Sent Events of workloads (``GET /workloads/{id}/watch``, ``GET /workloads?watch=true``).

Each event is ``event: workload`` with the workload as ``GET /workloads/{id}`` reads it, and as
``id`` the time it was written (microseconds since the epoch). A list watch says when a workload
it has sent leaves its filters (another phase, deleted): ``event: removed`` with the workload as
it reads now, as a Kubernetes watch with a selector sends DELETED; the stream forgets it then, and
sends it again as ``workload`` if it comes back. A comment line every
``heartbeat`` seconds keeps proxies from closing an idle stream. A client that reconnects with
``Last-Event-ID`` gets what changed since (a single workload: its state, if it changed; a list:
every matching workload written since, :data:`RESUME_SLACK` earlier, as transactions commit in
another order than they start) before the live changes. A list watch without it starts with the
first page of the list (``limit``, newest first), as a Kubernetes watch starts with the objects
there are.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta

from app.db import Database
from app.workloads import repository
from app.workloads.changes import (
    Change,
    ChangeFeed,
    Ending,
    Watcher,
    event_id,
    parse_event_id,
)
from app.workloads.repository import ListFilter, WorkloadRow
from app.workloads.service import to_json

RESUME_SLACK = timedelta(seconds=5)
RESUME_LIMIT = 500
RETRY_MILLISECONDS = 3000
HEARTBEAT = b": heartbeat\n\n"


def _event(change: Change, kind: bytes = b"workload") -> bytes:
    return b"id: " + change.id.encode() + b"\nevent: " + kind + b"\ndata: " + change.json + b"\n\n"


def _change(row: WorkloadRow) -> Change:
    return Change(row, event_id(row), to_json(row))


async def _stream(
    feed: ChangeFeed,
    watcher: Watcher,
    *,
    catch_up: Callable[[], Awaitable[Sequence[WorkloadRow]]],
    heartbeat: float,
    timeout: float | None,
    sent: dict[uuid.UUID, str] | None = None,
    filters: ListFilter | None = None,
    reread: Callable[[list[uuid.UUID]], Awaitable[Sequence[WorkloadRow]]] | None = None,
) -> AsyncIterator[bytes]:
    """Subscribe first, then read what there is: a change in between is sent twice (harmless,
    each event is a whole state), never lost. ``sent`` holds the last event id sent of each
    workload; with ``filters`` (a list), a sent workload that no longer matches is ``removed``,
    found after a gap by ``reread`` (the sent workloads as they read now)."""
    await feed.subscribe(watcher)
    sent = {} if sent is None else sent
    started = False

    def removed(row: WorkloadRow) -> bytes | None:
        if filters is None or filters.wants(row) or sent.pop(row.id, None) is None:
            return None
        return _event(_change(row), b"removed")

    async def fresh() -> AsyncIterator[bytes]:
        nonlocal started
        rows = await catch_up()
        for row in rows:
            change = _change(row)
            if sent.get(row.id) != change.id:
                sent[row.id] = change.id
                yield _event(change)
        if started and reread is not None:  # after a gap: which sent ones left meanwhile
            listed = {row.id for row in rows}
            for row in await reread([i for i in sent if i not in listed]):
                if (event := removed(row)) is not None:
                    yield event
        started = True

    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
        async for chunk in fresh():
            yield chunk
        while True:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            try:
                message = await asyncio.wait_for(
                    watcher.queue.get(), heartbeat if left is None else min(heartbeat, left)
                )
            except TimeoutError:
                if deadline is None or loop.time() < deadline:
                    yield HEARTBEAT
                continue
            if isinstance(message, Ending):
                return
            if message is None:  # changes may have been missed: read afresh
                async for chunk in fresh():
                    yield chunk
            elif (event := removed(message.row)) is not None:
                yield event
            elif (filters is None or filters.wants(message.row)) and sent.get(
                message.row.id
            ) != message.id:
                sent[message.row.id] = message.id
                yield _event(message)
    finally:
        feed.unsubscribe(watcher)


def watch_workload(
    feed: ChangeFeed,
    db: Database,
    workload: WorkloadRow,
    *,
    last_event_id: str | None,
    heartbeat: float,
    timeout: float | None = None,
) -> AsyncIterator[bytes]:
    resumed = {workload.id: last_event_id} if last_event_id else {}

    async def current() -> Sequence[WorkloadRow]:
        async with db.connection() as conn:
            rows = await repository.get_many(conn, [workload.id])
        # Resuming from the state the client has: nothing to send until it changes.
        fresh = [r for r in rows if resumed.get(r.id) != event_id(r)]
        resumed.clear()
        return fresh

    watcher = Watcher(wants=lambda row: True, workload_id=workload.id)
    return _stream(feed, watcher, catch_up=current, heartbeat=heartbeat, timeout=timeout)


def watch_list(
    feed: ChangeFeed,
    db: Database,
    filters: ListFilter,
    *,
    last_event_id: str | None,
    limit: int,
    heartbeat: float,
    timeout: float | None = None,
) -> AsyncIterator[bytes]:
    since = parse_event_id(last_event_id)
    seen = {"at": since}

    async def catch_up() -> Sequence[WorkloadRow]:
        async with db.connection() as conn:
            if seen["at"] is None:
                rows = await repository.list_page(
                    conn,
                    scope=filters.scope,
                    before=None,
                    limit=limit,
                    project=filters.project,
                    workload_type=filters.workload_type,
                    phase=filters.phase,
                    deleted=filters.deleted,
                )
                rows.reverse()  # oldest first, as changes come
            else:
                rows = await repository.changed_since(
                    conn, filters, since=seen["at"] - RESUME_SLACK, limit=RESUME_LIMIT
                )
        if rows:
            seen["at"] = max(r.updated_at for r in rows)
        return rows

    sent: dict[uuid.UUID, str] = {}

    def wants(row: WorkloadRow) -> bool:
        if filters.wants(row):
            if seen["at"] is None or row.updated_at > seen["at"]:
                seen["at"] = row.updated_at
            return True
        return row.id in sent  # it leaves the list: the stream says so

    async def reread(ids: list[uuid.UUID]) -> Sequence[WorkloadRow]:
        if not ids:
            return []
        async with db.connection() as conn:
            return await repository.get_many(conn, ids)

    return _stream(
        feed,
        Watcher(wants=wants),
        catch_up=catch_up,
        heartbeat=heartbeat,
        timeout=timeout,
        sent=sent,
        filters=filters,
        reread=reread,
    )
