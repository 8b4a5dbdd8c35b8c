"""Usage and node pools end to end on the simulated backend: what the reconciler observed, read
over HTTP."""

from __future__ import annotations

from typing import Any

from tests.e2e.test_simulated import World, world  # noqa: F401  (the fixture)

TRAINING = {"image": "pytorch:2", "compute": {"gpuDevicesRequest": 2, "cpuCoreRequest": 1.5}}


def usage(w: World, project: str = "team-a") -> dict[str, Any]:
    body: dict[str, Any] = w.client.get(f"/api/v1/projects/{project}").json()["usage"]
    return body


def test_a_project_reads_what_its_pods_hold_and_what_waits(world: World) -> None:  # noqa: F811
    assert usage(world)["gpu"] == {"allocated": 0, "waiting": 0, "overQuota": 0, "overLimit": 0}
    first = world.submit("trainings", "t1", TRAINING)
    world.phases_until(first, "Running")
    assert usage(world)["gpu"]["allocated"] == 2
    assert usage(world)["cpu"]["allocated"] == 1.5
    # 2 nodes x 4 GPUs: a 6-GPU training fits no node and waits.
    big = world.submit("trainings", "big", {**TRAINING, "compute": {"gpuDevicesRequest": 6}})
    world.cycle(2)
    world.cycle(1)
    assert world.phase(big) == "Pending"
    assert usage(world)["gpu"] == {"allocated": 2, "waiting": 6, "overQuota": 0, "overLimit": 0}
    listed = world.client.get("/api/v1/projects").json()["items"]
    assert listed[0]["usage"]["gpu"]["waiting"] == 6
    # Finished pods hold nothing.
    world.phases_until(first, "Completed")
    assert usage(world)["gpu"]["allocated"] == 0


def test_usage_beyond_a_lowered_quota_is_shown_as_over(world: World) -> None:  # noqa: F811
    wid = world.submit("trainings", "t1", TRAINING)
    world.phases_until(wid, "Running")
    r = world.client.patch(
        "/api/v1/projects/team-a", json={"quota": {"gpu": {"deserved": 0.5, "limit": 1}}}
    )
    assert r.status_code == 200
    assert r.json()["usage"]["gpu"] == {
        "allocated": 2,
        "waiting": 0,
        "overQuota": 1.5,
        "overLimit": 1,
    }


def test_node_pools_show_the_simulated_nodes(world: World) -> None:  # noqa: F811
    world.cycle()
    pools = world.client.get("/api/v1/nodepools").json()
    assert pools["next"] is None
    (pool,) = pools["items"]
    assert pool["name"] == "default"
    assert pool["nodes"] == 2
    assert pool["gpu"] == {"allocatable": 8, "allocated": 0, "free": 8}
    wid = world.submit("trainings", "t1", TRAINING)
    world.phases_until(wid, "Running")
    (pool,) = world.client.get("/api/v1/nodepools").json()["items"]
    assert pool["gpu"] == {"allocatable": 8, "allocated": 2, "free": 6}
    assert pool["cpu"]["allocated"] == 1.5
    assert pool["memory"]["allocatable"] == 2 * 512 * 1024**3
