"""``app/rendering/crd_schemas.json`` is what ``tools/crd-schemas.py`` derives from the CRDs of the
upstream modules pinned in ``tools/k8s-testenv/versions.env``: the simulated cluster validates
Kubeflow and Kueue objects against it, so a stale file would let it accept what a real API server
with those CRDs refuses (or the reverse)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.rendering.validation import crd_validator, validate_manifest

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "app" / "rendering" / "crd_schemas.json"


def _pins() -> dict[str, str]:
    lines = (REPO / "tools" / "k8s-testenv" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_the_committed_schemas_name_the_pinned_modules() -> None:
    pins = _pins()
    assert json.loads(COMMITTED.read_text())["modules"] == {
        "github.com/kubeflow/training-operator": pins["TRAINING_OPERATOR_VERSION"],
        "github.com/kubeflow/mpi-operator": pins["MPI_OPERATOR_VERSION"],
        "sigs.k8s.io/kueue": pins["KUEUE_VERSION"],
    }


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("kubeflow.org/v1", "PyTorchJob"),
        ("kubeflow.org/v1", "TFJob"),
        ("kubeflow.org/v2beta1", "MPIJob"),
        ("kueue.x-k8s.io/v1beta2", "ResourceFlavor"),
        ("kueue.x-k8s.io/v1beta2", "ClusterQueue"),
        ("kueue.x-k8s.io/v1beta2", "LocalQueue"),
    ],
)
def test_every_custom_kind_runplane_writes_has_its_schema(api_version: str, kind: str) -> None:
    assert crd_validator(api_version, kind) is not None
    # Strict like the API server's field validation: an unknown field is refused.
    obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "n"},
        "spec": {"noSuchField": 1},
    }
    assert any("noSuchField" in p for p in validate_manifest(obj))


def test_a_kind_without_a_schema_is_refused_without_saying_where_the_server_looks() -> None:
    problems = validate_manifest({"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob"})
    assert problems == [
        "XGBoostJob/None: no schema for kubeflow.org/v1 XGBoostJob in Kubernetes 1.33"
    ]


def test_the_committed_schemas_are_those_of_the_pinned_modules() -> None:
    if shutil.which("go") is None:
        if os.environ.get("RUNPLANE_REQUIRE_KUBE") == "1":
            pytest.fail("RUNPLANE_REQUIRE_KUBE=1 but `go` is not on PATH to fetch the modules")
        pytest.skip("`go` is not on PATH: the pinned modules can't be fetched to compare")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "crd-schemas.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
