"""Projects over HTTP: CRUD, validation, pagination, conflicts."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


def create(client: TestClient, name: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/api/v1/projects", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_create_get_defaults(client: TestClient) -> None:
    r = client.post(
        "/api/v1/projects",
        json={"name": "team-a", "quota": {"gpu": 8, "cpu": "64", "memory": "256Gi"}},
    )
    assert r.status_code == 201
    assert r.headers["location"] == "/api/v1/projects/team-a"
    body = r.json()
    assert body["namespace"] == "runplane-team-a"
    assert body["queue"] == "team-a"
    # A bare amount means deserved: no cap, the default weight.
    assert body["quota"] == {
        "gpu": {"deserved": 8, "limit": None, "overQuotaWeight": 1},
        "cpu": {"deserved": "64", "limit": None, "overQuotaWeight": 1},
        "memory": {"deserved": "256Gi", "limit": None, "overQuotaWeight": 1},
    }
    got = client.get("/api/v1/projects/team-a").json()
    assert got["id"] == body["id"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "Team_A"}, "name"),
        ({"name": "-abc"}, "name"),
        ({"name": "a" * 41}, "name"),
        ({"name": ""}, "name"),
        ({"name": "ok", "quota": {"gpu": -1}}, "quota.gpu"),
        ({"name": "ok", "quota": {"memory": "lots"}}, "quota.memory"),
        ({"name": "ok", "quota": {"cpu": "-2"}}, "quota.cpu"),
        ({"name": "ok", "color": "blue"}, "color"),
        ({"name": "ok", "namespace": "Bad NS"}, "namespace"),
        ({}, "name"),
    ],
)
def test_create_rejects_bad_input(client: TestClient, payload: dict[str, Any], field: str) -> None:
    r = client.post("/api/v1/projects", json=payload)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 422
    assert field in [e["field"] for e in body["errors"]]


def test_every_bad_field_is_listed(client: TestClient) -> None:
    r = client.post(
        "/api/v1/projects",
        json={"name": "BAD", "quota": {"gpu": -1, "memory": "x"}, "extra": 1},
    )
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"name", "quota.gpu", "quota.memory", "extra"} <= fields


def test_duplicate_name_and_namespace_conflict(client: TestClient) -> None:
    create(client, "team-a")
    r = client.post("/api/v1/projects", json={"name": "team-a"})
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "name"
    r = client.post("/api/v1/projects", json={"name": "team-b", "namespace": "runplane-team-a"})
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "namespace"


def test_pagination_walks_every_project_once(client: TestClient) -> None:
    names = [f"p{i:02d}" for i in range(7)]
    for n in reversed(names):
        create(client, n)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/projects", params=params).json()
        seen += [p["name"] for p in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == names


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"cursor": "!!notours"}])
def test_bad_page_params(client: TestClient, params: dict[str, Any]) -> None:
    r = client.get("/api/v1/projects", params=params)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM


def test_patch_and_immutable_name(client: TestClient) -> None:
    create(client, "team-a", quota={"gpu": 2, "cpu": "8"})
    r = client.patch(
        "/api/v1/projects/team-a", json={"quota": {"gpu": 4, "memory": "1Ti"}, "queue": "gold"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["queue"] == "gold"
    assert r.json()["quota"]["memory"]["deserved"] == "1Ti"
    # A quota is replaced as a whole: what the new one leaves out is not limited any more.
    assert r.json()["quota"]["cpu"] is None
    r = client.patch("/api/v1/projects/team-a", json={"name": "team-z"})
    assert r.status_code == 422
    assert "immutable" in r.text
    assert client.get("/api/v1/projects/team-a").status_code == 200


def test_delete_and_404(client: TestClient) -> None:
    create(client, "team-a")
    assert client.delete("/api/v1/projects/team-a").status_code == 204
    r = client.get("/api/v1/projects/team-a")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert client.delete("/api/v1/projects/team-a").status_code == 404
