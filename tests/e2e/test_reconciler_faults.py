"""Reconciler faults: killed mid-cycle, two reconcilers at once, the advisory lock, a leader
that dies, a database that restarts, a user racing a cycle, a cluster that keeps refusing."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text

from app.cluster.backend import ClusterError, Observation
from app.cluster.simulated import SimulatedBackend
from app.cluster.simulation import ClusterShape, Timing
from app.config import Settings
from app.db import BlockingDatabase, conninfo
from app.main import create_app
from app.models import SimulatedWorkload, Workload
from app.reconciler.loop import LOCK_KEY, Reconciler
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


# --- the reconciler never undoes a user --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(
    ("action", "expected"),
    [("delete", ("Deleting", "Deleted")), ("suspend", ("Running", "Stopped"))],
)
def test_a_request_committed_during_a_cycle_is_not_undone(
    db: BlockingDatabase, settings: Settings, action: str, expected: tuple[str, str]
) -> None:
    """The cycle reads a running training, derives Completed (it finished meanwhile), and
    before it writes, the user deletes or suspends it: the cycle's write must not land."""
    clock = Clock()
    backend = SimulatedBackend(
        db,
        cluster=ClusterShape(nodes=1, gpus_per_node=8),
        timing=Timing(schedule_seconds=1, start_seconds=1, run_seconds=5),
        clock=clock,
    )
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        wid = c.post(
            "/api/v1/workloads/trainings",
            json={"name": "t", "project": "team-a", "spec": {"image": "x"}},
        ).json()["id"]
        url = f"/api/v1/workloads/{wid}"
        racing: list[str] = []

        def user_acts(stage: str) -> None:
            if stage == "status" and racing:
                r = c.delete(url) if racing.pop() == "delete" else c.post(f"{url}/suspend")
                assert r.status_code == 202, r.text

        reconciler = Reconciler(
            db=db, backend=backend, pending_timeout=60, clock=clock, after_read=user_acts
        )
        for _ in range(4):
            clock.now += timedelta(seconds=1)
            reconciler.cycle()
        assert c.get(url).json()["phase"] == "Running"
        clock.now += timedelta(seconds=10)  # the training has finished in the cluster
        racing.append(action)
        reconciler.cycle()
        after = c.get(url).json()
        assert after["phase"] == expected[0], after  # the user's request stands
        assert after["desiredPhase"] == ("Deleted" if action == "delete" else "Stopped")
        # The phase transitions (the cluster's own events say what the Job did, and stay).
        reasons = [
            e["reason"] for e in c.get(f"{url}/events").json()["items"] if e["source"] == "runplane"
        ]
        assert "Completed" not in reasons, reasons
        if action == "delete":
            for _ in range(3):
                clock.now += timedelta(seconds=1)
                reconciler.cycle()
            assert c.get(url).json()["phase"] == "Deleted"


# --- leadership --------------------------------------------------------------------------------


def reconcile_process(database: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "RUNPLANE_RECONCILE_INTERVAL": str(INTERVAL),
        "RUNPLANE_LOG_LEVEL": "INFO",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "reconcile"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# Long enough that a loaded machine's scheduling delays do not count as the standby's slowness.
INTERVAL = 2.0
LEADING = "this process is now the active reconciler"


def wait_for(condition: Any, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.slow
def test_the_standby_takes_over_within_two_intervals_when_the_leader_is_killed(
    database: str, tmp_path: Path
) -> None:
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [reconcile_process(database, logs[0])]
    try:
        wait_for(lambda: LEADING in logs[0].read_text(), 30, "the first process to lead")
        procs.append(reconcile_process(database, logs[1]))
        time.sleep(3 * INTERVAL + 1)  # the second one is up and standing by
        assert procs[1].poll() is None
        assert LEADING not in logs[1].read_text()
        procs[0].kill()  # SIGKILL: no goodbye, the lock goes with the connection
        procs[0].wait(10)
        took = wait_for(lambda: LEADING in logs[1].read_text(), 10, "the standby to lead")
        assert took < 2 * INTERVAL + 0.5, f"the standby took over after {took:.2f} s"
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)


@pytest.mark.slow
def test_a_standby_survives_a_database_restart_and_takes_over() -> None:
    """The leader's database goes away and comes back: a standby (whose own connections went
    stale) keeps trying, and leads once the lock is free again."""
    from app import embedded, migrations
    from tests.reliability.live import PrivatePostgres

    pg = PrivatePostgres()
    try:
        url = embedded.ensure_database(pg.url, "runplane")
        setup = create_engine(url)
        migrations.upgrade(setup)
        setup.dispose()
        holder = psycopg.connect(conninfo(url), autocommit=True)
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))  # another process leads
        stop = threading.Event()
        with BlockingDatabase(url) as db:
            backend = CountingBackend(
                db, cluster=ClusterShape(nodes=1, gpus_per_node=8), timing=Timing()
            )
            standby = Reconciler(db=db, backend=backend, pending_timeout=60)
            thread = threading.Thread(target=standby.run, args=(stop,), kwargs={"interval": 0.1})
            observed = CountingBackend.observed
            thread.start()
            try:
                time.sleep(0.5)
                assert CountingBackend.observed == observed  # standing by
                pg.stop("immediate")  # the leader's session dies with the server
                time.sleep(1)
                pg.start()
                wait_for(lambda: CountingBackend.observed > observed, 30, "the standby to lead")
                assert thread.is_alive()
            finally:
                stop.set()
                thread.join(10)
                holder.close()
    finally:
        pg.close()


