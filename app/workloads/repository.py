"""The workloads, their events and idempotency keys: every statement about them, and their rows.

Request handling and the reconciler both write workloads; every write is here, and each is
conditional on what its writer read (a submission on its target, a status on the row version
the reconciler cycle saw), so that no writer undoes another.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, LiteralString

from psycopg import sql
from psycopg.types.json import Jsonb

from app.audit import repository as audit
from app.db import Conn
from app.policies.repository import TARGET_KEY, target_joins
from app.sql import (
    JSON_ROW,
    JSON_ROWS,
    Scope,
    columns,
    fetch_all,
    fetch_one,
    in_scope,
    insert_select,
    where,
)


@dataclass(frozen=True, slots=True)
class WorkloadRow:
    """A workload as the API reads it (everything but its manifests)."""

    id: uuid.UUID
    name: str
    project: str
    project_id: uuid.UUID | None  # None once the project is deleted
    type: str
    namespace: str
    spec: dict[str, Any]
    submitted_spec: dict[str, Any]
    applied_defaults: list[str]
    policy_source: str
    policy_version: int | None
    objects: list[dict[str, str]]
    desired_phase: str
    phase: str
    phase_message: str
    phase_updated_at: datetime
    conditions: list[dict[str, Any]]
    pods: dict[str, int]
    urls: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a workload's timeline."""

    workload_id: uuid.UUID
    type: str
    phase: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    created_at: datetime
    type: str
    phase: str
    reason: str
    message: str
    source: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    involved_object: dict[str, Any] | None


_COLUMNS = columns(WorkloadRow)
EVENT_COLUMNS: tuple[LiteralString, ...] = ("workload_id", "type", "phase", "reason", "message")
# What a submission writes; every other column starts at its database default (Creating,
# desired Running, generation 1, nothing applied...).
SUBMITTED_COLUMNS: tuple[LiteralString, ...] = (
    "id",
    "name",
    "project_id",
    "project",
    "namespace",
    "type",
    "spec",
    "submitted_spec",
    "applied_defaults",
    "policy_source",
    "policy_version",
    "manifests",
    "objects",
    "phase_message",
)


def _events_insert(
    *,
    source: LiteralString,
    record: LiteralString,
    time: LiteralString,
    where: LiteralString = "true",
) -> LiteralString:
    return insert_select(
        "workload_events",
        EVENT_COLUMNS,
        source=source,
        record=record,
        overrides={"created_at": time},
        where=where,
    )


_INSERT_EVENTS = _events_insert(source=JSON_ROWS, record=JSON_ROW, time="now()")


async def insert_events(conn: Conn, events: Sequence[Event]) -> None:
    if events:
        await conn.execute(_INSERT_EVENTS, {"rows": Jsonb(list(events))})


# --- submissions: a batch stored with one statement -----------------------------------------------

# Each item of the batch: its target as the submission saw it (TARGET_KEY's values, in order, as
# ``key``), the workload's columns (``row``), its first event and its audit entry. An item whose
# target changed meanwhile is not stored (``fresh`` false), nor one whose name is taken (no
# ``created_at``): each row of the answer says which.
_NEW = "w JOIN input USING (id)"
_STORE = f"""
    WITH input AS (
        SELECT (x.value->>'id')::uuid AS id, x.value AS item
        FROM jsonb_array_elements(%(batch)s::jsonb) AS x
    ),
    fresh AS (
        SELECT i.* FROM input i
        JOIN projects p ON p.name = i.item->'row'->>'project'
        {target_joins("i.item->'row'->>'type'")}
        WHERE to_jsonb(ARRAY[{", ".join(f"({c})::text" for c in TARGET_KEY)}])
              = i.item->'key'
    ),
    w AS (
        {insert_select("workloads", SUBMITTED_COLUMNS, source="fresh", record="fresh.item->'row'")}
        ON CONFLICT (project_id, name) WHERE deleted_at IS NULL DO NOTHING
        RETURNING id, created_at
    ),
    e AS (
        {_events_insert(source=_NEW, record="input.item->'event'", time="w.created_at")}
    ),
    a AS (
        {audit.insert_select(source=_NEW, record="input.item->'audit'", time="w.created_at")}
    )
    SELECT i.id, f.id IS NOT NULL, w.created_at
    FROM input i LEFT JOIN fresh f USING (id) LEFT JOIN w USING (id)
"""


