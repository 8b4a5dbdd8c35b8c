"""`runplane token create` bootstraps access without a running server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app import cli
from app.config import get_settings
from app.models import ApiToken, AuditEntry
from tests.auth.conftest import assert_problem, bearer
from tests.conftest import AppFactory, SqlSession


@pytest.fixture
def cli_env(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setattr("app.observability.configure_logging", lambda **_: None)
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()


def test_token_create_prints_a_working_secret_and_revoke_ends_it(
    cli_env: str, capsys: pytest.CaptureFixture[str], sql: SqlSession, make_app: AppFactory
) -> None:
    cli.main(["token", "create", "--role", "admin", "--name", "bootstrap"])
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("rp_")
    assert "\n" not in secret
    assert secret not in err
    with sql() as session:
        token = session.scalars(select(ApiToken)).one()
        entry = session.scalars(select(AuditEntry)).one()
    assert (token.name, token.role, token.created_by[:4]) == ("bootstrap", "admin", "cli:")
    assert (entry.method, entry.route, entry.target) == (
        "POST",
        "runplane token create",
        str(token.id),
    )

    # Revocation by another process is seen once the credential cache forgets (no cache here).
    app = make_app(credential_cache_seconds=0)
    with TestClient(app, headers=bearer(secret)) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        cli.main(["token", "revoke", "--id", str(token.id)])
        assert_problem(c.get("/api/v1/projects"), 401)


def test_token_create_refuses_bad_requests(cli_env: str) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["token", "create", "--role", "viewer", "--name", "v", "--project", "nope"])
    assert "project 'nope' does not exist" in str(exc.value)
