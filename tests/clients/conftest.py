"""Fixtures for the generated-client tests: the pinned generators (tools/clients/build.sh) and a
live API server on the test database.

When the generators can't be had (no Java, npm or Go, no registry, ``RUNPLANE_CLIENTS_BUILD=0``
with nothing built) the tests skip with the reason, or fail when ``RUNPLANE_REQUIRE_CLIENTS=1``
(CI).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import ROOT, AppFactory
from tests.reliability.live import LiveServer

BUILD = ROOT / "tools" / "clients" / "build.sh"


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("RUNPLANE_REQUIRE_CLIENTS") == "1":
        pytest.fail(f"client generators required (RUNPLANE_REQUIRE_CLIENTS=1): {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Generators:
    """The installed generators, under the directory build.sh prints."""

    dir: Path

    @property
    def openapi_python_client(self) -> Path:
        return self.dir / "openapi-python-client" / "bin" / "openapi-python-client"

    @property
    def openapi_generator(self) -> Path:
        return self.dir / "openapi-generator" / "bin" / "openapi-generator-cli"

    @property
    def tsc(self) -> Path:
        return self.dir / "typescript" / "node_modules" / ".bin" / "tsc"

    @property
    def oapi_codegen(self) -> Path:
        return self.dir / "go" / "bin" / "oapi-codegen"

    @property
    def go_module(self) -> Path:
        """go.mod and go.sum with the modules oapi-codegen's clients import."""
        return self.dir / "go" / "module"

    def go_env(self) -> dict[str, str]:
        # The module and build caches build.sh filled: no download, and a rebuild of the same
        # generated code is a cache hit.
        cache = self.dir.parent
        return {
            **os.environ,
            "GOMODCACHE": str(cache / "go-mod"),
            "GOCACHE": str(cache / "go-build"),
            "GOFLAGS": "-mod=mod",
            "GOPROXY": "off",
            "GOTOOLCHAIN": "local",
        }


@pytest.fixture(scope="session")
def generators() -> Generators:
    args = [str(BUILD)]
    if os.environ.get("RUNPLANE_CLIENTS_BUILD") == "0":
        args.append("--check")  # never install from pytest; use what is there
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"tools/clients/build.sh could not run: {exc}")
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        unavailable(f"tools/clients/build.sh {' '.join(args[1:])} failed: {tail}")
    return Generators(Path(done.stdout.strip().splitlines()[-1]))


@pytest.fixture
def live_api(make_app: AppFactory) -> Iterator[str]:
    """The API served by uvicorn on 127.0.0.1 (no reconciler), on the test database."""
    with LiveServer(make_app()) as server:
        yield server.url
