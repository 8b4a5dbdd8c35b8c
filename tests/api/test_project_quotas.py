"""Project quotas over HTTP: deserved, limit and overQuotaWeight per resource; bad input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def refused(r: Any) -> dict[str, str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return {e["field"]: e["message"] for e in r.json()["errors"]}


def test_full_form_round_trips(client: TestClient) -> None:
    quota = {
        "gpu": {"deserved": 2.5, "limit": 8, "overQuotaWeight": 3},
        "cpu": {"deserved": "500m", "limit": "16", "overQuotaWeight": 0},
        "memory": {"deserved": "64Gi"},
    }
    r = client.post("/api/v1/projects", json={"name": "team-a", "quota": quota})
    assert r.status_code == 201, r.text
    expected = {
        "gpu": {"deserved": 2.5, "limit": 8, "overQuotaWeight": 3},
        "cpu": {"deserved": "500m", "limit": "16", "overQuotaWeight": 0},
        "memory": {"deserved": "64Gi", "limit": None, "overQuotaWeight": 1},
    }
    assert r.json()["quota"] == expected
    assert client.get("/api/v1/projects/team-a").json()["quota"] == expected


def test_an_object_without_deserved_guarantees_nothing(client: TestClient) -> None:
    r = client.post("/api/v1/projects", json={"name": "team-a", "quota": {"gpu": {"limit": 4}}})
    assert r.json()["quota"]["gpu"] == {"deserved": 0, "limit": 4, "overQuotaWeight": 1}
    # Left out: not limited at all.
    assert r.json()["quota"]["cpu"] is None


def test_fractional_gpus_and_an_explicit_null_limit(client: TestClient) -> None:
    r = client.post(
        "/api/v1/projects",
        json={"name": "team-a", "quota": {"gpu": {"deserved": 0.5, "limit": None}}},
    )
    assert r.json()["quota"]["gpu"] == {"deserved": 0.5, "limit": None, "overQuotaWeight": 1}


@pytest.mark.parametrize(
    ("quota", "field", "words"),
    [
        ({"gpu": -1}, "quota.gpu", "greater than or equal to 0"),
        ({"gpu": {"deserved": -1}}, "quota.gpu.deserved", "greater than or equal to 0"),
        ({"gpu": {"deserved": 4, "limit": 2}}, "quota.gpu.limit", "at least deserved (4)"),
        ({"gpu": {"limit": -2}}, "quota.gpu.limit", "greater than or equal to 0"),
        ({"gpu": 0.0001}, "quota.gpu", "decimal places"),
        ({"gpu": "lots"}, "quota.gpu", "valid decimal"),
        ({"cpu": "-2"}, "quota.cpu", "Kubernetes quantity"),
        ({"cpu": {"deserved": "2", "limit": "1500m"}}, "quota.cpu.limit", "at least deserved"),
        # Compared numerically: 1G < 1Gi.
        ({"memory": {"deserved": "1Gi", "limit": "1G"}}, "quota.memory.limit", "at least"),
        ({"memory": {"deserved": 5}}, "quota.memory.deserved", "Kubernetes quantity"),
        ({"memory": {"deserved": "1Gi", "weight": 2}}, "quota.memory.weight", "unknown field"),
        ({"gpu": {"overQuotaWeight": -1}}, "quota.gpu.overQuotaWeight", "greater than"),
        ({"gpu": {"overQuotaWeight": 1001}}, "quota.gpu.overQuotaWeight", "less than"),
        ({"tpu": 4}, "quota.tpu", "unknown field"),
        ({"gpu": [4]}, "quota.gpu", "Decimal input should be"),
    ],
)
def test_bad_quotas_are_422_at_their_field(
    client: TestClient, quota: dict[str, Any], field: str, words: str
) -> None:
    problems = refused(client.post("/api/v1/projects", json={"name": "x", "quota": quota}))
    assert field in problems, problems
    assert words in problems[field]
    client.post("/api/v1/projects", json={"name": "team-a"})
    problems = refused(client.patch("/api/v1/projects/team-a", json={"quota": quota}))
    assert words in problems[field]


def test_quota_lowered_below_what_is_asked_is_allowed(client: TestClient) -> None:
    client.post("/api/v1/projects", json={"name": "team-a", "quota": {"gpu": 8}})
    r = client.patch("/api/v1/projects/team-a", json={"quota": {"gpu": {"deserved": 1}}})
    assert r.status_code == 200
    assert r.json()["quota"]["gpu"]["deserved"] == 1
    r = client.patch("/api/v1/projects/team-a", json={"quota": None})
    assert r.json()["quota"] == {"gpu": None, "cpu": None, "memory": None}


def test_negative_zero_is_stored_as_zero(client: TestClient, engine: Any) -> None:
    """JSON's -0.0 is not below 0, and is kept as 0 (not "-0.0", which no quantity reads)."""
    from sqlalchemy import text

    quota = {"gpu": {"deserved": -0.0, "overQuotaWeight": -0.0}}
    r = client.post("/api/v1/projects", json={"name": "team-a", "quota": quota})
    assert r.status_code == 201, r.text
    assert r.json()["quota"]["gpu"] == {"deserved": 0, "limit": None, "overQuotaWeight": 0}
    with engine.connect() as conn:
        stored = conn.scalar(text("SELECT quota FROM projects WHERE name = 'team-a'"))
    assert not any(str(v).startswith("-") for v in stored["gpu"].values()), stored


def test_a_node_pool_cursor_holds_a_label_value(client: TestClient) -> None:
    import base64
    import json

    for name in ("a\x00b", "a\n", "x" * 64):
        cursor = base64.urlsafe_b64encode(json.dumps([name]).encode()).decode().rstrip("=")
        r = client.get("/api/v1/nodepools", params={"cursor": cursor})
        assert refused(r) == {"cursor": "invalid cursor; use the `next` of a page"}, name
