"""The registry of the processes that use an embedded server: who counts as still using it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from app.embedded import Users


@pytest.fixture
def users(tmp_path: Path) -> Users:
    return Users(tmp_path / ".handle_pids.json")


def test_a_running_user_counts_and_one_that_exited_does_not(users: Users) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    users.get_and_add(os.getpid())
    users.get_and_add(child.pid)
    child.wait()
    assert set(users.live()) == {os.getpid()}


def test_a_pid_taken_by_another_process_does_not_count(users: Users) -> None:
    users.get_and_add(os.getpid())
    ((pid, started),) = json.loads(users.path.read_text())
    users.path.write_text(json.dumps([[pid, started - 60]]))  # the pid's first owner: gone
    assert users.live() == {}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start times since boot")
def test_users_still_count_after_the_wall_clock_is_stepped(
    users: Users, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A virtual machine's clock is stepped after a pause: the boot date psutil derives moves
    with it. The server's users must not look gone then (the next process to exit would stop
    the server under them)."""
    from psutil import _pslinux

    users.get_and_add(os.getpid())
    dated = psutil.Process().create_time()
    stepped = psutil.boot_time() + 90
    monkeypatch.setattr(_pslinux, "boot_time", lambda: stepped)
    assert psutil.Process().create_time() - dated > 80  # as psutil dates it now
    assert list(users.live()) == [os.getpid()]
