"""The embedded PostgreSQL lives and dies with the Runplane processes that use it: stopped by
SIGTERM, SIGINT or SIGHUP, ``runplane serve`` (one worker or several) and ``runplane reconcile``
stop the server they started, unless another live process still uses it; a process that died
by SIGKILL does not keep it up past the next clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.embedded.processes import (
    STOP_SECONDS,
    Launcher,
    embedded_env,
    postmasters,
    registered,
    wait_stopped,
)
from tests.reliability.test_shutdown import RUNPLANE, free_port, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def launch_env(data_dir: Path) -> dict[str, str]:
    return embedded_env(
        RUNPLANE_DATA_DIR=str(data_dir),
        RUNPLANE_ADMIN_TOKEN=ADMIN_TOKEN,
        RUNPLANE_LOG_LEVEL="INFO",
    )


def serve(
    launcher: Launcher, pgdata: Path, *, port: int, workers: int = 1, name: str = "serve"
) -> subprocess.Popen[bytes]:
    proc = launcher(
        [str(RUNPLANE), "serve", "--port", str(port), "--workers", str(workers)], name=name
    )

    def healthy() -> bool:
        assert proc.poll() is None, launcher.log(name)[-3000:]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, seconds=90, what="runplane serve to answer")
    assert proc.pid in registered(pgdata)
    return proc


def reconcile(
    launcher: Launcher, pgdata: Path, *, leader: bool = True, name: str = "reconcile"
) -> subprocess.Popen[bytes]:
    """``runplane reconcile``, once registered and, if ``leader``, reconciling."""
    proc = launcher([str(RUNPLANE), "reconcile"], name=name)

    def running() -> bool:
        assert proc.poll() is None, launcher.log(name)[-3000:]
        leading = "this process is now the active reconciler" in launcher.log(name)
        return (leading or not leader) and proc.pid in registered(pgdata)

    wait_until(running, seconds=90, what="runplane reconcile to run")
    return proc


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals, *, group: bool = False) -> float:
    """Send ``sig`` to the process (as `kill` does) or to its process group (as a terminal
    does: Ctrl-C, a hang-up), expect a clean exit, and answer when the signal went."""
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    assert proc.wait(timeout=STOP_SECONDS) == 0
    return sent


def wait_gone(processes: list[psutil.Process], *, what: str) -> None:
    def gone() -> bool:
        return not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    wait_until(gone, seconds=STOP_SECONDS, what=f"{what} to exit")


def assert_clean(launcher: Launcher, name: str) -> None:
    log = launcher.log(name)
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
def test_serve_stops_its_server(launcher: Launcher, pgdata: Path, sig: signal.Signals) -> None:
    proc = serve(launcher, pgdata, port=free_port())
    assert postmasters(pgdata)
    sent = stop(proc, sig)
    wait_stopped(pgdata, seconds=STOP_SECONDS, since=sent)
    assert registered(pgdata) == set()
    assert_clean(launcher, "serve")


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGHUP, True)],
    ids=["SIGTERM", "SIGINT-group", "SIGHUP-group"],
)
def test_serve_with_workers_stops_its_server(
    launcher: Launcher, pgdata: Path, sig: signal.Signals, group: bool
) -> None:
    proc = serve(launcher, pgdata, port=free_port(), workers=2)
    children = psutil.Process(proc.pid).children()
    sent = stop(proc, sig, group=group)
    wait_stopped(pgdata, seconds=STOP_SECONDS, since=sent)
    wait_gone(children, what="the workers (and multiprocessing's resource tracker)")
    assert_clean(launcher, "serve")


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
def test_reconcile_stops_its_server(launcher: Launcher, pgdata: Path, sig: signal.Signals) -> None:
    proc = reconcile(launcher, pgdata)
    sent = stop(proc, sig)
    wait_stopped(pgdata, seconds=STOP_SECONDS, since=sent)
    assert_clean(launcher, "reconcile")


def test_a_killed_process_does_not_keep_the_server_up(launcher: Launcher, pgdata: Path) -> None:
    killed = serve(launcher, pgdata, port=free_port(), name="killed")
    killed.kill()
    killed.wait(10)
    # Nothing ran in the killed process: its server is still up, and still lists it.
    server = postmasters(pgdata)
    assert server
    assert str(killed.pid) in (pgdata / ".handle_pids.json").read_text()

    # The next run uses that server, and a clean stop of it stops the server.
    proc = serve(launcher, pgdata, port=free_port())
    assert postmasters(pgdata) == server
    sent = stop(proc, signal.SIGINT)
    wait_stopped(pgdata, seconds=STOP_SECONDS, since=sent)


def test_a_killed_parent_takes_its_workers_along(launcher: Launcher, pgdata: Path) -> None:
    port = free_port()
    parent = serve(launcher, pgdata, port=port, workers=2, name="killed")
    children = psutil.Process(parent.pid).children()
    parent.kill()
    parent.wait(10)
    wait_gone(children, what="the workers of a killed parent")
    # Their port is free again for the next run, whose clean stop stops the server.
    proc = serve(launcher, pgdata, port=port, workers=2)
    sent = stop(proc, signal.SIGTERM)
    wait_stopped(pgdata, seconds=STOP_SECONDS, since=sent)


def test_two_sharers_keep_the_server_until_the_last_one_stops(
    launcher: Launcher, pgdata: Path
) -> None:
    first = serve(launcher, pgdata, port=free_port())
    second = reconcile(launcher, pgdata, leader=False)
    server = postmasters(pgdata)
    assert registered(pgdata) == {first.pid, second.pid}

    stop(first, signal.SIGTERM)
    time.sleep(2)
    assert postmasters(pgdata) == server, "the server stopped under a process still using it"
    assert registered(pgdata) == {second.pid}
    assert second.poll() is None

    sent = stop(second, signal.SIGTERM)
    wait_stopped(pgdata, seconds=STOP_SECONDS, since=sent)
    assert_clean(launcher, "reconcile")
