"""The Kubernetes kinds Runplane writes and reads, and what it knows about each: one table.

Rendering, validation, the cluster backends, the simulation and the status derivation all look a
kind up here (:func:`of`) rather than keeping their own list of names, plurals, replica keys or
stopped forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

StopForm = Literal["replicas", "suspend", "runPolicy"]


@dataclass(frozen=True, slots=True)
class Kind:
    api_version: str
    kind: str
    plural: str  # the REST resource name
    namespaced: bool = True
    # Whether it owns a workload's pods, and its rank when a workload has several such objects
    # (an MPIJob's launcher is itself a Job): the lowest rank is the workload's main object.
    owner_rank: int | None = None
    # Runs to completion (Jobs, Kubeflow jobs) rather than until stopped.
    finite: bool = False
    # How its stopped form is written: 0 ``replicas``, ``spec.suspend``, or
    # ``spec.runPolicy.suspend``.
    stop: StopForm | None = None
    # Kubeflow jobs: the spec key of their replica specs, the replica types the operator knows
    # (those with exactly one replica apart), the container it drives by name, and who writes
    # their conditions and events.
    replica_specs: str | None = None
    replica_types: frozenset[str] = frozenset()
    singletons: frozenset[str] = frozenset()
    container: str | None = None
    controller: str | None = None
    # What to install when a cluster does not serve it.
    provided_by: str = "the CRD that serves it"

    @property
    def key(self) -> str:
        """``apiVersion/kind``."""
        return f"{self.api_version}/{self.kind}"

    @property
    def group(self) -> str:
        """The API group ("" for the core group), as RBAC rules name it."""
        return self.api_version.rpartition("/")[0]


SERVICE = Kind("v1", "Service", "services")
POD = Kind("v1", "Pod", "pods")
NAMESPACE = Kind("v1", "Namespace", "namespaces", namespaced=False)
# The cluster's events about a workload's objects and pods: read, never written.
EVENT = Kind("v1", "Event", "events")
# Read, never written: what node pools are made of.
NODE = Kind("v1", "Node", "nodes", namespaced=False)
# Kueue's record of a job it queues (created and updated by Kueue; Runplane reads its
# conditions, and writes only ``spec.active`` to stop and resume the job through Kueue).
KUEUE_WORKLOAD = Kind(
    "kueue.x-k8s.io/v1beta2", "Workload", "workloads", provided_by="Kueue (kueue.x-k8s.io)"
)
STATEFULSET = Kind("apps/v1", "StatefulSet", "statefulsets", owner_rank=2, stop="replicas")
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments", owner_rank=3, stop="replicas")
JOB = Kind("batch/v1", "Job", "jobs", owner_rank=1, finite=True, stop="suspend")
HPA = Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
_TRAINING_OPERATOR = "the Kubeflow training operator"
PYTORCHJOB = Kind(
    "kubeflow.org/v1",
    "PyTorchJob",
    "pytorchjobs",
    owner_rank=0,
    finite=True,
    stop="runPolicy",
    replica_specs="pytorchReplicaSpecs",
    replica_types=frozenset({"Master", "Worker"}),
    singletons=frozenset({"Master"}),
    container="pytorch",
    controller="pytorchjob-controller",
    provided_by=_TRAINING_OPERATOR,
)
TFJOB = Kind(
    "kubeflow.org/v1",
    "TFJob",
    "tfjobs",
    owner_rank=0,
    finite=True,
    stop="runPolicy",
    replica_specs="tfReplicaSpecs",
    replica_types=frozenset({"Chief", "Master", "Worker", "PS", "Evaluator"}),
    singletons=frozenset({"Chief", "Master"}),
    container="tensorflow",
    controller="tfjob-controller",
    provided_by=_TRAINING_OPERATOR,
)
MPIJOB = Kind(
    "kubeflow.org/v2beta1",
    "MPIJob",
    "mpijobs",
    owner_rank=0,
    finite=True,
    stop="runPolicy",
    replica_specs="mpiReplicaSpecs",
    replica_types=frozenset({"Launcher", "Worker"}),
    singletons=frozenset({"Launcher"}),
    controller="mpi-operator",
    provided_by="the MPI operator",
)

# A project's own objects (SPEC §6): its scheduler queues, or a ResourceQuota.
_KUEUE = "Kueue (kueue.x-k8s.io)"
RESOURCE_FLAVOR = Kind(
    "kueue.x-k8s.io/v1beta2",
    "ResourceFlavor",
    "resourceflavors",
    namespaced=False,
    provided_by=_KUEUE,
)
CLUSTER_QUEUE = Kind(
    "kueue.x-k8s.io/v1beta2", "ClusterQueue", "clusterqueues", namespaced=False, provided_by=_KUEUE
)
LOCAL_QUEUE = Kind("kueue.x-k8s.io/v1beta2", "LocalQueue", "localqueues", provided_by=_KUEUE)
KAI_QUEUE = Kind(
    "scheduling.run.ai/v2",
    "Queue",
    "queues",
    namespaced=False,
    provided_by="KAI-Scheduler (scheduling.run.ai)",
)
RESOURCE_QUOTA = Kind("v1", "ResourceQuota", "resourcequotas")
PROJECT_KINDS: tuple[Kind, ...] = (
    RESOURCE_FLAVOR,
    CLUSTER_QUEUE,
    LOCAL_QUEUE,
    KAI_QUEUE,
    RESOURCE_QUOTA,
)

# Every kind the renderers emit (SPEC §6).
MANAGED: tuple[Kind, ...] = (
    SERVICE,
    STATEFULSET,
    DEPLOYMENT,
    JOB,
    HPA,
    PYTORCHJOB,
    TFJOB,
    MPIJOB,
)
KUBEFLOW: tuple[Kind, ...] = tuple(k for k in MANAGED if k.replica_specs)
_BY_TYPE = {
    (k.api_version, k.kind): k
    for k in (*MANAGED, *PROJECT_KINDS, POD, NAMESPACE, NODE, KUEUE_WORKLOAD)
}
# Kind names are unique among Runplane's kinds: objects read back are looked up by name alone.
_BY_NAME = {k.kind: k for k in _BY_TYPE.values()}


def of(obj: Mapping[str, Any]) -> Kind | None:
    """The kind of a manifest or an object read from the cluster; None if not one of ours."""
    return _BY_NAME.get(str(obj.get("kind")))


def lookup(api_version: str, kind: str) -> Kind | None:
    return _BY_TYPE.get((api_version, kind))


def named(kind: str) -> Kind | None:
    return _BY_NAME.get(kind)
