"""The "done when" scenario, and what a scoped token sees in lists (filtered in SQL)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.auth.conftest import TRAINING, Mint, assert_problem, bearer
from tests.conftest import SqlSession


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
    ids = sorted(
        p["id"] for p in client.get("/api/v1/projects").json()["items"] if p["name"] != "team-b"
    )
    # By id: a name is free again once its project is deleted (test_scope_survives_renames).
    assert all("project_id = ANY(" in q and [str(i) for i in p["scope"]] == ids for q, p in lists)

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


def test_scope_survives_renames(client: TestClient, mint: Mint, sql: SqlSession) -> None:
    """A token is bound to its project, not to the project's name: once the project is deleted
    and another is created under that name, the token reaches neither, even while this
    process still trusts what it read of the token (RUNPLANE_CREDENTIAL_CACHE_SECONDS)."""
    assert client.post("/api/v1/projects", json={"name": "x"}).status_code == 201
    alice = TestClient(client.app, headers=bearer(mint("alice", "researcher", ("x",))))
    assert alice.get("/api/v1/projects/x").status_code == 200
    old = alice.post(
        "/api/v1/workloads/trainings", json={"name": "w", "project": "x", "spec": TRAINING}
    )
    assert old.status_code == 201, old.text
    with sql() as session:  # as the reconciler leaves it once the cluster objects are gone
        session.execute(
            text("UPDATE workloads SET phase = 'Deleted', deleted_at = now() WHERE id = :id"),
            {"id": old.json()["id"]},
        )
    assert client.delete("/api/v1/projects/x").status_code == 204
    assert client.post("/api/v1/projects", json={"name": "x"}).status_code == 201
    new = client.post(
        "/api/v1/workloads/trainings", json={"name": "v", "project": "x", "spec": TRAINING}
    )
    assert new.status_code == 201, new.text

    # Alice's token, as this process cached it (x -> the old id), and read afresh alike.
    for caller in (alice, TestClient(client.app, headers=alice.headers)):
        assert_problem(caller.get("/api/v1/projects/x"), 404)
        assert caller.get("/api/v1/projects").json()["items"] == []
        assert caller.get("/api/v1/workloads").json()["items"] == []
        assert caller.get("/api/v1/workloads", params={"deleted": "true"}).json()["items"] == []
        assert_problem(caller.get(new.headers["location"]), 404)
        assert_problem(caller.get(old.headers["location"]), 404)
        assert_problem(caller.get("/api/v1/projects/x/policies/trainings/effective"), 404)
        refused = caller.post(
            "/api/v1/workloads/trainings", json={"name": "u", "project": "x", "spec": TRAINING}
        )
        assert_problem(refused, 404)
        client.app.state.credentials.forget_all()  # type: ignore[attr-defined]
    # What the token now reads as: scoped to no project that exists.
    (token,) = [t for t in client.get("/api/v1/tokens").json()["items"] if t["name"] == "alice"]
    assert token["projects"] == []

    # A token for the new x reaches the new x, and nothing of the old one.
    bob = TestClient(client.app, headers=bearer(mint("bob", "researcher", ("x",))))
    assert [w["name"] for w in bob.get("/api/v1/workloads").json()["items"]] == ["v"]
    assert bob.get("/api/v1/workloads", params={"deleted": "true"}).json()["items"] == []
    assert_problem(bob.get(old.headers["location"]), 404)
    assert client.get(old.headers["location"]).json()["project"] == "x"  # admins still read it
