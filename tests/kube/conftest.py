"""Fixtures for tests against a real Kubernetes control plane (see tools/k8s-testenv/README.md).

``kube_control_plane`` (session) runs etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok with one fake node on 127.0.0.1, with the Kubeflow CRDs of the pinned
upstream modules installed; ``kube_operators`` (session) adds the Kubeflow training operator and
the MPI operator, ``kube_kueue`` (session) Kueue's manager and CRDs. They build the binaries
first when they are not cached (that can take a long while on a cold machine;
``tools/k8s-testenv/build.sh`` does the same ahead of time).

When the binaries can't be had, the tests here are skipped with the reason, or fail when
``RUNPLANE_REQUIRE_KUBE=1`` (CI). ``RUNPLANE_KUBE_BUILD=0`` forbids building from here;
``RUNPLANE_KUBE_BIN_DIR`` points at prebuilt binaries; ``RUNPLANE_KUBE_LOG_DIR`` keeps the
components' logs there (else under pytest's basetemp, which keeps the last few runs).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest
from kubernetes.client import ApiClient

from tests.kube import testenv
from tests.kube.helpers import apply, delete


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("RUNPLANE_REQUIRE_KUBE") == "1":
        pytest.fail(f"RUNPLANE_REQUIRE_KUBE=1 but the control plane is unavailable: {reason}")
    pytest.skip(f"no Kubernetes control plane: {reason}")


@pytest.fixture(scope="session")
def kube_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the components (and build.sh) write their logs."""
    return Path(os.environ.get("RUNPLANE_KUBE_LOG_DIR") or tmp_path_factory.mktemp("kube-logs"))


def _binaries(names: list[str], log_dir: Path) -> tuple[Path, float]:
    """The directory with ``names`` (built if need be and allowed), and how long that took."""
    build = os.environ.get("RUNPLANE_KUBE_BUILD", "1") != "0"
    t0 = time.monotonic()
    try:
        bin_dir = testenv.find_binaries(names, build=build, log=log_dir / "build.log")
    except testenv.BinariesUnavailable as err:
        _unavailable(str(err))
    return bin_dir, time.monotonic() - t0


@pytest.fixture(scope="session")
def kube_control_plane(kube_log_dir: Path) -> Iterator[testenv.ControlPlane]:
    """A running control plane: ``.kubeconfig`` (Path), ``.server``, ``.api_client()``."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _unavailable("the Python package `cryptography` (for the certificates) is not installed")
    bin_dir, built_in = _binaries([*testenv.BINARIES, testenv.CRDS], kube_log_dir)
    cp = testenv.ControlPlane(
        bin_dir=bin_dir, crd_dir=testenv.crd_dir(bin_dir), log_dir=kube_log_dir
    )
    cp.start()
    print(
        f"\nkube control plane: binaries ready in {built_in:.1f}s, up in {cp.startup_seconds:.1f}s"
        f" at {cp.server}; logs in {kube_log_dir}"
    )
    try:
        yield cp
    finally:
        cp.stop()


P = TypeVar("P", bound=testenv.Processes)


def _run(
    kind: type[P], names: list[str], what: str, control_plane: testenv.ControlPlane, log_dir: Path
) -> Iterator[P]:
    """Processes of ``kind`` running against the control plane for as long as the session."""
    bin_dir, built_in = _binaries(names, log_dir)
    processes = kind(control_plane, bin_dir, log_dir=log_dir)
    processes.start()
    print(
        f"\n{what}: binaries ready in {built_in:.1f}s, up in {processes.startup_seconds:.1f}s; "
        f"logs in {log_dir}"
    )
    try:
        yield processes
    finally:
        processes.stop()


@pytest.fixture(scope="session")
def kube_operators(
    kube_control_plane: testenv.ControlPlane, kube_log_dir: Path
) -> Iterator[testenv.KubeflowOperators]:
    """The Kubeflow training operator and MPI operator running against ``kube_control_plane``."""
    yield from _run(
        testenv.KubeflowOperators,
        list(testenv.OPERATORS),
        "Kubeflow operators",
        kube_control_plane,
        kube_log_dir,
    )


@pytest.fixture(scope="session")
def kube_kueue(
    kube_control_plane: testenv.ControlPlane, kube_log_dir: Path
) -> Iterator[testenv.KueueManager]:
    """Kueue's manager running against ``kube_control_plane``, its CRDs installed."""
    yield from _run(
        testenv.KueueManager,
        [testenv.KUEUE, testenv.CRDS],
        "Kueue",
        kube_control_plane,
        kube_log_dir,
    )


@pytest.fixture(scope="session")
def kube_api(kube_control_plane: testenv.ControlPlane) -> Iterator[ApiClient]:
    """An ``ApiClient`` with the admin (system:masters) credentials, shared by the session."""
    api: ApiClient = kube_control_plane.api_client()
    with api:
        yield api


@pytest.fixture
def kube_namespace(kube_api: ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    apply(kube_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    delete(kube_api, "v1", "Namespace", name, propagation_policy="Background")
