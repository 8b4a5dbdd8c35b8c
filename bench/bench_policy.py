"""Time the policy engine on a typical submission: ``python bench/bench_policy.py``.

Prints microseconds per call for resolving the effective policy, for applying a cached one (the
hot path of a submission), and for both together.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path
from typing import Any

# Run as a plain script from anywhere: make `app` importable without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.policies.engine import apply_policy, resolve_effective  # noqa: E402

GLOBAL_POLICY: dict[str, Any] = {
    "defaults": {
        "imagePullPolicy": "IfNotPresent",
        "compute": {"cpuCoreRequest": 1.0, "cpuMemoryRequest": "4Gi", "gpuDevicesRequest": 1},
        "environmentVariables": [
            {"name": "HF_HOME", "value": "/data/hf"},
            {"name": "NCCL_DEBUG", "value": "WARN"},
        ],
        "storage": {"pvc": [{"claimName": "datasets", "path": "/data", "readOnly": True}]},
        "labels": {"cost-center": "research"},
        "preemptibility": "preemptible",
    },
    "rules": {
        "image": {"required": True, "pattern": r"(nvcr\.io|registry\.example\.com)/.+"},
        "compute": {
            "gpuDevicesRequest": {"min": 0, "max": 8, "step": 1},
            "cpuMemoryRequest": {"max": "64Gi"},
            "cpuCoreRequest": {"max": 32},
        },
        "storage": {"pvc": {"locked": ["datasets"]}},
        "preemptibility": {"options": ["preemptible", "non-preemptible"]},
        "security": {"runAsNonRoot": {"canEdit": False}},
    },
}
PROJECT_POLICY: dict[str, Any] = {
    "defaults": {"compute": {"gpuDevicesRequest": 2}, "nodePools": ["a100"]},
    "rules": {"compute": {"gpuDevicesRequest": {"max": 4}}, "tolerations": {"canAdd": False}},
}
SUBMISSION: dict[str, Any] = {
    "image": "nvcr.io/nvidia/pytorch:24.05-py3",
    "command": ["torchrun"],
    "args": ["--nproc-per-node=4", "train.py", "--epochs=10"],
    "compute": {"gpuDevicesRequest": 4, "cpuMemoryRequest": "32Gi"},
    "environmentVariables": [{"name": "WANDB_PROJECT", "value": "llm"}],
    "storage": {"pvc": [{"claimName": "checkpoints", "path": "/ckpt"}]},
    "completions": 1,
}


def _resolve() -> Any:
    return resolve_effective(
        "training",
        global_policy=GLOBAL_POLICY,
        project_policy=PROJECT_POLICY,
        inherit_global=True,
    )


def main() -> None:
    effective = _resolve()
    resolution = apply_policy("training", SUBMISSION, effective)
    assert resolution.ok, resolution.violations

    def apply() -> object:
        return apply_policy("training", SUBMISSION, effective)

    def both() -> object:
        return apply_policy("training", SUBMISSION, _resolve())

    for label, func in (
        ("resolve_effective (merged)", _resolve),
        ("apply_policy (cached effective policy)", apply),
        ("resolve + apply", both),
    ):
        number, _ = timeit.Timer(func).autorange()
        best = min(timeit.repeat(func, number=number, repeat=5)) / number
        print(f"{label:42s} {best * 1e6:8.1f} µs")
    print(
        f"({len(effective.fields)} fields with a default or rule; "
        f"{len(resolution.applied_defaults)} defaults applied)"
    )


if __name__ == "__main__":
    main()
