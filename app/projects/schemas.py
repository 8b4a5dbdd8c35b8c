"""Project request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from app.domain import quota
from app.domain.quantity import Quantity
from app.fieldpath import error_message
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


# abs(): JSON's -0.0 passes ge=0, and is stored as 0.
GpuAmount = Annotated[
    Decimal,
    Field(ge=0, le=1_000_000, max_digits=12, decimal_places=3, examples=[4, 0.5]),
    AfterValidator(abs),
]
Weight = Annotated[
    Decimal, Field(ge=0, le=1000, max_digits=7, decimal_places=3), AfterValidator(abs)
]
_WEIGHT = Field(
    default=1,
    validate_default=True,
    description="The project's share of idle capacity beside other projects' (KAI's "
    "overQuotaWeight); 0 borrows nothing.",
)
_LIMIT = "The most the project may use, over-quota included; null: no cap."


class _ResourceQuotaIn(InputModel):
    over_quota_weight: Weight = _WEIGHT

    @field_validator("limit", check_fields=False)
    @classmethod
    def _limit_at_least_deserved(cls, limit: Any, info: ValidationInfo) -> Any:
        deserved = info.data.get("deserved")
        problem = None if deserved is None else quota.check_limit(deserved, limit)
        if problem:
            raise ValueError(problem)
        return limit


class GpuQuota(_ResourceQuotaIn):
    deserved: GpuAmount = Field(
        default=0,
        validate_default=True,
        description="GPUs guaranteed to the project (fractions allowed).",
    )
    limit: GpuAmount | None = Field(default=None, description=_LIMIT)


class QuantityQuota(_ResourceQuotaIn):
    deserved: Quantity = Field(
        default="0", description="Guaranteed to the project, as a Kubernetes quantity."
    )
    limit: Quantity | None = Field(default=None, description=_LIMIT)


class _BareMeansDeserved:
    """A resource's quota as an object, or a bare amount that means ``deserved`` (as before
    quotas had limits): ``{"gpu": 4}`` is ``{"gpu": {"deserved": 4}}``. A bare amount's
    problem is reported at the resource's own path."""

    def __init__(self, bare: dict[str, Any]) -> None:
        self.bare = bare

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any, inner: core_schema.ValidatorFunctionWrapHandler) -> Any:
            if value is None or isinstance(value, dict | BaseModel):
                return inner(value)
            try:
                return inner({"deserved": value})
            except ValidationError as exc:
                message = error_message(exc.errors()[0])
                raise PydanticCustomError(
                    "quota_amount", "{message}", {"message": message}
                ) from None

        return core_schema.no_info_wrap_validator_function(validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [self.bare, handler(schema)]}


_BARE_GPU = {"type": "number", "minimum": 0, "description": "GPUs deserved (guaranteed)."}
_BARE_QUANTITY = {"type": "string", "format": "quantity", "description": "Deserved amount."}


class Quota(InputModel):
    """Per resource, ``{deserved, limit, overQuotaWeight}`` or a bare amount (= deserved). A
    resource left out is not limited. Lowering a quota below what the project uses is allowed:
    nothing running is stopped for it, and the project's ``usage`` shows what is over."""

    gpu: Annotated[GpuQuota, _BareMeansDeserved(_BARE_GPU)] | None = None
    cpu: Annotated[QuantityQuota, _BareMeansDeserved(_BARE_QUANTITY)] | None = Field(
        default=None, description="CPU cores as Kubernetes quantities ('16', '500m')."
    )
    memory: Annotated[QuantityQuota, _BareMeansDeserved(_BARE_QUANTITY)] | None = Field(
        default=None, description="Memory as Kubernetes quantities ('64Gi')."
    )

    def document(self) -> dict[str, Any]:
        """The stored form (app.domain.quota.document)."""
        return quota.document(
            {
                resource: None if entry is None else entry.model_dump(by_alias=True)
                for resource in quota.RESOURCES
                for entry in [getattr(self, resource)]
            }
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


class GpuQuotaRead(ApiModel):
    deserved: float = Field(description="GPUs guaranteed.")
    limit: float | None = Field(description="The most it may use; null: no cap.")
    over_quota_weight: float


class QuantityQuotaRead(ApiModel):
    deserved: str = Field(description="Guaranteed, as a Kubernetes quantity.")
    limit: str | None = Field(description="The most it may use; null: no cap.")
    over_quota_weight: float


class QuotaRead(ApiModel):
    """Each resource's quota; null: the resource is not limited."""

    gpu: GpuQuotaRead | None = None
    cpu: QuantityQuotaRead | None = None
    memory: QuantityQuotaRead | None = None


class ResourceUsage(ApiModel):
    allocated: float = Field(description="Held by the project's scheduled pods that still run.")
    waiting: float = Field(
        description="Asked for by its pods not yet scheduled and its jobs waiting in a queue."
    )
    over_quota: float = Field(
        description="Allocated beyond deserved: borrowed, and reclaimable (0 if not limited)."
    )
    over_limit: float = Field(
        description="Allocated beyond the limit (after the quota was lowered under it)."
    )


class Usage(ApiModel):
    """What the reconciler last observed: GPUs, CPU cores, memory bytes."""

    gpu: ResourceUsage
    cpu: ResourceUsage
    memory: ResourceUsage


class ProjectCluster(ApiModel):
    """Whether the project's own objects (scheduler queues or ResourceQuota) are in the cluster
    as they are now, and why not."""

    synced: bool
    message: str = Field(description="Why the cluster refused them; empty when it did not.")


class Project(ApiModel):
    id: uuid.UUID
    name: str
    namespace: str
    description: str
    quota: QuotaRead
    usage: Usage
    cluster: ProjectCluster
    node_pools: list[str]
    queue: str = Field(description="Scheduler queue in effect.")
    scheduler: Scheduler | None
    created_at: datetime
    updated_at: datetime


class ProjectPage(Page[Project]):
    pass
