"""Test fixtures: one real PostgreSQL database per run (per xdist worker), built by Alembic.

The server is DATABASE_URL's when set (CI starts the system PostgreSQL), else the embedded one.
Each test runs inside an outer transaction that is rolled back; tests that need real commits
(concurrency, the reconciler across sessions) use ``committed_db``, which empties the tables.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from app import migrations
from app.config import Settings
from app.db import Database, make_engine
from app.main import create_app
from app.models import Base

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="session")
def server_url() -> str:
    url = os.environ.get("RUNPLANE_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return Settings(database_url=url).database_url or url
    from app import embedded

    return embedded.start(ROOT / ".cache" / "test-postgres")


@pytest.fixture(scope="session")
def engine(server_url: str, worker_id: str) -> Iterator[Engine]:
    name = f"runplane_test_{worker_id}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name)
    eng = make_engine(url.render_as_string(hide_password=False), pool_size=10, max_overflow=10)
    migrations.upgrade(eng)
    yield eng
    eng.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    conn = engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def db(connection: Connection) -> Database:
    return Database(connection)


@pytest.fixture
def committed_db(engine: Engine) -> Iterator[Database]:
    yield Database(engine)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"admin_token": ADMIN_TOKEN, "database_url": None}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, db=db)
    with TestClient(app, headers=AUTH) as c:
        yield c


@pytest.fixture
def anon_client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db)) as c:
        yield c


def pytest_configure(config: pytest.Config) -> None:
    # The contract fuzzer's seed (tests/reliability/test_fuzz_contract.py): a new one each run
    # unless FUZZ_SEED is set. Chosen here, before pytest-xdist starts its workers, so that
    # every worker inherits the same one.
    if "FUZZ_SEED" not in os.environ and not hasattr(config, "workerinput"):
        os.environ["FUZZ_SEED"] = str(time.time_ns() % 2**32)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # At the end, where it is seen with -q too, when the fuzzer ran.
    ran = ("passed", "failed", "error", "skipped")
    reports = (r for key in ran for r in terminalreporter.stats.get(key, ()))
    if any("test_fuzz_contract" in r.nodeid for r in reports):
        seed = os.environ.get("FUZZ_SEED")
        terminalreporter.write_line(f"contract fuzzer seed: {seed} (replay with FUZZ_SEED={seed})")
