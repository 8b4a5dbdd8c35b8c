"""Microseconds to render one workload of each type (check() included, as render() runs it),
and to validate the result with app.rendering.validation.

Run: ``.venv/bin/python bench/bench_render.py`` (``--number N`` to change the loop count).
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.domain.spec import SPEC_MODELS, WorkloadType  # noqa: E402
from app.rendering import RenderContext, render  # noqa: E402
from app.rendering.validation import preload, validate_manifests  # noqa: E402

FULL = {
    "image": "nvcr.io/nvidia/pytorch:24.05-py3",
    "command": ["torchrun", "train.py"],
    "environmentVariables": [{"name": "NCCL_DEBUG", "value": "INFO"}],
    "labels": {"team": "vision"},
    "compute": {
        "gpuDevicesRequest": 8,
        "cpuCoreRequest": 16,
        "cpuMemoryRequest": "64Gi",
        "largeShmRequest": True,
    },
    "storage": {"pvc": [{"claimName": "datasets", "path": "/data"}]},
    "nodePools": ["a100", "h100"],
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
CASES: dict[str, tuple[WorkloadType, dict[str, object], dict[str, object]]] = {
    "interactive (StatefulSet + Service)": ("interactive", {**FULL, "tool": "jupyter"}, {}),
    "training (Job)": ("training", {**FULL, "completions": 4, "parallelism": 2}, {}),
    "distributed PyTorchJob": (
        "distributed",
        {**FULL, "distributedFramework": "PyTorch", "numWorkers": 7},
        {},
    ),
    "distributed MPIJob": ("distributed", {**FULL, "distributedFramework": "MPI"}, {}),
    "distributed native PyTorch (Job + Service)": (
        "distributed",
        {**FULL, "distributedFramework": "PyTorch", "numWorkers": 7},
        {"pytorch_native": True},
    ),
    "inference (Deployment + Service + HPA)": (
        "inference",
        {
            **FULL,
            "servingPort": {"container": 8000},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 4,
                "metric": "concurrency",
                "metricThreshold": 8,
            },
        },
        {},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    preload()
    print(f"{'workload':48} {'render µs':>10} {'validate µs':>12}")
    for label, (workload_type, spec, options) in CASES.items():
        resolved = (
            SPEC_MODELS[workload_type]
            .model_validate(spec)
            .model_dump(exclude_none=True, by_alias=True)
        )
        ctx = RenderContext(
            workload_id="6f1c2b1e-8d0a-4c43-9a57-2f5d3c1e9b10",
            name="resnet",
            project="vision",
            namespace="runplane-vision",
            workload_type=workload_type,
            spec=resolved,
            scheduler="kai",
            **options,  # type: ignore[arg-type]
        )
        manifests = render(ctx)
        assert validate_manifests(manifests) == []
        timer = timeit.Timer(lambda ctx=ctx: render(ctx))  # type: ignore[misc]
        render_us = min(timer.repeat(repeat=5, number=args.number)) / args.number * 1e6
        vnumber = max(1, args.number // 20)
        vtimer = timeit.Timer(lambda m=manifests: validate_manifests(m))  # type: ignore[misc]
        validate_us = min(vtimer.repeat(repeat=3, number=vnumber)) / vnumber * 1e6
        print(f"{label:48} {render_us:10.1f} {validate_us:12.0f}")


if __name__ == "__main__":
    main()
