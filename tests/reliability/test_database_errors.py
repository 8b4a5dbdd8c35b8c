"""Connection-level database errors are 503 problem+json with Retry-After, never a 500."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.db import Database, make_engine
from app.main import create_app
from tests.conftest import AUTH, make_settings

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
    db = Database.from_url(UNREACHABLE, pool_size=1)
    try:
        with TestClient(create_app(make_settings(), db=db), headers=AUTH) as client:
            assert_unavailable(client.request(method, path, json=body))
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers["content-type"].startswith("application/problem+json")
    finally:
        db.dispose()


def test_an_exhausted_pool_is_503(engine: Engine) -> None:
    """Every connection busy for longer than the pool waits: overloaded, so retry later."""
    url = engine.url.render_as_string(hide_password=False)
    busy = make_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    db = Database(busy)
    held = busy.connect()  # the only connection
    try:
        with TestClient(create_app(make_settings(), db=db), headers=AUTH) as client:
            assert_unavailable(client.get("/api/v1/workloads"))
        held.close()
        with TestClient(create_app(make_settings(), db=db), headers=AUTH) as client:
            assert client.get("/api/v1/workloads").status_code == 200
    finally:
        held.close()
        busy.dispose()
