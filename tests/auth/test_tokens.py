"""API tokens: the secret shown once, hashes only at rest, lookup by hash, expiry, revocation,
the throttled last_used_at, and the bootstrap admin token."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update

from app.models import ApiToken
from tests.auth.conftest import Mint, assert_problem, bearer
from tests.conftest import AUTH, AppFactory, SqlSession


@pytest.fixture
def project(client: TestClient) -> str:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    return "team-a"


def create(client: TestClient, **body: Any) -> Any:
    body.setdefault("role", "researcher")
    return client.post("/api/v1/tokens", json=body)


def test_the_secret_is_shown_once_and_only_its_hash_is_stored(
    client: TestClient, sql: SqlSession, project: str
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
    with sql() as session:
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


def test_expired_and_revoked_tokens_are_refused_at_once(client: TestClient, project: str) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    created = create(client, name="bob", role="viewer", projects=["team-a"], expiresAt=soon)
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 200
    time.sleep(1.1)
    # Known to the process and cached, yet refused the moment it expires.
    body = assert_problem(client.get("/api/v1/projects", headers=bearer(secret)), 401)
    assert "expired" in body["detail"]

    created = create(client, name="carol", role="viewer", projects=["team-a"])
    secret, ident = created.json()["token"], created.json()["id"]
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 200
    assert client.delete(f"/api/v1/tokens/{ident}").status_code == 204
    body = assert_problem(client.get("/api/v1/projects", headers=bearer(secret)), 401)
    assert "revoked" in body["detail"]
    assert client.delete(f"/api/v1/tokens/{ident}").status_code == 204  # idempotent
    listed = client.get("/api/v1/tokens", params={"revoked": "true"}).json()["items"]
    assert [t["id"] for t in listed] == [ident]
    assert listed[0]["revokedAt"] is not None
    assert [t["name"] for t in client.get("/api/v1/tokens", params={"revoked": "false"}).json()[
        "items"
    ]] == ["bob"]  # fmt: skip
    assert_problem(client.delete("/api/v1/tokens/00000000-0000-0000-0000-000000000000"), 404)


def test_a_known_token_costs_no_statement_and_another_process_sees_a_revocation_in_time(
    make_app: AppFactory, mint: Mint, project: str, statements: list[tuple[str, Any]]
) -> None:
    """Two API processes: one revokes, the other keeps the token for at most
    RUNPLANE_CREDENTIAL_CACHE_SECONDS, and never asks the database about it meanwhile."""
    secret = mint("alice", "viewer", ("team-a",))
    with (
        TestClient(make_app(credential_cache_seconds=1), headers=bearer(secret)) as other,
        TestClient(make_app(), headers=AUTH) as admin,
    ):
        assert other.get("/api/v1/projects").status_code == 200
        statements.clear()
        for _ in range(3):
            assert other.get("/api/v1/projects").status_code == 200
        assert not [q for q, _ in statements if "api_tokens" in q]
        ident = admin.get("/api/v1/tokens").json()["items"][0]["id"]
        assert admin.delete(f"/api/v1/tokens/{ident}").status_code == 204
        revoked_at = time.monotonic()
        while other.get("/api/v1/projects").status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "still accepted after the bound"
            time.sleep(0.05)
        assert_problem(other.get("/api/v1/projects"), 401)


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
    make_app: AppFactory, sql: SqlSession, mint: Mint, project: str
) -> None:
    secret = mint("alice", "viewer", ("team-a",))

    def used() -> tuple[datetime | None, str]:
        """last_used_at, and the row's version: it changes whenever the row is written."""
        with sql() as session:
            row = session.execute(
                text("SELECT last_used_at, xmin::text FROM api_tokens WHERE name = 'alice'")
            ).one()
            return row[0], row[1]

    # No credential cache: every request looks the token up, and still writes its use at
    # most once a minute.
    with TestClient(make_app(credential_cache_seconds=0), headers=bearer(secret)) as client:
        assert used()[0] is None
        assert client.get("/api/v1/projects").status_code == 200
        first = used()
        assert first[0] is not None
        for _ in range(4):
            assert client.get("/api/v1/projects").status_code == 200
        assert used() == first, "one write for five requests"

        # A minute later, the next request records use again.
        with sql() as session:
            session.execute(
                update(ApiToken)
                .where(ApiToken.name == "alice")
                .values(last_used_at=datetime.now(UTC) - timedelta(minutes=2))
            )
        assert client.get("/api/v1/projects").status_code == 200
        latest = used()[0]
        assert latest is not None
        assert latest > first[0] - timedelta(seconds=5)
    with TestClient(make_app(), headers=AUTH) as admin:
        assert admin.get("/api/v1/tokens").json()["items"][0]["lastUsedAt"] is not None


def test_the_bootstrap_admin_token_keeps_working(anon_client: TestClient) -> None:
    from tests.conftest import ADMIN_TOKEN

    r = anon_client.post("/api/v1/projects", json={"name": "p"}, headers=bearer(ADMIN_TOKEN))
    assert r.status_code == 201
    assert_problem(anon_client.get("/api/v1/projects", headers=bearer(ADMIN_TOKEN + "x")), 401)