@dataclass(frozen=True, slots=True)
class Submitted:
    """One submission to store: its target key, columns, first event and audit entry."""

    key: list[str | None]
    row: dict[str, Any]
    event: Event
    audit: dict[str, Any]


async def store_submissions(
    conn: Conn, batch: Sequence[Submitted]
) -> dict[uuid.UUID, tuple[bool, datetime | None]]:
    """Store a batch: per workload id, whether its target was still fresh, and its creation
    time if it was stored (None: the name is taken)."""
    items = [
        {"id": s.row["id"], "key": s.key, "row": s.row, "event": s.event, "audit": s.audit}
        for s in batch
    ]
    cursor = await conn.execute(_STORE, {"batch": Jsonb(items)})
    return {ident: (fresh, created) for ident, fresh, created in await cursor.fetchall()}


def target_key(values: Sequence[Any]) -> list[str | None]:
    """TARGET_KEY's values as the storing statement compares them (text, in order)."""
    return [
        None if v is None else (str(v).lower() if isinstance(v, bool) else str(v)) for v in values
    ]


# --- reading --------------------------------------------------------------------------------------


async def get(conn: Conn, workload_id: uuid.UUID, *, scope: Scope) -> WorkloadRow | None:
    return await fetch_one(
        conn,
        WorkloadRow,
        f"SELECT {_COLUMNS} FROM workloads WHERE id = %(id)s AND {in_scope('project_id')}",
        {"id": workload_id, "scope": scope},
    )


async def manifests(conn: Conn, workload_id: uuid.UUID) -> list[dict[str, Any]]:
    cursor = await conn.execute("SELECT manifests FROM workloads WHERE id = %s", (workload_id,))
    row = await cursor.fetchone()
    return row[0] if row else []


async def pod_list(conn: Conn, workload_id: uuid.UUID) -> list[dict[str, Any]]:
    cursor = await conn.execute("SELECT pod_list FROM workloads WHERE id = %s", (workload_id,))
    row = await cursor.fetchone()
    return row[0] if row else []


async def log_history(conn: Conn, workload_id: uuid.UUID) -> dict[str, Any]:
    cursor = await conn.execute("SELECT log_history FROM workloads WHERE id = %s", (workload_id,))
    row = await cursor.fetchone()
    return row[0] if row else {}


async def get_many(conn: Conn, ids: Sequence[uuid.UUID]) -> list[WorkloadRow]:
    return await fetch_all(
        conn, WorkloadRow, f"SELECT {_COLUMNS} FROM workloads WHERE id = ANY(%s)", (list(ids),)
    )


@dataclass(frozen=True, slots=True)
class ListFilter:
    """The filters of a workload list (and of its watch)."""

    scope: Scope
    project: str | None
    workload_type: str | None
    phase: str | None
    deleted: bool

    def conditions(self) -> list[Any]:
        return [
            (in_scope("project_id"), {"scope": self.scope}),
            ("deleted_at IS NOT NULL" if self.deleted else "deleted_at IS NULL", {}),
            ("project = %(project)s", {"project": self.project}),
            ("type = %(type)s", {"type": self.workload_type}),
            ("phase = %(phase)s", {"phase": self.phase}),
        ]

    def wants(self, row: WorkloadRow) -> bool:
        """The same conditions, on a row read already."""
        return (
            (self.scope is None or row.project_id in self.scope)
            and (row.deleted_at is not None) == self.deleted
            and self.project in (None, row.project)
            and self.workload_type in (None, row.type)
            and self.phase in (None, row.phase)
        )


async def changed_since(
    conn: Conn, filters: ListFilter, *, since: datetime, limit: int
) -> list[WorkloadRow]:
    """The workloads written since ``since``, oldest change first (a watch that resumes)."""
    condition, params = where(*filters.conditions(), ("updated_at > %(since)s", {"since": since}))
    query = sql.SQL(
        "SELECT {} FROM workloads WHERE {} ORDER BY updated_at, id LIMIT %(limit)s"
    ).format(sql.SQL(_COLUMNS), condition)
    return await fetch_all(conn, WorkloadRow, query, {**params, "limit": limit})


