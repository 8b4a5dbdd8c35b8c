"""A project's own objects end to end on the simulated backend: applied by the reconciler as
rendered, kept in step with the project, removed with it; and read at /projects/{p}/manifests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.cluster.backend import ClusterError, ObjectRef, ObjectRejected
from app.cluster.simulated import SimulatedBackend
from app.cluster.simulation import ClusterShape, Timing
from app.config import Settings
from app.db import BlockingDatabase
from app.main import create_app
from app.reconciler.loop import Reconciler
from tests.conftest import AUTH
from tests.e2e.test_simulated import Clock


class Refusing(SimulatedBackend):
    """Refuses KAI's Queues, as a cluster without KAI-Scheduler's CRDs would."""

    def apply_project(self, *, project: str, manifests: Any) -> None:
        if any(m["kind"] == "Queue" for m in manifests):
            raise ObjectRejected("the server could not find the requested resource (queues)")
        super().apply_project(project=project, manifests=manifests)


class Env:
    def __init__(self, client: TestClient, backend: SimulatedBackend, reconciler: Reconciler):
        self.client = client
        self.backend = backend
        self.reconciler = reconciler

    def cycle(self) -> None:
        self.reconciler.cycle()

    def stored(self) -> dict[str, list[tuple[str, str]]]:
        """What the simulated cluster holds, by project: (kind, name)."""
        projects = self.backend.observe().projects or {}
        return {
            owner: sorted((o["kind"], o["metadata"]["name"]) for o in objects)
            for owner, objects in projects.items()
        }


@pytest.fixture
def env(db: BlockingDatabase, settings: Settings) -> Iterator[Env]:
    clock = Clock()
    backend = Refusing(
        db, cluster=ClusterShape(nodes=1, gpus_per_node=8), timing=Timing(), clock=clock
    )
    reconciler = Reconciler(
        db=db, backend=backend, pending_timeout=60, clock=clock, default_scheduler="kueue"
    )
    kueue = settings.model_copy(update={"scheduler": "kueue"})
    with TestClient(create_app(kueue, reconcile=False), headers=AUTH) as client:
        yield Env(client, backend, reconciler)


def test_objects_follow_the_project_and_go_with_it(env: Env) -> None:
    r = env.client.post("/api/v1/projects", json={"name": "team-a", "quota": {"gpu": 4}})
    assert r.json()["cluster"] == {"synced": False, "message": ""}
    env.cycle()
    assert env.stored() == {
        "": [("ResourceFlavor", "runplane")],
        "team-a": [("ClusterQueue", "runplane-team-a"), ("LocalQueue", "team-a")],
    }
    assert env.client.get("/api/v1/projects/team-a").json()["cluster"] == {
        "synced": True,
        "message": "",
    }
    # What is applied is what the API shows.
    shown = env.client.get("/api/v1/projects/team-a/manifests").json()
    held = env.backend.observe().projects or {}
    (cluster_queue,) = [o for o in held["team-a"] if o["kind"] == "ClusterQueue"]
    assert cluster_queue in shown
    # A new quota is applied; a new queue name replaces the LocalQueue.
    env.client.patch(
        "/api/v1/projects/team-a", json={"quota": {"gpu": {"deserved": 2, "limit": 6}}}
    )
    env.client.patch("/api/v1/projects/team-a", json={"queue": "gold"})
    env.cycle()
    env.cycle()  # the second cycle sees the old LocalQueue no project wants
    assert env.stored()["team-a"] == [("ClusterQueue", "runplane-team-a"), ("LocalQueue", "gold")]
    (cluster_queue,) = [
        o for o in (env.backend.observe().projects or {})["team-a"] if o["kind"] == "ClusterQueue"
    ]
    gpu = cluster_queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
    assert (gpu["nominalQuota"], gpu["borrowingLimit"]) == ("2", "4")
    # The project goes, its objects go, and so do the shared ones once no project needs them.
    assert env.client.delete("/api/v1/projects/team-a").status_code == 204
    env.cycle()
    assert env.stored() == {}


def test_a_scheduler_change_swaps_the_objects(env: Env) -> None:
    env.client.post("/api/v1/projects", json={"name": "team-a", "quota": {"gpu": 4}})
    env.cycle()
    env.client.patch("/api/v1/projects/team-a", json={"scheduler": "none"})
    env.cycle()
    assert env.stored() == {"team-a": [("ResourceQuota", "runplane-quota")]}


def test_objects_the_cluster_refuses_are_said_on_the_project(env: Env) -> None:
    env.client.post("/api/v1/projects", json={"name": "team-a", "scheduler": "kai"})
    env.cycle()
    cluster = env.client.get("/api/v1/projects/team-a").json()["cluster"]
    assert cluster["synced"] is False
    assert "could not find the requested resource (queues)" in cluster["message"]
    env.client.patch("/api/v1/projects/team-a", json={"scheduler": "kueue"})
    env.cycle()
    assert env.client.get("/api/v1/projects/team-a").json()["cluster"]["synced"] is True


def test_an_object_removed_behind_its_back_is_put_back(env: Env) -> None:
    env.client.post("/api/v1/projects", json={"name": "team-a"})
    env.cycle()
    objects = (env.backend.observe().projects or {})["team-a"]
    local = [o for o in objects if o["kind"] == "LocalQueue"]
    env.backend.delete_project_objects(project="team-a", objects=[ObjectRef.of(local[0])])
    assert ("LocalQueue", "team-a") not in env.stored()["team-a"]
    env.cycle()
    assert ("LocalQueue", "team-a") in env.stored()["team-a"]


@pytest.mark.parametrize(
    ("scheduler", "kinds"),
    [
        ("kueue", ["Namespace", "ClusterQueue", "LocalQueue", "ResourceFlavor"]),
        ("kai", ["Namespace", "Queue", "Queue"]),
        ("none", ["Namespace", "ResourceQuota"]),
    ],
)
def test_the_manifests_of_each_scheduler_read_as_json_and_yaml(
    env: Env, scheduler: str, kinds: list[str]
) -> None:
    env.client.post(
        "/api/v1/projects", json={"name": "team-a", "scheduler": scheduler, "quota": {"gpu": 2}}
    )
    r = env.client.get("/api/v1/projects/team-a/manifests")
    assert [o["kind"] for o in r.json()] == kinds
    r = env.client.get("/api/v1/projects/team-a/manifests", headers={"Accept": "application/yaml"})
    assert r.headers["content-type"].startswith("application/yaml")
    assert [d["kind"] for d in yaml.safe_load_all(r.text)] == kinds
    assert env.client.get("/api/v1/projects/nope/manifests").status_code == 404


def test_a_cluster_error_is_retried_not_fatal(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.client.post("/api/v1/projects", json={"name": "team-a"})
    failing = {"on": True}
    real = SimulatedBackend.apply_project

    def flaky(self: SimulatedBackend, **kw: Any) -> None:
        if failing["on"]:
            raise ClusterError("the API server answered 503")
        real(self, **kw)

    monkeypatch.setattr(SimulatedBackend, "apply_project", flaky)
    env.cycle()
    assert "503" in env.client.get("/api/v1/projects/team-a").json()["cluster"]["message"]
    failing["on"] = False
    env.client.patch("/api/v1/projects/team-a", json={"description": "again"})
    env.cycle()
    assert env.client.get("/api/v1/projects/team-a").json()["cluster"]["synced"] is True
