"""The cluster fails or times out on a share of calls: no workload is lost, none is applied
twice, and every workload's status converges once the cluster recovers."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.cluster.backend import ClusterError, ClusterUnreachable, Manifest, ObjectRef, Observation
from app.cluster.simulated import SimulatedBackend
from app.cluster.simulation import ClusterShape, Timing
from app.config import Settings
from app.db import BlockingDatabase
from app.main import create_app
from app.models import SimulatedWorkload, Workload, WorkloadEvent
from app.reconciler.loop import Reconciler
from tests.conftest import AUTH, SqlSession

FAULT_SHARE = 0.3
WORKLOADS = 30


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Faulty:
    """Fails ``share`` of the calls, from a seeded generator (the same faults every run).

    A fault is one of: refused (the cluster is unreachable, nothing happens), a retryable error
    about this one call, or a timeout after the work was done (the answer was lost: the
    reconciler must retry, and the retry must be harmless).
    """

    def __init__(self, inner: SimulatedBackend, *, share: float, seed: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.share = share
        self.rng = random.Random(seed)
        self.failing = True
        self.faults: Counter[str] = Counter()
        self.applies: Counter[str] = Counter()  # calls that reached the cluster, by workload
        self.deletes: Counter[str] = Counter()
        self.lost_answers: Counter[str] = Counter()

    def _fault(self) -> str | None:
        if not self.failing:
            return None
        draw = self.rng.random()
        if draw >= self.share:
            return None
        kind = ("refused", "error", "timeout")[int(draw / self.share * 3)]
        self.faults[kind] += 1
        return kind

    def _before(self, fault: str | None) -> None:
        if fault == "refused":
            raise ClusterUnreachable("connection refused")
        if fault == "error":
            raise ClusterError("the namespace is being terminated; try again")

    def apply(self, *, workload_id: str, namespace: str, manifests: Sequence[Manifest]) -> None:
        fault = self._fault()
        self._before(fault)
        self.inner.apply(workload_id=workload_id, namespace=namespace, manifests=manifests)
        self.applies[workload_id] += 1
        if fault == "timeout":
            self.lost_answers[workload_id] += 1
            raise ClusterUnreachable("timed out waiting for the API server's answer")

    def delete(self, *, workload_id: str, namespace: str, objects: Sequence[ObjectRef]) -> None:
        fault = self._fault()
        self._before(fault)
        self.inner.delete(workload_id=workload_id, namespace=namespace, objects=objects)
        self.deletes[workload_id] += 1
        if fault == "timeout":
            self.lost_answers[workload_id] += 1
            raise ClusterUnreachable("timed out waiting for the API server's answer")

    def set_queue_active(self, *, workload_id: str, namespace: str, active: bool) -> None:
        self._before(self._fault())
        self.inner.set_queue_active(workload_id=workload_id, namespace=namespace, active=active)

    def apply_project(self, *, project: str, manifests: Sequence[Manifest]) -> None:
        self._before(self._fault())
        self.inner.apply_project(project=project, manifests=manifests)

    def delete_project_objects(self, *, project: str, objects: Sequence[ObjectRef]) -> None:
        self._before(self._fault())
        self.inner.delete_project_objects(project=project, objects=objects)

    def watch(self, wake: Callable[[], None]) -> None:
        self.inner.watch(wake)

    def close(self) -> None:
        self.inner.close()

    def observe(self) -> Observation:
        fault = self._fault()
        if fault is not None:
            raise ClusterUnreachable(f"list failed: {fault}")
        return self.inner.observe()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        yield c


def events_by_reason(sql: SqlSession, reason: str) -> Counter[str]:
    with sql() as s:
        rows = s.execute(
            select(WorkloadEvent.workload_id, func.count())
            .where(WorkloadEvent.reason == reason)
            .group_by(WorkloadEvent.workload_id)
        ).all()
    return Counter({str(w): n for w, n in rows})


def test_a_flaky_cluster_loses_nothing_and_applies_nothing_twice(
    db: BlockingDatabase, client: TestClient, sql: SqlSession
) -> None:
    clock = Clock()
    backend = Faulty(
        SimulatedBackend(
            db,
            cluster=ClusterShape(nodes=8, gpus_per_node=8),
            timing=Timing(schedule_seconds=1, start_seconds=2, run_seconds=100_000),
            clock=clock,
        ),
        share=FAULT_SHARE,
        seed=1234,
    )
    reconciler = Reconciler(db=db, backend=backend, pending_timeout=3600, clock=clock)

    def cycles(n: int) -> None:
        for _ in range(n):
            clock.now += timedelta(seconds=1)
            reconciler.cycle()

    ids: list[str] = []
    for i in range(WORKLOADS):
        collection, spec = (
            ("interactives", {"image": "jupyter/base", "tool": "jupyter"})
            if i % 2
            else ("trainings", {"image": "pytorch:2"})
        )
        r = client.post(
            f"/api/v1/workloads/{collection}",
            json={"name": f"w{i}", "project": "team-a", "spec": spec},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        if i % 5 == 4:
            cycles(1)  # submissions and reconcile cycles interleave, as in production
    cycles(10)
    suspended, deleted = ids[:8], ids[8:16]
    for wid in suspended:
        assert client.post(f"/api/v1/workloads/{wid}/suspend").status_code == 202
    for wid in deleted:
        assert client.delete(f"/api/v1/workloads/{wid}").status_code == 202
    cycles(15)
    assert all(backend.faults[kind] for kind in ("refused", "error", "timeout")), backend.faults

    backend.failing = False
    expected = dict.fromkeys(suspended, "Stopped")
    expected |= dict.fromkeys(deleted, "Deleted")
    expected |= dict.fromkeys(ids[16:], "Running")
    phases: dict[str, str] = {}
    for _ in range(60):
        cycles(1)
        phases = {wid: client.get(f"/api/v1/workloads/{wid}").json()["phase"] for wid in ids}
        if phases == expected:
            break
    assert phases == expected, {w: (phases[w], p) for w, p in expected.items() if phases[w] != p}

    with sql() as s:
        outbox = s.scalar(
            select(func.count()).where(Workload.applied_generation < Workload.generation)
        )
        in_cluster = {str(w) for w in s.scalars(select(SimulatedWorkload.workload_id))}
    assert outbox == 0
    assert in_cluster == set(ids) - set(deleted)

    # The reconciler re-sends a call only when its answer was lost: every call that reached
    # the cluster is either the one the reconciler recorded or a retry after a lost answer.
    applied, delete_sent = events_by_reason(sql, "Applied"), events_by_reason(sql, "DeleteSent")
    for wid in ids:
        sent = backend.applies[wid] + backend.deletes[wid]
        recorded = applied[wid] + delete_sent[wid]
        assert sent == recorded + backend.lost_answers[wid], (wid, sent, recorded)
    assert all(delete_sent[wid] == 1 for wid in deleted)
    assert all(applied[wid] == 1 for wid in ids[16:])


def test_status_reads_unknown_while_listing_fails_and_recovers(
    db: BlockingDatabase, client: TestClient, sql: SqlSession
) -> None:
    clock = Clock()
    backend = Faulty(
        SimulatedBackend(
            db,
            cluster=ClusterShape(nodes=2, gpus_per_node=8),
            timing=Timing(schedule_seconds=1, start_seconds=1, run_seconds=100_000),
            clock=clock,
        ),
        share=1.0,
        seed=5,
    )
    backend.failing = False
    reconciler = Reconciler(db=db, backend=backend, pending_timeout=3600, clock=clock)
    wid = client.post(
        "/api/v1/workloads/interactives",
        json={"name": "ws", "project": "team-a", "spec": {"image": "jupyter/base"}},
    ).json()["id"]
    for _ in range(10):
        clock.now += timedelta(seconds=1)
        reconciler.cycle()
    assert client.get(f"/api/v1/workloads/{wid}").json()["phase"] == "Running"
    backend.failing = True  # every call fails: the cluster is away
    for _ in range(3):
        clock.now += timedelta(seconds=1)
        reconciler.cycle()
    away = client.get(f"/api/v1/workloads/{wid}").json()
    assert away["phase"] in ("Running", "Unknown"), away
    backend.failing = False
    clock.now += timedelta(seconds=1)
    reconciler.cycle()
    assert client.get(f"/api/v1/workloads/{wid}").json()["phase"] == "Running"
    with sql() as s:
        assert s.scalar(select(func.count()).select_from(SimulatedWorkload)) == 1
