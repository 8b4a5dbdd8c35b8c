"""The ``simulated`` backend: a cluster kept in PostgreSQL, played by app.cluster.simulation.

It validates objects as an API server would (the schema checks of the rendering tests), stores
what was applied per workload, and on ``observe`` runs the pure simulation over every stored
workload at once, so status derivation runs end to end without a cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from app.cluster.backend import (
    Manifest,
    ObjectRef,
    ObjectRejected,
    Observation,
    Observed,
)
from app.cluster.simulated_events import cluster_events
from app.cluster.simulation import (
    ClusterShape,
    SimCache,
    SimInput,
    SimResult,
    Timing,
    simulate,
)
from app.db import BlockingDatabase, Conn
from app.domain.quota import QuotaBook
from app.projects import repository as projects
from app.rendering import is_stopped, stopped_form
from app.rendering.validation import validate_manifests
from app.sql import columns, fetch_all

_TICK = timedelta(microseconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- the store: the simulated cluster's table --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Placed:
    """A workload's applied objects as the simulation needs them; ``xmin`` is the row version."""

    workload_id: uuid.UUID
    xmin: str
    applied_at: datetime
    resumed_at: datetime | None
    stopped_at: datetime | None
    scheduled_at: datetime | None
    preempted_at: datetime | None
    preempted_by: str | None


async def _apply(
    conn: Conn, *, workload_id: uuid.UUID, namespace: str, manifests: list[Manifest], now: datetime
) -> None:
    """Store what was applied; a stop or a resume is recorded by when it happened (a resumed
    workload queues for the scheduler again)."""
    stopped = is_stopped(manifests)
    await conn.execute(
        """
        INSERT INTO simulated_workloads AS s (workload_id, namespace, manifests, applied_at,
                                              stopped_at)
        VALUES (%(id)s, %(namespace)s, %(manifests)s, %(now)s,
                CASE WHEN %(stopped)s THEN %(now)s::timestamptz END)
        ON CONFLICT (workload_id) DO UPDATE SET manifests = excluded.manifests,
            stopped_at = CASE
                WHEN %(stopped)s THEN coalesce(s.stopped_at, %(now)s) ELSE NULL END,
            resumed_at = CASE
                WHEN NOT %(stopped)s AND s.stopped_at IS NOT NULL THEN %(now)s
                ELSE s.resumed_at END,
            scheduled_at = CASE
                WHEN NOT %(stopped)s AND s.stopped_at IS NOT NULL THEN NULL
                ELSE s.scheduled_at END
        """,
        {
            "id": workload_id,
            "namespace": namespace,
            "manifests": Jsonb(manifests),
            "now": now,
            "stopped": stopped,
        },
    )


