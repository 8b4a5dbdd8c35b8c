"""Connection-level database errors are 503 problem+json with Retry-After, never a 500."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from app.db import Database
from app.main import create_app
from tests.conftest import AUTH, AppFactory, make_settings

UNREACHABLE = "postgresql+psycopg://runplane@/runplane?host=/nonexistent-socket-dir"


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) > 0
    body = r.json()
    assert body["status"] == 503
    assert body["type"].endswith("/service-unavailable")
    assert "database" in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/workloads", None),
        ("GET", "/api/v1/projects/team-a", None),
        ("POST", "/api/v1/projects", {"name": "team-a"}),
        (
            "POST",
            "/api/v1/workloads/trainings",
            {"name": "t", "project": "team-a", "spec": {"image": "x"}},
        ),
        ("PUT", "/api/v1/policies/global/trainings", {"rules": {}}),
    ],
)
def test_an_unreachable_database_is_503(method: str, path: str, body: object) -> None:
    settings = make_settings(database_url=UNREACHABLE, database_pool_timeout=0.5)
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as client:
        assert_unavailable(client.request(method, path, json=body))
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"].startswith("application/problem+json")


def test_an_exhausted_pool_is_503(make_app: AppFactory) -> None:
    """Every connection busy for longer than the pool waits: overloaded, so retry later."""
    app = make_app(database_pool_size=1, database_pool_timeout=0.2)
    with TestClient(app, headers=AUTH) as client:
        db: Database = app.state.db
        assert client.portal is not None
        held = client.portal.call(db.pool.getconn)  # the only connection
        assert_unavailable(client.get("/api/v1/workloads"))
        client.portal.call(db.pool.putconn, held)
        assert client.get("/api/v1/workloads").status_code == 200
