"""Manifests shaped like the renderers' output (SPEC §6), to feed the simulation in tests.

They are written here from the Kubernetes object shapes rather than imported from
``app.rendering``, so that these tests pin the simulation's contract on their own.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "runplane-team-a"
OUTCOME = "simulation.runplane.io/outcome"
RUN_SECONDS = "simulation.runplane.io/run-seconds"
EXIT_CODE = "simulation.runplane.io/exit-code"


def labels(workload_id: str, workload_type: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "runplane",
        "runplane.io/workload-id": workload_id,
        "runplane.io/project": "team-a",
        "runplane.io/workload-type": workload_type,
    }


def _meta(name: str, wid: str, wtype: str, annotations: dict[str, str] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "labels": labels(wid, wtype)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def pod_template(
    wid: str,
    wtype: str,
    *,
    gpus: int = 1,
    image: str = "nvcr.io/nvidia/pytorch:24.05-py3",
    restart_policy: str = "Never",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "1", "memory": "4Gi"}}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    meta: dict[str, Any] = {"labels": labels(wid, wtype)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "metadata": meta,
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["python", "train.py"],
                    "resources": resources,
                }
            ],
        },
    }


def training(
    wid: str = "w-train",
    *,
    name: str = "train",
    gpus: int = 1,
    parallelism: int = 1,
    completions: int | None = None,
    suspend: bool = False,
    annotations: dict[str, str] | None = None,
    backoff_limit: int = 6,
) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta(name, wid, "training", annotations),
            "spec": {
                "backoffLimit": backoff_limit,
                "completions": completions if completions is not None else parallelism,
                "parallelism": parallelism,
                "suspend": suspend,
                "template": pod_template(wid, "training", gpus=gpus, restart_policy="Never"),
            },
        }
    ]


def interactive(
    wid: str = "w-int",
    *,
    name: str = "notebook",
    gpus: int = 1,
    stopped: bool = False,
    annotations: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta(name, wid, "interactive", annotations),
            "spec": {
                "replicas": 0 if stopped else 1,
                "serviceName": name,
                "selector": {"matchLabels": {"runplane.io/workload-id": wid}},
                "template": pod_template(wid, "interactive", gpus=gpus, restart_policy="Always"),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, wid, "interactive", None),
            "spec": {
                "selector": {"runplane.io/workload-id": wid},
                "ports": [{"name": "jupyter", "port": 8888, "targetPort": 8888}],
            },
        },
    ]


def inference(
    wid: str = "w-inf",
    *,
    name: str = "serve",
    gpus: int = 1,
    replicas: int = 1,
    max_replicas: int | None = None,
    stopped: bool = False,
    annotations: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(name, wid, "inference", annotations),
            "spec": {
                "replicas": 0 if stopped else replicas,
                "selector": {"matchLabels": {"runplane.io/workload-id": wid}},
                "template": pod_template(wid, "inference", gpus=gpus, restart_policy="Always"),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, wid, "inference", None),
            "spec": {
                "selector": {"runplane.io/workload-id": wid},
                "ports": [{"name": "http", "port": 80, "targetPort": 8000}],
            },
        },
    ]
    if max_replicas is not None and max_replicas > replicas:
        objs.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": _meta(name, wid, "inference", None),
                "spec": {
                    "minReplicas": replicas,
                    "maxReplicas": max_replicas,
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 70},
                            },
                        }
                    ],
                },
            }
        )
    return objs


def kubeflow(
    kind: str,
    wid: str = "w-dist",
    *,
    name: str = "dist",
    workers: int = 2,
    gpus: int = 1,
    suspend: bool = False,
    annotations: dict[str, str] | None = None,
    backoff_limit: int | None = None,
    restart_policy: str | None = "OnFailure",
) -> list[dict[str, Any]]:
    """PyTorchJob/TFJob (kubeflow.org/v1) with a master/chief, or MPIJob (v2beta1).

    ``restart_policy`` is the PyTorch/TF replicas' (None: the operator's default)."""
    tmpl = pod_template(wid, "distributed", gpus=gpus, restart_policy="OnFailure")
    run_policy: dict[str, Any] = {"cleanPodPolicy": "Running", "suspend": suspend}
    if backoff_limit is not None:
        run_policy["backoffLimit"] = backoff_limit
    if kind == "MPIJob":
        launcher = pod_template(wid, "distributed", gpus=0, restart_policy="OnFailure")
        return [
            {
                "apiVersion": "kubeflow.org/v2beta1",
                "kind": "MPIJob",
                "metadata": _meta(name, wid, "distributed", annotations),
                "spec": {
                    "slotsPerWorker": 1,
                    "runPolicy": run_policy,
                    "mpiReplicaSpecs": {
                        "Launcher": {"replicas": 1, "template": launcher},
                        "Worker": {"replicas": workers, "template": tmpl},
                    },
                },
            }
        ]
    lead, key = (
        ("Master", "pytorchReplicaSpecs") if kind == "PyTorchJob" else ("Chief", "tfReplicaSpecs")
    )
    policy = {"restartPolicy": restart_policy} if restart_policy else {}
    return [
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": kind,
            "metadata": _meta(name, wid, "distributed", annotations),
            "spec": {
                "runPolicy": run_policy,
                key: {
                    lead: {"replicas": 1, **policy, "template": tmpl},
                    "Worker": {"replicas": workers, **policy, "template": tmpl},
                },
            },
        }
    ]


def native_pytorch(
    wid: str = "w-native",
    *,
    name: str = "ddp",
    workers: int = 2,
    gpus: int = 1,
    suspend: bool = False,
    annotations: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Distributed PyTorch as an Indexed Job (master + workers) and its headless Service."""
    pods = workers + 1
    tmpl = pod_template(wid, "distributed", gpus=gpus, restart_policy="Never")
    tmpl["spec"]["subdomain"] = name
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta(name, wid, "distributed", annotations),
            "spec": {
                "completionMode": "Indexed",
                "completions": pods,
                "parallelism": pods,
                "backoffLimit": 0,
                "suspend": suspend,
                "template": tmpl,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, wid, "distributed", None),
            "spec": {"clusterIP": "None", "selector": {"runplane.io/workload-id": wid}},
        },
    ]
