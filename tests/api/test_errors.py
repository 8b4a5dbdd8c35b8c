"""Every error is RFC 9457 problem+json; auth, request ids, metrics, health."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

PROBLEM = "application/problem+json"


def assert_problem(r: object, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    body: dict[str, object] = r.json()  # type: ignore[attr-defined]
    assert {"type", "title", "status", "detail", "instance"} <= body.keys()
    assert body["status"] == status
    return body


def test_missing_and_bad_token(anon_client: TestClient) -> None:
    r = anon_client.get("/api/v1/projects")
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    r = anon_client.get("/api/v1/projects", headers={"Authorization": "Bearer nope"})
    assert_problem(r, 401)
    r = anon_client.get("/api/v1/projects", headers={"Authorization": "Basic abc"})
    assert_problem(r, 401)


def test_health_needs_no_token(anon_client: TestClient) -> None:
    assert anon_client.get("/healthz").json() == {"status": "ok"}
    assert anon_client.get("/readyz").json() == {"status": "ready"}


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_problem(client.get("/api/v1/nope"), 404)
    assert_problem(client.get("/nothing-here"), 404)
    body = assert_problem(client.put("/api/v1/projects"), 405)
    assert "PUT" in str(body["detail"])


def test_malformed_json(client: TestClient) -> None:
    r = client.post(
        "/api/v1/projects", content=b'{"name": "a",', headers={"Content-Type": "application/json"}
    )
    body = assert_problem(r, 422)
    assert "JSON" in str(body["detail"])


def test_body_too_large(client: TestClient) -> None:
    r = client.post(
        "/api/v1/projects", content=b"x" * 2_000_000, headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 413)


def test_request_id_echoed_or_made(client: TestClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_unexpected_error_is_problem_without_trace(settings: Settings) -> None:
    app = create_app(settings, reconcile=False)
    boom = APIRouter()

    @boom.get("/boom")
    def explode() -> None:
        raise RuntimeError("secret internals")

    app.include_router(boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    body = assert_problem(r, 500)
    assert "secret internals" not in r.text
    assert body["requestId"] == r.headers["x-request-id"]


def test_metrics_by_route_template(client: TestClient) -> None:
    client.get("/api/v1/projects/whatever")
    text = client.get("/metrics").text
    assert 'route="/api/v1/projects/{project}"' in text
    assert "runplane_http_request_duration_seconds_bucket" in text


def test_readyz_503_when_schema_behind(engine: object, settings: Settings) -> None:
    from sqlalchemy import create_engine, text

    from tests.conftest import AUTH

    url = engine.url  # type: ignore[attr-defined]
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS runplane_empty_probe"))
        conn.execute(text("CREATE DATABASE runplane_empty_probe"))
    empty = url.set(database="runplane_empty_probe").render_as_string(hide_password=False)
    try:
        app = create_app(settings.model_copy(update={"database_url": empty}), reconcile=False)
        with TestClient(app, headers=AUTH) as c:
            body = assert_problem(c.get("/readyz"), 503)
            assert "runplane migrate" in str(body["detail"])
    finally:
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE runplane_empty_probe WITH (FORCE)"))
        admin.dispose()
