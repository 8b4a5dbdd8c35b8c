"""The reconciler: bring the cluster to each workload's desired phase and read status back.

Exactly one reconciler is active across processes: the leader holds a PostgreSQL advisory lock
on a connection of its own, so a leader that dies (or loses its connection) frees the lock and a
standby takes it at its next try, one interval later. A cycle runs every interval, and at once
when something changes: the cluster backend reports a change it watched, or the database
notifies a new desired state (a submission, a suspend...; app.workloads.repository
.OUTBOX_CHANNEL). Each cycle:

1. observe the cluster (the kubernetes backend answers from its watched cache);
2. drain the outbox: workloads whose desired state (``generation``) is ahead of what was applied
   (``applied_generation``) are applied, stopped, resumed or deleted; a cluster that is away
   leaves them in the outbox with a message, so nothing submitted is lost; an object the
   cluster keeps refusing (5xx, a namespace stuck terminating) is retried with a growing delay,
   and the workload fails with the reason after ``apply_retry_timeout``;
3. derive the status (a pure function) of the workloads whose objects changed, of those still
   on their way somewhere (not Running, Completed, Failed, Stopped), and of those just applied;
   every ``resync_seconds`` of all of them; write status and an event only where it changed;
4. on those full passes, count orphans: managed objects whose workload is gone;
5. (before 3) work out each project's usage and each node pool's capacity from the same
   observation (app.reconciler.usage; only the workloads whose objects changed are looked at
   again), store what changed, and say why each workload that waits for GPUs waits, with the
   figures (app.reconciler.queueing), for its status;
6. now and then, purge what has aged: idempotency keys after 24 hours, audit entries after the
   retention period.

Every write is conditional on the row version the cycle read (app.workloads.repository), so a
suspend, resume or delete committed during a cycle is never overwritten by it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg

from app.audit import repository as audit
from app.cluster.backend import (
    ClusterBackend,
    ClusterError,
    ClusterUnreachable,
    KindNotInstalled,
    Manifest,
    ObjectRef,
    ObjectRejected,
    Observation,
)
from app.config import Settings
from app.db import BlockingDatabase, conninfo
from app.domain.phases import DesiredPhase
from app.domain.quota import QuotaBook
from app.domain.resources import ProjectUsage
from app.domain.scheduling import Capacity
from app.nodepools import repository as node_pools_store
from app.observability import IS_LEADER, ORPHAN_OBJECTS, RECONCILE_CYCLES, RECONCILE_DURATION
from app.projects import repository as projects
from app.reconciler.events import Seen, changed_events, seen_key, timeline_events
from app.reconciler.pods import PodView, kept_views, pod_views
from app.reconciler.queueing import Explanation, explain
from app.reconciler.status import WorkloadStatus, derive_status, status_changed
from app.reconciler.urls import Url, workload_urls
from app.reconciler.usage import (
    NodePool,
    UsageTracker,
    WorkloadUsage,
    by_project,
    capacity,
    node_pools,
)
from app.rendering import DEFAULT_NODE_POOL_LABEL_KEY, Scheduler, queued_by_kueue, stopped_form
from app.rendering.project import ProjectContext, render_project, shared
from app.workloads import logs
from app.workloads import repository as workloads
from app.workloads.logs import LogTail
from app.workloads.repository import Event, OutboxRow, StatusWrite

log = logging.getLogger("runplane.reconciler")

# pg_advisory_lock key: "runplane" as a 64-bit number, shared by every process.
LOCK_KEY = 0x72756E706C616E65
OUTBOX_BATCH = 500
# Retries of an object the cluster refuses for a while: from one second, doubling, at most this.
RETRY_DELAY_MAX = timedelta(minutes=2)
PURGE_EVERY = timedelta(minutes=10)
# Phases that change only when the cluster does: a workload in any other phase is derived again
# every cycle (time moves its status: a pull that is stuck for too long, a crash that ages).
SETTLED = frozenset({"Running", "Completed", "Failed", "Stopped", "Deleted"})
# A workload that reaches one of these keeps the last lines of its pods' logs.
_FINISHED = frozenset({"Completed", "Failed"})
# After a wake-up, wait this long for more changes to arrive, so that a burst makes one cycle.
COALESCE_SECONDS = 0.05


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


@dataclass
class _Retrying:
    """A workload whose objects the cluster refused with a retryable error."""

    since: datetime
    attempts: int = 0
    next_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class _Stored:
    """What a workload shows now, as stored: its status, pods and URLs."""

    status: WorkloadStatus
    pod_list: list[PodView]
    urls: list[Url]


@dataclass(frozen=True)
class _Outcome:
    """What happened to one outbox entry."""

    row: OutboxRow
    applied: bool  # False: leave it in the outbox
    phase: str | None = None
    message: str | None = None
    reason: str = ""


class Reconciler:
    def __init__(
        self,
        *,
        db: BlockingDatabase,
        backend: ClusterBackend,
        pending_timeout: float,
        apply_retry_timeout: float = 600.0,
        audit_retention_days: float = 365.0,
        resync_seconds: float = 300.0,
        clock: Callable[[], datetime] = utcnow,
        after_read: Callable[[str], None] | None = None,
        log_tail: LogTail | None = None,
        node_pool_label: str = DEFAULT_NODE_POOL_LABEL_KEY,
        default_scheduler: Scheduler = "none",
    ) -> None:
        self.db = db
        self.backend = backend
        self.pending_timeout = timedelta(seconds=pending_timeout)
        self.apply_retry_timeout = timedelta(seconds=apply_retry_timeout)
        self.audit_retention_days = audit_retention_days
        self.resync = timedelta(seconds=resync_seconds)
        self.clock = clock
        # Tests: runs between a cycle's reads and its writes ("outbox", then "status"), to race
        # the API against them.
        self.after_read = after_read
        # Reads the last lines of a finished workload's containers, kept so that they outlive
        # the pods (None: keep none).
        self.log_tail = log_tail
        self._statuses: dict[uuid.UUID, tuple[str, _Stored]] = {}
        # The cluster events written of each workload, as written (uid -> count, last, message).
        self._events_seen: dict[uuid.UUID, dict[str, Seen]] = {}
        self._retrying: dict[uuid.UUID, _Retrying] = {}
        self._purged_at: datetime | None = None
        # Workloads to derive next cycle whatever the cluster says: still on their way
        # somewhere, or just applied.
        self._unsettled: set[uuid.UUID] = set()
        self._resynced_at: datetime | None = None
        self.node_pool_label = node_pool_label
        self.default_scheduler: Scheduler = default_scheduler
        # Projects' objects as rendered, by project: (generation, scheduler, manifests).
        self._project_manifests: dict[str, tuple[int, str, list[Manifest]]] = {}
        self._projects_synced_at: datetime | None = None
        # Project objects the cluster refused: not tried again before this time (but at once
        # when the project changes).
        self._project_backoff: dict[str, tuple[int, datetime]] = {}
        self._usage = UsageTracker()
        # What the database holds (None: not known yet, so the first write replaces it all).
        self._usage_stored: dict[str, ProjectUsage] | None = None
        self._pools_stored: list[NodePool] | None = None
        self._nodes_seen: object = None
        self._capacity: Capacity | None = None
        self._quotas = QuotaBook()
        self.wake = threading.Event()
        backend.watch(self.wake.set)
        self.last_report: CycleReport | None = None

    # --- one cycle ------------------------------------------------------------------------------

    def cycle(self) -> CycleReport:
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
        if cluster_error is None:
            # First: a workload may need its project's queue.
            self._sync_projects(observation, now=now)
        just_applied = self._drain_outbox(observation, report, reachable=cluster_error is None)
        waiting = self._usage_and_queues(observation) if cluster_error is None else {}
        self._update_statuses(
            observation,
            now=now,
            skip=just_applied,
            cluster_error=cluster_error,
            report=report,
            waiting=waiting,
        )
        self._purge(now)
        report.seconds = time.perf_counter() - started
        self.last_report = report
        RECONCILE_DURATION.observe(report.seconds)
        RECONCILE_CYCLES.labels("error" if cluster_error else "ok").inc()
        return report

    def _drain_outbox(
        self, observation: Observation, report: CycleReport, *, reachable: bool
    ) -> set[uuid.UUID]:
        rows = self.db.run(workloads.outbox, limit=OUTBOX_BATCH)
        if not rows:
            return set()
        outcomes: list[_Outcome] = []
        taken = _names_in_use(observation)
        now = self.clock()
        for row in rows:
            retrying = self._retrying.get(row.id)
            if retrying is not None and retrying.next_at > now:
                continue  # backing off
            if not reachable:
                outcomes.append(_unreachable(row, "the cluster could not be listed"))
                continue
            outcome = self._act(row, taken, now)
            outcomes.append(outcome)
            if outcome.reason == "ClusterUnreachable":
                reachable = False  # don't hammer a cluster that is away
        if self.after_read is not None:
            self.after_read("outbox")
        self._record_outcomes(outcomes, report)
        return {o.row.id for o in outcomes if o.applied}

    def _act(
        self, row: OutboxRow, taken: dict[tuple[str, str, str], str], now: datetime
    ) -> _Outcome:
        workload_id = str(row.id)
        try:
            if row.desired_phase == "Deleted":
                self.backend.delete(
                    workload_id=workload_id,
                    namespace=row.namespace,
                    objects=[ObjectRef(o["apiVersion"], o["kind"], o["name"]) for o in row.objects],
                )
                outcome = _Outcome(row, True, reason="DeleteSent")
            else:
                for obj in row.objects:
                    owner = taken.get((row.namespace, obj["kind"], obj["name"]))
                    if owner is not None and owner != workload_id:
                        return _Outcome(
                            row,
                            False,
                            message=f"Waiting for the previous {obj['kind']} {obj['name']!r} "
                            "(a deleted workload of the same name) to be removed.",
                            reason="NameInUse",
                        )
                if row.applied_generation > 0 and queued_by_kueue(row.manifests):
                    # Kueue owns the job's suspend once it is in the cluster: stop and resume
                    # through Kueue, never by writing the job again.
                    self.backend.set_queue_active(
                        workload_id=workload_id,
                        namespace=row.namespace,
                        active=row.desired_phase == "Running",
                    )
                    return self._done(_Outcome(row, True, reason="SentToKueue"))
                manifests = (
                    stopped_form(row.manifests) if row.desired_phase == "Stopped" else row.manifests
                )
                self.backend.apply(
                    workload_id=workload_id, namespace=row.namespace, manifests=manifests
                )
                outcome = _Outcome(row, True, reason="Applied")
        except KindNotInstalled as exc:
            outcome = _Outcome(row, True, "Failed", str(exc), reason="KindNotInstalled")
        except ObjectRejected as exc:
            outcome = _Outcome(
                row,
                True,
                "Failed",
                f"The cluster rejected the workload's objects: {exc}",
                reason="Rejected",
            )
        except ClusterUnreachable as exc:
            log.warning("apply of %s failed: %s", workload_id, exc)
            return _unreachable(row, str(exc))
        except ClusterError as exc:
            # Retryable, but about this workload alone (a 5xx, its namespace terminating...).
            return self._retry(row, exc, now)
        return self._done(outcome)

    def _done(self, outcome: _Outcome) -> _Outcome:
        self._retrying.pop(outcome.row.id, None)
        return outcome

    def _retry(self, row: OutboxRow, exc: ClusterError, now: datetime) -> _Outcome:
        retrying = self._retrying.setdefault(row.id, _Retrying(since=now))
        retrying.attempts += 1
        if now - retrying.since >= self.apply_retry_timeout:
            del self._retrying[row.id]
            return _Outcome(
                row,
                True,
                "Failed",
                f"The cluster kept refusing the workload's objects for "
                f"{_duration(now - retrying.since)} ({retrying.attempts} attempts): {exc}",
                reason="ApplyFailed",
            )
        delay = min(timedelta(seconds=2 ** (retrying.attempts - 1)), RETRY_DELAY_MAX)
        retrying.next_at = now + delay
        return _Outcome(row, False, message=f"Will retry: {exc}", reason="ClusterRetry")

    def _record_outcomes(self, outcomes: list[_Outcome], report: CycleReport) -> None:
        writes: list[StatusWrite] = []
        for o in outcomes:
            if o.applied:
                report.applied += o.reason in ("Applied", "SentToKueue")
                report.deleted += o.reason == "DeleteSent"
            if not o.applied or o.phase is not None:
                report.apply_errors += 1
            # A cluster that stays away must not rewrite the same message every cycle.
            message = o.message if o.message != o.row.phase_message else None
            event = None
            if o.phase is not None or o.reason in _EVENT_TEXT:
                event = Event(
                    o.row.id,
                    "Cluster",
                    o.phase or o.row.phase,
                    o.reason,
                    o.message or _EVENT_TEXT.get(o.reason, ""),
                )
            if o.applied or message is not None or o.phase is not None:
                writes.append(
                    StatusWrite(
                        id=o.row.id,
                        xmin=o.row.xmin,
                        applied_generation=o.row.generation if o.applied else None,
                        phase=o.phase,
                        message=message,
                        event=event,
                    )
                )
        self.db.run(workloads.write_statuses, writes, now=self.clock())

    # --- status ---------------------------------------------------------------------------------

    def _update_statuses(
        self,
        observation: Observation,
        *,
        now: datetime,
        skip: set[uuid.UUID],
        cluster_error: str | None,
        report: CycleReport,
        waiting: Mapping[str, Explanation],
    ) -> None:
        full = (
            observation.changed is None
            or self._resynced_at is None
            or now - self._resynced_at >= self.resync
        )
        if full:
            self._resynced_at = now
            rows = self.db.run(workloads.active)
        else:
            assert observation.changed is not None
            wanted = self._unsettled | {uuid.UUID(w) for w in observation.changed}
            rows = self.db.run(workloads.active, list(wanted)) if wanted else []
        previous = self._previous_statuses(rows, forget_others=full)
        if full:
            self._events_seen = {
                r.id: self._events_seen[r.id] for r in rows if r.id in self._events_seen
            }
        writes: list[StatusWrite] = []
        cluster_events: list[workloads.ClusterEvents] = []
        unsettled = set(skip)
        for row in rows:
            if row.id in skip or (row.applied_generation == 0 and row.desired_phase != "Deleted"):
                unsettled.add(row.id)
                continue  # not in the cluster yet, or applied this cycle: observed next cycle
            stored = previous[row.id]
            before = stored.status
            observed = observation.of(str(row.id))
            if before.phase == "Failed" and row.desired_phase != "Deleted":
                if not observed.objects and not observed.pods:
                    continue  # failed before anything reached the cluster: keep the reason
            status = derive_status(
                workload_type=row.type,
                desired_phase=cast(DesiredPhase, row.desired_phase),
                objects=observed.objects,
                pods=observed.pods,
                applied=row.applied_generation > 0,
                now=now,
                pending_timeout=self.pending_timeout,
                previous=before,
                cluster_error=cluster_error,
                waiting=waiting.get(str(row.id)),
            )
            if status.phase not in SETTLED or row.desired_phase == "Deleted":
                unsettled.add(row.id)
            if cluster_error is None:
                views = kept_views(
                    previous=stored.pod_list, observed=pod_views(observed.pods), phase=status.phase
                )
                urls = workload_urls(row.type, observed.objects)
            else:  # nothing was observed: what was seen last is the best there is
                views, urls = stored.pod_list, stored.urls
            new_pods = views if views != stored.pod_list else None
            new_urls = urls if urls != stored.urls else None
            changed = status_changed(before, status)
            # A full pass reads every workload: their events matter where something moved.
            if observed.events and (
                not full or changed or new_pods is not None or status.phase not in SETTLED
            ):
                seen = self._events_seen.setdefault(row.id, {})
                fresh = changed_events(timeline_events(observed.events), seen)
                if fresh:
                    cluster_events.append(workloads.ClusterEvents(row.id, status.phase, fresh))
            if not changed and new_pods is None and new_urls is None:
                continue
            kept = None
            if (
                self.log_tail is not None
                and status.phase in _FINISHED
                and before.phase not in _FINISHED
                and views
            ):
                kept = logs.history(
                    self.log_tail,
                    namespace=row.namespace,
                    workload_id=row.id,
                    workload_type=row.type,
                    pods=views,
                    now=now,
                )
            doc = status.to_dict()
            event = None
            if status.phase != before.phase or status.message != before.message:
                event = Event(
                    row.id,
                    "PhaseChanged" if status.phase != before.phase else "Status",
                    status.phase,
                    status.reason or status.phase,
                    status.message,
                )
            writes.append(
                StatusWrite(
                    id=row.id,
                    xmin=row.xmin,
                    phase=status.phase,
                    message=status.message,
                    conditions=doc["conditions"],
                    pods=doc["pods"],
                    pod_list=new_pods,
                    urls=new_urls,
                    log_history=kept,
                    event=event,
                )
            )
        if self.after_read is not None:
            self.after_read("status")
        written = self.db.run(workloads.write_statuses, writes, now=now)
        if cluster_events:
            self.db.run(workloads.store_cluster_events, cluster_events)
            for item in cluster_events:
                seen = self._events_seen.setdefault(item.workload_id, {})
                seen.update((e["uid"], seen_key(e)) for e in item.events)
        report.status_updates = len(written)
        # A write that did not land (the row changed meanwhile) is looked at again next cycle.
        unsettled |= {w.id for w in writes} - written
        self._unsettled = (
            unsettled if full else (self._unsettled - {r.id for r in rows}) | unsettled
        )
        if full and cluster_error is None:
            self._count_orphans(observation, {str(r.id) for r in rows}, report)

    def _previous_statuses(
        self, rows: list[workloads.ActiveRow], *, forget_others: bool
    ) -> dict[uuid.UUID, _Stored]:
        """Each row's stored status, pods and URLs, parsed only when the row changed since the
        last cycle.

        A row's ``xmin`` changes whenever anyone writes it (this loop or an API request), so an
        unchanged ``xmin`` means the cached parse is still what is stored.
        """
        cached = self._statuses
        stale = [r.id for r in rows if cached.get(r.id, ("",))[0] != r.xmin]
        if stale:
            for r in self.db.run(workloads.statuses, stale):
                status = WorkloadStatus.from_dict(
                    {
                        "phase": r.phase,
                        "phaseMessage": r.phase_message,
                        "conditions": r.conditions,
                        "pods": r.pods,
                    }
                )
                cached[r.id] = (r.xmin, _Stored(status, r.pod_list, r.urls))
        if forget_others:  # a full pass: what is not among the rows is gone
            self._statuses = {r.id: cached[r.id] for r in rows if r.id in cached}
        return {r.id: cached[r.id][1] for r in rows if r.id in cached}

    def _sync_projects(self, observation: Observation, *, now: datetime) -> None:
        """Keep every project's own objects (scheduler queues, ResourceQuota, and what the
        projects of a scheduler share) in the cluster as rendered from the projects: apply
        those whose project changed, or that the cluster lacks, and on each resync all of them
        (server-side apply puts back what someone changed); delete what no project wants any
        more (a deleted project's, a scheduler's the project left)."""
        rows = self.db.run(projects.every)
        resync = self._projects_synced_at is None or now - self._projects_synced_at >= self.resync
        if resync:
            self._projects_synced_at = now
        desired: dict[str, list[Manifest]] = {}
        schedulers: set[Scheduler] = set()
        for row in rows:
            ctx = ProjectContext.of(
                name=row.name,
                namespace=row.namespace,
                queue=row.queue,
                scheduler=row.scheduler,
                quota=row.quota,
                default_scheduler=self.default_scheduler,
            )
            schedulers.add(ctx.scheduler)
            kept = self._project_manifests.get(row.name)
            if kept is None or kept[:2] != (row.generation, ctx.scheduler):
                kept = (row.generation, ctx.scheduler, render_project(ctx))
            self._project_manifests[row.name] = kept
            desired[row.name] = kept[2]
        self._project_manifests = {n: self._project_manifests[n] for n in desired}
        desired[""] = [m for s in sorted(schedulers) for m in shared(s)]
        observed = observation.projects
        by_name = {row.name: row for row in rows}
        for owner, manifests in desired.items():
            found = by_name.get(owner)
            generation = found.generation if found is not None else 0
            stale = found is not None and found.applied_generation < found.generation
            missing = observed is not None and not _refs(manifests) <= _refs(
                observed.get(owner, ())
            )
            backoff = self._project_backoff.get(owner)
            if backoff is not None and backoff[0] == generation and backoff[1] > now:
                continue  # refused a moment ago, and nothing changed since
            if not manifests or not (stale or missing or resync):
                continue
            message = ""
            try:
                self.backend.apply_project(project=owner, manifests=manifests)
                self._project_backoff.pop(owner, None)
            except ClusterUnreachable as exc:
                log.warning("applying the objects of project %r failed: %s", owner, exc)
                return
            except ClusterError as exc:
                message = f"The cluster refused the project's objects: {exc}"
                self._project_backoff[owner] = (generation, now + RETRY_DELAY_MAX)
            if found is not None and (stale or message != found.cluster_message):
                self.db.run(projects.record_applied, owner, generation=generation, message=message)
        if observed is None:
            return
        for owner, objects in observed.items():
            wanted = _refs(desired.get(owner, ()))
            extra = [ObjectRef.of(o) for o in objects if _ref(o) not in wanted]
            if extra:
                try:
                    self.backend.delete_project_objects(project=owner, objects=extra)
                except ClusterError as exc:
                    log.warning("deleting objects of project %r failed: %s", owner, exc)

    def _usage_and_queues(self, observation: Observation) -> dict[str, Explanation]:
        """Store each project's usage and each node pool where they changed; and say why each
        workload that waits for GPUs waits (by workload id)."""
        parts = self._usage.update(observation)
        nodes = observation.nodes
        if (
            self._usage.changed
            or self._usage_stored is None
            or not _same_items(nodes, self._nodes_seen)
        ):
            self._store_usage(parts.values(), nodes)
        if not any(p.project and p.waiting.gpu for p in parts.values()):
            return {}
        assert self._usage_stored is not None
        return explain(
            parts,
            usage=self._usage_stored,
            quotas=self._quotas.update(self.db.run(projects.quotas)),
            capacity=self._capacity,
        )

    def _store_usage(
        self, parts: Collection[WorkloadUsage], nodes: Sequence[Manifest] | None
    ) -> None:
        self._nodes_seen = nodes
        usage = by_project(parts)
        stored = self._usage_stored
        changed = {
            name: u.to_dict()
            for name, u in usage.items()
            if stored is None or stored.get(name) != u
        }
        gone = stored is None or bool(stored.keys() - usage.keys())
        if changed or gone:
            self.db.run(projects.write_usage, changed, keep=list(usage) if gone else None)
        self._usage_stored = usage
        if nodes is None:
            self._capacity = None
            return
        placed = [p for u in parts for p in u.placed]
        self._capacity = capacity(nodes, placed)
        pools = node_pools(nodes, placed, label_key=self.node_pool_label)
        if pools != self._pools_stored:
            self.db.run(node_pools_store.replace, [p.to_dict() for p in pools])
            self._pools_stored = pools

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

    def _purge(self, now: datetime) -> None:
        if self._purged_at is not None and now - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = now
        keys = self.db.run(workloads.purge_idempotency_keys)
        entries = self.db.run(audit.purge, older_than_days=self.audit_retention_days)
        if keys or entries:
            log.info("purged %d idempotency keys and %d audit entries", keys, entries)

    # --- running --------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, interval: float) -> None:
        """Stand by until this process holds the lock, then reconcile every ``interval`` s, and
        at once when woken (a change in the cluster, a new desired state in the database).

        Nothing ends this loop but ``stop``: whatever fails (the database, the cluster, a bug in
        a cycle), the process goes back to standing by and tries again an interval later."""
        leader: Leadership | None = None
        listener = threading.Thread(
            target=self._listen, args=(stop,), name="reconciler-listen", daemon=True
        )
        listener.start()
        try:
            while not stop.is_set():
                try:
                    if leader is None:
                        leader = Leadership.take(self.db.db.url)
                        if leader is not None:
                            # Another process may have written meanwhile: write all anew.
                            self._usage_stored = self._pools_stored = None
                    if leader is not None:
                        leader.confirm()
                        self.cycle()
                except Exception:
                    log.exception("the reconciler will try again in %g s", interval)
                    if leader is not None:
                        leader.release()
                        leader = None
                if self.wake.wait(interval) and not stop.is_set():
                    stop.wait(COALESCE_SECONDS)  # let a burst of changes make one cycle
                self.wake.clear()
        finally:
            self.wake.set()  # ends the listener's wait
            if leader is not None:
                leader.release()

    def _listen(self, stop: threading.Event) -> None:
        """Wake the loop on each NOTIFY of a new desired state, over a connection of its own."""
        while not stop.is_set():
            try:
                with psycopg.connect(conninfo(self.db.db.url), autocommit=True) as conn:
                    conn.execute(f"LISTEN {workloads.OUTBOX_CHANNEL}")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake.set()
            except psycopg.Error as exc:
                log.warning("cannot listen for new work (%s); retrying", exc)
                stop.wait(1.0)


class Leadership:
    """The advisory lock that makes a process the active reconciler, held by a connection of
    its own: when the process dies or the connection breaks, PostgreSQL frees it."""

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self.conn = conn
        IS_LEADER.set(1)
        log.info("this process is now the active reconciler")

    @classmethod
    def take(cls, url: str) -> Leadership | None:
        conn = psycopg.connect(conninfo(url), autocommit=True, connect_timeout=5)
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        except BaseException:
            conn.close()
            raise
        if not (row and row[0]):
            conn.close()
            return None
        return cls(conn)

    def confirm(self) -> None:
        """Raise if the lock's connection is gone (then another process may hold the lock)."""
        self.conn.execute("SELECT 1")

    def release(self) -> None:
        IS_LEADER.set(0)
        try:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        except psycopg.Error:
            pass  # the server frees the lock when the session ends
        finally:
            self.conn.close()


