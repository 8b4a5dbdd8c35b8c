"""Live updates of workloads for Server-Sent Events watchers: one listener per API process.

A trigger on ``workloads`` notifies :data:`app.workloads.repository.CHANGES_CHANNEL` with the
workload's id whenever what a reader sees of it changes (migration 0005), when the writing
transaction commits: the reconciler's status writes, and the API's submissions, suspends,
resumes and deletions. :class:`ChangeFeed` holds the one ``LISTEN`` connection of the process,
gathers the ids notified within :data:`BATCH_SECONDS`, reads those workloads with one query,
serialises each once, and hands the bytes to every watcher that wants them. A watcher is a
bounded queue: one that falls behind (or a listener that lost its connection, and with it
notifications) is told to read afresh instead of piling up memory. When the process is asked to
stop, :meth:`ChangeFeed.end_streams` ends every stream at once: a stream never ends by itself,
and the server would wait for each until its graceful-shutdown timeout (clients reconnect, to
another process, with ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from app.db import Database, conninfo
from app.workloads import repository
from app.workloads.repository import CHANGES_CHANNEL, WorkloadRow
from app.workloads.service import to_json

log = logging.getLogger("runplane.workloads.changes")

BATCH_SECONDS = 0.02
QUEUE_SIZE = 64
RECONNECT_SECONDS = 1.0


def event_id(row: WorkloadRow) -> str:
    """A workload change's SSE id: when it was written, in microseconds since the epoch."""
    return str(int(row.updated_at.timestamp() * 1_000_000))


def parse_event_id(value: str | None) -> datetime | None:
    """The time of a ``Last-Event-ID`` this API sent; None for anything else."""
    if not value or not value.isdigit() or len(value) > 20:
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Change:
    """One workload as it reads now, serialised once for every watcher."""

    row: WorkloadRow
    id: str
    json: bytes


class Ending:
    """What a watcher hears when the process stops: end the stream."""


ENDING = Ending()

# What a watcher hears: a change, None ("you may have missed changes; read afresh"), or ENDING.
Message = Change | Ending | None


@dataclass(eq=False)
class Watcher:
    wants: Callable[[WorkloadRow], bool]
    workload_id: uuid.UUID | None = None  # a single-workload watcher, found without a scan
    queue: asyncio.Queue[Message] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def offer(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Behind: drop what is queued and ask for a fresh read (or say the end), which
            # supersedes it all.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(message if message is ENDING else None)


class ChangeFeed:
    """The process's listener, started with the first watcher and stopped with the app."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_workload: dict[uuid.UUID, set[Watcher]] = {}
        self._lists: set[Watcher] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.notifications = 0  # how many it has received (tests, benchmarks)
        self.ending = False

    @property
    def watchers(self) -> int:
        return len(self._lists) + sum(len(w) for w in self._by_workload.values())

    async def subscribe(self, watcher: Watcher) -> None:
        """Register, once the listener is listening (so that no change after this is lost)."""
        if self.ending:
            watcher.offer(ENDING)
            return
        if watcher.workload_id is not None:
            self._by_workload.setdefault(watcher.workload_id, set()).add(watcher)
        else:
            self._lists.add(watcher)
        if self._task is None or self._task.done():
            self._ready.clear()
            self._task = asyncio.create_task(self._run(), name="workload-changes")
        await self._ready.wait()

    def unsubscribe(self, watcher: Watcher) -> None:
        if watcher.workload_id is not None:
            found = self._by_workload.get(watcher.workload_id)
            if found is not None:
                found.discard(watcher)
                if not found:
                    del self._by_workload[watcher.workload_id]
        else:
            self._lists.discard(watcher)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo(self.db.url), autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    if self._ready.is_set():  # a reconnection: notifications may be lost
                        self._broadcast(None)
                    self._ready.set()
                    await self._listen(conn)
            except psycopg.Error as exc:
                log.warning("workload changes: %s; listening again in %g s", exc, RECONNECT_SECONDS)
                self._ready.set()  # watchers read the database themselves meanwhile
                self._broadcast(None)
                await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self, conn: psycopg.AsyncConnection[object]) -> None:
        while True:
            ids = {n.payload async for n in conn.notifies(stop_after=1)}
            # Gather what arrives with it: a reconciler cycle writes many workloads at once.
            ids.update([n.payload async for n in conn.notifies(timeout=BATCH_SECONDS)])
            self.notifications += len(ids)
            await self._dispatch(ids)

    async def _dispatch(self, payloads: Iterable[str]) -> None:
        ids = []
        for payload in payloads:
            with contextlib.suppress(ValueError):
                ids.append(uuid.UUID(payload))
        if not ids or not (self._lists or any(i in self._by_workload for i in ids)):
            return
        async with self.db.connection() as conn:
            rows = await repository.get_many(conn, ids)
        for row in rows:
            change = Change(row, event_id(row), to_json(row))
            for watcher in self._by_workload.get(row.id, ()):
                watcher.offer(change)
            for watcher in self._lists:
                if watcher.wants(row):
                    watcher.offer(change)

    def end_streams(self) -> None:
        """End every stream, now and from now on: the process is stopping."""
        self.ending = True
        self._broadcast(ENDING)

    def _broadcast(self, message: Message) -> None:
        for watchers in self._by_workload.values():
            for watcher in watchers:
                watcher.offer(message)
        for watcher in self._lists:
            watcher.offer(message)
