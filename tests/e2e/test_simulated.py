"""End to end on the simulated backend: submit over HTTP, run reconcile cycles on a fake clock,
watch the phases the API reports; suspend, resume, delete; faults."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.cluster.backend import ClusterUnreachable, Observation
from app.cluster.simulated import SimulatedBackend
from app.cluster.simulation import ClusterShape, Timing
from app.config import Settings
from app.db import BlockingDatabase
from app.main import create_app
from app.reconciler.loop import Reconciler
from tests.conftest import AUTH

OUTCOME = "simulation.runplane.io/outcome"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Flaky:
    """A backend that can be switched off, as a cluster that is away."""

    def __init__(self, inner: SimulatedBackend) -> None:
        self.inner = inner
        self.down = False
        self.name = inner.name

    def _check(self) -> None:
        if self.down:
            raise ClusterUnreachable("connection refused")

    def apply(self, **kw: Any) -> None:
        self._check()
        self.inner.apply(**kw)

    def delete(self, **kw: Any) -> None:
        self._check()
        self.inner.delete(**kw)

    def set_queue_active(self, **kw: Any) -> None:
        self._check()
        self.inner.set_queue_active(**kw)

    def apply_project(self, **kw: Any) -> None:
        self._check()
        self.inner.apply_project(**kw)

    def delete_project_objects(self, **kw: Any) -> None:
        self._check()
        self.inner.delete_project_objects(**kw)

    def watch(self, wake: Callable[[], None]) -> None:
        self.inner.watch(wake)

    def close(self) -> None:
        self.inner.close()

    def observe(self) -> Observation:
        self._check()
        return self.inner.observe()


@dataclass
class World:
    client: TestClient
    clock: Clock
    backend: Flaky
    reconciler: Reconciler

    def cycle(self, seconds: float = 0) -> None:
        self.clock.advance(seconds)
        self.reconciler.cycle()

    def submit(self, collection: str, name: str, spec: dict[str, Any]) -> str:
        r = self.client.post(
            f"/api/v1/workloads/{collection}",
            json={"name": name, "project": "team-a", "spec": spec},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def get(self, workload_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/api/v1/workloads/{workload_id}").json()
        return body

    def phase(self, workload_id: str) -> str:
        return str(self.get(workload_id)["phase"])

    def phases_until(
        self, workload_id: str, final: str, *, step: float = 1, limit: int = 200
    ) -> list[str]:
        seen = [self.phase(workload_id)]
        for _ in range(limit):
            self.cycle(step)
            phase = self.phase(workload_id)
            if phase != seen[-1]:
                seen.append(phase)
            if phase == final:
                return seen
        raise AssertionError(f"never reached {final}: {seen}")


@contextmanager
def world_of(
    db: BlockingDatabase,
    settings: Settings,
    *,
    projects: dict[str, dict[str, Any] | None],
    timing: Timing,
    pending_timeout: float,
) -> Iterator[World]:
    """The API and a reconciler on a simulated cluster of 2 nodes x 4 GPUs, on a fake clock,
    with these projects (name: quota)."""
    clock = Clock()
    backend = Flaky(
        SimulatedBackend(
            db, cluster=ClusterShape(nodes=2, gpus_per_node=4), timing=timing, clock=clock
        )
    )
    reconciler = Reconciler(db=db, backend=backend, pending_timeout=pending_timeout, clock=clock)
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as client:
        for name, quota in projects.items():
            r = client.post("/api/v1/projects", json={"name": name, "quota": quota})
            assert r.status_code == 201, r.text
        yield World(client, clock, backend, reconciler)


@pytest.fixture
def world(db: BlockingDatabase, settings: Settings) -> Iterator[World]:
    with world_of(
        db,
        settings,
        projects={"team-a": None},
        timing=Timing(schedule_seconds=1, start_seconds=3, run_seconds=5),
        pending_timeout=30,
    ) as made:
        yield made


def test_training_goes_to_completed_with_events(world: World) -> None:
    wid = world.submit(
        "trainings", "t1", {"image": "pytorch:2", "compute": {"gpuDevicesRequest": 1}}
    )
    phases = world.phases_until(wid, "Completed")
    assert phases[0] == "Creating"
    assert "Running" in phases
    assert phases.index("Running") < phases.index("Completed")
    assert set(phases) <= {"Creating", "Pending", "Initializing", "Running", "Completed"}
    body = world.get(wid)
    assert body["pods"]["succeeded"] == 1
    reasons = [
        e["reason"] for e in world.client.get(f"/api/v1/workloads/{wid}/events").json()["items"]
    ]
    assert reasons[:2] == ["Submitted", "Applied"]
    assert len(reasons) >= 4


@pytest.mark.parametrize(
    ("collection", "spec"),
    [
        ("interactives", {"image": "jupyter", "tool": "jupyter"}),
        ("inferences", {"image": "vllm", "servingPort": {"container": 8000}}),
        ("distributed", {"image": "pytorch", "distributedFramework": "PyTorch", "numWorkers": 2}),
        ("distributed", {"image": "tf", "distributedFramework": "TF", "numWorkers": 1}),
        ("distributed", {"image": "mpi", "distributedFramework": "MPI", "numWorkers": 2}),
    ],
)
def test_every_type_reaches_running(world: World, collection: str, spec: dict[str, Any]) -> None:
    wid = world.submit(collection, "w1", spec)
    # Every step is shown, in order: queued for the scheduler, then pulling and starting.
    phases = world.phases_until(wid, "Running", step=0.5)
    assert phases == ["Creating", "Pending", "Initializing", "Running"]
    body = world.get(wid)
    assert body["pods"]["running"] == body["pods"]["requested"] > 0


def test_image_pull_error_is_told_at_once_and_fails_after_the_timeout(world: World) -> None:
    wid = world.submit(
        "trainings", "bad", {"image": "nope:latest", "annotations": {OUTCOME: "image-pull-error"}}
    )
    for _ in range(8):
        world.cycle(1)
    body = world.get(wid)
    assert body["phase"] in ("Initializing", "Pending")
    assert "ErrImagePull" in body["phaseMessage"] or "ImagePullBackOff" in body["phaseMessage"]
    assert world.phases_until(wid, "Failed", step=5)[-1] == "Failed"


def test_failing_training_fails_with_the_reason(world: World) -> None:
    wid = world.submit(
        "trainings", "f", {"image": "x", "backoffLimit": 0, "annotations": {OUTCOME: "fail"}}
    )
    world.phases_until(wid, "Failed")
    body = world.get(wid)
    assert "BackoffLimitExceeded" in body["phaseMessage"], body["phaseMessage"]
    assert body["pods"]["failed"] == 1
    reasons = [
        e["reason"] for e in world.client.get(f"/api/v1/workloads/{wid}/events").json()["items"]
    ]
    assert reasons[-1] == "BackoffLimitExceeded"


def test_crash_loop_is_degraded(world: World) -> None:
    wid = world.submit("interactives", "c", {"image": "x", "annotations": {OUTCOME: "crash-loop"}})
    world.phases_until(wid, "Degraded", limit=100)
    message = world.get(wid)["phaseMessage"]
    assert "CrashLoopBackOff" in message or "crashed" in message, message


def test_unschedulable_stays_pending_with_the_reason(world: World) -> None:
    wid = world.submit("trainings", "huge", {"image": "x", "compute": {"gpuDevicesRequest": 8}})
    for _ in range(10):
        world.cycle(2)
    body = world.get(wid)
    assert body["phase"] == "Pending"
    assert "nvidia.com/gpu" in body["phaseMessage"]


def test_suspend_resume_delete(world: World) -> None:
    wid = world.submit("interactives", "ws", {"image": "jupyter"})
    world.phases_until(wid, "Running")
    assert world.client.post(f"/api/v1/workloads/{wid}/suspend").status_code == 202
    phases = world.phases_until(wid, "Stopped")
    assert phases[-1] == "Stopped"
    assert world.client.post(f"/api/v1/workloads/{wid}/resume").status_code == 202
    world.phases_until(wid, "Running")
    assert world.client.delete(f"/api/v1/workloads/{wid}").status_code == 202
    assert world.phase(wid) == "Deleting"
    world.phases_until(wid, "Deleted")
    assert (
        world.client.get("/api/v1/workloads?deleted=true").json()["items"][0]["phase"] == "Deleted"
    )
    events = world.client.get(f"/api/v1/workloads/{wid}/events").json()["items"]
    # Each apply is recorded in the phase the workload was in: submitted, stopping, resuming.
    assert [e["phase"] for e in events if e["reason"] == "Applied"] == [
        "Creating",
        "Running",
        "Stopped",
    ]


def test_cluster_away_at_submission_keeps_the_workload(world: World) -> None:
    world.backend.down = True
    wid = world.submit("trainings", "t1", {"image": "x"})
    world.cycle(1)
    world.cycle(1)
    body = world.get(wid)
    assert body["phase"] == "Creating"
    assert "unreachable" in body["phaseMessage"]
    world.backend.down = False
    phases = world.phases_until(wid, "Running", step=0.5)
    assert phases == ["Creating", "Pending", "Initializing", "Running"]


def test_status_written_only_when_it_changes(world: World) -> None:
    wid = world.submit("interactives", "ws", {"image": "jupyter"})
    world.phases_until(wid, "Running")
    before = world.client.get(f"/api/v1/workloads/{wid}/events").json()["items"]
    updated = world.get(wid)["updatedAt"]
    for _ in range(5):
        world.cycle(1)
    assert world.client.get(f"/api/v1/workloads/{wid}/events").json()["items"] == before
    assert world.get(wid)["updatedAt"] == updated
