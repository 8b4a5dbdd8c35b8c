"""validate_manifest() refuses what an API server would: it must not pass everything."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from app.domain.quantity import is_quantity
from app.rendering import render, syntax, validation
from app.rendering.validation import validate_manifest
from tests.rendering.cases import IMAGE, ctx

JOB = render(ctx("training", {"image": IMAGE}))[0]
STS = [
    m
    for m in render(ctx("interactive", {"image": IMAGE, "tool": "jupyter"}))
    if m["kind"] == "StatefulSet"
][0]
SERVICE = render(ctx("interactive", {"image": IMAGE, "tool": "jupyter"}))[0]
PYTORCH = render(ctx("distributed", {"image": IMAGE, "distributedFramework": "PyTorch"}))[0]
MPI = render(ctx("distributed", {"image": IMAGE, "distributedFramework": "MPI"}))[0]
INFERENCE = render(
    ctx(
        "inference",
        {
            "image": IMAGE,
            "servingPort": {"container": 80},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 2,
                "metric": "latency",
                "metricThreshold": 1,
            },
        },
    )
)
HPA = INFERENCE[-1]


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"])


Mutation = Callable[[dict[str, Any]], Any]

BROKEN: list[tuple[str, dict[str, Any], Mutation, str]] = [
    ("unknown field", JOB, lambda o: o["spec"].update(bogus=1), "bogus"),
    (
        "unknown container field",
        JOB,
        lambda o: pod(o)["containers"][0].update(imagePullPolicyy="Always"),
        "imagePullPolicyy",
    ),
    ("wrong type", JOB, lambda o: o["spec"].update(completions="3"), "completions"),
    ("long job name", JOB, lambda o: o["metadata"].update(name="j" * 64), "metadata.name"),
    ("upper-case name", JOB, lambda o: o["metadata"].update(name="Job"), "metadata.name"),
    ("long statefulset name", STS, lambda o: o["metadata"].update(name="s" * 53), "metadata.name"),
    (
        "service name starting with a digit",
        SERVICE,
        lambda o: o["metadata"].update(name="1svc"),
        "metadata.name",
    ),
    ("bad label value", JOB, lambda o: o["metadata"]["labels"].update(x="a" * 64), "labels"),
    ("bad label key", JOB, lambda o: o["metadata"]["labels"].update({"a/b/c": "x"}), "labels"),
    (
        "bad template label",
        JOB,
        lambda o: o["spec"]["template"]["metadata"]["labels"].update(x="no spaces"),
        "labels",
    ),
    (
        "bad annotation key",
        JOB,
        lambda o: o["metadata"].update(annotations={"_x": "1"}),
        "annotations",
    ),
    ("bad namespace", JOB, lambda o: o["metadata"].update(namespace="Bad"), "namespace"),
    (
        "bad quantity",
        JOB,
        lambda o: pod(o)["containers"][0].update(resources={"requests": {"memory": "1GB"}}),
        "memory",
    ),
    (
        "request above limit",
        JOB,
        lambda o: pod(o)["containers"][0].update(
            resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
        ),
        "less than or equal",
    ),
    (
        "fractional GPU",
        JOB,
        lambda o: pod(o)["containers"][0].update(resources={"limits": {"nvidia.com/gpu": "0.5"}}),
        "integer",
    ),
    (
        "extended request without limit",
        JOB,
        lambda o: pod(o)["containers"][0].update(resources={"requests": {"example.com/fpga": "1"}}),
        "limits",
    ),
    (
        "restartPolicy Always in a Job",
        JOB,
        lambda o: o["spec"]["template"]["spec"].update(restartPolicy="Always"),
        "restartPolicy",
    ),
    (
        "restartPolicy Never in a StatefulSet",
        STS,
        lambda o: o["spec"]["template"]["spec"].update(restartPolicy="Never"),
        "restartPolicy",
    ),
    (
        "selector not matching",
        STS,
        lambda o: o["spec"]["selector"]["matchLabels"].update(x="y"),
        "selector",
    ),
    (
        "mount of a missing volume",
        JOB,
        lambda o: pod(o)["containers"][0].update(
            volumeMounts=[{"name": "nope", "mountPath": "/x"}]
        ),
        "volumeMounts",
    ),
    (
        "toleration seconds without NoExecute",
        JOB,
        lambda o: o["spec"]["template"]["spec"].update(
            tolerations=[{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]
        ),
        "NoExecute",
    ),
    ("empty image", JOB, lambda o: pod(o)["containers"][0].update(image=""), "image"),
    (
        "bad port name",
        SERVICE,
        lambda o: o["spec"]["ports"][0].update(name="Jupyter"),
        "ports[0].name",
    ),
    (
        "headless NodePort",
        SERVICE,
        lambda o: o["spec"].update(type="NodePort", clusterIP="None"),
        "clusterIP",
    ),
    ("HPA min 0", HPA, lambda o: o["spec"].update(minReplicas=0), "minReplicas"),
    (
        "HPA bad averageValue",
        HPA,
        lambda o: o["spec"]["metrics"][0]["pods"]["target"].update(averageValue="ten"),
        "averageValue",
    ),
    ("CRD unknown field", PYTORCH, lambda o: o["spec"].update(bogus=True), "bogus"),
    (
        "CRD bad replica type",
        PYTORCH,
        lambda o: o["spec"]["pytorchReplicaSpecs"].update(
            Chief=o["spec"]["pytorchReplicaSpecs"]["Worker"]
        ),
        "Chief",
    ),
    (
        "CRD wrong container name",
        PYTORCH,
        lambda o: o["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][
            0
        ].update(name="main"),
        "pytorch",
    ),
    (
        "CRD two masters",
        PYTORCH,
        lambda o: o["spec"]["pytorchReplicaSpecs"]["Master"].update(replicas=2),
        "must be 1",
    ),
    (
        "CRD template unknown field",
        MPI,
        lambda o: o["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"].update(bogus=1),
        "bogus",
    ),
    (
        "CRD name too long for pod names",
        PYTORCH,
        lambda o: o["metadata"].update(name="p" * 60),
        "63",
    ),
    (
        "CRD bad quantity",
        MPI,
        lambda o: o["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][
            0
        ].update(resources={"limits": {"cpu": "lots"}}),
        "cpu",
    ),
]


@pytest.mark.parametrize(
    ("obj", "mutate", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_broken_objects_are_refused(obj: dict[str, Any], mutate: Mutation, expected: str) -> None:
    assert validate_manifest(obj) == []
    broken = copy.deepcopy(obj)
    mutate(broken)
    problems = validate_manifest(broken)
    assert problems, "the broken object validated"
    assert any(expected in p for p in problems), problems
    kind = obj["kind"]
    assert all(p.startswith(f"{kind}/") for p in problems)


def test_unknown_kinds_are_refused() -> None:
    assert validate_manifest(
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    )
    assert validate_manifest({"kind": "Job"})


def test_other_builtin_kinds_validate() -> None:
    pod_obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    assert validate_manifest(pod_obj) == []
    pod_obj["spec"]["containers"][0]["name"] = "C"
    assert validate_manifest(pod_obj)


def test_validation_is_fast_once_loaded() -> None:
    import time

    validation.preload()
    start = time.perf_counter()
    for _ in range(20):
        for obj in (JOB, STS, SERVICE, PYTORCH, MPI, *INFERENCE):
            validate_manifest(obj)
    per_object = (time.perf_counter() - start) / (20 * 8)
    assert per_object < 0.05  # generous: a few ms is typical


def test_a_trailing_newline_is_not_part_of_any_name_label_or_quantity() -> None:
    """Python's ``$`` matches before a final newline; Kubernetes' validation does not."""
    for check in (
        syntax.label_value_problem,
        syntax.dns1123_label_problem,
        syntax.dns1123_subdomain_problem,
        syntax.dns1035_label_problem,
    ):
        assert check("a") is None, check
        assert check("a\n") is not None, check
    assert is_quantity("1Gi")
    assert not is_quantity("1Gi\n")
    job = copy.deepcopy(JOB)
    job["metadata"]["labels"]["team"] = "a\n"
    assert validate_manifest(job)
