"""Workloads to render in tests: golden cases and the validation matrix.

Every spec goes through the spec model first (``resolved``), so the renderer only ever sees what
the API would hand it: a validated, camelCase, ``exclude_none`` dump.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

from app.domain.spec import SPEC_MODELS, WorkloadType
from app.rendering import SCHEDULERS, RenderContext, Scheduler

WORKLOAD_ID = str(uuid.UUID("6f1c2b1e-8d0a-4c43-9a57-2f5d3c1e9b10"))
PROJECT = "vision"
NAMESPACE = "runplane-vision"


def resolved(workload_type: WorkloadType, spec: dict[str, Any]) -> dict[str, Any]:
    model = SPEC_MODELS[workload_type].model_validate(spec)
    return model.model_dump(exclude_none=True, by_alias=True)


def ctx(
    workload_type: WorkloadType,
    spec: dict[str, Any],
    *,
    name: str = "resnet",
    scheduler: Scheduler = "none",
    stopped: bool = False,
    **settings: Any,
) -> RenderContext:
    return RenderContext(
        workload_id=WORKLOAD_ID,
        name=name,
        project=PROJECT,
        namespace=NAMESPACE,
        workload_type=workload_type,
        spec=resolved(workload_type, spec),
        scheduler=scheduler,
        stopped=stopped,
        **settings,
    )


IMAGE = "nvcr.io/nvidia/pytorch:24.05-py3"

# Everything the common spec can say, all renderable by every scheduler.
FULL_COMMON: dict[str, Any] = {
    "image": IMAGE,
    "imagePullPolicy": "IfNotPresent",
    "command": ["python", "train.py"],
    "args": ["--epochs", "10"],
    "workingDir": "/workspace",
    "environmentVariables": [{"name": "NCCL_DEBUG", "value": "INFO"}, {"name": "EMPTY"}],
    "labels": {"team": "vision", "example.com/cost-center": "cc-42"},
    "annotations": {"example.com/owner": "alice@example.com"},
    "compute": {
        "gpuDevicesRequest": 2,
        "cpuCoreRequest": 3.5,
        "cpuCoreLimit": 8,
        "cpuMemoryRequest": "16Gi",
        "cpuMemoryLimit": "32Gi",
        "largeShmRequest": True,
        "extendedResources": [{"resource": "rdma/hca", "quantity": "1"}],
    },
    "storage": {
        "pvc": [{"claimName": "datasets", "path": "/data", "readOnly": True}],
        "hostPath": [{"name": "cache", "path": "/mnt/cache", "mountPath": "/cache"}],
    },
    "nodePools": ["a100", "h100"],
    "nodeType": "dgx-a100",
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "seconds": 300,
        },
    ],
    "security": {"runAsUid": 1000, "runAsGid": 1000, "runAsNonRoot": True},
    "priorityClass": "train",
    "preemptibility": "preemptible",
}
FRACTION: dict[str, Any] = {"image": IMAGE, "compute": {"gpuPortionRequest": 0.5}}
GPU_MEMORY: dict[str, Any] = {"image": IMAGE, "compute": {"gpuMemoryRequest": "10Gi"}}


def _full(**extra: Any) -> dict[str, Any]:
    return {**FULL_COMMON, **extra}


# name -> (type, spec, context options)
GOLDEN: dict[str, tuple[WorkloadType, dict[str, Any], dict[str, Any]]] = {
    "interactive-jupyter": (
        "interactive",
        {"image": "jupyter/scipy-notebook:2024-05-27", "tool": "jupyter"},
        {},
    ),
    "interactive-kai-fraction": (
        "interactive",
        {
            "image": "jupyter/scipy-notebook:2024-05-27",
            "tool": "jupyter",
            "compute": {"gpuPortionRequest": 0.25, "cpuCoreRequest": 0.5},
            "ports": [
                {"name": "ssh", "container": 22, "serviceType": "NodePort", "external": 2222},
                {"name": "app", "container": 8080, "serviceType": "LoadBalancer"},
            ],
            "nodePools": ["default"],
            "preemptibility": "non-preemptible",
        },
        {"scheduler": "kai"},
    ),
    "interactive-kueue-stopped": (
        "interactive",
        {"image": "tensorflow/tensorflow:2.16.1", "tool": "tensorboard"},
        {"scheduler": "kueue", "stopped": True},
    ),
    "training-full": (
        "training",
        _full(
            completions=4,
            parallelism=2,
            backoffLimit=3,
            autoDeletionTimeAfterCompletionSeconds=3600,
        ),
        {},
    ),
    "training-kueue": (
        "training",
        {"image": IMAGE, "compute": {"gpuDevicesRequest": 1}},
        {"scheduler": "kueue"},
    ),
    "training-kai-gpu-memory-stopped": (
        "training",
        GPU_MEMORY,
        {"scheduler": "kai", "stopped": True},
    ),
    "distributed-pytorch": (
        "distributed",
        {
            "image": IMAGE,
            "command": ["torchrun", "train.py"],
            "distributedFramework": "PyTorch",
            "numWorkers": 3,
            "compute": {"gpuDevicesRequest": 8, "largeShmRequest": True},
            "cleanPodPolicy": "Running",
        },
        {},
    ),
    "distributed-pytorch-elastic-kai": (
        "distributed",
        {
            "image": IMAGE,
            "distributedFramework": "PyTorch",
            "numWorkers": 2,
            "minReplicas": 1,
            "maxReplicas": 4,
            "compute": {"gpuDevicesRequest": 1},
        },
        {"scheduler": "kai", "queue": "vision-high"},
    ),
    "distributed-pytorch-native-kueue": (
        "distributed",
        {
            "image": IMAGE,
            "command": ["torchrun", "--nproc-per-node=8", "train.py"],
            "distributedFramework": "PyTorch",
            "numWorkers": 3,
            "compute": {"gpuDevicesRequest": 8},
        },
        {"scheduler": "kueue", "pytorch_native": True},
    ),
    "distributed-tf-master-spec-kai": (
        "distributed",
        {
            "image": "tensorflow/tensorflow:2.16.1-gpu",
            "distributedFramework": "TF",
            "numWorkers": 2,
            "compute": {"gpuDevicesRequest": 1, "cpuCoreRequest": 4, "cpuMemoryRequest": "8Gi"},
            "environmentVariables": [{"name": "ROLE", "value": "worker"}],
            "masterSpecSameAsWorker": False,
            "masterSpec": {
                "compute": {"gpuDevicesRequest": 0, "cpuCoreRequest": 2},
                "environmentVariables": [{"name": "ROLE", "value": "chief"}],
                "labels": {"role": "chief"},
            },
        },
        {"scheduler": "kai"},
    ),
    "distributed-mpi": (
        "distributed",
        {
            "image": "mpioperator/mpi-pi:openmpi",
            "command": ["mpirun", "-n", "4", "/home/mpiuser/pi"],
            "distributedFramework": "MPI",
            "numWorkers": 2,
            "slotsPerWorker": 2,
            "compute": {"gpuDevicesRequest": 2},
            "security": {"runAsUid": 1000},
            "cleanPodPolicy": "All",
        },
        {},
    ),
    "distributed-mpi-kueue-stopped": (
        "distributed",
        {"image": "mpioperator/mpi-pi:openmpi", "distributedFramework": "MPI", "numWorkers": 1},
        {"scheduler": "kueue", "stopped": True},
    ),
    "inference-http-autoscaled": (
        "inference",
        {
            "image": "vllm/vllm-openai:v0.5.0",
            "args": ["--model", "meta-llama/Meta-Llama-3-8B-Instruct"],
            "servingPort": {"container": 8000, "protocol": "http"},
            "autoscaling": {
                "minReplicas": 2,
                "maxReplicas": 6,
                "metric": "concurrency",
                "metricThreshold": 12.5,
            },
            "compute": {"gpuDevicesRequest": 1, "cpuCoreRequest": 4},
        },
        {"inference_probe_path": "/health"},
    ),
    "inference-grpc-kai-cpu": (
        "inference",
        {
            "image": "nvcr.io/nvidia/tritonserver:24.05-py3",
            "servingPort": {"container": 8001, "protocol": "grpc"},
            "ports": [{"name": "metrics", "container": 8002}],
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "metric": "cpu-utilization",
                "metricThreshold": 70,
            },
            "compute": {"gpuPortionRequest": 0.5, "cpuCoreRequest": 2},
        },
        {"scheduler": "kai"},
    ),
    "inference-kueue-stopped": (
        "inference",
        {
            "image": "vllm/vllm-openai:v0.5.0",
            "servingPort": {"container": 8000},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 4,
                "metric": "latency",
                "metricThreshold": 250,
            },
        },
        {"scheduler": "kueue", "stopped": True},
    ),
}


def golden_ctx(case: str) -> RenderContext:
    workload_type, spec, options = GOLDEN[case]
    return ctx(workload_type, spec, **options)


# --- the matrix: type x framework x scheduler x stopped x features ---

Variant = tuple[str, dict[str, Any], dict[str, Any]]  # (name, spec fields, context options)

_FRAMEWORK_VARIANTS: list[Variant] = [
    ("plain", {}, {}),
    ("workers", {"numWorkers": 4, "cleanPodPolicy": "None"}, {}),
    (
        "master",
        {
            "numWorkers": 2,
            "masterSpecSameAsWorker": False,
            "masterSpec": {
                "image": "example.com/master:1",
                "compute": {"cpuCoreRequest": 1, "cpuCoreLimit": 16},
            },
        },
        {},
    ),
]


def _hpa_variant(metric: str) -> Variant:
    threshold = 60 if metric == "cpu-utilization" else 0.75
    autoscaling = {
        "minReplicas": 2,
        "maxReplicas": 5,
        "metric": metric,
        "metricThreshold": threshold,
    }
    return (f"hpa-{metric}", {"servingPort": {"container": 8080}, "autoscaling": autoscaling}, {})


TYPE_EXTRAS: dict[WorkloadType, list[Variant]] = {
    "interactive": [
        ("plain", {}, {}),
        ("jupyter", {"tool": "jupyter"}, {}),
        (
            "ports",
            {
                "tool": "tensorboard",
                "ports": [
                    {"name": "http", "container": 8080},
                    {"name": "http-np", "container": 8080, "serviceType": "NodePort"},
                    {"name": "lb", "container": 9000, "serviceType": "LoadBalancer"},
                ],
            },
            {},
        ),
    ],
    "training": [
        ("plain", {}, {}),
        (
            "batch",
            {
                "completions": 10,
                "parallelism": 5,
                "backoffLimit": 0,
                "autoDeletionTimeAfterCompletionSeconds": 60,
            },
            {},
        ),
    ],
    "distributed": [
        (f"{fw.lower()}-{variant}", {"distributedFramework": fw, **extra}, options)
        for fw in ("PyTorch", "TF", "MPI")
        for variant, extra, options in _FRAMEWORK_VARIANTS
    ]
    + [
        (
            "pytorch-elastic",
            {
                "distributedFramework": "PyTorch",
                "numWorkers": 2,
                "minReplicas": 1,
                "maxReplicas": 5,
            },
            {},
        ),
        (
            "pytorch-native",
            {"distributedFramework": "PyTorch", "numWorkers": 3},
            {"pytorch_native": True},
        ),
        ("mpi-slots", {"distributedFramework": "MPI", "slotsPerWorker": 8}, {}),
    ],
    "inference": [
        ("plain", {"servingPort": {"container": 8080}}, {}),
        (
            "grpc-ports",
            {
                "servingPort": {"container": 9000, "protocol": "grpc"},
                "ports": [
                    {"name": "metrics", "container": 9090},
                    {"name": "admin", "container": 9091, "serviceType": "NodePort"},
                ],
            },
            {},
        ),
        *(
            _hpa_variant(metric)
            for metric in ("cpu-utilization", "concurrency", "throughput", "latency")
        ),
    ],
}
COMMON_FEATURES: dict[str, dict[str, Any]] = {
    "minimal": {"image": IMAGE},
    "full": FULL_COMMON,
    "fraction": FRACTION,
    "gpu-memory": GPU_MEMORY,
}


def matrix() -> Iterator[tuple[str, RenderContext]]:
    """Every combination; fractional GPUs with a scheduler other than KAI are included on
    purpose (they must be refused by check(), not rendered)."""
    for workload_type, extras in TYPE_EXTRAS.items():
        for (variant, extra, options), (feature, common), scheduler, stopped in itertools.product(
            extras, COMMON_FEATURES.items(), SCHEDULERS, (False, True)
        ):
            spec = {**common, **extra}
            if extra.get("autoscaling", {}).get("metric") == "cpu-utilization":
                spec["compute"] = {**spec.get("compute", {}), "cpuCoreRequest": 1}
                if "cpuCoreLimit" in spec["compute"]:
                    spec["compute"]["cpuCoreLimit"] = max(1, spec["compute"]["cpuCoreLimit"])
            case_id = f"{workload_type}-{variant}-{feature}-{scheduler}{'-stopped' * stopped}"
            yield (
                case_id,
                ctx(workload_type, spec, scheduler=scheduler, stopped=stopped, **options),
            )
