"""Test fixtures: one real PostgreSQL database per run (per xdist worker), built by Alembic.

The server is DATABASE_URL's when set (CI starts the system PostgreSQL), else the embedded one.
Tests run the production data layer (psycopg's pool, app.db) against that database, and every
test that touches it starts from empty tables: ``database`` empties them afterwards.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app import migrations
from app.config import Settings
from app.db import BlockingDatabase
from app.main import create_app
from app.models import Base

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TABLES = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)


def _informers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("informer ")}


@pytest.fixture(scope="module", autouse=True)
def no_backend_outlives_its_module() -> Iterator[None]:
    """A Kubernetes backend's watches end with the tests that made it: an unclosed backend keeps
    a thread per kind retrying its (gone) API server for the rest of the run."""
    before = _informers()
    yield
    deadline = time.monotonic() + 5  # close() ends each stream; its thread then returns
    while (left := _informers() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    names = sorted(t.name for t in left)
    assert not left, f"informers still running (a backend was not closed): {names}"


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

    # The contract fuzzer's seed (tests/reliability/test_fuzz_contract.py): a new one each run
    # unless FUZZ_SEED is set. Chosen here, before pytest-xdist starts its workers, so that
    # every worker inherits the same one.
    if "FUZZ_SEED" not in os.environ and not hasattr(config, "workerinput"):
        os.environ["FUZZ_SEED"] = str(time.time_ns() % 2**32)


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
    """The run's own database, migrated to head (SQLAlchemy: Alembic's and the tests' checks)."""
    name = f"runplane_test_{worker_id}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name)
    eng = create_engine(url.render_as_string(hide_password=False), pool_size=2)
    migrations.upgrade(eng)
    yield eng
    eng.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database(engine: Engine) -> Iterator[str]:
    """The run's database URL, its tables emptied after the test."""
    yield engine.url.render_as_string(hide_password=False)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))


@pytest.fixture
def db(database: str) -> Iterator[BlockingDatabase]:
    """The production data layer, for a test's own reads and writes and for the reconciler."""
    with BlockingDatabase(database) as blocking:
        yield blocking


SqlSession = Callable[[], AbstractContextManager[Session]]


@pytest.fixture
def sql(engine: Engine, database: str) -> SqlSession:
    """The tests' own look at (or arrangement of) what the database holds, with the ORM models,
    in a transaction that commits: independent of the repositories under test."""
    maker = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session() -> Iterator[Session]:
        with maker() as s, s.begin():
            yield s

    return session


Snapshot = dict[str, str]


def snapshot(engine: Engine) -> Snapshot:
    """Every table's rows, as JSON: what :func:`restore` puts back."""
    with engine.connect() as conn:
        return {
            t.name: conn.scalar(
                text(f"SELECT coalesce(json_agg(x), '[]')::text FROM \"{t.name}\" x")
            )
            for t in Base.metadata.sorted_tables
        }


def restore(engine: Engine, snap: Snapshot) -> None:
    """Put the database back as :func:`snapshot` saw it (a test's world, between its calls)."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
        for t in Base.metadata.sorted_tables:
            conn.execute(
                text(
                    f'INSERT INTO "{t.name}" SELECT * FROM'
                    f' json_populate_recordset(NULL::"{t.name}", CAST(:rows AS json))'
                ),
                {"rows": snap[t.name]},
            )


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"admin_token": ADMIN_TOKEN, "database_url": None}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database: str) -> Settings:
    return make_settings(database_url=database)


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(database: str) -> AppFactory:
    """Apps on the test database with these settings (the reconciler off unless asked)."""

    def make(*, reconcile: bool = False, **overrides: Any) -> FastAPI:
        return create_app(make_settings(database_url=database, **overrides), reconcile=reconcile)

    return make


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as c:
        yield c


@pytest.fixture
def anon_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, reconcile=False)) as c:
        yield c


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every statement the app sends, with its parameters, as psycopg's cursors execute it."""
    seen: list[tuple[str, Any]] = []
    execute = psycopg.AsyncCursor.execute

    async def recording(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else query.as_string(self.connection)
        seen.append((text, params))
        return await execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", recording)
    return seen


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # At the end, where it is seen with -q too, when the fuzzer ran.
    ran = ("passed", "failed", "error", "skipped")
    reports = (r for key in ran for r in terminalreporter.stats.get(key, ()))
    if any("test_fuzz_contract" in r.nodeid for r in reports):
        seed = os.environ.get("FUZZ_SEED")
        terminalreporter.write_line(f"contract fuzzer seed: {seed} (replay with FUZZ_SEED={seed})")