async def list_page(
    conn: Conn,
    *,
    scope: Scope,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
    project: str | None,
    workload_type: str | None,
    phase: str | None,
    deleted: bool,
) -> list[WorkloadRow]:
    """Newest first. Each filter is in the statement only when given, so that the planner picks
    the index that serves it."""
    filters = ListFilter(scope, project, workload_type, phase, deleted)
    condition, params = where(
        *filters.conditions(),
        before and ("(created_at, id) < (%(t)s, %(i)s)", {"t": before[0], "i": before[1]}),
    )
    query = sql.SQL(
        "SELECT {} FROM workloads WHERE {} ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    ).format(sql.SQL(_COLUMNS), condition)
    return await fetch_all(conn, WorkloadRow, query, {**params, "limit": limit})


async def events_page(
    conn: Conn, workload_id: uuid.UUID, *, after: int | None, limit: int
) -> list[EventRow]:
    return await fetch_all(
        conn,
        EventRow,
        f"SELECT {columns(EventRow)} FROM workload_events WHERE workload_id = %(id)s"
        " AND id > %(after)s ORDER BY id LIMIT %(limit)s",
        {"id": workload_id, "after": after if after is not None else -1, "limit": limit},
    )


@dataclass(frozen=True, slots=True)
class ActiveSubmission:
    id: uuid.UUID
    name: str
    project: str
    project_id: uuid.UUID
    submitted_spec: dict[str, Any]


async def active_submissions(
    conn: Conn, *, workload_type: str, project_id: uuid.UUID | None
) -> AsyncIterator[ActiveSubmission]:
    """What was submitted for the workloads of a type that still run or wait, streamed."""
    cursor = conn.cursor()
    async for row in cursor.stream(
        "SELECT id, name, project, project_id, submitted_spec FROM workloads"
        " WHERE type = %(type)s AND deleted_at IS NULL"
        " AND phase NOT IN ('Completed', 'Failed', 'Deleted')"
        " AND (%(project)s::uuid IS NULL OR project_id = %(project)s)",
        {"type": workload_type, "project": project_id},
    ):
        yield ActiveSubmission(*row)


# --- lifecycle requests ---------------------------------------------------------------------------


async def lock(conn: Conn, workload_id: uuid.UUID, *, scope: Scope) -> WorkloadRow | None:
    """The workload, locked for a change (inside a transaction)."""
    return await fetch_one(
        conn,
        WorkloadRow,
        f"SELECT {_COLUMNS} FROM workloads WHERE id = %(id)s AND {in_scope('project_id')}"
        " FOR UPDATE",
        {"id": workload_id, "scope": scope},
    )


async def request_phase(
    conn: Conn, workload_id: uuid.UUID, *, desired: str, event: Event
) -> WorkloadRow:
    """Set the desired phase (the reconciler does the work): a new generation for the outbox;
    a deletion also frees the name and shows ``Deleting`` at once."""
    row = await fetch_one(
        conn,
        WorkloadRow,
        f"""
        UPDATE workloads SET desired_phase = %(desired)s, generation = generation + 1,
            updated_at = now(),
            deleted_at = CASE WHEN %(deleting)s THEN now() ELSE deleted_at END,
            phase = CASE WHEN %(deleting)s THEN 'Deleting' ELSE phase END,
            phase_message = CASE WHEN %(deleting)s THEN %(message)s ELSE phase_message END,
            phase_updated_at = CASE WHEN %(deleting)s THEN now() ELSE phase_updated_at END
        WHERE id = %(id)s RETURNING {_COLUMNS}
        """,
        {
            "id": workload_id,
            "desired": desired,
            "deleting": desired == "Deleted",
            "message": event.message,
        },
    )
    assert row is not None
    await insert_events(conn, [event])
    return row


# --- idempotency keys -----------------------------------------------------------------------------


async def replay(
    conn: Conn, *, principal: str, key: str
) -> tuple[str, int, Any, str | None] | None:
    """(request hash, status, response, location) first answered to this key, within 24 h."""
    cursor = await conn.execute(
        "SELECT request_hash, status, response, location FROM idempotency_keys"
        " WHERE principal = %s AND key = %s AND created_at > now() - interval '24 hours'",
        (principal, key),
    )
    row = await cursor.fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


async def remember(
    conn: Conn,
    *,
    principal: str,
    key: str,
    digest: str,
    status: int,
    response: Any,
    location: str | None,
) -> bool:
    """Keep the answer to a key; False when a live answer is already there (a concurrent
    duplicate). An expired one is replaced."""
    cursor = await conn.execute(
        """
        INSERT INTO idempotency_keys (principal, key, request_hash, status, response, location)
        VALUES (%s, %s, %s, %s, %s, %s)
        ON CONFLICT (principal, key) DO UPDATE SET request_hash = excluded.request_hash,
            status = excluded.status, response = excluded.response,
            location = excluded.location, created_at = now()
        WHERE idempotency_keys.created_at <= now() - interval '24 hours'
        RETURNING key
        """,
        (principal, key, digest, status, Jsonb(response), location),
    )
    return await cursor.fetchone() is not None


async def purge_idempotency_keys(conn: Conn) -> int:
    cursor = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at <= now() - interval '24 hours'"
    )
    return cursor.rowcount


