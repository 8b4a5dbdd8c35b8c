"""The researcher's view on the simulated backend: pods, URLs, cluster events, logs."""

from __future__ import annotations

from typing import Any

from tests.e2e.test_simulated import OUTCOME, World


def test_a_training_lists_its_pod_and_keeps_its_final_state(world: World) -> None:
    wid = world.submit(
        "trainings", "mnist", {"image": "pytorch:2", "compute": {"gpuDevicesRequest": 1}}
    )
    assert world.client.get(f"/api/v1/workloads/{wid}/pods").json() == {"items": []}
    world.phases_until(wid, "Running")
    (pod,) = world.client.get(f"/api/v1/workloads/{wid}/pods").json()["items"]
    assert pod["name"].startswith("mnist-")
    assert pod["role"] == "worker"
    assert pod["node"].startswith("sim-node-")
    assert (pod["phase"], pod["ready"], pod["gpus"]) == ("Running", True, 1)
    assert pod["startTime"]
    assert pod["containers"][0]["state"] == "running"
    world.phases_until(wid, "Completed")
    world.cycle(5)
    (done,) = world.client.get(f"/api/v1/workloads/{wid}/pods").json()["items"]
    assert done["phase"] == "Succeeded"
    assert done["containers"][0]["reason"] == "Completed"
    assert done["containers"][0]["exitCode"] == 0


def test_an_image_pull_failure_shows_the_pods_reason(world: World) -> None:
    wid = world.submit(
        "trainings", "bad", {"image": "nope:1", "annotations": {OUTCOME: "image-pull-error"}}
    )
    for _ in range(6):
        world.cycle(1)
    (pod,) = world.client.get(f"/api/v1/workloads/{wid}/pods").json()["items"]
    container = pod["containers"][0]
    assert container["state"] == "waiting"
    assert container["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "nope:1" in container["message"]


def test_distributed_pods_come_master_first(world: World) -> None:
    wid = world.submit(
        "distributed",
        "ddp",
        {"image": "pytorch", "distributedFramework": "PyTorch", "numWorkers": 2},
    )
    world.phases_until(wid, "Running", step=0.5)
    pods = world.client.get(f"/api/v1/workloads/{wid}/pods").json()["items"]
    assert [p["role"] for p in pods] == ["master", "worker", "worker"]


def test_a_notebook_shows_its_urls(world: World) -> None:
    wid = world.submit(
        "interactives",
        "nb",
        {
            "image": "jupyter",
            "ports": [
                {"name": "jupyter", "container": 8888},
                {"name": "ssh", "container": 22, "serviceType": "NodePort"},
                {"name": "web", "container": 8080, "serviceType": "LoadBalancer"},
            ],
        },
    )
    assert world.get(wid)["urls"] == []
    world.phases_until(wid, "Running", step=0.5)
    urls = world.get(wid)["urls"]
    by_type = {u["type"]: u for u in reversed(urls)}
    assert by_type["ClusterIP"]["url"] == "http://nb.runplane-team-a.svc:8888"
    assert 30000 <= by_type["NodePort"]["port"] <= 32767
    assert by_type["NodePort"]["host"] is None
    assert by_type["LoadBalancer"]["host"].startswith("203.0.113.")
    assert by_type["LoadBalancer"]["port"] == 8080
    # A training has no URLs.
    assert world.get(world.submit("trainings", "t", {"image": "x"}))["urls"] == []


def _events(world: World, wid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = world.client.get(
        f"/api/v1/workloads/{wid}/events", params={"limit": 500}
    ).json()["items"]
    return items


def test_the_timeline_holds_the_cluster_events_beside_the_phases(world: World) -> None:
    wid = world.submit("trainings", "t1", {"image": "pytorch:2"})
    world.phases_until(wid, "Completed")
    events = _events(world, wid)
    assert [e["reason"] for e in events if e["source"] == "runplane"][:2] == [
        "Submitted",
        "Applied",
    ]
    cluster = [(e["type"], e["reason"]) for e in events if e["source"] == "kubernetes"]
    for expected in [
        ("Normal", "SuccessfulCreate"),
        ("Normal", "Scheduled"),
        ("Normal", "Pulling"),
        ("Normal", "Started"),
        ("Normal", "Completed"),
    ]:
        assert expected in cluster
    started = next(e for e in events if e["reason"] == "Started")
    assert started["involvedObject"]["kind"] == "Pod"
    assert started["involvedObject"]["name"].startswith("t1-")
    assert started["firstSeen"]
    assert started["count"] == 1
    # Each cluster event is stored once, however many cycles saw it.
    world.cycle(5)
    world.cycle(5)
    assert len(_events(world, wid)) == len(events)


def test_an_image_pull_failure_keeps_its_warnings_after_the_workload_fails(world: World) -> None:
    wid = world.submit(
        "trainings", "bad", {"image": "nope:1", "annotations": {OUTCOME: "image-pull-error"}}
    )
    world.phases_until(wid, "Failed", step=5)
    warnings = [e for e in _events(world, wid) if e["type"] == "Warning"]
    assert warnings
    assert all(e["source"] == "kubernetes" for e in warnings)
    assert any(e["reason"] == "Failed" and "nope:1" in e["message"] for e in warnings)
    world.client.delete(f"/api/v1/workloads/{wid}")
    for _ in range(3):
        world.cycle(1)
    assert world.phase(wid) == "Deleted"
    assert any(e["reason"] == "Failed" for e in _events(world, wid) if e["type"] == "Warning")


def test_a_crash_loop_counts_its_back_offs(world: World) -> None:
    wid = world.submit("interactives", "c", {"image": "x", "annotations": {OUTCOME: "crash-loop"}})
    world.phases_until(wid, "Degraded", limit=100)
    for _ in range(10):
        world.cycle(10)
    (backoff,) = [e for e in _events(world, wid) if e["reason"] == "BackOff"]
    assert backoff["type"] == "Warning"
    assert backoff["count"] >= 2
    assert backoff["lastSeen"] > backoff["firstSeen"]
