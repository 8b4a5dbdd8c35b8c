"""The researcher's view on the simulated backend: pods, URLs, cluster events, logs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.cluster.simulation import EXIT_CODE_ANNOTATION as EXIT_CODE
from app.workloads import logs
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


def _log(world: World, wid: str, **params: Any) -> str:
    r = world.client.get(f"/api/v1/workloads/{wid}/logs", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return str(r.text)


@pytest.fixture
def logged(world: World) -> World:
    """The world with the API on the simulation's clock, and the history kept."""
    world.client.app.state.clock = world.clock  # type: ignore[attr-defined]
    world.reconciler.log_tail = logs.simulated_tail
    return world


def test_a_training_log_grows_while_it_runs_and_outlives_its_pod(logged: World) -> None:
    world = logged
    wid = world.submit("trainings", "mnist", {"image": "pytorch:2"})
    world.phases_until(wid, "Running")
    first = _log(world, wid).splitlines()
    assert first[0].startswith("Loading dataset")
    world.cycle(2)
    world.cycle(1)
    grown = _log(world, wid).splitlines()
    assert grown[: len(first)] == first
    assert len(grown) > len(first)
    assert "loss" in grown[-1]
    stamped = _log(world, wid, timestamps="true", tailLines=2).splitlines()
    assert len(stamped) == 2
    assert stamped[0].startswith("2026-01-01T00:00:")
    assert stamped[1].endswith(grown[-1])
    world.phases_until(wid, "Completed")
    done = _log(world, wid)
    assert done.splitlines()[-1] == "Done."
    # The simulated cluster forgets the workload once it is deleted: the kept lines answer.
    world.client.delete(f"/api/v1/workloads/{wid}")
    for _ in range(3):
        world.cycle(1)
    assert world.phase(wid) == "Deleted"
    assert _log(world, wid) == done
    assert _log(world, wid, tailLines=1) == "Done.\n"


def test_a_crash_loop_shows_the_previous_run(logged: World) -> None:
    world = logged
    wid = world.submit(
        "interactives",
        "c",
        {"image": "x", "annotations": {OUTCOME: "crash-loop", EXIT_CODE: "3"}},
    )
    world.phases_until(wid, "Degraded", limit=100)
    previous = _log(world, wid, previous="true").splitlines()
    assert previous[-1] == "RuntimeError: worker exited with code 3"


def test_log_requests_that_cannot_be_answered(logged: World) -> None:
    world = logged
    wid = world.submit("trainings", "t", {"image": "x"})
    url = f"/api/v1/workloads/{wid}/logs"
    assert world.client.get(url).text == ""  # no pods yet: nothing printed
    world.phases_until(wid, "Running")
    assert world.client.get(url, params={"pod": "nope"}).status_code == 404
    assert world.client.get(url, params={"container": "nope"}).status_code == 404
    r = world.client.get(url, params={"previous": "true"})
    assert r.status_code == 422, r.text
    assert world.client.get(url, params={"tailLines": -1}).status_code == 422
    assert world.client.get(url, params={"limitBytes": 10}).text == _log(world, wid)[:10]


def test_a_followed_log_streams_until_the_container_ends(logged: World) -> None:
    world = logged
    wid = world.submit("trainings", "f", {"image": "x"})
    world.phases_until(wid, "Running")
    stop = threading.Event()

    def run_the_cluster() -> None:
        while not stop.is_set() and world.phase(wid) != "Completed":
            time.sleep(0.3)
            world.cycle(1)

    lines: list[str] = []
    with world.client.stream(
        "GET", f"/api/v1/workloads/{wid}/logs", params={"follow": "true"}
    ) as r:
        assert r.status_code == 200
        cluster = threading.Thread(target=run_the_cluster)
        cluster.start()
        try:
            lines.extend(r.iter_lines())
        finally:
            stop.set()
            cluster.join()
    assert lines[0].startswith("Loading dataset")
    assert lines[-1] == "Done."
    assert lines == _log(world, wid).splitlines()


