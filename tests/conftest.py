"""Test fixtures: one real PostgreSQL database per run (per xdist worker), built by Alembic.

The server is DATABASE_URL's when set (CI starts the system PostgreSQL), else the embedded one.
Each test runs inside an outer transaction that is rolled back; tests that need real commits
(concurrency, the reconciler across sessions) use ``committed_db``, which empties the tables.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import psutil
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


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM and SIGHUP (`kill`, a CI job's timeout, a closing terminal) interrupt the run as
    Ctrl-C does, in the controller and in each xdist worker: teardown and atexit hooks run,
    the embedded server's stop among them. By default either signal ends a process on the spot.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        # Once is enough: a second interrupt would cut short the teardown the first started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if not hasattr(config, "workerinput") and config.pluginmanager.has_plugin("dsession"):
            # Ctrl-C reaches every process of the run; a `kill` reaches the controller alone,
            # and xdist's workers would hear of it only once their current test ends.
            for worker in psutil.Process().children():
                worker.send_signal(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


@pytest.fixture(scope="session")
def server_url() -> str:
    url = os.environ.get("RUNPLANE_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return Settings(database_url=url).database_url or url
    from app import embedded

    data_dir = os.environ.get("RUNPLANE_TEST_DATA_DIR") or ROOT / ".cache" / "test-postgres"
    return embedded.start(Path(data_dir))


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
