"""The `kubernetes` backend and the reconciler against a real kube-apiserver (with kwok nodes).

Everything the renderers emit is dry-run on the server; each workload type is applied with
server-side apply, stopped, resumed and deleted through the backend; the reconciler drives
submissions made over the API to Running and Completed; a missing CRD gives the clear message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes.client import ApiClient

from app.cluster.backend import KindNotInstalled, ObjectRef, ObjectRejected
from app.cluster.kubernetes import KubernetesBackend
from app.config import Settings
from app.db import BlockingDatabase
from app.domain.spec import SPEC_MODELS
from app.main import create_app
from app.reconciler.loop import Reconciler
from app.rendering import RenderContext, check, render, stopped_form
from tests.conftest import AUTH
from tests.kube import testenv
from tests.kube.helpers import apply, delete, get, server_dry_run, wait_for
from tests.rendering.cases import matrix

pytestmark = pytest.mark.kube

RENDERABLE = [(case_id, ctx) for case_id, ctx in matrix() if not check(ctx)]

SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "interactive": (
        "interactive",
        {"image": "jupyter/base-notebook", "ports": [{"name": "http", "container": 8888}]},
    ),
    "training": ("training", {"image": "pytorch/pytorch:2.4", "completions": 2, "parallelism": 2}),
    "pytorch": (
        "distributed",
        {"image": "pytorch", "distributedFramework": "PyTorch", "numWorkers": 2},
    ),
    "tf": ("distributed", {"image": "tf", "distributedFramework": "TF", "numWorkers": 1}),
    "mpi": ("distributed", {"image": "mpi", "distributedFramework": "MPI", "numWorkers": 2}),
    "inference": (
        "inference",
        {
            "image": "vllm/vllm-openai",
            "servingPort": {"container": 8000},
            "compute": {"cpuCoreRequest": 1},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "metric": "cpu-utilization",
                "metricThreshold": 70,
            },
        },
    ),
}


@pytest.fixture(scope="module")
def backend(kube_control_plane: testenv.ControlPlane) -> Iterator[KubernetesBackend]:
    b = KubernetesBackend(api_client=kube_control_plane.api_client(), qps=200, burst=400)
    yield b
    b.close()


def context(name: str, namespace: str, kind: str, *, native: bool = False) -> RenderContext:
    workload_type, spec = SPECS[kind]
    resolved = SPEC_MODELS[workload_type].model_validate(spec).model_dump(exclude_none=True)  # type: ignore[index]
    return RenderContext(
        workload_id=f"00000000-0000-4000-8000-{abs(hash((name, namespace))) % 10**12:012d}",
        name=name,
        project="kube",
        namespace=namespace,
        workload_type=workload_type,  # type: ignore[arg-type]
        spec=resolved,
        pytorch_native=native,
    )


def test_every_rendered_manifest_passes_server_side_dry_run(
    kube_api: ApiClient, kube_namespace: str
) -> None:
    problems = []
    for case_id, ctx in RENDERABLE:
        for manifest in render(dataclasses.replace(ctx, namespace=kube_namespace)):
            message = server_dry_run(kube_api, manifest)
            if message is not None:
                problems.append(f"{case_id} {manifest['kind']}: {message}")
    assert problems == []
    assert len(RENDERABLE) > 100


def _main(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return next(m for m in manifests if m["kind"] not in ("Service", "HorizontalPodAutoscaler"))


def _stopped(obj: dict[str, Any]) -> bool:
    spec = obj["spec"]
    if obj["kind"] in ("StatefulSet", "Deployment"):
        return bool(spec["replicas"] == 0)
    if obj["kind"] == "Job":
        return bool(spec["suspend"])
    return bool(spec["runPolicy"]["suspend"])


@pytest.mark.parametrize(
    ("kind", "native"),
    [(k, False) for k in SPECS] + [("pytorch", True)],
    ids=[*SPECS, "pytorch-native"],
)
def test_apply_stop_resume_delete_each_type(
    backend: KubernetesBackend, kube_api: ApiClient, kube_namespace: str, kind: str, native: bool
) -> None:
    ctx = context("w1", kube_namespace, kind, native=native)
    manifests = render(ctx)
    main = _main(manifests)
    backend.apply(workload_id=ctx.workload_id, namespace=kube_namespace, manifests=manifests)

    def observed() -> list[dict[str, Any]] | None:
        objects = backend.observe().of(ctx.workload_id).objects
        return objects if len(objects) == len(manifests) else None

    objects = wait_for("the objects to be listed", observed, timeout=30)
    assert {o["kind"] for o in objects} == {m["kind"] for m in manifests}
    live = get(kube_api, main["apiVersion"], main["kind"], main["metadata"]["name"], kube_namespace)
    assert live is not None
    assert {f["manager"] for f in live["metadata"]["managedFields"]} >= {"runplane"}
    assert not _stopped(live)

    backend.apply(
        workload_id=ctx.workload_id, namespace=kube_namespace, manifests=stopped_form(manifests)
    )
    live = get(kube_api, main["apiVersion"], main["kind"], main["metadata"]["name"], kube_namespace)
    assert live is not None
    assert _stopped(live)
    backend.apply(workload_id=ctx.workload_id, namespace=kube_namespace, manifests=manifests)
    live = get(kube_api, main["apiVersion"], main["kind"], main["metadata"]["name"], kube_namespace)
    assert live is not None
    assert not _stopped(live)

    backend.delete(
        workload_id=ctx.workload_id,
        namespace=kube_namespace,
        objects=[ObjectRef.of(m) for m in manifests],
    )
    wait_for(
        "the objects to be gone",
        lambda: not backend.observe().of(ctx.workload_id).objects,
        timeout=60,
    )


def test_observe_lists_once_per_kind_whatever_the_number_of_workloads(
    backend: KubernetesBackend, kube_namespace: str
) -> None:
    calls = []
    for count in (1, 5):
        for i in range(count):
            ctx = context(f"n{count}-{i}", kube_namespace, "training")
            backend.apply(
                workload_id=ctx.workload_id, namespace=kube_namespace, manifests=render(ctx)
            )
        calls.append(backend.observe().list_calls)
    assert calls[0] == calls[1]


def test_a_missing_crd_gives_the_clear_message(
    backend: KubernetesBackend,
    kube_api: ApiClient,
    kube_namespace: str,
    kube_control_plane: testenv.ControlPlane,
) -> None:
    assert kube_control_plane.crd_dir is not None
    crd_file = kube_control_plane.crd_dir / "mpi-operator.yaml"
    crd = next(
        d for d in testenv.load_yaml_documents(crd_file) if d["kind"] == "CustomResourceDefinition"
    )
    ctx = context("mpi-missing", kube_namespace, "mpi")
    crds = "apiextensions.k8s.io/v1", "CustomResourceDefinition"

    def gone() -> bool:
        return get(kube_api, *crds, crd["metadata"]["name"]) is None

    delete(kube_api, *crds, crd["metadata"]["name"])
    # Deleting a CRD first deletes its objects (a finalizer), which takes a while when busy.
    wait_for("the MPIJob CRD to be gone", gone, timeout=120)
    try:

        def refused() -> KindNotInstalled | None:
            # For a moment after the CRD is gone the API server still serves its endpoint and
            # answers "create not allowed while custom resource definition is terminating".
            try:
                backend.apply(
                    workload_id=ctx.workload_id, namespace=kube_namespace, manifests=render(ctx)
                )
            except KindNotInstalled as exc:
                return exc
            except ObjectRejected as exc:
                if "terminating" not in str(exc):
                    raise
                return None
            raise AssertionError("an MPIJob was created without its CRD")

        err = wait_for("the MPIJob kind to be gone", refused, timeout=60)
        assert "MPIJob" in str(err)
        assert "MPI operator" in str(err)
    finally:
        wait_for("the MPIJob CRD to be gone", gone, timeout=120)
        apply(kube_api, crd, force=True)

        def established() -> bool:
            obj = get(
                kube_api,
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                crd["metadata"]["name"],
            )
            conditions = ((obj or {}).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for("the MPIJob CRD to be back", established, timeout=60)


def test_reconciler_drives_submissions_to_running_and_completed(
    kube_control_plane: testenv.ControlPlane,
    kube_namespace: str,
    db: BlockingDatabase,
    settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    backend = KubernetesBackend(api_client=kube_control_plane.api_client(), qps=200, burst=400)
    request.addfinalizer(backend.close)  # also when the test fails
    reconciler = Reconciler(db=db, backend=backend, pending_timeout=120)
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as c:
        r = c.post("/api/v1/projects", json={"name": "kube", "namespace": kube_namespace})
        assert r.status_code == 201, r.text
        ids = {}
        for name, (collection, spec) in {
            "train": ("trainings", {"image": "busybox", "completions": 1}),
            "ws": ("interactives", {"image": "jupyter/base-notebook"}),
            "serve": ("inferences", {"image": "nginx", "servingPort": {"container": 80}}),
        }.items():
            r = c.post(
                f"/api/v1/workloads/{collection}",
                json={"name": name, "project": "kube", "spec": spec},
            )
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]

        def phase_of(name: str) -> str:
            return str(c.get(f"/api/v1/workloads/{ids[name]}").json()["phase"])

        def settled() -> bool:
            reconciler.cycle()
            return (
                phase_of("train") == "Completed"
                and phase_of("ws") == "Running"
                and phase_of("serve") == "Running"
            )

        wait_for("the workloads to run and complete", settled, timeout=120, interval=1)
        events = c.get(f"/api/v1/workloads/{ids['train']}/events").json()["items"]
        assert [e["phase"] for e in events if e["type"] == "PhaseChanged"][-1] == "Completed"

        assert c.post(f"/api/v1/workloads/{ids['ws']}/suspend").status_code == 202

        def stopped() -> bool:
            reconciler.cycle()
            return phase_of("ws") == "Stopped"

        wait_for("the workspace to stop", stopped, timeout=60, interval=1)
        assert c.delete(f"/api/v1/workloads/{ids['serve']}").status_code == 202

        def deleted() -> bool:
            reconciler.cycle()
            return phase_of("serve") == "Deleted"

        wait_for("the inference to be deleted", deleted, timeout=90, interval=1)
