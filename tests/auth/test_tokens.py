"""API tokens: the secret shown once, hashes only at rest, lookup by hash, expiry, revocation,
the throttled last_used_at, and the bootstrap admin token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, text, update

from app.db import Database
from app.models import ApiToken
from tests.auth.conftest import Mint, assert_problem, bearer


@pytest.fixture
def project(client: TestClient) -> str:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    return "team-a"


@pytest.fixture
def statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def create(client: TestClient, **body: Any) -> Any:
    body.setdefault("role", "researcher")
    return client.post("/api/v1/tokens", json=body)


def test_the_secret_is_shown_once_and_only_its_hash_is_stored(
    client: TestClient, db: Database, project: str
) -> None:
    r = create(client, name="alice", projects=["team-a"])
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["token"]
    assert secret.startswith("rp_")
    assert len(secret) >= 40
    assert created["prefix"] == secret[:11]
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["location"] == f"/api/v1/tokens/{created['id']}"
    assert {"role": "researcher", "projects": ["team-a"], "expiresAt": None}.items() <= (
        created.items()
    )

    listed = client.get("/api/v1/tokens").json()["items"]
    assert [t["name"] for t in listed] == ["alice"]
    assert "token" not in listed[0]
    assert secret not in client.get("/api/v1/tokens").text

    # Every column of every row, as text: the secret is nowhere, its SHA-256 is.
    with db.session() as session:
        rows = session.execute(text("SELECT * FROM api_tokens")).mappings().all()
    dump = repr([dict(r) for r in rows])
    assert secret not in dump
    assert secret[11:] not in dump  # not even the part after the visible prefix
    assert hashlib.sha256(secret.encode()).hexdigest() in dump

    # And the secret works.
    me = client.get("/api/v1/projects", headers=bearer(secret))
    assert me.status_code == 200, me.text


def test_lookup_is_by_hash_never_by_secret(
    client: TestClient, mint: Mint, project: str, statements: list[tuple[str, Any]]
) -> None:
    secret = mint("alice", "viewer", ("team-a",))
    statements.clear()
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 200
    sent = repr(statements)
    assert secret not in sent
    assert hashlib.sha256(secret.encode()).hexdigest() in sent


def test_the_bootstrap_token_is_compared_in_constant_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert client.get("/api/v1/projects").status_code == 200
    assert calls, "the admin token must be compared with hmac.compare_digest"


def test_expired_and_revoked_tokens_are_refused_at_once(
    client: TestClient, db: Database, project: str
) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = create(client, name="bob", role="viewer", projects=["team-a"], expiresAt=soon)
    assert created.status_code == 201, created.text
    secret, ident = created.json()["token"], created.json()["id"]
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 200

    with db.session() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.name == "bob")
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    body = assert_problem(client.get("/api/v1/projects", headers=bearer(secret)), 401)
    assert "expired" in body["detail"]

    with db.session() as session:
        session.execute(update(ApiToken).where(ApiToken.name == "bob").values(expires_at=None))
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 200
    assert client.delete(f"/api/v1/tokens/{ident}").status_code == 204
    body = assert_problem(client.get("/api/v1/projects", headers=bearer(secret)), 401)
    assert "revoked" in body["detail"]
    assert client.delete(f"/api/v1/tokens/{ident}").status_code == 204  # idempotent
    listed = client.get("/api/v1/tokens", params={"revoked": "true"}).json()["items"]
    assert [t["id"] for t in listed] == [ident]
    assert listed[0]["revokedAt"] is not None
    assert client.get("/api/v1/tokens", params={"revoked": "false"}).json()["items"] == []
    assert_problem(client.delete("/api/v1/tokens/00000000-0000-0000-0000-000000000000"), 404)


def test_a_revoked_name_can_be_reused_a_live_one_cannot(client: TestClient) -> None:
    first = create(client, name="ci", role="admin")
    assert first.status_code == 201
    body = assert_problem(create(client, name="ci", role="admin"), 409)
    assert body["errors"] == [{"field": "name", "message": "already in use"}]
    assert client.delete(f"/api/v1/tokens/{first.json()['id']}").status_code == 204
    assert create(client, name="ci", role="admin").status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "role": "admin", "projects": ["team-a"]}, "projects"),
        ({"name": "x", "role": "viewer", "projects": ["nope"]}, "projects"),
        ({"name": "x", "role": "viewer", "expiresAt": "2001-01-01T00:00:00Z"}, "expiresAt"),
        ({"name": "x", "role": "viewer", "expiresAt": "2999-01-01T00:00:00"}, "expiresAt"),
        ({"name": "x", "role": "root"}, "role"),
        ({"name": "Not A Name", "role": "viewer"}, "name"),
        ({"name": "x", "role": "viewer", "token": "rp_mine"}, "token"),
    ],
)
def test_bad_token_requests(
    client: TestClient, project: str, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(client.post("/api/v1/tokens", json=body), 422)
    assert field in {e["field"] for e in problem["errors"]}, problem


def test_last_used_is_written_at_most_once_a_minute(
    client: TestClient,
    db: Database,
    mint: Mint,
    project: str,
    statements: list[tuple[str, Any]],
) -> None:
    secret = mint("alice", "viewer", ("team-a",))

    def last_used() -> datetime | None:
        with db.session() as session:
            return session.scalar(select(ApiToken.last_used_at).where(ApiToken.name == "alice"))

    def updates() -> int:
        return sum(1 for s, _ in statements if s.startswith("UPDATE api_tokens"))

    assert last_used() is None
    statements.clear()
    for _ in range(5):
        assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 200
    assert updates() == 1, "one write for five requests"
    first = last_used()
    assert first is not None

    # A minute later, the next request records use again.
    with db.session() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.name == "alice")
            .values(last_used_at=datetime.now(UTC) - timedelta(minutes=2))
        )
    statements.clear()
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 200
    assert updates() == 1
    latest = last_used()
    assert latest is not None
    assert latest > first - timedelta(seconds=5)
    listed = client.get("/api/v1/tokens").json()["items"]
    assert listed[0]["lastUsedAt"] is not None


def test_the_bootstrap_admin_token_keeps_working(anon_client: TestClient) -> None:
    from tests.conftest import ADMIN_TOKEN

    r = anon_client.post("/api/v1/projects", json={"name": "p"}, headers=bearer(ADMIN_TOKEN))
    assert r.status_code == 201
    assert_problem(anon_client.get("/api/v1/projects", headers=bearer(ADMIN_TOKEN + "x")), 401)
