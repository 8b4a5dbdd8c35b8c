"""The ``simulated`` backend: a cluster kept in PostgreSQL, played by app.cluster.simulation.

It validates objects as an API server would (the schema checks of the rendering tests), stores
what was applied per workload, and on ``observe`` runs the pure simulation over every stored
workload at once, so status derivation runs end to end without a cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Label, delete, literal_column, select, update
from sqlalchemy.orm import Session

from app.cluster.backend import (
    Manifest,
    ObjectRef,
    ObjectRejected,
    Observation,
    Observed,
)
from app.cluster.simulation import ClusterShape, SimCache, SimInput, Timing, simulate
from app.db import Database
from app.models import SimulatedWorkload
from app.rendering import is_stopped
from app.rendering.validation import validate_manifests

# PostgreSQL's row version: it changes whenever the row is written, by anyone.
XMIN: Label[str] = literal_column("simulated_workloads.xmin::text").label("xmin")


def utcnow() -> datetime:
    return datetime.now(UTC)


class SimulatedBackend:
    name = "simulated"

    def __init__(
        self,
        db: Database,
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

    def apply(self, *, workload_id: str, namespace: str, manifests: Sequence[Manifest]) -> None:
        problems = validate_manifests(manifests)
        if problems:
            raise ObjectRejected("; ".join(problems[:5]))
        now = self.clock()
        stopped = is_stopped(manifests)
        with self.db.session() as session:
            row = session.get(SimulatedWorkload, uuid.UUID(workload_id), with_for_update=True)
            if row is None:
                session.add(
                    SimulatedWorkload(
                        workload_id=uuid.UUID(workload_id),
                        namespace=namespace,
                        manifests=list(manifests),
                        applied_at=now,
                        stopped_at=now if stopped else None,
                    )
                )
                return
            was_stopped = row.stopped_at is not None
            row.manifests = list(manifests)
            if stopped and not was_stopped:
                row.stopped_at = now
            elif was_stopped and not stopped:
                # A resumed workload queues for the scheduler again.
                row.stopped_at, row.resumed_at, row.scheduled_at = None, now, None

    def delete(self, *, workload_id: str, namespace: str, objects: Sequence[ObjectRef]) -> None:
        with self.db.session() as session:
            session.execute(
                delete(SimulatedWorkload).where(
                    SimulatedWorkload.workload_id == uuid.UUID(workload_id)
                )
            )

    def observe(self) -> Observation:
        now = self.clock()
        with self.db.session() as session:
            rows = session.execute(
                select(
                    SimulatedWorkload.workload_id,
                    XMIN,
                    SimulatedWorkload.applied_at,
                    SimulatedWorkload.resumed_at,
                    SimulatedWorkload.stopped_at,
                    SimulatedWorkload.scheduled_at,
                )
            ).all()
            manifests = self._load_manifests(session, rows)
            inputs = [
                SimInput(
                    key=str(r.workload_id),
                    manifests=manifests[r.workload_id],
                    applied_at=r.applied_at,
                    resumed_at=r.resumed_at,
                    stopped_at=r.stopped_at,
                    scheduled_at=r.scheduled_at,
                )
                for r in rows
            ]
            results = simulate(
                workloads=inputs,
                cluster=self.cluster,
                now=now,
                timing=self.timing,
                cache=self.cache,
            )
            # The scheduler's decisions are state: pin new placements so later ones don't move them.
            placed = [
                {"workload_id": uuid.UUID(res.key), "scheduled_at": res.scheduled_at}
                for res, inp in zip(results, inputs, strict=True)
                if res.scheduled_at != inp.scheduled_at
            ]
            if placed:
                session.execute(update(SimulatedWorkload), placed)
        return Observation(
            workloads={r.key: Observed(objects=r.objects, pods=r.pods) for r in results},
            list_calls=1,
        )

    def _load_manifests(
        self, session: Session, rows: Sequence[Any]
    ) -> dict[uuid.UUID, list[Manifest]]:
        cached = self._manifests
        stale = [r.workload_id for r in rows if cached.get(r.workload_id, ("",))[0] != r.xmin]
        if stale:
            for ident, xmin, manifests in session.execute(
                select(SimulatedWorkload.workload_id, XMIN, SimulatedWorkload.manifests).where(
                    SimulatedWorkload.workload_id.in_(stale)
                )
            ):
                cached[ident] = (xmin, manifests)
        self._manifests = {
            r.workload_id: cached[r.workload_id] for r in rows if r.workload_id in cached
        }
        return {ident: entry[1] for ident, entry in self._manifests.items()}
