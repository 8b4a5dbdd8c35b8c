"""Workload request and response models; each type has its own submission model."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from app.domain.phases import DesiredPhase, Phase
from app.domain.spec import (
    DistributedSpec,
    InferenceSpec,
    InteractiveSpec,
    TrainingSpec,
    WorkloadType,
)
from app.schemas import DNS1035_LABEL, ApiModel, InputModel, Page

WorkloadName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=DNS1035_LABEL)]
ProjectRef = Annotated[str, StringConstraints(min_length=1, max_length=63)]
# One name for each concept: phases come from status derivation, types from the spec models.
WorkloadTypeName = WorkloadType

_NAME = Field(description="DNS-1035 label (starts with a letter), 1-40 characters.")
_PROJECT = Field(description="Name of the project to run in.")


class InteractiveSubmission(InputModel):
    name: WorkloadName = _NAME
    project: ProjectRef = _PROJECT
    spec: InteractiveSpec = Field(default_factory=InteractiveSpec)


class TrainingSubmission(InputModel):
    name: WorkloadName = _NAME
    project: ProjectRef = _PROJECT
    spec: TrainingSpec = Field(default_factory=TrainingSpec)


class DistributedSubmission(InputModel):
    name: WorkloadName = _NAME
    project: ProjectRef = _PROJECT
    spec: DistributedSpec = Field(default_factory=DistributedSpec)


class InferenceSubmission(InputModel):
    name: WorkloadName = _NAME
    project: ProjectRef = _PROJECT
    spec: InferenceSpec = Field(default_factory=InferenceSpec)


Submission = (
    InteractiveSubmission | TrainingSubmission | DistributedSubmission | InferenceSubmission
)


class PolicyRef(ApiModel):
    source: Literal["project", "global", "merged", "none"]
    version: int | None


class Condition(ApiModel):
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None


class PodCounts(ApiModel):
    requested: int = 0
    running: int = 0
    pending: int = 0
    succeeded: int = 0
    failed: int = 0


class WorkloadUrl(ApiModel):
    """One address of an interactive or inference workload's port."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        description="ClusterIP: in-cluster; NodePort: on every node's address at `port`; "
        "LoadBalancer: the address the cluster assigned."
    )
    name: str = Field(description="The port's name.")
    host: str | None = Field(
        description="`<service>.<namespace>.svc`, the load balancer's address, or null for a "
        "NodePort (any node's address)."
    )
    port: int
    url: str | None = Field(description="`<scheme>://<host>:<port>` when the host is known.")


class ContainerRun(ApiModel):
    """A run of a container: its state, and how it ended."""

    state: Literal["waiting", "running", "terminated"]
    reason: str | None = Field(None, description="e.g. ErrImagePull, CrashLoopBackOff, OOMKilled.")
    message: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Container(ContainerRun):
    name: str
    image: str
    ready: bool
    restarts: int
    last_state: ContainerRun | None = Field(
        None, description="The previous run's end, e.g. the crash of a crash-looping container."
    )


class Pod(ApiModel):
    name: str
    role: str = Field(description="master, chief, launcher, worker, ps, evaluator or replica.")
    node: str | None
    phase: str = Field(description="The pod's phase: Pending, Running, Succeeded, Failed.")
    ready: bool
    restarts: int
    start_time: datetime | None
    gpus: float = Field(description="GPUs allocated (requested while not placed); 0.5: half.")
    reason: str | None = Field(None, description="Why the pod is where it is (Unschedulable...).")
    message: str | None = None
    containers: list[Container]


class PodList(ApiModel):
    items: list[Pod] = Field(
        description="The driving role first (master, chief, launcher), then by name. A "
        "finished workload keeps its pods' final states after they are gone."
    )


class ObjectRef(ApiModel):
    api_version: str
    kind: str
    name: str


class ClusterRef(ApiModel):
    namespace: str
    objects: list[ObjectRef]


class Workload(ApiModel):
    id: uuid.UUID
    name: str
    project: str
    type: WorkloadTypeName
    created_at: datetime
    updated_at: datetime
    spec: dict[str, Any] = Field(
        description="The spec after the policy's defaults: what was rendered."
    )
    submitted_spec: dict[str, Any] = Field(description="Exactly what the client sent.")
    applied_defaults: list[str] = Field(description="Fields whose value came from the policy.")
    policy: PolicyRef
    desired_phase: DesiredPhase
    phase: Phase
    phase_message: str
    phase_updated_at: datetime
    conditions: list[Condition]
    pods: PodCounts
    urls: list[WorkloadUrl] = Field(
        description="Interactive and inference workloads with ports: in-cluster, NodePort and "
        "LoadBalancer addresses, as observed in the cluster."
    )
    cluster: ClusterRef
    deleted_at: datetime | None = None


class WorkloadPage(Page[Workload]):
    pass


class Admission(ApiModel):
    """Whether the workload would start now, from the project's quota and usage and the
    cluster's free capacity as the reconciler last observed them."""

    verdict: Literal["StartsNow", "WaitsForQuota", "WaitsForCapacity", "CannotStart"]
    reason: str = Field(
        description="Admissible, QuotaExceeded or InsufficientCapacity.", examples=["Admissible"]
    )
    message: str = Field(
        description="Why, with the figures.",
        examples=["Waiting for quota: needs 2 GPUs; project team-a uses 4 of 4 deserved (limit 4)"],
    )
    gpus: float = Field(description="The GPUs it asks for at its size (fractions as such).")
    preemptible: bool = Field(description="Whether it may run over quota, and be preempted.")


class DryRun(ApiModel):
    spec: dict[str, Any]
    applied_defaults: list[str]
    policy: PolicyRef
    manifests: list[dict[str, Any]]
    admission: Admission


class InvolvedObject(ApiModel):
    kind: str
    name: str


class WorkloadEvent(ApiModel):
    id: int
    time: datetime = Field(description="When it happened (first seen, for a cluster event).")
    type: str = Field(
        description="runplane: Submitted, PhaseChanged, Status, Cluster...; kubernetes: the "
        "event's type, Normal or Warning."
    )
    phase: Phase = Field(description="The workload's phase when it was recorded.")
    reason: str
    message: str
    source: Literal["runplane", "kubernetes"] = Field(
        "runplane",
        description="runplane: the workload's own transitions; kubernetes: the cluster's "
        "events about its objects and pods (kept after the workload ends).",
    )
    count: int = Field(1, description="How many times the cluster reported it.")
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    involved_object: InvolvedObject | None = Field(
        None, description="The object or pod a cluster event is about."
    )


class WorkloadEventPage(Page[WorkloadEvent]):
    pass
