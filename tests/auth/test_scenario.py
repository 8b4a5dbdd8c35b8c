"""The "done when" scenario, and what a scoped token sees in lists (filtered in SQL)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.auth.conftest import TRAINING, Mint, assert_problem, bearer


def test_a_researcher_token_for_team_a(client: TestClient) -> None:
    # An admin sets the platform up and hands out a researcher token for team-a.
    for name in ("team-a", "team-b"):
        assert client.post("/api/v1/projects", json={"name": name}).status_code == 201
    r = client.post(
        "/api/v1/tokens",
        json={"name": "alice", "role": "researcher", "projects": ["team-a"]},
    )
    assert r.status_code == 201, r.text
    alice = TestClient(client.app, headers=bearer(r.json()["token"]))

    ok = alice.post(
        "/api/v1/workloads/trainings",
        json={"name": "train-1", "project": "team-a", "spec": TRAINING},
    )
    assert ok.status_code == 201, ok.text
    hidden = alice.post(
        "/api/v1/workloads/trainings",
        json={"name": "train-1", "project": "team-b", "spec": TRAINING},
    )
    missing = alice.post(
        "/api/v1/workloads/trainings",
        json={"name": "train-1", "project": "team-z", "spec": TRAINING},
    )
    assert_problem(hidden, 404)
    assert_problem(missing, 404)
    # team-b is indistinguishable from a project that does not exist.
    assert hidden.json()["detail"] == missing.json()["detail"].replace("team-z", "team-b")
    denied = alice.put("/api/v1/projects/team-a/policies/trainings", json={"defaults": {}})
    assert_problem(denied, 403)
    assert_problem(alice.put("/api/v1/policies/global/trainings", json={}), 403)
    assert_problem(alice.get("/api/v1/audit"), 403)

    log = client.get("/api/v1/audit", params={"actor": "alice"}).json()["items"]
    assert [(e["method"], e["route"], e["target"], e["status"], e["role"]) for e in log] == [
        ("PUT", "/api/v1/policies/global/{workloadType}", "trainings", 403, "researcher"),
        ("PUT", "/api/v1/projects/{project}/policies/{workloadType}", "team-a/trainings", 403,
         "researcher"),
        ("POST", "/api/v1/workloads/trainings", "team-z/train-1", 404, "researcher"),
        ("POST", "/api/v1/workloads/trainings", "team-b/train-1", 404, "researcher"),
        ("POST", "/api/v1/workloads/trainings", ok.json()["id"], 201, "researcher"),
    ]  # fmt: skip
    everything = client.get("/api/v1/audit").json()["items"]
    assert {(e["actor"], e["route"]) for e in everything} >= {
        ("admin", "/api/v1/tokens"),
        ("admin", "/api/v1/projects"),
    }


def test_lists_show_only_projects_in_scope_and_filter_in_sql(
    client: TestClient, mint: Mint, statements: list[tuple[str, Any]]
) -> None:
    for name in ("team-a", "team-b", "team-c"):
        assert client.post("/api/v1/projects", json={"name": name}).status_code == 201
        assert (
            client.put(
                f"/api/v1/projects/{name}/policies/trainings", json={"defaults": {}}
            ).status_code
            == 201
        )
    assert client.put("/api/v1/policies/global/trainings", json={}).status_code == 201
    for name in ("team-a", "team-b", "team-b", "team-c"):
        n = len(client.get("/api/v1/workloads").json()["items"])
        r = client.post(
            "/api/v1/workloads/trainings",
            json={"name": f"w{n}", "project": name, "spec": TRAINING},
        )
        assert r.status_code == 201
    viewer = TestClient(client.app, headers=bearer(mint("v", "viewer", ("team-a", "team-c"))))

    # Pages of one: a filter applied after LIMIT would leave pages empty or end early.
    statements.clear()
    pages = [viewer.get("/api/v1/workloads", params={"limit": 1}).json()]
    while pages[-1]["next"]:
        cursor = pages[-1]["next"]
        pages.append(viewer.get("/api/v1/workloads", params={"limit": 1, "cursor": cursor}).json())
    assert sorted(p["items"][0]["project"] for p in pages) == ["team-a", "team-c"]
    assert all(len(p["items"]) == 1 for p in pages)
    lists = [(q, p) for q, p in statements if q.startswith("SELECT") and "FROM workloads" in q]
    assert lists
    assert all("project = ANY(" in q and p["scope"] == ["team-a", "team-c"] for q, p in lists)

    assert viewer.get("/api/v1/workloads", params={"project": "team-b"}).json()["items"] == []
    projects = viewer.get("/api/v1/projects", params={"limit": 1}).json()
    assert [p["name"] for p in projects["items"]] == ["team-a"]
    more = viewer.get("/api/v1/projects", params={"cursor": projects["next"]}).json()
    assert [p["name"] for p in more["items"]] == ["team-c"]
    policies = viewer.get("/api/v1/policies").json()["items"]
    assert sorted((p["scope"], p["project"]) for p in policies) == [
        ("global", None),
        ("project", "team-a"),
        ("project", "team-c"),
    ]
    assert_problem(viewer.get("/api/v1/policies", params={"project": "team-b"}), 404)
    assert_problem(viewer.get("/api/v1/explain/trainings", params={"project": "team-b"}), 404)
    assert viewer.get("/api/v1/explain/trainings", params={"project": "team-a"}).status_code == 200

    nobody = TestClient(client.app, headers=bearer(mint("n", "researcher")))
    assert nobody.get("/api/v1/workloads").json()["items"] == []
    assert nobody.get("/api/v1/projects").json()["items"] == []
