"""The reconciler: bring the cluster to each workload's desired phase and read status back.

Exactly one reconciler is active across processes: the leader holds a PostgreSQL advisory lock
on a connection of its own, so a leader that dies (or loses its connection) frees the lock and a
standby takes over. Each cycle:

1. observe the cluster: one list call per kind, grouped by workload id;
2. drain the outbox: workloads whose desired state (``generation``) is ahead of what was applied
   (``applied_generation``) are applied, stopped, resumed or deleted; a cluster that is away
   leaves them in the outbox with a message, so nothing submitted is lost;
3. derive every active workload's status (a pure function) and write status and an event only
   for the workloads whose status changed;
4. count orphans: managed objects whose workload is gone.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Label, insert, literal_column, select, text, update

from app.cluster.backend import (
    ClusterBackend,
    ClusterError,
    ClusterUnreachable,
    KindNotInstalled,
    ObjectRef,
    ObjectRejected,
    Observation,
)
from app.db import Database
from app.models import Workload, WorkloadEvent
from app.observability import IS_LEADER, ORPHAN_OBJECTS, RECONCILE_CYCLES, RECONCILE_DURATION
from app.reconciler.status import WorkloadStatus, derive_status, status_changed
from app.rendering import stopped_form

log = logging.getLogger("runplane.reconciler")

# pg_advisory_lock key: "runplane" as a 64-bit number, shared by every process.
LOCK_KEY = 0x72756E706C616E65
OUTBOX_BATCH = 500
# PostgreSQL's row version: it changes whenever the row is written, by anyone.
WORKLOAD_XMIN: Label[str] = literal_column("workloads.xmin::text").label("xmin")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CycleReport:
    applied: int = 0
    deleted: int = 0
    apply_errors: int = 0
    status_updates: int = 0
    list_calls: int = 0
    orphans: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Outcome:
    """What happened to one outbox entry."""

    row: Any  # the outbox row: id, phase, phase_message...
    applied_generation: int | None  # None: leave it in the outbox
    phase: str | None = None
    message: str | None = None
    reason: str = ""

    @property
    def workload_id(self) -> uuid.UUID:
        workload_id: uuid.UUID = self.row.id
        return workload_id


class Reconciler:
    def __init__(
        self,
        *,
        db: Database,
        backend: ClusterBackend,
        pending_timeout: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.backend = backend
        self.pending_timeout = timedelta(seconds=pending_timeout)
        self.clock = clock
        self._statuses: dict[uuid.UUID, tuple[str, WorkloadStatus]] = {}

    # --- one cycle ------------------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        # A cycle allocates a few objects per pod and frees them all at its end; the cyclic
        # garbage collector would only re-scan them, many times over for 10,000 workloads.
        gc.disable()
        try:
            return self._cycle()
        finally:
            gc.enable()

    def _cycle(self) -> CycleReport:
        started = time.perf_counter()
        report = CycleReport()
        now = self.clock()
        cluster_error: str | None = None
        try:
            observation = self.backend.observe()
        except ClusterError as exc:
            cluster_error = str(exc)
            log.warning("observe failed: %s", exc)
            observation = Observation(workloads={}, list_calls=0)
        report.list_calls = observation.list_calls
        just_applied = self._drain_outbox(observation, report, reachable=cluster_error is None)
        self._update_statuses(
            observation, now=now, skip=just_applied, cluster_error=cluster_error, report=report
        )
        report.seconds = time.perf_counter() - started
        RECONCILE_DURATION.observe(report.seconds)
        RECONCILE_CYCLES.labels("error" if cluster_error else "ok").inc()
        return report

    def _drain_outbox(
        self, observation: Observation, report: CycleReport, *, reachable: bool
    ) -> set[uuid.UUID]:
        with self.db.session() as session:
            rows = session.execute(
                select(
                    Workload.id,
                    Workload.namespace,
                    Workload.desired_phase,
                    Workload.generation,
                    Workload.applied_generation,
                    Workload.manifests,
                    Workload.objects,
                    Workload.phase,
                    Workload.phase_message,
                )
                .where(Workload.applied_generation < Workload.generation)
                .order_by(Workload.created_at)
                .limit(OUTBOX_BATCH)
            ).all()
        if not rows:
            return set()
        outcomes: list[_Outcome] = []
        taken = _names_in_use(observation)
        for row in rows:
            if not reachable:
                outcomes.append(_unreachable(row, "the cluster could not be listed"))
                continue
            outcome = self._act(row, taken)
            outcomes.append(outcome)
            if outcome.reason == "ClusterUnreachable":
                reachable = False  # don't hammer a cluster that is away
        self._record_outcomes(outcomes, report)
        return {o.workload_id for o in outcomes if o.applied_generation is not None}

    def _act(self, row: Any, taken: dict[tuple[str, str, str], str]) -> _Outcome:
        workload_id = str(row.id)
        try:
            if row.desired_phase == "Deleted":
                self.backend.delete(
                    workload_id=workload_id,
                    namespace=row.namespace,
                    objects=[ObjectRef(o["apiVersion"], o["kind"], o["name"]) for o in row.objects],
                )
                return _Outcome(row, row.generation, reason="DeleteSent")
            for obj in row.objects:
                owner = taken.get((row.namespace, obj["kind"], obj["name"]))
                if owner is not None and owner != workload_id:
                    return _Outcome(
                        row,
                        None,
                        message=f"Waiting for the previous {obj['kind']} {obj['name']!r} "
                        "(a deleted workload of the same name) to be removed.",
                        reason="NameInUse",
                    )
            manifests = (
                stopped_form(row.manifests) if row.desired_phase == "Stopped" else row.manifests
            )
            self.backend.apply(
                workload_id=workload_id, namespace=row.namespace, manifests=manifests
            )
            return _Outcome(row, row.generation, reason="Applied")
        except KindNotInstalled as exc:
            return _Outcome(row, row.generation, "Failed", str(exc), reason="KindNotInstalled")
        except ObjectRejected as exc:
            return _Outcome(
                row,
                row.generation,
                "Failed",
                f"The cluster rejected the workload's objects: {exc}",
                reason="Rejected",
            )
        except ClusterUnreachable as exc:
            log.warning("apply of %s failed: %s", workload_id, exc)
            return _unreachable(row, str(exc))
        except ClusterError as exc:
            # Retryable but about this workload alone (e.g. its namespace is terminating).
            return _Outcome(row, None, message=f"Will retry: {exc}", reason="ClusterRetry")

    def _record_outcomes(self, outcomes: list[_Outcome], report: CycleReport) -> None:
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for o in outcomes:
            values: dict[str, Any] = {"id": o.workload_id}
            if o.applied_generation is not None:
                values["applied_generation"] = o.applied_generation
                if o.reason in ("Applied", "DeleteSent"):
                    report.applied += o.reason == "Applied"
                    report.deleted += o.reason == "DeleteSent"
            else:
                report.apply_errors += 1
            # A cluster that stays away must not rewrite the same message every cycle.
            if o.message is not None and o.message != o.row.phase_message:
                values["phase_message"] = o.message
            if o.phase is not None:
                values["phase"] = o.phase
                values["phase_updated_at"] = self.clock()
                report.apply_errors += 1
            if len(values) > 1:
                updates.append(values)
            if o.phase is not None or o.reason in ("Applied", "DeleteSent"):
                events.append(
                    {
                        "workload_id": o.workload_id,
                        "type": "Cluster",
                        "phase": o.phase or o.row.phase,
                        "reason": o.reason,
                        "message": o.message or _EVENT_TEXT.get(o.reason, ""),
                    }
                )
        with self.db.session() as session:
            if updates:
                _bulk_update(session, updates)
            if events:
                session.execute(insert(WorkloadEvent), events)

    # --- status -----------------------------------------------------------------------------------

    def _update_statuses(
        self,
        observation: Observation,
        *,
        now: datetime,
        skip: set[uuid.UUID],
        cluster_error: str | None,
        report: CycleReport,
    ) -> None:
        live: set[str] = set()
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        with self.db.session() as session:
            rows = session.execute(
                select(
                    Workload.id,
                    Workload.type,
                    Workload.desired_phase,
                    Workload.applied_generation,
                    WORKLOAD_XMIN,
                ).where(Workload.phase != "Deleted")
            ).all()
            previous = self._previous_statuses(session, rows)
            for row in rows:
                workload_id = str(row.id)
                live.add(workload_id)
                if row.id in skip or (
                    row.applied_generation == 0 and row.desired_phase != "Deleted"
                ):
                    continue  # not in the cluster yet, or applied this cycle: observed next cycle
                before = previous[row.id]
                observed = observation.of(workload_id)
                if before.phase == "Failed" and row.desired_phase != "Deleted":
                    if not observed.objects and not observed.pods:
                        continue  # failed before anything reached the cluster: keep the reason
                status = derive_status(
                    workload_type=row.type,
                    desired_phase=row.desired_phase,
                    objects=observed.objects,
                    pods=observed.pods,
                    applied=row.applied_generation > 0,
                    now=now,
                    pending_timeout=self.pending_timeout,
                    previous=before,
                    cluster_error=cluster_error,
                )
                if not status_changed(before, status):
                    continue
                doc = status.to_dict()
                update = {
                    "id": row.id,
                    "phase": status.phase,
                    "phase_message": status.message,
                    "conditions": doc["conditions"],
                    "pods": doc["pods"],
                }
                if status.phase != before.phase:
                    update["phase_updated_at"] = now
                updates.append(update)
                if status.phase != before.phase or status.message != before.message:
                    events.append(
                        {
                            "workload_id": row.id,
                            "type": "PhaseChanged" if status.phase != before.phase else "Status",
                            "phase": status.phase,
                            "reason": status.reason or status.phase,
                            "message": status.message,
                        }
                    )
            if updates:
                _bulk_update(session, updates)
            if events:
                session.execute(insert(WorkloadEvent), events)
        report.status_updates = len(updates)
        if cluster_error is None:
            self._count_orphans(observation, live, report)

    def _previous_statuses(
        self, session: Any, rows: Sequence[Any]
    ) -> dict[uuid.UUID, WorkloadStatus]:
        """Each row's stored status, parsed only when the row changed since the last cycle.

        A row's ``xmin`` changes whenever anyone writes it (this loop or an API request), so an
        unchanged ``xmin`` means the cached parse is still what is stored.
        """
        cached = self._statuses
        stale = [r.id for r in rows if cached.get(r.id, ("",))[0] != r.xmin]
        if stale:
            for r in session.execute(
                select(
                    Workload.id,
                    WORKLOAD_XMIN,
                    Workload.phase,
                    Workload.phase_message,
                    Workload.conditions,
                    Workload.pods,
                ).where(Workload.id.in_(stale))
            ):
                cached[r.id] = (
                    r.xmin,
                    WorkloadStatus.from_dict(
                        {
                            "phase": r.phase,
                            "phaseMessage": r.phase_message,
                            "conditions": r.conditions,
                            "pods": r.pods,
                        }
                    ),
                )
        self._statuses = {r.id: cached[r.id] for r in rows if r.id in cached}
        return {ident: entry[1] for ident, entry in self._statuses.items()}

    @staticmethod
    def _count_orphans(observation: Observation, live: set[str], report: CycleReport) -> None:
        orphans: Counter[str] = Counter()
        for workload_id, observed in observation.workloads.items():
            if workload_id not in live:
                orphans.update(o["kind"] for o in observed.objects)
        report.orphans = dict(orphans)
        ORPHAN_OBJECTS.clear()
        for kind, count in orphans.items():
            ORPHAN_OBJECTS.labels(kind).set(count)

    # --- running ----------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, interval: float) -> None:
        """Stand by until this process holds the lock, then reconcile every ``interval`` s."""
        leader: Connection | None = None
        try:
            while not stop.is_set():
                if leader is None:
                    leader = self._try_lead()
                if leader is not None:
                    try:
                        leader.execute(text("SELECT 1"))
                        self.cycle()
                    except Exception:
                        log.exception("reconcile cycle failed")
                        _release(leader)
                        leader = None
                stop.wait(interval)
        finally:
            _release(leader)

    def _try_lead(self) -> Connection | None:
        try:
            conn = self.db.engine.connect()
        except Exception as exc:
            log.warning("reconciler cannot reach the database: %s", exc)
            return None
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        conn.commit()
        if not got:
            conn.close()
            return None
        log.info("this process is now the active reconciler")
        IS_LEADER.set(1)
        return conn


def _release(conn: Connection | None) -> None:
    IS_LEADER.set(0)
    if conn is None:
        return
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        conn.commit()
        conn.close()
    except Exception:
        conn.invalidate()  # the server frees the lock when the session ends
    return None


_EVENT_TEXT = {
    "Applied": "Applied to the cluster.",
    "DeleteSent": "Deletion sent to the cluster.",
}


def _unreachable(row: Any, why: str) -> _Outcome:
    return _Outcome(
        row,
        None,
        message=f"The cluster is unreachable; will retry: {why}",
        reason="ClusterUnreachable",
    )


def _names_in_use(observation: Observation) -> dict[tuple[str, str, str], str]:
    taken: dict[tuple[str, str, str], str] = {}
    for workload_id, observed in observation.workloads.items():
        for obj in observed.objects:
            meta = obj.get("metadata") or {}
            taken[(meta.get("namespace", ""), obj.get("kind", ""), meta.get("name", ""))] = (
                workload_id
            )
    return taken


def _bulk_update(session: Any, rows: list[dict[str, Any]]) -> None:
    """One executemany per set of columns (psycopg pipelines it)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        by_columns.setdefault(tuple(sorted(r)), []).append(r)
    for group in by_columns.values():
        session.execute(update(Workload), group)
