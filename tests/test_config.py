"""Settings and the CLI's start-up checks."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, text

from app import cli
from app.config import Settings


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@h:5432/db",
        "postgresql://u:p@h:5432/db",
        "postgresql+psycopg2://u:p@h:5432/db",
        "postgresql+psycopg://u:p@h:5432/db",
    ],
)
def test_database_urls_are_normalised_to_psycopg3(url: str) -> None:
    assert Settings(database_url=url).database_url == "postgresql+psycopg://u:p@h:5432/db"


def test_cors_origins_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPLANE_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(ValueError, match="RUNPLANE_ADMIN_TOKEN"):
        Settings(environment="production")
    assert Settings(environment="production", admin_token="s3cret-enough").admin_token


def test_serve_refuses_a_schema_not_at_head(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS runplane_behind"))
        conn.execute(text("CREATE DATABASE runplane_behind"))
    url = engine.url.set(database="runplane_behind").render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)  # _prepare_database exports it; restored afterwards
    try:
        with pytest.raises(SystemExit) as exited:
            cli._prepare_database(Settings(database_url=url), migrate=False)
        assert "runplane migrate" in str(exited.value)
        cli._prepare_database(Settings(database_url=url), migrate=True)
        cli._prepare_database(Settings(database_url=url), migrate=False)  # now at head: fine
    finally:
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE runplane_behind WITH (FORCE)"))
        admin.dispose()
