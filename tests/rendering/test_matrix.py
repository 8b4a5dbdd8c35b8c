"""Every manifest of the matrix (type x framework x scheduler x stopped x features) validates
strictly against the Kubernetes schemas and the CRDs' own, plus the rules schemas miss."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.labels import (
    KAI_QUEUE_LABEL,
    KUEUE_QUEUE_LABEL,
    MANAGED_BY_LABEL,
    PROJECT_LABEL,
    WORKLOAD_ID_LABEL,
    WORKLOAD_NAME_LABEL,
    WORKLOAD_TYPE_LABEL,
)
from app.rendering import RenderContext, RenderError, check, render
from app.rendering.validation import validate_manifest
from tests.rendering.cases import matrix

CASES = dict(matrix())


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]
    if "template" in spec:
        return [spec["template"]]
    for key in ("pytorchReplicaSpecs", "tfReplicaSpecs", "mpiReplicaSpecs"):
        if key in spec:
            return [replica["template"] for replica in spec[key].values()]
    return []


def assert_invariants(ctx: RenderContext, manifests: list[dict[str, Any]]) -> None:
    own = {
        MANAGED_BY_LABEL: "runplane",
        WORKLOAD_ID_LABEL: ctx.workload_id,
        PROJECT_LABEL: ctx.project,
        WORKLOAD_TYPE_LABEL: ctx.workload_type,
        WORKLOAD_NAME_LABEL: ctx.name,
    }
    workload_objects = [m for m in manifests if pod_templates(m)]
    assert len(workload_objects) == 1
    for obj in manifests:
        assert obj["metadata"]["namespace"] == ctx.namespace
        assert own.items() <= obj["metadata"]["labels"].items()
        for template in pod_templates(obj):
            assert own.items() <= template["metadata"]["labels"].items()
            pod = template["spec"]
            assert (pod.get("schedulerName") == "kai-scheduler") == (ctx.scheduler == "kai")
            if ctx.scheduler == "kai":
                assert template["metadata"]["labels"][KAI_QUEUE_LABEL] == ctx.effective_queue
    labels = workload_objects[0]["metadata"]["labels"]
    assert (KAI_QUEUE_LABEL in labels) == (ctx.scheduler == "kai")
    assert (KUEUE_QUEUE_LABEL in labels) == (ctx.scheduler == "kueue")


def assert_stopped_form(ctx: RenderContext, manifests: list[dict[str, Any]]) -> None:
    kinds = {m["kind"]: m for m in manifests}
    if "StatefulSet" in kinds:
        assert kinds["StatefulSet"]["spec"]["replicas"] == (0 if ctx.stopped else 1)
    if "Deployment" in kinds:
        assert (kinds["Deployment"]["spec"]["replicas"] == 0) == ctx.stopped
    if "Job" in kinds:
        assert kinds["Job"]["spec"]["suspend"] is (ctx.stopped or ctx.scheduler == "kueue")
    for kind in ("PyTorchJob", "TFJob", "MPIJob"):
        if kind in kinds:
            suspend = kinds[kind]["spec"]["runPolicy"]["suspend"]
            assert suspend is (ctx.stopped or ctx.scheduler == "kueue")


@pytest.mark.parametrize("case", sorted(CASES))
def test_matrix_case(case: str) -> None:
    ctx = CASES[case]
    problems = check(ctx)
    compute = ctx.spec.get("compute") or {}
    fractional = "gpuPortionRequest" in compute or "gpuMemoryRequest" in compute
    if fractional and ctx.scheduler != "kai":
        # The one thing in the matrix that must be refused rather than rendered.
        assert problems, "a GPU fraction without KAI must be refused"
        assert all(
            field.endswith(("gpuPortionRequest", "gpuMemoryRequest")) for field, _ in problems
        )
        with pytest.raises(RenderError):
            render(ctx)
        return
    assert problems == []
    manifests = render(ctx)
    for obj in manifests:
        assert validate_manifest(obj) == []
    assert_invariants(ctx, manifests)
    assert_stopped_form(ctx, manifests)


def test_matrix_is_broad() -> None:
    kinds = set()
    for ctx in CASES.values():
        if not check(ctx):
            kinds |= {(m["apiVersion"], m["kind"]) for m in render(ctx)}
    assert kinds == {
        ("v1", "Service"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "Deployment"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("batch/v1", "Job"),
        ("kubeflow.org/v1", "PyTorchJob"),
        ("kubeflow.org/v1", "TFJob"),
        ("kubeflow.org/v2beta1", "MPIJob"),
    }
    assert len(CASES) > 300
