"""Workloads over HTTP on real PostgreSQL: the four types, policy, dry run, idempotency,
uniqueness under concurrency, reading, lifecycle requests."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from app.config import Settings
from app.main import create_app
from app.models import Workload, WorkloadEvent
from tests.conftest import AUTH, SqlSession

SPECS: dict[str, dict[str, Any]] = {
    "interactives": {"image": "jupyter/base-notebook", "tool": "jupyter"},
    "trainings": {"image": "pytorch/pytorch:2.4", "compute": {"gpuDevicesRequest": 1}},
    "distributed": {
        "image": "pytorch/pytorch:2.4",
        "distributedFramework": "PyTorch",
        "numWorkers": 2,
    },
    "inferences": {"image": "vllm/vllm-openai", "servingPort": {"container": 8000}},
}


@pytest.fixture
def project(client: TestClient) -> str:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    return "team-a"


def submit(client: TestClient, collection: str, name: str, spec: dict[str, Any], **kw: Any) -> Any:
    return client.post(
        f"/api/v1/workloads/{collection}",
        json={"name": name, "project": "team-a", "spec": spec},
        **kw,
    )


@pytest.mark.parametrize("collection", list(SPECS))
def test_each_type_is_accepted_and_readable(
    client: TestClient, project: str, collection: str
) -> None:
    r = submit(client, collection, "job-1", SPECS[collection])
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/api/v1/workloads/{body['id']}"
    assert body["phase"] == "Creating"
    assert body["desiredPhase"] == "Running"
    assert body["submittedSpec"] == SPECS[collection]
    assert body["cluster"]["namespace"] == "runplane-team-a"
    assert body["cluster"]["objects"], "the rendered objects are listed"
    got = client.get(f"/api/v1/workloads/{body['id']}").json()
    assert got == body
    events = client.get(f"/api/v1/workloads/{body['id']}/events").json()["items"]
    assert [e["reason"] for e in events] == ["Submitted"]


def test_defaults_show_in_applied_defaults(client: TestClient, project: str) -> None:
    client.put(
        "/api/v1/policies/global/trainings",
        json={
            "defaults": {"image": "pytorch/pytorch:2.4", "compute": {"gpuDevicesRequest": 1}},
            "rules": {"compute": {"gpuDevicesRequest": {"max": 4}}},
        },
    )
    r = submit(client, "trainings", "t1", {})
    assert r.status_code == 201, r.text
    body = r.json()
    assert sorted(body["appliedDefaults"]) == ["compute.gpuDevicesRequest", "image"]
    assert body["spec"]["compute"]["gpuDevicesRequest"] == 1
    assert body["submittedSpec"] == {}
    assert body["policy"] == {"source": "global", "version": 1}


def test_violation_names_field_rule_and_source(client: TestClient, project: str) -> None:
    client.put(
        "/api/v1/policies/global/trainings",
        json={
            "rules": {
                "compute": {"gpuDevicesRequest": {"max": 4}},
                "image": {"pattern": "nvcr\\.io/.*"},
            }
        },
    )
    r = submit(
        client, "trainings", "t1", {"image": "docker.io/x", "compute": {"gpuDevicesRequest": 8}}
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    errors = {e["field"]: e for e in r.json()["errors"]}
    assert errors["spec.compute.gpuDevicesRequest"]["rule"] == "max"
    assert errors["spec.compute.gpuDevicesRequest"]["source"] == "global"
    assert errors["spec.compute.gpuDevicesRequest"]["value"] == 8
    assert "4" in errors["spec.compute.gpuDevicesRequest"]["message"]
    assert errors["spec.image"]["rule"] == "pattern"
    assert client.get("/api/v1/workloads").json()["items"] == []


@pytest.mark.parametrize(
    ("collection", "spec", "field", "words"),
    [
        (
            "trainings",
            {"image": "x", "compute": {"cpuCoreRequest": 2, "cpuCoreLimit": 1}},
            "spec.compute",
            "cpuCoreLimit",
        ),
        (
            "trainings",
            {"image": "x", "compute": {"cpuMemoryRequest": "2Gi", "cpuMemoryLimit": "1G"}},
            "spec.compute",
            "cpuMemoryLimit",
        ),
        ("trainings", {"image": "x", "completions": 2, "parallelism": 3}, "spec", "parallelism"),
        (
            "trainings",
            {"image": "x", "compute": {"gpuPortionRequest": 0.5, "gpuDevicesRequest": 1}},
            "spec.compute",
            "gpuPortionRequest",
        ),
        (
            "trainings",
            {"image": "x", "compute": {"gpuPortionRequest": 1.5}},
            "spec.compute.gpuPortionRequest",
            "less than 1",
        ),
        (
            "trainings",
            {"image": "x", "environmentVariables": [{"name": "1BAD"}]},
            "spec.environmentVariables[0]",
            "invalid",
        ),
        (
            "trainings",
            {"image": "x", "environmentVariables": [{"name": "A"}, {"name": "A"}]},
            "spec",
            "duplicate",
        ),
        ("trainings", {}, "spec.image", "required"),
        ("distributed", {"image": "x"}, "spec.distributedFramework", "required"),
        (
            "distributed",
            {"image": "x", "distributedFramework": "TF", "slotsPerWorker": 2},
            "spec",
            "MPI",
        ),
        (
            "distributed",
            {"image": "x", "distributedFramework": "MPI", "numWorkers": 0},
            "spec.numWorkers",
            "greater than or equal to 1",
        ),
        ("inferences", {"image": "x"}, "spec.servingPort", "required"),
        (
            "inferences",
            {
                "image": "x",
                "servingPort": {"container": 80},
                "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
            },
            "spec.autoscaling",
            "metric",
        ),
        ("trainings", {"image": "x", "unknownField": 1}, "spec.unknownField", "unknown"),
    ],
)
def test_cross_field_checks(
    client: TestClient, project: str, collection: str, spec: dict[str, Any], field: str, words: str
) -> None:
    r = submit(client, collection, "bad", spec)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert any(e["field"] == field and words in e["message"] for e in errors), errors


@pytest.mark.parametrize("name", ["1abc", "Abc", "a" * 41, "a_b", ""])
def test_bad_names(client: TestClient, project: str, name: str) -> None:
    r = submit(client, "trainings", name, {"image": "x"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "name"


def test_unknown_project_is_404(client: TestClient) -> None:
    r = client.post(
        "/api/v1/workloads/trainings",
        json={"name": "a", "project": "ghost", "spec": {"image": "x"}},
    )
    assert r.status_code == 404


def test_dry_run_shows_manifests_and_stores_nothing(client: TestClient, project: str) -> None:
    r = submit(client, "trainings", "t1", SPECS["trainings"], params={"dryRun": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["spec"]["image"] == "pytorch/pytorch:2.4"
    kinds = [m["kind"] for m in body["manifests"]]
    assert kinds == ["Job"]
    assert body["manifests"][0]["metadata"]["namespace"] == "runplane-team-a"
    assert client.get("/api/v1/workloads").json()["items"] == []
    bad = submit(client, "trainings", "t1", {}, params={"dryRun": "true"})
    assert bad.status_code == 422


def test_manifests_json_and_yaml_are_what_was_rendered(client: TestClient, project: str) -> None:
    dry = submit(client, "inferences", "svc", SPECS["inferences"], params={"dryRun": "true"}).json()
    created = submit(client, "inferences", "svc", SPECS["inferences"]).json()
    manifests = client.get(f"/api/v1/workloads/{created['id']}/manifests").json()
    assert [m["kind"] for m in manifests] == [m["kind"] for m in dry["manifests"]]
    labels = manifests[0]["metadata"]["labels"]
    assert labels["runplane.io/workload-id"] == created["id"]
    r = client.get(
        f"/api/v1/workloads/{created['id']}/manifests", headers={"Accept": "application/yaml"}
    )
    assert r.headers["content-type"].startswith("application/yaml")
    assert list(yaml.safe_load_all(r.text)) == manifests


def test_idempotency_key_replays_and_refuses_other_bodies(client: TestClient, project: str) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = submit(client, "trainings", "t1", SPECS["trainings"], headers=headers)
    again = submit(client, "trainings", "t1", SPECS["trainings"], headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["location"] == first.headers["location"]
    assert len(client.get("/api/v1/workloads").json()["items"]) == 1
    other = submit(client, "trainings", "t2", SPECS["trainings"], headers=headers)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["errors"][0]["field"]


def test_duplicate_name_is_409_and_delete_frees_it(client: TestClient, project: str) -> None:
    first = submit(client, "trainings", "t1", SPECS["trainings"]).json()
    dup = submit(client, "trainings", "t1", SPECS["trainings"])
    assert dup.status_code == 409
    assert dup.json()["errors"][0]["field"] == "name"
    r = client.delete(f"/api/v1/workloads/{first['id']}")
    assert r.status_code == 202
    assert r.json()["desiredPhase"] == "Deleted"
    again = submit(client, "trainings", "t1", SPECS["trainings"])
    assert again.status_code == 201
    old = client.get(f"/api/v1/workloads/{first['id']}").json()
    assert old["deletedAt"] is not None
    assert [w["id"] for w in client.get("/api/v1/workloads?deleted=true").json()["items"]] == [
        first["id"]
    ]
    assert [w["id"] for w in client.get("/api/v1/workloads").json()["items"]] == [
        again.json()["id"]
    ]


def test_list_filters_and_newest_first_pages(
    client: TestClient, project: str, sql: SqlSession
) -> None:
    assert client.post("/api/v1/projects", json={"name": "team-b"}).status_code == 201
    ids = []
    for i in range(5):
        ids.append(submit(client, "trainings", f"t{i}", SPECS["trainings"]).json()["id"])
    r = client.post(
        "/api/v1/workloads/inferences",
        json={"name": "inf", "project": "team-b", "spec": SPECS["inferences"]},
    )
    assert r.status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "project": "team-a"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/workloads", params=params).json()
        seen += [w["id"] for w in page["items"]]
        cursor = page["next"]
        if not cursor:
            break
    assert seen == ids[::-1]  # newest first, across pages
    # Rows created at the same instant come in descending id order, and no page repeats or
    # skips one of them.
    with sql() as s:
        s.execute(
            text(
                "UPDATE workloads SET created_at = '2026-01-01T00:00:00Z' WHERE project = 'team-a'"
            )
        )
    paged = []
    cursor = None
    while True:
        params = {"limit": 2, "project": "team-a", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/workloads", params=params).json()
        paged += [w["id"] for w in page["items"]]
        if not (cursor := page["next"]):
            break
    assert paged == sorted(ids, reverse=True)
    assert [w["type"] for w in client.get("/api/v1/workloads?type=inference").json()["items"]] == [
        "inference"
    ]
    assert len(client.get("/api/v1/workloads?phase=Creating").json()["items"]) == 6
    assert client.get("/api/v1/workloads?phase=Running").json()["items"] == []
    assert client.get("/api/v1/workloads?phase=Bogus").status_code == 422


def test_lifecycle_requests_and_impossible_transitions(
    client: TestClient, project: str, sql: SqlSession
) -> None:
    w = submit(client, "trainings", "t1", SPECS["trainings"]).json()
    url = f"/api/v1/workloads/{w['id']}"
    r = client.post(f"{url}/suspend")
    assert r.status_code == 202
    assert r.json()["desiredPhase"] == "Stopped"
    assert client.post(f"{url}/suspend").status_code == 202  # already asked: no-op
    r = client.post(f"{url}/resume")
    assert r.status_code == 202
    assert r.json()["desiredPhase"] == "Running"
    reasons = [e["reason"] for e in client.get(f"{url}/events").json()["items"]]
    assert reasons == ["Submitted", "SuspendRequested", "ResumeRequested"]
    with sql() as s:
        s.get(Workload, w["id"]).phase = "Completed"  # type: ignore[union-attr]
    r = client.post(f"{url}/resume")
    assert r.status_code == 409
    assert "Completed" in r.json()["detail"]
    assert client.delete(url).status_code == 202
    for action in ("suspend", "resume"):
        r = client.post(f"{url}/{action}")
        assert r.status_code == 409
        assert "deleted" in r.json()["detail"]
    assert client.delete(url).status_code == 409
    assert (
        client.post("/api/v1/workloads/00000000-0000-0000-0000-000000000000/suspend").status_code
        == 404
    )
    assert client.get("/api/v1/workloads/not-a-uuid").status_code == 422


def test_project_with_active_workloads_cannot_be_deleted(
    client: TestClient, project: str, sql: SqlSession
) -> None:
    w = submit(client, "trainings", "t1", SPECS["trainings"]).json()
    r = client.delete("/api/v1/projects/team-a")
    assert r.status_code == 409
    client.delete(f"/api/v1/workloads/{w['id']}")
    assert client.delete("/api/v1/projects/team-a").status_code == 409  # still Deleting
    with sql() as s:
        s.get(Workload, w["id"]).phase = "Deleted"  # type: ignore[union-attr]
    assert client.delete("/api/v1/projects/team-a").status_code == 204
    # A deleted workload stays readable by id (SPEC §4), its project's name on it.
    kept = client.get(f"/api/v1/workloads/{w['id']}")
    assert kept.status_code == 200, kept.text
    assert (kept.json()["project"], kept.json()["phase"]) == ("team-a", "Deleted")
    assert [x["id"] for x in client.get("/api/v1/workloads?deleted=true").json()["items"]] == [
        w["id"]
    ]


def test_policy_dry_run_lists_the_active_workloads_it_would_reject(
    client: TestClient, project: str
) -> None:
    big = submit(
        client, "trainings", "big", {"image": "x", "compute": {"gpuDevicesRequest": 8}}
    ).json()
    submit(client, "trainings", "small", {"image": "x", "compute": {"gpuDevicesRequest": 1}})
    r = client.put(
        "/api/v1/policies/global/trainings?dryRun=true",
        json={"rules": {"compute": {"gpuDevicesRequest": {"max": 4}}}},
    )
    assert r.status_code == 200
    report = r.json()
    assert report["checkedWorkloads"] == 2
    assert [w["id"] for w in report["rejectedWorkloads"]] == [big["id"]]
    assert report["rejectedWorkloads"][0]["violations"][0]["rule"] == "max"
    # A project with its own policy is not reached by the global one.
    client.put("/api/v1/projects/team-a/policies/trainings", json={})
    r = client.put(
        "/api/v1/policies/global/trainings?dryRun=true",
        json={"rules": {"compute": {"gpuDevicesRequest": {"max": 4}}}},
    )
    assert r.json()["checkedWorkloads"] == 0


def test_no_n_plus_one(client: TestClient, project: str, statements: list[tuple[str, Any]]) -> None:
    client.put("/api/v1/policies/global/trainings", json={"defaults": {"image": "x"}})
    submit(client, "trainings", "warm", {})  # fills the process's project and policy caches
    statements.clear()
    assert submit(client, "trainings", "t0", {}).status_code == 201
    # One statement: it re-reads the project and policy versions and inserts the workload, its
    # first event and its audit entry.
    assert len(statements) == 1, statements
    assert "INSERT INTO workloads" in statements[0][0]
    for i in range(1, 20):
        submit(client, "trainings", f"t{i}", {})
    statements.clear()
    assert len(client.get("/api/v1/workloads?limit=20").json()["items"]) == 20
    assert len(statements) == 1, statements


def test_simultaneous_submissions_of_one_name(settings: Settings, sql: SqlSession) -> None:
    app = create_app(settings, reconcile=False)
    with TestClient(app, headers=AUTH) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        barrier = threading.Barrier(4)
        codes: list[int] = []

        def go() -> None:
            barrier.wait()
            r = c.post(
                "/api/v1/workloads/trainings",
                json={"name": "same", "project": "team-a", "spec": {"image": "x"}},
            )
            codes.append(r.status_code)

        threads = [threading.Thread(target=go) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(codes) == [201, 409, 409, 409]
    with sql() as s:
        assert s.scalar(select(func.count()).select_from(Workload)) == 1
        assert s.scalar(select(func.count()).select_from(WorkloadEvent)) == 1