# --- the cluster's events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterEvents:
    """A workload's cluster events to store (app.reconciler.events rows), and its phase now."""

    workload_id: uuid.UUID
    phase: str
    events: list[dict[str, Any]]


# One row per Kubernetes event (by uid): an event that repeats updates its row.
_STORE_CLUSTER_EVENTS = """
    INSERT INTO workload_events AS e (workload_id, created_at, type, phase, reason, message,
        source, uid, count, first_seen, last_seen, involved_object)
    SELECT (w.value->>'workload_id')::uuid,
           coalesce((x.value->>'first_seen')::timestamptz, now()),
           x.value->>'type', w.value->>'phase', x.value->>'reason', x.value->>'message',
           'kubernetes', x.value->>'uid', (x.value->>'count')::int,
           (x.value->>'first_seen')::timestamptz, (x.value->>'last_seen')::timestamptz,
           x.value->'involved_object'
    FROM jsonb_array_elements(%(rows)s::jsonb) AS w,
         jsonb_array_elements(w.value->'events') AS x
    WHERE EXISTS (SELECT 1 FROM workloads WHERE id = (w.value->>'workload_id')::uuid)
    ON CONFLICT (workload_id, uid) WHERE uid IS NOT NULL DO UPDATE SET
        count = excluded.count, last_seen = excluded.last_seen, message = excluded.message
"""


async def store_cluster_events(conn: Conn, items: Sequence[ClusterEvents]) -> None:
    rows = [
        {"workload_id": str(i.workload_id), "phase": i.phase, "events": i.events} for i in items
    ]
    await conn.execute(_STORE_CLUSTER_EVENTS, {"rows": Jsonb(rows)})


# The channel that wakes the reconciler: a trigger on workloads notifies it whenever the desired
# state changes (a submission, a suspend, resume or delete), when that transaction commits.
OUTBOX_CHANNEL = "runplane_outbox"
# The channel of workload changes (migration 0005): a trigger notifies it with the workload's id
# whenever what a reader sees of it changes; API processes fan it out to their watchers
# (app.workloads.changes).
CHANGES_CHANNEL = "runplane_workload_changes"


# --- the reconciler's reads and writes ------------------------------------------------------------

