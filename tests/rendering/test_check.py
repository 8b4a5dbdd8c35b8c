"""check() / check_names(): what cannot be rendered is refused with (field, message)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from app.domain.spec import WorkloadType
from app.rendering import RenderError, check, check_names, render
from tests.rendering.cases import IMAGE, ctx


def fields(problems: list[tuple[str, str]]) -> list[str]:
    return [field for field, _ in problems]


def test_a_valid_workload_has_no_problems() -> None:
    assert check(ctx("training", {"image": IMAGE})) == []
    assert check_names(ctx("training", {"image": IMAGE})) == []


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("a" * 40, True),
        ("a" * 41, False),
        ("1abc", False),
        ("Abc", False),
        ("abc-", False),
        ("a.b", False),
    ],
)
def test_workload_name(name: str, ok: bool) -> None:
    context = ctx("interactive", {"image": IMAGE}, name=name)
    assert (fields(check_names(context)) == []) is ok
    if not ok:
        assert fields(check(context)) == ["name"]
        with pytest.raises(RenderError) as exc:
            render(context)
        assert exc.value.problems == check(context)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"project": "Bad_Project"}, "project"),
        ({"namespace": "x" * 64}, "namespace"),
        ({"workload_id": "not-a-uuid"}, "id"),
        ({"scheduler": "kai", "queue": "bad queue"}, "queue"),
        ({"scheduler": "kueue", "queue": "q" * 64}, "queue"),
        ({"node_pool_label_key": "bad key/x/y"}, "nodePools"),
    ],
)
def test_context_names(changes: dict[str, Any], field: str) -> None:
    context = dataclasses.replace(ctx("training", {"image": IMAGE}), **changes)
    assert field in fields(check_names(context))
    assert field in fields(check(context))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"labels": {"bad key": "v"}}, "labels"),
        ({"labels": {"ok": "bad value"}}, "labels"),
        ({"labels": {"ok": "v" * 64}}, "labels"),
        ({"labels": {"runplane.io/workload-id": "x"}}, "labels"),
        ({"labels": {"app.kubernetes.io/managed-by": "me"}}, "labels"),
        ({"labels": {"kueue.x-k8s.io/queue-name": "other"}}, "labels"),
        ({"annotations": {"gpu-fraction": "0.5"}}, "annotations"),
        ({"annotations": {"-bad": "v"}}, "annotations"),
        ({"annotations": {f"k{i}": "x" * 30_000 for i in range(10)}}, "annotations"),
        ({"nodePools": ["has space"]}, "nodePools[0]"),
        ({"nodeType": "a/b"}, "nodeType"),
        ({"priorityClass": "High"}, "priorityClass"),
        ({"storage": {"pvc": [{"claimName": "Data", "path": "/d"}]}}, "storage.pvc[0].claimName"),
        ({"tolerations": [{"key": "a b", "operator": "Exists"}]}, "tolerations[0].key"),
        (
            {"tolerations": [{"key": "gpu", "value": "a b", "effect": "NoSchedule"}]},
            "tolerations[0].value",
        ),
    ],
)
def test_user_names_and_labels(spec: dict[str, Any], field: str) -> None:
    context = ctx("training", {"image": IMAGE, **spec})
    assert field in fields(check_names(context))
    with pytest.raises(RenderError):
        render(context)


@pytest.mark.parametrize(
    ("key", "reserved"),
    [
        # Runplane's own domain and its subdomains, and the scheduler keys it renders itself
        ("runplane.io/anything", True),
        ("team.runplane.io/owner", True),
        ("app.kubernetes.io/managed-by", True),
        ("kai.scheduler/queue", True),
        ("kai.scheduler/preemptibility", True),
        ("kueue.x-k8s.io/queue-name", True),
        # ... except the simulated cluster's annotations, which users set on purpose
        ("simulation.runplane.io/outcome", False),
        ("simulation.runplane.io/run-seconds", False),
        # other domains that merely look alike
        ("notrunplane.io/x", False),
        ("runplane.io.example.com/x", False),
        ("app.kubernetes.io/name", False),
        ("team", False),
    ],
)
def test_keys_runplane_sets_itself_are_refused(key: str, reserved: bool) -> None:
    label = ctx("training", {"image": IMAGE, "labels": {key: "v"}})
    refused = [("labels", f"label key {key!r} is set by Runplane and cannot be set")]
    assert check_names(label) == (refused if reserved else [])
    # As annotations only Runplane's domain is reserved: the scheduler keys are its labels.
    annotation = ctx("training", {"image": IMAGE, "annotations": {key: "v"}})
    refused = [("annotations", f"annotation key {key!r} is set by Runplane and cannot be set")]
    in_domain = reserved and "runplane.io/" in key
    assert check_names(annotation) == (refused if in_domain else [])


def test_gpu_annotations_are_reserved_only_as_annotations() -> None:
    for key in ("gpu-fraction", "gpu-memory"):
        annotated = ctx("training", {"image": IMAGE, "annotations": {key: "1"}})
        assert check_names(annotated) == [
            ("annotations", f"annotation key {key!r} is set by Runplane and cannot be set")
        ]
        labelled = ctx("training", {"image": IMAGE, "labels": {key: "1"}})
        assert check_names(labelled) == []


@pytest.mark.parametrize("scheduler", ["none", "kueue"])
@pytest.mark.parametrize(
    ("compute", "field"),
    [
        ({"gpuPortionRequest": 0.5}, "compute.gpuPortionRequest"),
        ({"gpuMemoryRequest": "4Gi"}, "compute.gpuMemoryRequest"),
    ],
)
def test_gpu_fractions_need_kai(scheduler: str, compute: dict[str, Any], field: str) -> None:
    context = ctx("training", {"image": IMAGE, "compute": compute}, scheduler=scheduler)  # type: ignore[arg-type]
    assert fields(check(context)) == [field]
    assert "KAI" in check(context)[0][1]
    assert check(dataclasses.replace(context, scheduler="kai")) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"compute": {"gpuMemoryRequest": "4Gi", "gpuPortionRequest": 0.5}},
            "compute.gpuMemoryRequest",
        ),
        (
            {"compute": {"gpuMemoryRequest": "4Gi", "gpuDevicesRequest": 1}},
            "compute.gpuMemoryRequest",
        ),
        (
            {"compute": {"extendedResources": [{"resource": "nvidia.com/gpu", "quantity": "1"}]}},
            "compute.extendedResources[0].resource",
        ),
        (
            {"compute": {"extendedResources": [{"resource": "cpu", "quantity": "1"}]}},
            "compute.extendedResources[0].resource",
        ),
        (
            {
                "compute": {
                    "extendedResources": [{"resource": "example.com/fpga", "quantity": "500m"}]
                }
            },
            "compute.extendedResources[0].quantity",
        ),
        (
            {"compute": {"extendedResources": [{"resource": "fpga", "quantity": "1"}]}},
            "compute.extendedResources[0].resource",
        ),
        (
            {"compute": {"extendedResources": [{"resource": "hugepages-2Mi", "quantity": "1Gi"}]}},
            "compute.extendedResources[0].resource",
        ),
        (
            {"tolerations": [{"key": "a", "operator": "Exists", "value": "v"}]},
            "tolerations[0].value",
        ),
        (
            {"tolerations": [{"key": "a", "effect": "NoSchedule", "seconds": 5}]},
            "tolerations[0].seconds",
        ),
        ({"tolerations": [{"key": "", "operator": "Equal"}]}, "tolerations[0].operator"),
        (
            {
                "storage": {
                    "pvc": [
                        {"claimName": "a", "path": "/data"},
                        {"claimName": "b", "path": "/data/"},
                    ]
                }
            },
            "storage.pvc[1].path",
        ),
        (
            {
                "storage": {"hostPath": [{"name": "h", "path": "/x", "mountPath": "/dev/shm"}]},
                "compute": {"largeShmRequest": True},
            },
            "compute.largeShmRequest",
        ),
        ({"security": {"runAsNonRoot": True, "runAsUid": 0}}, "security.runAsNonRoot"),
        ({"image": " padded "}, "image"),
    ],
)
def test_unrenderable_requests(spec: dict[str, Any], field: str) -> None:
    context = ctx("training", {"image": IMAGE, **spec}, scheduler="kai")
    assert field in fields(check(context))


def test_missing_image_is_refused() -> None:
    context = ctx("training", {})
    assert fields(check(context)) == ["image"]


@pytest.mark.parametrize(
    ("workload_type", "spec", "options", "field"),
    [
        ("distributed", {"numWorkers": 2}, {}, "distributedFramework"),
        (
            "distributed",
            {
                "distributedFramework": "PyTorch",
                "numWorkers": 5,
                "maxReplicas": 3,
                "minReplicas": 1,
            },
            {},
            "numWorkers",
        ),
        (
            "distributed",
            {"distributedFramework": "PyTorch", "maxReplicas": 3, "masterSpecSameAsWorker": False},
            {},
            "masterSpecSameAsWorker",
        ),
        (
            "distributed",
            {"distributedFramework": "PyTorch", "maxReplicas": 3},
            {"pytorch_native": True},
            "minReplicas",
        ),
        (
            "distributed",
            {
                "distributedFramework": "PyTorch",
                "masterSpecSameAsWorker": False,
                "masterSpec": {"image": "x"},
            },
            {"pytorch_native": True},
            "masterSpecSameAsWorker",
        ),
        (
            "distributed",
            {
                "distributedFramework": "TF",
                "compute": {"cpuCoreLimit": 2},
                "masterSpecSameAsWorker": False,
                "masterSpec": {"compute": {"cpuCoreRequest": 4}},
            },
            {},
            "masterSpec.compute",
        ),
        (
            "distributed",
            {
                "distributedFramework": "TF",
                "masterSpecSameAsWorker": False,
                "masterSpec": {"compute": {"gpuPortionRequest": 0.5}},
            },
            {},
            "masterSpec.compute.gpuPortionRequest",
        ),
        (
            "distributed",
            {
                "distributedFramework": "TF",
                "masterSpecSameAsWorker": False,
                "masterSpec": {"labels": {"runplane.io/x": "y"}},
            },
            {},
            "masterSpec.labels",
        ),
        ("inference", {}, {}, "servingPort"),
        (
            "inference",
            {"servingPort": {"container": 80}, "ports": [{"name": "serving", "container": 81}]},
            {},
            "ports",
        ),
        (
            "inference",
            {
                "servingPort": {"container": 80},
                "ports": [{"name": "other", "container": 81, "external": 80}],
            },
            {},
            "ports",
        ),
        (
            "inference",
            {
                "servingPort": {"container": 80},
                "autoscaling": {
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "metric": "latency",
                    "metricThreshold": 1,
                },
            },
            {},
            "autoscaling.minReplicas",
        ),
        (
            "inference",
            {
                "servingPort": {"container": 80},
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": 2,
                    "metric": "cpu-utilization",
                    "metricThreshold": 50,
                },
            },
            {},
            "autoscaling.metric",
        ),
        (
            "interactive",
            {
                "ports": [
                    {"name": "a", "container": 1, "external": 80},
                    {"name": "b", "container": 2, "external": 80},
                ]
            },
            {},
            "ports",
        ),
        ("interactive", {"ports": [{"name": "a--b", "container": 1}]}, {}, "ports"),
    ],
)
def test_type_specific_refusals(
    workload_type: WorkloadType, spec: dict[str, Any], options: dict[str, Any], field: str
) -> None:
    context = ctx(workload_type, {"image": IMAGE, **spec}, **options)
    assert field in fields(check(context)), check(context)
    with pytest.raises(RenderError):
        render(context)


def test_same_external_port_on_different_service_types_is_fine() -> None:
    spec: dict[str, Any] = {
        "image": IMAGE,
        "ports": [
            {"name": "a", "container": 1, "external": 80},
            {"name": "b", "container": 2, "external": 80, "serviceType": "NodePort"},
        ],
    }
    assert check(ctx("interactive", spec)) == []
    # Trainings render no Service, so their ports cannot clash.
    assert (
        check(
            ctx(
                "training",
                {**spec, "ports": [{**p, "serviceType": "ClusterIP"} for p in spec["ports"]]},
            )
        )
        == []
    )


def test_worker_problems_are_not_repeated_for_the_master() -> None:
    spec = {
        "image": IMAGE,
        "distributedFramework": "PyTorch",
        "labels": {"bad key": "v"},
        "masterSpecSameAsWorker": False,
        "masterSpec": {"image": "other"},
    }
    problems = check(ctx("distributed", spec))
    assert fields(problems) == ["labels"]


@pytest.mark.parametrize(
    ("tolerations", "problems"),
    [
        ([{"key": "gpu", "operator": "Equal", "value": "a100", "effect": "NoSchedule"}], []),
        ([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}], []),
        ([{"key": "", "operator": "Exists"}], []),  # tolerate every taint
        ([{"key": "gpu", "operator": "Exists", "effect": "NoExecute", "seconds": 60}], []),
        (
            [{"key": "gpu", "operator": "Exists", "value": "a100"}],
            [("tolerations[0].value", "value must be empty when operator is Exists")],
        ),
        (
            [{"key": "", "value": "a100"}],
            [("tolerations[0].operator", "operator must be Exists when key is empty")],
        ),
        (
            [{"key": "gpu", "operator": "Exists", "seconds": 60}],
            [("tolerations[0].seconds", "seconds applies only to effect NoExecute")],
        ),
        (
            [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "seconds": 60}],
            [("tolerations[0].seconds", "seconds applies only to effect NoExecute")],
        ),
    ],
)
def test_tolerations_kubernetes_would_refuse(
    tolerations: list[dict[str, Any]], problems: list[tuple[str, str]]
) -> None:
    assert check(ctx("training", {"image": IMAGE, "tolerations": tolerations})) == problems


@pytest.mark.parametrize(
    ("compute", "problems"),
    [
        ({"extendedResources": [{"resource": "example.com/fpga", "quantity": "1"}]}, []),
        (
            {"extendedResources": [{"resource": "hugepages-2Mi", "quantity": "1Gi"}]},
            [("compute.extendedResources[0].resource", "hugepages need a cpu or memory request")],
        ),
        (
            {
                "cpuMemoryRequest": "2Gi",
                "extendedResources": [{"resource": "hugepages-2Mi", "quantity": "1Gi"}],
            },
            [],
        ),
    ],
)
def test_extended_resources(compute: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    assert check(ctx("training", {"image": IMAGE, "compute": compute})) == problems


@pytest.mark.parametrize("image", ["nvcr.io/x ", " nvcr.io/x", "nvcr.io/x\n"])
def test_an_image_with_surrounding_whitespace_is_refused(image: str) -> None:
    assert check(ctx("training", {"image": image})) == [
        ("image", "image must not have leading or trailing whitespace")
    ]


@pytest.mark.parametrize(("size", "refused"), [(256 * 1024, False), (256 * 1024 + 1, True)])
def test_annotations_may_total_256_kib(size: int, refused: bool) -> None:
    # Keys and values together, as the API server counts them: nine keys of 2 bytes.
    values = size - 9 * 2
    annotations = {f"k{i}": "x" * min(30_000, values - 30_000 * i) for i in range(9)}
    assert sum(len(k) + len(v) for k, v in annotations.items()) == size
    context = ctx("training", {"image": IMAGE, "annotations": annotations})
    expected = [("annotations", f"annotations total {size} bytes, more than 256 KiB")]
    assert check_names(context) == (expected if refused else [])
