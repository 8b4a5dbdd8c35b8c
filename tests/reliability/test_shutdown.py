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


class Serving:
    """``runplane serve`` on a free port, its output in ``log``."""

    def __init__(self, database: str, tmp_path: Path) -> None:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database,
            "RUNPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
            "RUNPLANE_RECONCILE_INTERVAL": "0.2",
            "RUNPLANE_LOG_LEVEL": "INFO",
        }
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = tmp_path / "serve.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [str(RUNPLANE), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, engine: Engine) -> None:
        def healthy() -> bool:
            # Said at once if the server is gone (with how it ended), not after the wait.
            assert self.proc.poll() is None, f"runplane serve exited with {self.proc.returncode}"
            try:
                return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(healthy, seconds=60, what="runplane serve to answer")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; sessions waiting: {lock_waits(engine)}") from None

    def close(self) -> str:
        """Kill it if it still runs; what it wrote."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
        return self.log.read_text()


def test_sigterm_finishes_the_request_in_flight_and_releases_the_lock(
    engine: Engine, database: str, sql: SqlSession, tmp_path: Path
) -> None:
    serving = Serving(database, tmp_path)
    proc, port, base = serving.proc, serving.port, serving.base
    try:
        serving.wait_healthy(engine)
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
        output = serving.close()
    assert "Traceback" not in output, output[-3000:]
    assert "Application shutdown complete" in output, output[-3000:]
    assert "timeout graceful shutdown exceeded" not in output
    assert advisory_locks(engine) == 0
    with sql() as s:
        assert s.scalar(select(func.count()).where(Workload.name == "in-flight")) == 1


def test_sigterm_ends_the_open_watch_streams_at_once(
    engine: Engine, database: str, tmp_path: Path
) -> None:
    """A stream never ends by itself: without ending them, the graceful shutdown waited its
    whole timeout (20 s) for every open watch, a web UI's among them."""
    serving = Serving(database, tmp_path)
    try:
        serving.wait_healthy(engine)
        r = httpx.post(f"{serving.base}/api/v1/projects", json={"name": "team-a"}, headers=AUTH)
        assert r.status_code == 201, r.text
        with httpx.Client(base_url=serving.base, headers=AUTH, timeout=30) as client:
            with (
                client.stream("GET", "/api/v1/workloads", params={"watch": "true"}) as listing,
                client.stream("GET", "/api/v1/workloads", params={"watch": "true"}) as other,
            ):
                assert listing.status_code == other.status_code == 200
                lines = listing.iter_lines()
                assert next(lines).startswith("retry:")
                asked = time.monotonic()
                serving.proc.send_signal(signal.SIGTERM)
                rest = list(lines)  # ends when the server ends the stream
                assert all(not line.startswith("data:") for line in rest)
        assert serving.proc.wait(timeout=15) == 0
        took = time.monotonic() - asked
    finally:
        output = serving.close()
    assert took < 5, f"the shutdown took {took:.1f} s"
    assert "timeout graceful shutdown exceeded" not in output, output[-3000:]
    assert "Application shutdown complete" in output, output[-3000:]
