"""Reconciler faults: killed mid-cycle, two reconcilers at once, the advisory lock."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.cluster.backend import Observation
from app.cluster.simulated import SimulatedBackend
from app.cluster.simulation import ClusterShape, Timing
from app.config import Settings
from app.db import BlockingDatabase
from app.main import create_app
from app.models import SimulatedWorkload, Workload
from app.reconciler.loop import Reconciler
from tests.conftest import AUTH, SqlSession


def submit_two(settings: Settings) -> list[str]:
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        return [
            c.post(
                "/api/v1/workloads/trainings",
                json={"name": f"t{i}", "project": "team-a", "spec": {"image": "x"}},
            ).json()["id"]
            for i in range(2)
        ]


class DiesAfterFirstApply(SimulatedBackend):
    """Applies once, then the process 'dies' before the reconciler records anything."""

    calls = 0

    def apply(self, **kw: Any) -> None:
        super().apply(**kw)
        DiesAfterFirstApply.calls += 1
        if DiesAfterFirstApply.calls == 1:
            raise SystemExit("killed")


def sim(db: BlockingDatabase, cls: type[SimulatedBackend] = SimulatedBackend) -> SimulatedBackend:
    return cls(db, cluster=ClusterShape(nodes=2, gpus_per_node=8), timing=Timing())


def test_a_reconciler_killed_mid_cycle_converges_next_time(
    db: BlockingDatabase, settings: Settings, sql: SqlSession
) -> None:
    ids = submit_two(settings)
    with pytest.raises(SystemExit):
        Reconciler(db=db, backend=sim(db, DiesAfterFirstApply), pending_timeout=60).cycle()
    with sql() as s:
        # The first workload reached the cluster, but nothing was recorded.
        assert s.scalar(select(func.count()).select_from(SimulatedWorkload)) == 1
        assert s.scalar(select(func.count()).where(Workload.applied_generation == 0)) == 2
    Reconciler(db=db, backend=sim(db), pending_timeout=60).cycle()
    with sql() as s:
        applied = s.execute(select(Workload.id, Workload.applied_generation)).all()
        assert {str(i): g for i, g in applied} == dict.fromkeys(ids, 1)
        # Applying twice is harmless: still one object set per workload.
        assert s.scalar(select(func.count()).select_from(SimulatedWorkload)) == 2


class CountingBackend(SimulatedBackend):
    observed = 0

    def observe(self) -> Observation:
        CountingBackend.observed += 1
        return super().observe()


def test_two_reconcilers_one_acts_and_a_standby_takes_over(
    db: BlockingDatabase, settings: Settings, sql: SqlSession
) -> None:
    submit_two(settings)
    backends = [sim(db, CountingBackend) for _ in range(2)]
    reconcilers = [Reconciler(db=db, backend=b, pending_timeout=60) for b in backends]
    stops = [threading.Event(), threading.Event()]
    leaders: list[int] = []

    def run(i: int) -> None:
        reconcilers[i].run(stops[i], interval=0.05)

    first = threading.Thread(target=run, args=(0,))
    first.start()
    deadline = time.monotonic() + 5
    while CountingBackend.observed == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    second = threading.Thread(target=run, args=(1,))
    second.start()
    time.sleep(0.5)
    observed_by_both = CountingBackend.observed
    # Only the leader cycles: stop it and the standby takes over.
    stops[0].set()
    first.join(5)
    leaders.append(CountingBackend.observed)
    time.sleep(0.5)
    stops[1].set()
    second.join(5)
    assert observed_by_both > 0
    assert CountingBackend.observed > leaders[0], "the standby never took over"
    with sql() as s:
        assert s.scalar(select(func.count()).where(Workload.applied_generation == 1)) == 2
