"""Fixtures of the embedded server's lifecycle tests: a data directory per test module (initdb
once, each test starting the server anew) and a launcher of processes that cleans up after
them. Each module says with which environment its processes run (``launch_env``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedded.processes import Launcher


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: each pytest session that starts (another run on the machine,
    # the nested runs here) makes /tmp/pytest-of-<user> private again (0700), and as root the
    # server's own user must be able to reach its data directory to stop it.
    path = Path(tempfile.mkdtemp(prefix="runplane-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pgdata(data_dir: Path) -> Path:
    return data_dir.resolve() / "postgres"


@pytest.fixture
def launcher(tmp_path: Path, pgdata: Path, launch_env: dict[str, str]) -> Iterator[Launcher]:
    launched = Launcher(tmp_path, launch_env)
    yield launched
    launched.close(pgdata)
