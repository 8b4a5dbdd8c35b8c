"""Policies over HTTP: CRUD, effective policy, ETag/If-Match, dry run, explain."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

GLOBAL_TRAINING = {
    "defaults": {"compute": {"gpuDevicesRequest": 1}},
    "rules": {"compute": {"gpuDevicesRequest": {"max": 4}}},
}


def make_project(client: TestClient, name: str) -> None:
    assert client.post("/api/v1/projects", json={"name": name}).status_code == 201


def put(client: TestClient, url: str, body: dict[str, Any], **headers: str) -> Any:
    return client.put(url, json=body, headers=headers)


def test_global_policy_reaches_every_project_until_a_project_writes_its_own(
    client: TestClient,
) -> None:
    for name in ("team-a", "team-b"):
        make_project(client, name)
    r = put(client, "/api/v1/policies/global/trainings", GLOBAL_TRAINING)
    assert r.status_code == 201, r.text
    assert r.json()["scope"] == "global"
    assert r.json()["workloadType"] == "training"
    for name in ("team-a", "team-b"):
        eff = client.get(f"/api/v1/projects/{name}/policies/trainings/effective").json()
        assert eff["source"] == "global"
        assert eff["defaults"] == {"compute": {"gpuDevicesRequest": 1}}
        assert eff["rules"] == {"compute": {"gpuDevicesRequest": {"max": 4}}}
        assert eff["fields"]["compute.gpuDevicesRequest"] == {
            "default": "global",
            "rules": "global",
        }

    own = {
        "defaults": {"image": "pytorch:2"},
        "rules": {"compute": {"gpuDevicesRequest": {"max": 2}}},
    }
    assert put(client, "/api/v1/projects/team-a/policies/trainings", own).status_code == 201
    a = client.get("/api/v1/projects/team-a/policies/trainings/effective").json()
    assert a["source"] == "project"
    assert a["defaults"] == {"image": "pytorch:2"}  # the global default no longer applies
    assert a["rules"] == {"compute": {"gpuDevicesRequest": {"max": 2}}}
    b = client.get("/api/v1/projects/team-b/policies/trainings/effective").json()
    assert b["source"] == "global"

    merged = {**own, "inheritGlobal": True}
    etag = client.get("/api/v1/projects/team-a/policies/trainings").headers["etag"]
    assert (
        put(
            client, "/api/v1/projects/team-a/policies/trainings", merged, **{"If-Match": etag}
        ).status_code
        == 200
    )
    a = client.get("/api/v1/projects/team-a/policies/trainings/effective").json()
    assert a["source"] == "merged"
    assert a["defaults"] == {"image": "pytorch:2", "compute": {"gpuDevicesRequest": 1}}
    assert a["rules"]["compute"]["gpuDevicesRequest"] == {"max": 2}
    assert a["fields"]["compute.gpuDevicesRequest"] == {"default": "global", "rules": "project"}
    assert a["fields"]["image"] == {"default": "project", "rules": None}


def test_no_policy_is_source_none(client: TestClient) -> None:
    make_project(client, "team-a")
    eff = client.get("/api/v1/projects/team-a/policies/inferences/effective").json()
    assert eff["source"] == "none"
    assert eff["defaults"] == {}


def test_every_problem_of_a_bad_policy_is_listed(client: TestClient) -> None:
    body = {
        "defaults": {"compute": {"gpuDevicesRequest": "two"}, "bogus": 1},
        "rules": {
            "image": {"min": 3},
            "compute": {"cpuCoreRequest": {"min": 4, "max": 2}},
            "nodeType": {"pattern": "("},
            "completions": {"step": 2},
        },
    }
    r = put(client, "/api/v1/policies/global/trainings", body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in r.json()["errors"]}
    for expected in (
        "defaults.compute.gpuDevicesRequest",
        "defaults.bogus",
        "rules.image.min",
        "rules.nodeType.pattern",
        "rules.completions.step",
    ):
        assert expected in fields, (expected, fields)
    assert any(f.startswith("rules.compute.cpuCoreRequest") for f in fields)
    assert client.get("/api/v1/policies/global/trainings").status_code == 404


def test_defaults_breaking_own_rules_are_refused(client: TestClient) -> None:
    body = {
        "defaults": {"compute": {"gpuDevicesRequest": 8}},
        "rules": {"compute": {"gpuDevicesRequest": {"max": 4}}},
    }
    r = put(client, "/api/v1/policies/global/trainings", body)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "defaults.compute.gpuDevicesRequest"


def test_inherit_global_only_for_projects(client: TestClient) -> None:
    r = put(client, "/api/v1/policies/global/trainings", {"inheritGlobal": True})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "inheritGlobal"


def test_etag_and_stale_if_match(client: TestClient) -> None:
    r = put(client, "/api/v1/policies/global/trainings", GLOBAL_TRAINING)
    first = r.headers["etag"]
    got = client.get("/api/v1/policies/global/trainings")
    assert got.headers["etag"] == first
    assert got.json()["version"] == 1
    changed = {"defaults": {"compute": {"gpuDevicesRequest": 2}}, "rules": GLOBAL_TRAINING["rules"]}
    r = put(client, "/api/v1/policies/global/trainings", changed, **{"If-Match": first})
    assert r.status_code == 200
    assert r.json()["version"] == 2
    assert r.headers["etag"] != first
    r = put(client, "/api/v1/policies/global/trainings", GLOBAL_TRAINING, **{"If-Match": first})
    assert r.status_code == 412
    assert r.headers["content-type"] == "application/problem+json"
    assert client.get("/api/v1/policies/global/trainings").json()["defaults"] == changed["defaults"]
    r = client.delete("/api/v1/policies/global/trainings", headers={"If-Match": first})
    assert r.status_code == 412
    assert client.delete("/api/v1/policies/global/trainings").status_code == 204
    assert client.get("/api/v1/policies/global/trainings").status_code == 404


def test_effective_policy_cache_sees_every_write(client: TestClient) -> None:
    make_project(client, "team-a")
    url = "/api/v1/projects/team-a/policies/trainings/effective"
    for gpus in (1, 2, 3):
        body = {"defaults": {"compute": {"gpuDevicesRequest": gpus}}}
        put(client, "/api/v1/policies/global/trainings", body)
        assert client.get(url).json()["defaults"]["compute"]["gpuDevicesRequest"] == gpus
    client.delete("/api/v1/policies/global/trainings")
    assert client.get(url).json()["source"] == "none"
    # Recreated at version 1 again: the cache must not mistake it for the first version 1.
    put(client, "/api/v1/policies/global/trainings", {"defaults": {"image": "x"}})
    assert client.get(url).json()["defaults"] == {"image": "x"}


def test_dry_run_stores_nothing(client: TestClient) -> None:
    r = client.put("/api/v1/policies/global/trainings?dryRun=true", json=GLOBAL_TRAINING)
    assert r.status_code == 200, r.text
    assert r.json()["policy"]["version"] == 1
    assert r.json()["checkedWorkloads"] == 0
    assert r.json()["rejectedWorkloads"] == []
    assert client.get("/api/v1/policies/global/trainings").status_code == 404
    bad = client.put(
        "/api/v1/policies/global/trainings?dryRun=true", json={"rules": {"nope": {"max": 1}}}
    )
    assert bad.status_code == 422


def test_list_policies_filters_and_pages(client: TestClient) -> None:
    make_project(client, "team-a")
    put(client, "/api/v1/policies/global/trainings", GLOBAL_TRAINING)
    put(client, "/api/v1/policies/global/inferences", {})
    put(client, "/api/v1/projects/team-a/policies/trainings", {})
    everything = client.get("/api/v1/policies").json()["items"]
    assert len(everything) == 3
    assert [p["scope"] for p in client.get("/api/v1/policies?scope=project").json()["items"]] == [
        "project"
    ]
    trainings = client.get("/api/v1/policies?workloadType=training").json()["items"]
    assert {p["project"] for p in trainings} == {None, "team-a"}
    assert len(client.get("/api/v1/policies?project=team-a").json()["items"]) == 1
    page = client.get("/api/v1/policies?limit=2").json()
    rest = client.get(f"/api/v1/policies?limit=2&cursor={page['next']}").json()
    assert len(page["items"]) == 2
    assert len(rest["items"]) == 1
    assert rest["next"] is None
    assert client.get("/api/v1/policies?project=nope").status_code == 404


def test_project_policy_404s(client: TestClient) -> None:
    assert client.get("/api/v1/projects/ghost/policies/trainings").status_code == 404
    make_project(client, "team-a")
    assert client.get("/api/v1/projects/team-a/policies/trainings").status_code == 404
    assert client.get("/api/v1/projects/team-a/policies/nonsense").status_code == 422


def test_explain_tells_a_new_user_what_they_may_ask_for(client: TestClient) -> None:
    make_project(client, "team-a")
    put(client, "/api/v1/policies/global/trainings", GLOBAL_TRAINING)
    r = client.get(
        "/api/v1/explain/trainings",
        params={"field": "compute.gpuDevicesRequest", "project": "team-a"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["policySource"] == "global"
    (field,) = body["fields"]
    assert field["kind"] == "int"
    assert "GPU" in field["description"]
    assert field["default"] == 1
    assert field["rules"] == {"max": 4}
    assert field["source"] == {"default": "global", "rules": "global"}
    assert "max" in field["ruleKeys"]
    # The spec's own bounds, apart from the policy's.
    assert field["bounds"] == {"ge": 0, "le": 1024}


def test_explain_shows_open_and_closed_bounds(client: TestClient) -> None:
    r = client.get("/api/v1/explain/trainings", params={"field": "compute.gpuPortionRequest"})
    assert r.status_code == 200, r.text
    assert r.json()["fields"][0]["bounds"] == {"gt": 0, "lt": 1}
    listing = client.get("/api/v1/explain/trainings").json()["fields"]
    assert {f["field"]: f["bounds"] for f in listing}["image"] is None


def test_explain_lists_fields_and_404s_unknown(client: TestClient) -> None:
    listing = client.get("/api/v1/explain/distributed").json()
    paths = {f["field"] for f in listing["fields"]}
    assert {"distributedFramework", "compute.gpuDevicesRequest", "masterSpec.image"} <= paths
    assert (
        client.get("/api/v1/explain/trainings", params={"field": "compute.nope"}).status_code == 404
    )
    assert client.get("/api/v1/explain/trainings", params={"project": "ghost"}).status_code == 404


@pytest.mark.parametrize("collection", ["interactives", "trainings", "distributed", "inferences"])
def test_each_type_has_its_own_policy(client: TestClient, collection: str) -> None:
    r = put(client, f"/api/v1/policies/global/{collection}", {"defaults": {"image": "busybox"}})
    assert r.status_code == 201
    others = client.get("/api/v1/policies").json()["items"]
    assert len(others) == 1
