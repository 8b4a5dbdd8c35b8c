"""Sample manifests of every kind the renderers emit (SPEC §6), valid for a real API server.

Every object and pod template carries the managed-by, workload-id, project and workload-type
labels, as app.rendering's output does. The fake-API tests apply them through the backend, and a
real-cluster suite (tests/kube/) can apply the same ones: :func:`workload` gives a workload's
whole set of objects by type, :func:`pod` a pod as its controller would create it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Manifest = dict[str, Any]

NAMESPACE = "runplane-kube-test"
PROJECT = "kube-test"
IMAGE = "registry.k8s.io/pause:3.10"


def labels(workload_id: str, workload_type: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "runplane",
        "runplane.io/workload-id": workload_id,
        "runplane.io/project": PROJECT,
        "runplane.io/workload-type": workload_type,
    }


def _meta(name: str, workload_id: str, workload_type: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(workload_id, workload_type)}


def pod_template(workload_id: str, workload_type: str, *, restart_policy: str) -> Manifest:
    return {
        "metadata": {"labels": labels(workload_id, workload_type)},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
        },
    }


def service(
    workload_id: str,
    *,
    name: str,
    namespace: str = NAMESPACE,
    workload_type: str = "interactive",
    port: int = 8888,
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, workload_id, workload_type, namespace),
        "spec": {
            "selector": {"runplane.io/workload-id": workload_id},
            "ports": [{"name": "http", "port": port, "targetPort": port}],
        },
    }


def statefulset(
    workload_id: str, *, name: str, namespace: str = NAMESPACE, replicas: int = 1
) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, workload_id, "interactive", namespace),
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"runplane.io/workload-id": workload_id}},
            "template": pod_template(workload_id, "interactive", restart_policy="Always"),
        },
    }


def deployment(
    workload_id: str, *, name: str, namespace: str = NAMESPACE, replicas: int = 1
) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, workload_id, "inference", namespace),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"runplane.io/workload-id": workload_id}},
            "template": pod_template(workload_id, "inference", restart_policy="Always"),
        },
    }


def hpa(workload_id: str, *, name: str, namespace: str = NAMESPACE) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, workload_id, "inference", namespace),
        "spec": {
            "minReplicas": 1,
            "maxReplicas": 3,
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


def job(
    workload_id: str, *, name: str, namespace: str = NAMESPACE, suspend: bool = False
) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(name, workload_id, "training", namespace),
        "spec": {
            "backoffLimit": 6,
            "completions": 1,
            "parallelism": 1,
            "suspend": suspend,
            "template": pod_template(workload_id, "training", restart_policy="Never"),
        },
    }


def _kubeflow_v1(
    kind: str, key: str, lead: str, workload_id: str, *, name: str, namespace: str
) -> Manifest:
    template = pod_template(workload_id, "distributed", restart_policy="OnFailure")
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": _meta(name, workload_id, "distributed", namespace),
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running", "suspend": False},
            key: {
                lead: {"replicas": 1, "restartPolicy": "OnFailure", "template": template},
                "Worker": {"replicas": 2, "restartPolicy": "OnFailure", "template": template},
            },
        },
    }


def pytorchjob(workload_id: str, *, name: str, namespace: str = NAMESPACE) -> Manifest:
    return _kubeflow_v1(
        "PyTorchJob", "pytorchReplicaSpecs", "Master", workload_id, name=name, namespace=namespace
    )


def tfjob(workload_id: str, *, name: str, namespace: str = NAMESPACE) -> Manifest:
    return _kubeflow_v1(
        "TFJob", "tfReplicaSpecs", "Chief", workload_id, name=name, namespace=namespace
    )


def mpijob(workload_id: str, *, name: str, namespace: str = NAMESPACE) -> Manifest:
    template = pod_template(workload_id, "distributed", restart_policy="OnFailure")
    return {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": _meta(name, workload_id, "distributed", namespace),
        "spec": {
            "slotsPerWorker": 1,
            "runPolicy": {"cleanPodPolicy": "Running", "suspend": False},
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "template": template},
                "Worker": {"replicas": 2, "template": template},
            },
        },
    }


# One builder per kind, keyed "apiVersion/kind".
BY_KIND: dict[str, Callable[..., Manifest]] = {
    "v1/Service": service,
    "apps/v1/StatefulSet": statefulset,
    "apps/v1/Deployment": deployment,
    "batch/v1/Job": job,
    "autoscaling/v2/HorizontalPodAutoscaler": hpa,
    "kubeflow.org/v1/PyTorchJob": pytorchjob,
    "kubeflow.org/v1/TFJob": tfjob,
    "kubeflow.org/v2beta1/MPIJob": mpijob,
}
KUBEFLOW_KINDS = (
    "kubeflow.org/v1/PyTorchJob",
    "kubeflow.org/v1/TFJob",
    "kubeflow.org/v2beta1/MPIJob",
)


def workload(
    workload_type: str, workload_id: str, *, name: str, namespace: str = NAMESPACE
) -> list[Manifest]:
    """A workload's objects as the renderers emit them, by type.

    ``workload_type``: interactive, training, inference, pytorch, tf or mpi (the last three are
    distributed workloads on the Kubeflow operators).
    """
    if workload_type == "interactive":
        return [
            service(workload_id, name=name, namespace=namespace),
            statefulset(workload_id, name=name, namespace=namespace),
        ]
    if workload_type == "training":
        return [job(workload_id, name=name, namespace=namespace)]
    if workload_type == "inference":
        return [
            deployment(workload_id, name=name, namespace=namespace),
            service(workload_id, name=name, namespace=namespace, workload_type="inference"),
            hpa(workload_id, name=name, namespace=namespace),
        ]
    builders = {"pytorch": pytorchjob, "tf": tfjob, "mpi": mpijob}
    return [builders[workload_type](workload_id, name=name, namespace=namespace)]


WORKLOAD_TYPES = ("interactive", "training", "inference", "pytorch", "tf", "mpi")


def pod(
    workload_id: str,
    *,
    name: str,
    namespace: str = NAMESPACE,
    workload_type: str = "training",
    phase: str = "Running",
) -> Manifest:
    """A pod as its controller would create it: the template's labels, and a status."""
    template = pod_template(workload_id, workload_type, restart_policy="Never")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **template["metadata"]},
        "spec": template["spec"],
        "status": {"phase": phase},
    }
