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


class WorkloadEvent(ApiModel):
    id: int
    time: datetime
    type: str
    phase: Phase
    reason: str
    message: str


class WorkloadEventPage(Page[WorkloadEvent]):
    pass
