"""`runplane token create` bootstraps access without a running server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app import cli
from app.config import get_settings
from app.db import Database
from app.main import create_app
from app.models import ApiToken, AuditEntry
from tests.auth.conftest import assert_problem, bearer
from tests.conftest import make_settings


@pytest.fixture
def cli_env(committed_db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    url = committed_db.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setattr("app.observability.configure_logging", lambda **_: None)
    get_settings.cache_clear()
    yield committed_db
    get_settings.cache_clear()


def test_token_create_prints_a_working_secret_and_revoke_ends_it(
    cli_env: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main(["token", "create", "--role", "admin", "--name", "bootstrap"])
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("rp_")
    assert "\n" not in secret
    assert secret not in err
    with cli_env.session() as session:
        token = session.scalars(select(ApiToken)).one()
        entry = session.scalars(select(AuditEntry)).one()
    assert (token.name, token.role, token.created_by[:4]) == ("bootstrap", "admin", "cli:")
    assert (entry.method, entry.route, entry.target) == (
        "POST",
        "runplane token create",
        str(token.id),
    )

    app = create_app(make_settings(), db=cli_env)
    with TestClient(app, headers=bearer(secret)) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        cli.main(["token", "revoke", "--id", str(token.id)])
        assert_problem(c.get("/api/v1/projects"), 401)


def test_token_create_refuses_bad_requests(cli_env: Database) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["token", "create", "--role", "viewer", "--name", "v", "--project", "nope"])
    assert "project 'nope' does not exist" in str(exc.value)
