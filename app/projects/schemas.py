"""Project request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from app.domain.quantity import Quantity
from app.schemas import DNS1123_LABEL, ApiModel, InputModel, Page

ProjectName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=DNS1123_LABEL)]


def _not_kubernetes_own(namespace: str) -> str:
    # Its workloads would run beside the cluster's own components, and the project's quota
    # objects would land there too; nothing Runplane renders belongs in them.
    if namespace == "default" or namespace.startswith("kube-"):
        raise ValueError(
            f"namespace {namespace!r} belongs to Kubernetes (default and kube-*); "
            "a project cannot use it"
        )
    return namespace


Namespace = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=DNS1123_LABEL),
    AfterValidator(_not_kubernetes_own),
]
QueueName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
NodePool = Annotated[str, StringConstraints(min_length=1, max_length=63)]
Scheduler = Literal["none", "kai", "kueue"]


class Quota(InputModel):
    gpu: Annotated[Decimal, Field(ge=0, le=1_000_000, max_digits=12, decimal_places=3)] | None = (
        Field(default=None, description="GPUs the project is guaranteed (fractions allowed).")
    )
    cpu: Quantity | None = Field(
        default=None,
        description="CPU cores, as a Kubernetes quantity ('16', '500m').",
        examples=["16"],
    )
    memory: Quantity | None = Field(
        default=None,
        description="Memory, as a Kubernetes quantity ('64Gi').",
        examples=["64Gi"],
    )


class ProjectCreate(InputModel):
    name: ProjectName = Field(
        description="DNS-1123 label, 1-40 characters; immutable.", examples=["team-a"]
    )
    namespace: Namespace | None = Field(
        default=None, description="Kubernetes namespace; defaults to `runplane-<name>`."
    )
    description: Annotated[str, StringConstraints(max_length=1024)] = ""
    quota: Quota | None = None
    node_pools: list[NodePool] = Field(default_factory=list, max_length=64)
    queue: QueueName | None = Field(
        default=None,
        description="Scheduler queue (KAI queue or Kueue LocalQueue); defaults to the name.",
    )
    scheduler: Scheduler | None = Field(
        default=None, description="Overrides the deployment's scheduler setting for this project."
    )


class ProjectUpdate(InputModel):
    description: Annotated[str, StringConstraints(max_length=1024)] | None = None
    quota: Quota | None = None
    node_pools: list[NodePool] | None = Field(default=None, max_length=64)
    queue: QueueName | None = None
    scheduler: Scheduler | None = None

    @model_validator(mode="before")
    @classmethod
    def _immutable(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for field in ("name", "namespace"):
                if field in data:
                    raise ValueError(f"{field} is immutable")
        return data


class QuotaRead(ApiModel):
    gpu: float | None = Field(default=None, description="GPUs (fractions allowed).")
    cpu: str | None = None
    memory: str | None = None


class Project(ApiModel):
    id: uuid.UUID
    name: str
    namespace: str
    description: str
    quota: QuotaRead
    node_pools: list[str]
    queue: str = Field(description="Scheduler queue in effect.")
    scheduler: Scheduler | None
    created_at: datetime
    updated_at: datetime


class ProjectPage(Page[Project]):
    pass