async def _delete(conn: Conn, workload_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM simulated_workloads WHERE workload_id = %s", (workload_id,))


async def _placed(conn: Conn) -> list[_Placed]:
    return await fetch_all(
        conn,
        _Placed,
        "SELECT "
        + columns(_Placed).replace("xmin", "xmin::text AS xmin")
        + " FROM simulated_workloads",
    )


async def _manifests(conn: Conn, ids: list[uuid.UUID]) -> list[tuple[uuid.UUID, str, Any]]:
    cursor = await conn.execute(
        "SELECT workload_id, xmin::text, manifests FROM simulated_workloads"
        " WHERE workload_id = ANY(%s)",
        (ids,),
    )
    return await cursor.fetchall()


async def _pin(
    conn: Conn, placed: list[tuple[uuid.UUID, datetime | None, datetime | None, str | None]]
) -> None:
    await conn.cursor().executemany(
        "UPDATE simulated_workloads SET scheduled_at = %s, preempted_at = %s, preempted_by = %s"
        " WHERE workload_id = %s",
        [(when, preempted_at, by, ident) for ident, when, preempted_at, by in placed],
    )


async def _projects(conn: Conn) -> list[tuple[str, list[Manifest]]]:
    cursor = await conn.execute("SELECT owner, manifests FROM simulated_projects")
    return await cursor.fetchall()


async def _store_project(conn: Conn, owner: str, manifests: list[Manifest]) -> None:
    if not manifests:
        await conn.execute("DELETE FROM simulated_projects WHERE owner = %s", (owner,))
        return
    await conn.execute(
        "INSERT INTO simulated_projects (owner, manifests) VALUES (%s, %s)"
        " ON CONFLICT (owner) DO UPDATE SET manifests = excluded.manifests",
        (owner, Jsonb(manifests)),
    )


class _Results(Mapping[str, Observed]):
    """The simulation's results by workload id; each workload's events are made only when a
    cycle reads it."""

    def __init__(self, results: dict[str, SimResult]) -> None:
        self._results = results

    def __getitem__(self, workload_id: str) -> Observed:
        r = self._results[workload_id]
        return Observed(objects=r.objects, pods=r.pods, events=cluster_events(r.objects, r.pods))

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


# --- the backend --------------------------------------------------------------------------------


class SimulatedBackend:
    name = "simulated"

    def __init__(
        self,
        db: BlockingDatabase,
        *,
        cluster: ClusterShape,
        timing: Timing,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.cluster = cluster
        self.timing = timing
        self.clock = clock
        # Remembers each workload's plan between cycles: a steady cycle costs a few µs each.
        self.cache = SimCache()
        # Parsed manifests by workload, valid while the row's xmin (its last writer) is the same:
        # a steady cycle reads a few small columns instead of every workload's manifests.
        self._manifests: dict[uuid.UUID, tuple[str, list[Manifest]]] = {}
        self._nodes = cluster.node_objects()
        self._last_applied = datetime.min.replace(tzinfo=UTC)
        # The projects' quotas: it schedules by them as KAI-Scheduler by the projects' queues.
        self._quotas = QuotaBook()
        # The projects' own objects, by project ("" for what they share): the database keeps
        # them, this process (the only writer, as the active reconciler) reads them once.
        self._projects: dict[str, list[Manifest]] | None = None

    def apply(self, *, workload_id: str, namespace: str, manifests: Sequence[Manifest]) -> None:
        problems = validate_manifests(manifests)
        if problems:
            raise ObjectRejected("; ".join(problems[:5]))
        # Applied in submission order (the reconciler's outbox): each a moment after the last,
        # so that the scheduler's queues keep that order whatever the clock's resolution.
        now = max(self.clock(), self._last_applied + _TICK)
        self._last_applied = now
        self.db.run(
            _apply,
            workload_id=uuid.UUID(workload_id),
            namespace=namespace,
            manifests=list(manifests),
            now=now,
        )

    def set_queue_active(self, *, workload_id: str, namespace: str, active: bool) -> None:
        """No Kueue here: a stop or a resume is the stopped or the running form, applied."""
        ident = uuid.UUID(workload_id)
        stored = self._manifests.get(ident)
        manifests = stored[1] if stored is not None else self.db.run(_manifests, ids=[ident])[0][2]
        self.apply(
            workload_id=workload_id,
            namespace=namespace,
            manifests=manifests if active else stopped_form(manifests),
        )

    def apply_project(self, *, project: str, manifests: Sequence[Manifest]) -> None:
        problems = validate_manifests(manifests)
        if problems:
            raise ObjectRejected("; ".join(problems[:5]))
        stored = self._project_objects()
        kept = {ObjectRef.of(m): m for m in stored.get(project, [])}
        kept.update({ObjectRef.of(m): dict(m) for m in manifests})
        self._save(project, list(kept.values()))

    def delete_project_objects(self, *, project: str, objects: Sequence[ObjectRef]) -> None:
        gone = set(objects)
        left = [m for m in self._project_objects().get(project, []) if ObjectRef.of(m) not in gone]
        self._save(project, left)

    def _save(self, project: str, manifests: list[Manifest]) -> None:
        self.db.run(_store_project, project, manifests)
        stored = self._project_objects()
        if manifests:
            stored[project] = manifests
        else:
            stored.pop(project, None)

    def _project_objects(self) -> dict[str, list[Manifest]]:
        if self._projects is None:
            self._projects = dict(self.db.run(_projects))
        return self._projects

    def watch(self, wake: Callable[[], None]) -> None:
        """The simulation changes with time, not by events: the reconciler's interval drives it."""

    def close(self) -> None:
        """Nothing runs in the background; the database is the reconciler's."""

    def delete(self, *, workload_id: str, namespace: str, objects: Sequence[ObjectRef]) -> None:
        self.db.run(_delete, workload_id=uuid.UUID(workload_id))

    def observe(self) -> Observation:
        now = self.clock()
        rows = self.db.run(_placed)
        manifests = self._load_manifests(rows)
        quotas = self._quotas.update(self.db.run(projects.quotas))
        inputs = [
            SimInput(
                key=str(r.workload_id),
                manifests=manifests[r.workload_id],
                applied_at=r.applied_at,
                resumed_at=r.resumed_at,
                stopped_at=r.stopped_at,
                scheduled_at=r.scheduled_at,
                preempted_at=r.preempted_at,
                preempted_by=r.preempted_by,
            )
            for r in rows
        ]
        results = simulate(
            workloads=inputs,
            cluster=self.cluster,
            now=now,
            timing=self.timing,
            cache=self.cache,
            quotas=quotas,
        )
        # The scheduler's decisions are state: pin new placements and preemptions so that later
        # ones don't move them.
        placed = [
            (uuid.UUID(res.key), res.scheduled_at, res.preempted_at, res.preempted_by)
            for res, inp in zip(results, inputs, strict=True)
            if (res.scheduled_at, res.preempted_at) != (inp.scheduled_at, inp.preempted_at)
        ]
        if placed:
            self.db.run(_pin, placed=placed)
        return Observation(
            workloads=_Results({r.key: r for r in results}),
            list_calls=1,
            nodes=self._nodes,
            # Namespaces are created, never watched nor deleted: as the kubernetes backend.
            projects={
                owner: kept
                for owner, objects in self._project_objects().items()
                if (kept := [m for m in objects if m.get("kind") != "Namespace"])
            },
        )

    def _load_manifests(self, rows: Sequence[_Placed]) -> dict[uuid.UUID, list[Manifest]]:
        cached = self._manifests
        stale = [r.workload_id for r in rows if cached.get(r.workload_id, ("",))[0] != r.xmin]
        if stale:
            for ident, xmin, manifests in self.db.run(_manifests, ids=stale):
                cached[ident] = (xmin, manifests)
        self._manifests = {
            r.workload_id: cached[r.workload_id] for r in rows if r.workload_id in cached
        }
        return {ident: entry[1] for ident, entry in self._manifests.items()}