# --- objects the cluster keeps refusing --------------------------------------------------------


class Refusing(SimulatedBackend):
    """The API server answers 500 to every apply."""

    attempts: list[datetime] = []

    def apply(self, **kw: Any) -> None:
        Refusing.attempts.append(self.clock())
        raise ClusterError("apply TrainingJob/t: the API server answered 500: etcd is sick")


def test_an_object_refused_with_5xx_is_retried_with_backoff_then_fails(
    db: BlockingDatabase, settings: Settings
) -> None:
    clock = Clock()
    Refusing.attempts = []
    backend = Refusing(
        db, cluster=ClusterShape(nodes=1, gpus_per_node=8), timing=Timing(), clock=clock
    )
    reconciler = Reconciler(
        db=db, backend=backend, pending_timeout=60, apply_retry_timeout=120, clock=clock
    )
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        wid = c.post(
            "/api/v1/workloads/trainings",
            json={"name": "t", "project": "team-a", "spec": {"image": "x"}},
        ).json()["id"]
        seen = []
        for _ in range(200):  # a cycle a second, for 200 s
            reconciler.cycle()
            seen.append(c.get(f"/api/v1/workloads/{wid}").json())
            clock.now += timedelta(seconds=1)
    # Backing off: 1, 2, 4, 8, 16, 32, 64 s between attempts, not one a cycle.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(Refusing.attempts)]
    assert gaps[:6] == [1, 2, 4, 8, 16, 32], gaps
    assert len(Refusing.attempts) < 10
    retrying = seen[5]
    assert (retrying["phase"], retrying["phaseMessage"][:11]) == ("Creating", "Will retry:")
    final = seen[-1]
    assert final["phase"] == "Failed", final
    assert "kept refusing" in final["phaseMessage"]
    assert "etcd is sick" in final["phaseMessage"]


# --- what ages is purged -------------------------------------------------------------------------


def test_old_idempotency_keys_and_audit_entries_are_purged(
    db: BlockingDatabase, sql: SqlSession
) -> None:
    with sql() as s:
        s.execute(
            text(
                "INSERT INTO idempotency_keys (principal, key, request_hash, status, response,"
                " created_at) VALUES ('p', 'old', 'h', 201, '{}', now() - interval '25 hours'),"
                " ('p', 'new', 'h', 201, '{}', now() - interval '23 hours')"
            )
        )
        s.execute(
            text(
                "INSERT INTO audit_log (time, actor, method, route, status, dry_run) VALUES"
                " (now() - interval '31 days', 'old', 'POST', '/x', 201, false),"
                " (now() - interval '29 days', 'new', 'POST', '/x', 201, false)"
            )
        )
    Reconciler(db=db, backend=sim(db), pending_timeout=60, audit_retention_days=30).cycle()
    with sql() as s:
        assert list(s.scalars(text("SELECT key FROM idempotency_keys"))) == ["new"]
        assert list(s.scalars(text("SELECT actor FROM audit_log"))) == ["new"]
