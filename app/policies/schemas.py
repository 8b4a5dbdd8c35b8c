"""Policy request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, RootModel, StrictBool

from app.domain.spec import WorkloadType
from app.policies.engine import EffectiveSource
from app.schemas import ApiModel, InputModel, Page

WorkloadCollection = Literal["interactives", "trainings", "distributed", "inferences"]
WorkloadTypeName = WorkloadType
Scope = Literal["global", "project"]


class PolicyWrite(InputModel):
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="A partial spec: values filled into submissions that leave them unset.",
        examples=[{"compute": {"gpuDevicesRequest": 1}}],
    )
    rules: dict[str, Any] = Field(
        default_factory=dict,
        description="The spec's nesting with a rule object at each leaf.",
        examples=[{"compute": {"gpuDevicesRequest": {"max": 4}}}],
    )
    # Strict: 0 or "yes" is not a boolean in the contract.
    inherit_global: StrictBool = Field(
        default=False,
        description="Project scope only: merge field by field with the global policy.",
    )


class Policy(ApiModel):
    id: uuid.UUID
    scope: Scope
    project: str | None
    workload_type: WorkloadTypeName
    defaults: dict[str, Any]
    rules: dict[str, Any]
    inherit_global: bool
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str


class PolicyPage(Page[Policy]):
    pass


class FieldSource(ApiModel):
    default: Scope | None = Field(description="Policy the field's default comes from.")
    rules: Scope | None = Field(description="Policy the field's rules come from.")


class EffectivePolicy(ApiModel):
    project: str
    workload_type: WorkloadTypeName
    source: EffectiveSource = Field(description="project, global, merged (inheritGlobal) or none.")
    defaults: dict[str, Any]
    rules: dict[str, Any]
    fields: dict[str, FieldSource] = Field(
        description="Where each field's default and rules come from."
    )
    global_version: int | None
    project_version: int | None


class RejectedWorkload(ApiModel):
    id: uuid.UUID
    name: str
    project: str
    violations: list[dict[str, Any]]


class PolicyDryRun(ApiModel):
    """What a PUT would store, and the active workloads the new policy would reject."""

    policy: Policy
    checked_workloads: int = Field(description="Active workloads of the type it applies to.")
    rejected_workloads: list[RejectedWorkload] = Field(
        description="Active workloads it would reject; they keep running.",
    )


class PolicyPutResult(RootModel[Policy | PolicyDryRun]):
    """The answer to a policy PUT: the stored policy, or with `dryRun` the impact report."""


class ExplainedField(ApiModel):
    field: str
    kind: str
    description: str
    rule_keys: list[str]
    options: list[Any] | None = None
    item_key: str | None = None
    item_fields: list[dict[str, Any]] | None = None
    bounds: dict[str, int | float] | None = Field(
        default=None, description="Bounds the spec itself enforces."
    )
    safe_default: str | None = Field(
        default=None,
        description="What the field may not hold unless a policy rule allowUnsafe allows it.",
    )
    default: Any = Field(default=None, description="The default in effect, if any.")
    rules: dict[str, Any] | None = Field(default=None, description="The rules in effect, if any.")
    source: FieldSource | None = None


class Explanation(ApiModel):
    workload_type: WorkloadTypeName
    project: str | None
    policy_source: EffectiveSource
    fields: list[ExplainedField]