def run_reconciler(settings: Settings, stop: threading.Event) -> None:
    """The reconciler of a process (``runplane serve`` or ``runplane reconcile``) until ``stop``."""
    from app.cluster.factory import make_backend
    from app.cluster.kubernetes import KubernetesBackend
    from app.cluster.logs import PodLogs

    assert settings.database_url
    with BlockingDatabase(settings.database_url, size=2) as db:
        backend = make_backend(settings, db)
        log_tail: LogTail = logs.simulated_tail
        if isinstance(backend, KubernetesBackend):
            log_tail = logs.kubernetes_tail(PodLogs(backend.api_client))
        try:
            Reconciler(
                db=db,
                backend=backend,
                pending_timeout=settings.pending_timeout,
                apply_retry_timeout=settings.apply_retry_timeout,
                audit_retention_days=settings.audit_retention_days,
                resync_seconds=settings.resync_seconds,
                log_tail=log_tail,
                node_pool_label=settings.node_pool_label_key,
                default_scheduler=settings.scheduler,
            ).run(stop, interval=settings.reconcile_interval)
        finally:
            backend.close()


_EVENT_TEXT = {
    "Applied": "Applied to the cluster.",
    "SentToKueue": "Sent to Kueue (the spec.active of its Workload).",
    "DeleteSent": "Deletion sent to the cluster.",
}


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _unreachable(row: OutboxRow, why: str) -> _Outcome:
    return _Outcome(
        row,
        False,
        message=f"The cluster is unreachable; will retry: {why}",
        reason="ClusterUnreachable",
    )


def _ref(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion")),
        str(obj.get("kind")),
        str(meta.get("namespace") or ""),
        str(meta.get("name")),
    )


def _refs(objects: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Which objects these are; a namespace is created once, never watched nor deleted."""
    return {_ref(o) for o in objects if o.get("kind") != "Namespace"}


def _same_items(a: object, b: object) -> bool:
    """Whether two observations' node lists hold the very same objects (unchanged)."""
    if a is b:
        return True
    if not isinstance(a, list | tuple) or not isinstance(b, list | tuple) or len(a) != len(b):
        return False
    return all(x is y for x, y in zip(a, b, strict=True))


def _names_in_use(observation: Observation) -> dict[tuple[str, str, str], str]:
    taken: dict[tuple[str, str, str], str] = {}
    for workload_id, observed in observation.workloads.items():
        for obj in observed.objects:
            meta = obj.get("metadata") or {}
            taken[(meta.get("namespace", ""), obj.get("kind", ""), meta.get("name", ""))] = (
                workload_id
            )
    return taken
