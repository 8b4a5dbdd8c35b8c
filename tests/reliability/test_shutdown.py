"""SIGTERM to ``runplane serve``: the request in flight completes, the reconciler lets go of its
advisory lock, and the process exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from app.models import Workload
from app.reconciler.loop import LOCK_KEY
from tests.conftest import ADMIN_TOKEN, AUTH, SqlSession

pytestmark = pytest.mark.slow

RUNPLANE = Path(sys.executable).with_name("runplane")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def advisory_locks(engine: Engine) -> int:
    """Runplane's reconciler locks held on this database, by anyone."""
    with engine.connect() as conn:
        held: int = conn.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND ((classid::bigint << 32) | objid::bigint) = :key"
            ),
            {"key": LOCK_KEY},
        )
    return held


def lock_waits(engine: Engine) -> list[tuple[str, str]]:
    """What the database's sessions wait for (to tell a blocked start from a dead one)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT coalesce(wait_event_type || ':' || wait_event, state), left(query, 120)"
                " FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        )
        return [(str(a), str(b)) for a, b in rows]


def wait_until(condition: object, *, seconds: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.1)


def test_sigterm_finishes_the_request_in_flight_and_releases_the_lock(
    engine: Engine, database: str, sql: SqlSession, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "RUNPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
        "RUNPLANE_RECONCILE_INTERVAL": "0.2",
        "RUNPLANE_LOG_LEVEL": "INFO",
    }
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(RUNPLANE), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            # Said at once if the server is gone (with how it ended), not after the wait.
            assert proc.poll() is None, f"runplane serve exited with {proc.returncode}"
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(healthy, seconds=60, what="runplane serve to answer")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; sessions waiting: {lock_waits(engine)}") from None
        wait_until(lambda: advisory_locks(engine) == 1, seconds=20, what="the reconciler lock")
        r = httpx.post(f"{base}/api/v1/projects", json={"name": "team-a"}, headers=AUTH)
        assert r.status_code == 201, r.text

        # A submission whose body is still arriving when SIGTERM comes: the app has the request.
        body = json.dumps(
            {"name": "in-flight", "project": "team-a", "spec": {"image": "pytorch:2"}}
        ).encode()
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        conn.sendall(
            b"POST /api/v1/workloads/trainings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert proc.poll() is None, "the server exited with a request in flight"
        conn.sendall(body[10:])
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            response += chunk
        conn.close()
        assert response.startswith(b"HTTP/1.1 201"), response[:300]

        # A stop asked for is a clean exit (app/cli.py); the log says the shutdown was graceful.
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in output, output[-3000:]
    assert "Application shutdown complete" in output, output[-3000:]
    assert "timeout graceful shutdown exceeded" not in output
    assert advisory_locks(engine) == 0
    with sql() as s:
        assert s.scalar(select(func.count()).where(Workload.name == "in-flight")) == 1
