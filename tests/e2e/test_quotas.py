"""Quotas decide when workloads start, end to end on the simulated backend: submit over HTTP,
run reconcile cycles on a fake clock, read phases, reasons, usage and events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.cluster.simulation import Timing
from app.config import Settings
from app.db import BlockingDatabase
from tests.e2e.test_simulated import World, world_of


@pytest.fixture
def world(db: BlockingDatabase, settings: Settings) -> Iterator[World]:
    with world_of(
        db,
        settings,
        projects={
            "team-a": {"gpu": {"deserved": 4, "limit": 4}},
            "team-b": {"gpu": {"deserved": 0}},
        },
        timing=Timing(schedule_seconds=1, start_seconds=2, run_seconds=30),
        pending_timeout=300,
    ) as made:
        yield made


def training(gpus: int = 2, **extra: Any) -> dict[str, Any]:
    return {"image": "pytorch:2", "compute": {"gpuDevicesRequest": gpus}, **extra}


def submit(w: World, project: str, name: str, spec: dict[str, Any]) -> str:
    r = w.client.post(
        "/api/v1/workloads/trainings", json={"name": name, "project": project, "spec": spec}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def events(w: World, wid: str) -> list[tuple[str, str]]:
    items = w.client.get(f"/api/v1/workloads/{wid}/events").json()["items"]
    return [(e["reason"], e["message"]) for e in items]


def test_the_third_training_waits_for_quota_with_figures_and_starts_when_one_ends(
    world: World,
) -> None:
    first = submit(world, "team-a", "t1", training())
    second = submit(world, "team-a", "t2", training())
    third = submit(world, "team-a", "t3", training())
    for _ in range(6):
        world.cycle(1)
    assert [world.phase(w) for w in (first, second, third)] == ["Running", "Running", "Pending"]
    body = world.get(third)
    assert body["phaseMessage"] == (
        "Waiting for quota: needs 2 GPUs; project team-a uses 4 of 4 deserved (limit 4); "
        "1st in the project's queue"
    )
    assert {c["type"]: c["reason"] for c in body["conditions"]}["PodsReady"] == "QuotaExceeded"
    usage = world.client.get("/api/v1/projects/team-a").json()["usage"]["gpu"]
    assert (usage["allocated"], usage["waiting"]) == (4, 2)
    # A fourth queues behind it.
    fourth = submit(world, "team-a", "t4", training())
    for _ in range(3):
        world.cycle(1)
    assert world.get(fourth)["phaseMessage"].endswith("2nd in the project's queue")
    # 2 + 30 s after they started, the first two are done: the next two start.
    assert world.phases_until(third, "Running", limit=60)[-1] == "Running"
    assert world.phase(fourth) in ("Initializing", "Running")
    assert ("QuotaExceeded", body["phaseMessage"]) in events(world, third)


def test_borrowed_gpus_are_reclaimed_with_events_that_say_so(world: World) -> None:
    borrowers = [submit(world, "team-b", f"b{i}", training()) for i in range(4)]
    for _ in range(5):
        world.cycle(1)
    assert [world.phase(b) for b in borrowers] == ["Running"] * 4  # all 8 GPUs, 0 deserved
    b_usage = world.client.get("/api/v1/projects/team-b").json()["usage"]["gpu"]
    assert (b_usage["allocated"], b_usage["overQuota"]) == (8, 8)
    owner = submit(world, "team-a", "a1", training())
    for _ in range(4):
        world.cycle(1)
    phases = [world.phase(b) for b in borrowers]
    assert phases.count("Pending") == 1
    victim = borrowers[phases.index("Pending")]
    body = world.get(victim)
    assert body["phaseMessage"].startswith(
        "Preempted: project team-a reclaimed 2 GPUs of its deserved quota for workload a1; "
        "project team-b was over its deserved 0"
    )
    assert "Preempted" in [reason for reason, _ in events(world, victim)]
    assert world.phases_until(owner, "Running")[-1] == "Running"


def test_a_non_preemptible_training_never_borrows(world: World) -> None:
    wid = submit(world, "team-b", "np", training(preemptibility="non-preemptible"))
    for _ in range(4):
        world.cycle(1)
    assert world.phase(wid) == "Pending"
    assert world.get(wid)["phaseMessage"] == (
        "Cannot start: needs 2 GPUs, more than project team-b's deserved 0, and a "
        "non-preemptible workload never runs over quota"
    )


def test_a_request_no_node_can_hold_cannot_start_and_says_why(world: World) -> None:
    r = world.client.patch("/api/v1/projects/team-b", json={"quota": None})
    assert r.status_code == 200
    wid = submit(world, "team-b", "huge", training(gpus=6))
    for _ in range(3):
        world.cycle(1)
    message = world.get(wid)["phaseMessage"]
    assert message.startswith(
        "Cannot start: needs 6 GPUs; the cluster has 8 GPUs in all, and no node has room"
    )


def dry_run(w: World, project: str, spec: dict[str, Any]) -> dict[str, Any]:
    r = w.client.post(
        "/api/v1/workloads/trainings?dryRun=true",
        json={"name": "probe", "project": project, "spec": spec},
    )
    assert r.status_code == 200, r.text
    admission: dict[str, Any] = r.json()["admission"]
    return admission


def test_a_dry_run_says_whether_a_submission_would_start_now(world: World) -> None:
    world.cycle()  # the node pools are observed
    assert dry_run(world, "team-a", training()) == {
        "verdict": "StartsNow",
        "reason": "Admissible",
        "message": "Starts now: needs 2 GPUs; project team-a uses 0 of 4 deserved (limit 4)",
        "gpus": 2,
        "preemptible": True,
    }
    for name in ("t1", "t2"):
        submit(world, "team-a", name, training())
    for _ in range(4):
        world.cycle(1)
    verdict = dry_run(world, "team-a", training())
    assert (verdict["verdict"], verdict["message"]) == (
        "WaitsForQuota",
        "Waiting for quota: needs 2 GPUs; project team-a uses 4 of 4 deserved (limit 4)",
    )
    assert dry_run(world, "team-a", training(gpus=6))["verdict"] == "CannotStart"
    # Another project borrows what is idle, preemptibly; never a non-preemptible workload.
    borrowing = dry_run(world, "team-b", training())
    assert borrowing["verdict"] == "StartsNow"
    assert "over quota, on idle capacity" in borrowing["message"]
    fixed = dry_run(world, "team-b", training(preemptibility="non-preemptible"))
    assert (fixed["verdict"], fixed["reason"], fixed["preemptible"]) == (
        "CannotStart",
        "QuotaExceeded",
        False,
    )
    # Nothing was stored.
    assert len(world.client.get("/api/v1/workloads").json()["items"]) == 2


def test_a_dry_run_waits_for_capacity_when_the_cluster_is_full(world: World) -> None:
    r = world.client.patch("/api/v1/projects/team-b", json={"quota": {"gpu": 8}})
    assert r.status_code == 200
    for i in range(4):
        submit(world, "team-b", f"b{i}", training(preemptibility="non-preemptible"))
    for _ in range(4):
        world.cycle(1)
    verdict = dry_run(world, "team-a", training())
    assert verdict["verdict"] == "WaitsForCapacity"
    assert verdict["message"] == (
        "Waiting for capacity: needs 2 GPUs; project team-a uses 0 of 4 deserved (limit 4); "
        "0 GPUs free in the cluster, at most 0 on one node"
    )