def _sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Each event of a Server-Sent Events stream: its id, type and the workload it carries."""
    event: dict[str, Any] = {}
    for line in lines:
        if line.startswith("id: "):
            event["id"] = line[4:]
        elif line.startswith("event: "):
            event["event"] = line[7:]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])
        elif line == "" and "data" in event:
            yield event
            event = {}


def _drive(world: World, wid: str, until: str) -> threading.Thread:
    def run() -> None:
        for _ in range(100):
            time.sleep(0.1)
            world.cycle(1)
            if world.phase(wid) == until:
                return

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_watch_shows_each_phase_as_it_happens_and_resumes(world: World) -> None:
    wid = world.submit("trainings", "w", {"image": "x"})
    url = f"/api/v1/workloads/{wid}/watch"
    phases: list[str] = []
    last = ""
    with world.client.stream("GET", url, params={"timeoutSeconds": 30}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        driver = _drive(world, wid, "Completed")
        try:
            for event in _sse(r.iter_lines()):
                assert event["data"]["id"] == wid
                last = event["id"]
                if not phases or phases[-1] != event["data"]["phase"]:
                    phases.append(event["data"]["phase"])
                if phases[-1] == "Completed":
                    break
        finally:
            driver.join()
    # Every phase the workload went through, as its timeline records them, in order.
    timeline: list[str] = []
    for e in _events(world, wid):
        if e["source"] == "runplane" and (not timeline or timeline[-1] != e["phase"]):
            timeline.append(e["phase"])
    assert phases == timeline
    assert phases[0] == "Creating"
    assert "Running" in phases
    # Resuming from the latest event: nothing to send until the workload changes.
    with world.client.stream(
        "GET", url, params={"timeoutSeconds": 1}, headers={"Last-Event-ID": last}
    ) as r:
        assert list(_sse(r.iter_lines())) == []
    # From an older one: the workload as it reads now.
    with world.client.stream(
        "GET", url, params={"timeoutSeconds": 1}, headers={"Last-Event-ID": "1"}
    ) as r:
        (now,) = _sse(r.iter_lines())
    assert now["data"]["phase"] == "Completed"


def test_a_list_watch_starts_with_the_list_and_follows_new_workloads(world: World) -> None:
    first = world.submit("trainings", "a", {"image": "x"})
    seen: list[tuple[str, str]] = []
    params = {"watch": "true", "project": "team-a", "timeoutSeconds": 30}
    with world.client.stream("GET", "/api/v1/workloads", params=params) as r:
        events = _sse(r.iter_lines())
        event = next(events)
        assert event["data"]["id"] == first
        second = world.submit("inferences", "b", {"image": "x", "servingPort": {"container": 80}})
        driver = _drive(world, second, "Running")
        try:
            for event in events:
                seen.append((event["data"]["id"], event["data"]["phase"]))
                if (second, "Running") in seen:
                    break
        finally:
            driver.join()
    assert seen[0] == (second, "Creating")
    assert (first, "Running") in seen
    # Resumed from an event: every workload written since, not the whole list again.
    resume = {"Last-Event-ID": event["id"]}
    with world.client.stream(
        "GET", "/api/v1/workloads", params={**params, "timeoutSeconds": 1}, headers=resume
    ) as r:
        assert {e["data"]["id"] for e in _sse(r.iter_lines())} <= {first, second}


def test_a_list_watch_says_when_a_workload_leaves_its_filters(world: World) -> None:
    """A UI that watches the running workloads hears when one completes, and when one is
    deleted, as a Kubernetes watch with a selector sends DELETED."""
    done = world.submit("trainings", "done", {"image": "x"})
    kept = world.submit("interactives", "kept", {"image": "x"})
    world.phases_until(done, "Running")
    world.phases_until(kept, "Running")
    params = {"watch": "true", "phase": "Running", "timeoutSeconds": 30}
    got: list[tuple[str, str, str]] = []
    with world.client.stream("GET", "/api/v1/workloads", params=params) as r:
        events = _sse(r.iter_lines())
        first = [next(events), next(events)]
        assert {(e["event"], e["data"]["id"]) for e in first} == {
            ("workload", done),
            ("workload", kept),
        }
        driver = _drive(world, done, "Completed")
        try:
            for event in events:
                got.append((event["event"], event["data"]["id"], event["data"]["phase"]))
                if event["event"] == "removed":
                    break
        finally:
            driver.join()
        assert got[-1] == ("removed", done, "Completed")
        assert world.client.delete(f"/api/v1/workloads/{kept}").status_code == 202
        world.cycle(1)
        event = next(events)
        assert (event["event"], event["data"]["id"]) == ("removed", kept)
    assert all(kind == "workload" for kind, _, _ in got[:-1])


def test_after_a_gap_a_list_watch_says_which_workloads_left_meanwhile(world: World) -> None:
    """Changes missed (a watcher fell behind, the listener reconnected): the stream reads the
    list again, and reports what it had sent that no longer matches."""
    wid = world.submit("trainings", "gap", {"image": "x"})
    world.phases_until(wid, "Running")
    params = {"watch": "true", "phase": "Running", "timeoutSeconds": 30}
    with world.client.stream("GET", "/api/v1/workloads", params=params) as r:
        events = _sse(r.iter_lines())
        assert next(events)["data"]["id"] == wid
        # As when the feed's listener reconnects: the change's notification never reaches the
        # watcher, which is then told to read afresh (None).
        feed = world.client.app.state.changes  # type: ignore[attr-defined]
        portal = world.client.portal
        assert portal is not None
        (watcher,) = feed._lists
        feed.unsubscribe(watcher)
        world.phases_until(wid, "Completed")
        portal.call(feed.subscribe, watcher)
        portal.call(watcher.offer, None)
        event = next(events)
    assert (event["event"], event["data"]["id"], event["data"]["phase"]) == (
        "removed",
        wid,
        "Completed",
    )