# PostgreSQL's row version: it changes whenever anyone writes the row. The reconciler reads it
# with each row and writes back only where it is unchanged, so that a suspend or delete committed
# during a cycle is never overwritten by what that cycle derived from an older row.
_XMIN: LiteralString = "xmin::text AS xmin"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A workload whose desired state (generation) is ahead of what was applied."""

    id: uuid.UUID
    xmin: str
    namespace: str
    desired_phase: str
    generation: int
    applied_generation: int
    manifests: list[dict[str, Any]]
    objects: list[dict[str, str]]
    phase: str
    phase_message: str


@dataclass(frozen=True, slots=True)
class ActiveRow:
    """What a cycle reads of every workload not yet Deleted."""

    id: uuid.UUID
    xmin: str
    type: str
    namespace: str
    desired_phase: str
    applied_generation: int


@dataclass(frozen=True, slots=True)
class StoredStatus:
    id: uuid.UUID
    xmin: str
    phase: str
    phase_message: str
    conditions: list[dict[str, Any]]
    pods: dict[str, int]
    pod_list: list[dict[str, Any]]
    urls: list[dict[str, Any]]


def _with_xmin(row_type: type[Any]) -> LiteralString:
    return columns(row_type).replace("xmin", _XMIN)


async def outbox(conn: Conn, *, limit: int) -> list[OutboxRow]:
    return await fetch_all(
        conn,
        OutboxRow,
        f"SELECT {_with_xmin(OutboxRow)} FROM workloads WHERE applied_generation < generation"
        " ORDER BY created_at LIMIT %s",
        (limit,),
    )


async def active(conn: Conn, ids: Sequence[uuid.UUID] | None = None) -> list[ActiveRow]:
    """Every workload not yet Deleted, or those of them among ``ids``."""
    if ids is None:
        return await fetch_all(
            conn,
            ActiveRow,
            f"SELECT {_with_xmin(ActiveRow)} FROM workloads WHERE phase <> 'Deleted'",
        )
    return await fetch_all(
        conn,
        ActiveRow,
        f"SELECT {_with_xmin(ActiveRow)} FROM workloads WHERE id = ANY(%s) AND phase <> 'Deleted'",
        (list(ids),),
    )


async def statuses(conn: Conn, ids: Sequence[uuid.UUID]) -> list[StoredStatus]:
    return await fetch_all(
        conn,
        StoredStatus,
        f"SELECT {_with_xmin(StoredStatus)} FROM workloads WHERE id = ANY(%s)",
        (list(ids),),
    )


@dataclass(frozen=True, slots=True)
class StatusWrite:
    """What the reconciler writes of one workload; None leaves a column as it is."""

    id: uuid.UUID
    xmin: str  # the row version the cycle read: the write happens only if it is still that
    applied_generation: int | None = None
    phase: str | None = None
    message: str | None = None
    conditions: list[dict[str, Any]] | None = None
    pods: dict[str, int] | None = None
    pod_list: list[dict[str, Any]] | None = None
    urls: list[dict[str, Any]] | None = None
    log_history: dict[str, Any] | None = None
    event: Event | None = None


_WRITE_STATUS = f"""
    WITH input AS (
        SELECT (x.value->>'id')::uuid AS id, x.value AS item
        FROM jsonb_array_elements(%(rows)s::jsonb) AS x
    ),
    written AS (
        UPDATE workloads w SET
            applied_generation = coalesce((i.item->>'applied_generation')::int,
                                          w.applied_generation),
            phase = coalesce(i.item->>'phase', w.phase),
            phase_message = coalesce(i.item->>'message', w.phase_message),
            conditions = coalesce(i.item->'conditions', w.conditions),
            pods = coalesce(i.item->'pods', w.pods),
            pod_list = coalesce(i.item->'pod_list', w.pod_list),
            urls = coalesce(i.item->'urls', w.urls),
            log_history = coalesce(i.item->'log_history', w.log_history),
            phase_updated_at = CASE WHEN coalesce(i.item->>'phase', w.phase) <> w.phase
                                    THEN %(now)s ELSE w.phase_updated_at END,
            updated_at = now()
        FROM input i
        WHERE w.id = i.id AND w.xmin::text = i.item->>'xmin'
        RETURNING w.id
    ),
    e AS (
        {
    _events_insert(
        source="written JOIN input USING (id)",
        record="input.item->'event'",
        time="now()",
        where="input.item->'event' <> 'null'",
    )
}
    )
    SELECT id FROM written
"""


async def write_statuses(
    conn: Conn, writes: Sequence[StatusWrite], *, now: datetime
) -> set[uuid.UUID]:
    """Write each change (and its event) where the row is still the version read; the ids
    written. The others changed meanwhile: the next cycle looks at them again."""
    if not writes:
        return set()
    rows = [{k: v for k, v in asdict(w).items() if v is not None or k == "event"} for w in writes]
    cursor = await conn.execute(_WRITE_STATUS, {"rows": Jsonb(rows), "now": now})
    return {ident for (ident,) in await cursor.fetchall()}
