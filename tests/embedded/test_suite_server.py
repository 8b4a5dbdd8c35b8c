"""The test suite's own embedded server (``make test`` without DATABASE_URL) stops when the run
ends or is interrupted: a pytest session with two xdist workers sharing it, as ``make test``
runs, on a data directory of this test's own."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.embedded.processes import (
    STOP_SECONDS,
    Launcher,
    embedded_env,
    registered,
    wait_stopped,
)
from tests.reliability.test_shutdown import wait_until

pytestmark = pytest.mark.slow

# `make test`'s two workers, each running the probe (--dist each), so that both use the server.
# Of the installed plugins only xdist matters here; loading the others costs a third of the run.
PYTEST = [
    sys.executable,
    *"-m pytest -p xdist -p asyncio -p no:cacheprovider -n 2 --dist each".split(),
]
PROBE = str(ROOT / "tests" / "embedded" / "suite_probe.py")


@pytest.fixture
def hold(tmp_path: Path) -> Path:
    """Where each probe worker announces that it holds the server (and then waits)."""
    path = tmp_path / "hold"
    path.mkdir()
    return path


@pytest.fixture
def launch_env(data_dir: Path, hold: Path) -> dict[str, str]:
    return embedded_env(
        RUNPLANE_TEST_DATA_DIR=str(data_dir),
        RUNPLANE_PROBE_HOLD=str(hold),
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
    )


def test_the_server_stops_when_the_run_ends(launcher: Launcher, pgdata: Path) -> None:
    launcher.env.pop("RUNPLANE_PROBE_HOLD")
    run = launcher([*PYTEST, PROBE], name="pytest")
    assert run.wait(timeout=180) == 0, launcher.log("pytest")[-3000:]
    wait_stopped(pgdata, seconds=STOP_SECONDS)
    assert registered(pgdata) == set()


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGHUP, True)],
    ids=["Ctrl-C", "SIGTERM", "hang-up"],
)
def test_the_server_stops_when_the_run_is_interrupted(
    launcher: Launcher, pgdata: Path, hold: Path, sig: signal.Signals, group: bool
) -> None:
    run = launcher([*PYTEST, PROBE], name="pytest")

    def both_workers_hold() -> bool:
        assert run.poll() is None, launcher.log("pytest")[-3000:]
        return len(list(hold.iterdir())) == 2

    wait_until(both_workers_hold, seconds=180, what="both pytest workers to use the server")
    assert registered(pgdata) == {int(p.name) for p in hold.iterdir()}

    sent = time.monotonic()
    if group:  # what a terminal sends to its foreground job
        os.killpg(run.pid, sig)
    else:  # `kill`: the pytest process alone
        run.send_signal(sig)
    try:
        wait_stopped(pgdata, seconds=STOP_SECONDS, since=sent)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc} (this process's SIGINT: {signal.getsignal(signal.SIGINT)})\n"
            f"{launcher.log('pytest')[-3000:]}"
        ) from None
    assert registered(pgdata) == set()
    assert run.wait(timeout=60) == pytest.ExitCode.INTERRUPTED
