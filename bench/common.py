"""Benchmark helpers: a throwaway database on DATABASE_URL or on the embedded server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app import migrations
from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return Settings(database_url=url).database_url or url
    from app import embedded

    return embedded.start(ROOT / ".cache" / "bench-postgres")


@contextmanager
def scratch_database(prefix: str = "runplane_bench") -> Iterator[Engine]:
    """A new database migrated to head, dropped afterwards."""
    base = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(
        make_url(base).set(database=name).render_as_string(hide_password=False), pool_size=10
    )
    try:
        migrations.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
