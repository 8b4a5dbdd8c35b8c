"""The workload spec models (SPEC §2): the one source of truth for spec fields.

Every field is optional here because a policy may supply it; what must be present after the
policy's defaults are applied is checked by :func:`missing_required`. The same models feed the
OpenAPI document, request validation and the policy field catalogue (``app.domain.fields``).
Cross-field checks live in ``model_validator``s and run both on the submission and on the
resolved spec.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from pydantic_core.core_schema import IntSchema

from app.domain.quantity import Quantity, quantity_value

WorkloadType = Literal["interactive", "training", "distributed", "inference"]
WORKLOAD_TYPES: tuple[WorkloadType, ...] = ("interactive", "training", "distributed", "inference")

# Collection name in URLs (``/workloads/trainings``, ``/policies/global/trainings``) -> type.
COLLECTION_TO_TYPE: dict[str, WorkloadType] = {
    "interactives": "interactive",
    "trainings": "training",
    "distributed": "distributed",
    "inferences": "inference",
}
TYPE_TO_COLLECTION: dict[WorkloadType, str] = {v: k for k, v in COLLECTION_TO_TYPE.items()}

ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class KubeInt:
    """The range of the Kubernetes integer type a spec field lands in (``int32``, ``int64``),
    declared once per type: no integer reaches a manifest, orjson or PostgreSQL out of range.
    A field's own bounds (``Field(ge=1, le=65535)``) narrow it further."""

    def __init__(self, name: str, bits: int) -> None:
        self.name = name
        self.lo, self.hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # The range as the int schema's own ge/le, intersected with any the field declares, so
        # that both hold and the OpenAPI document shows them as minimum and maximum.
        schema = handler(source)
        if schema["type"] != "int":
            raise TypeError(f"{self.name} applies to int fields, not {schema['type']}")
        int_schema = cast(IntSchema, schema)
        int_schema["ge"] = max(int_schema.get("ge", self.lo), self.lo)
        int_schema["le"] = min(int_schema.get("le", self.hi), self.hi)
        return int_schema

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # OpenAPI's own names for these ranges: generated clients pick their integer types by it.
        return {**handler(schema), "format": self.name}


INT32, INT64 = KubeInt("int32", 32), KubeInt("int64", 64)
Int32 = Annotated[int, INT32]
Int64 = Annotated[int, INT64]

ShortStr = Annotated[str, StringConstraints(max_length=1024)]
LongStr = Annotated[str, StringConstraints(max_length=32768)]
Name253 = Annotated[str, StringConstraints(min_length=1, max_length=253)]


class SpecModel(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields rejected, numbers finite
    (JSON has no NaN or Infinity; Python's parser reads ``1e309`` as one)."""

    model_config = ConfigDict(
        allow_inf_nan=False,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=False,
    )


def item_key(name: str) -> Any:
    """Field metadata: the key by which an itemized list merges (``name``, ``claimName``)."""
    return {"x-runplane-item-key": name}


# --- parts ---------------------------------------------------------------------------------------


class EnvironmentVariable(SpecModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="Variable name: letters, digits, '_', '-' and '.', not starting with a digit."
    )
    value: LongStr = Field(default="", description="Variable value.")

    @model_validator(mode="after")
    def _valid_name(self) -> EnvironmentVariable:
        if not ENV_NAME_RE.fullmatch(self.name):
            raise ValueError(
                f"environment variable name {self.name!r} is invalid: use letters, digits, "
                "'_', '-' and '.', not starting with a digit"
            )
        return self


class ExtendedResource(SpecModel):
    resource: Name253 = Field(description="Extended resource name, e.g. 'hugepages-2Mi'.")
    quantity: Quantity = Field(description="Amount requested.")


class Compute(SpecModel):
    gpu_devices_request: Int32 | None = Field(
        default=None, ge=0, le=1024, description="Number of whole GPUs (nvidia.com/gpu)."
    )
    gpu_portion_request: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Fraction of one GPU, in (0, 1); excludes gpuDevicesRequest > 0.",
    )
    gpu_memory_request: Quantity | None = Field(
        default=None, description="GPU memory to reserve, e.g. '10Gi'."
    )
    cpu_core_request: float | None = Field(
        default=None, ge=0, le=100000, description="CPU cores requested (0.5 = half a core)."
    )
    cpu_core_limit: float | None = Field(
        default=None, ge=0, le=100000, description="CPU cores limit; at least cpuCoreRequest."
    )
    cpu_memory_request: Quantity | None = Field(
        default=None, description="Memory requested, e.g. '8Gi'."
    )
    cpu_memory_limit: Quantity | None = Field(
        default=None, description="Memory limit; at least cpuMemoryRequest."
    )
    large_shm_request: bool | None = Field(
        default=None, description="Mount a memory-backed /dev/shm (for data loaders)."
    )
    extended_resources: list[ExtendedResource] | None = Field(
        default=None,
        max_length=64,
        description="Other resources, by resource name.",
        json_schema_extra=item_key("resource"),
    )

    @model_validator(mode="after")
    def _cross_field(self) -> Compute:
        problems: list[str] = []
        if (
            self.cpu_core_request is not None
            and self.cpu_core_limit is not None
            and self.cpu_core_limit < self.cpu_core_request
        ):
            problems.append("cpuCoreLimit must be at least cpuCoreRequest")
        if (
            self.cpu_memory_request is not None
            and self.cpu_memory_limit is not None
            and quantity_value(self.cpu_memory_limit) < quantity_value(self.cpu_memory_request)
        ):
            problems.append("cpuMemoryLimit must be at least cpuMemoryRequest")
        if self.gpu_portion_request is not None and (self.gpu_devices_request or 0) > 0:
            problems.append("gpuPortionRequest cannot be combined with gpuDevicesRequest > 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class PvcVolume(SpecModel):
    claim_name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="Name of an existing PersistentVolumeClaim in the project's namespace."
    )
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^/")] = Field(
        description="Mount path in the container."
    )
    read_only: bool = Field(default=False, description="Mount read-only.")


class HostPathVolume(SpecModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=63)] = Field(
        description="Volume name."
    )
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^/")] = Field(
        description="Path on the node."
    )
    mount_path: Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^/")] = (
        Field(description="Mount path in the container.")
    )
    read_only: bool = Field(default=False, description="Mount read-only.")


class Storage(SpecModel):
    pvc: list[PvcVolume] | None = Field(
        default=None,
        max_length=64,
        description="PersistentVolumeClaims to mount, by claimName.",
        json_schema_extra=item_key("claimName"),
    )
    host_path: list[HostPathVolume] | None = Field(
        default=None,
        max_length=64,
        description="Node paths to mount, by name.",
        json_schema_extra=item_key("name"),
    )


class Toleration(SpecModel):
    key: Annotated[str, StringConstraints(max_length=316)] = Field(
        description="Taint key the toleration matches."
    )
    operator: Literal["Equal", "Exists"] = Field(default="Equal", description="Match operator.")
    value: Annotated[str, StringConstraints(max_length=63)] | None = Field(
        default=None, description="Taint value (operator Equal)."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all."
    )
    seconds: Int64 | None = Field(
        default=None, ge=0, description="For NoExecute: how long the pod stays bound."
    )


class Security(SpecModel):
    run_as_uid: Int64 | None = Field(default=None, ge=0, description="User id of the container.")
    run_as_gid: Int64 | None = Field(default=None, ge=0, description="Group id of the container.")
    run_as_non_root: bool | None = Field(default=None, description="Refuse to run as root.")
    allow_privilege_escalation: bool | None = Field(
        default=None, description="Allow setuid binaries to gain privileges."
    )


class Port(SpecModel):
    name: Annotated[
        str, StringConstraints(min_length=1, max_length=15, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    ] = Field(description="Port name (IANA service name syntax, at most 15 characters).")
    container: Int32 = Field(ge=1, le=65535, description="Container port.")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="How the port is exposed."
    )
    external: Int32 | None = Field(
        default=None, ge=1, le=65535, description="Service port; defaults to the container port."
    )


ImagePullPolicy = Literal["Always", "IfNotPresent", "Never"]
Preemptibility = Literal["preemptible", "non-preemptible"]


class CommonSpec(SpecModel):
    """Fields every workload type has."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        default=None, description="Container image, e.g. 'nvcr.io/nvidia/pytorch:24.05-py3'."
    )
    image_pull_policy: ImagePullPolicy | None = Field(
        default=None, description="When the kubelet pulls the image."
    )
    command: list[LongStr] | None = Field(
        default=None, max_length=256, description="Entrypoint (replaces the image's)."
    )
    args: list[LongStr] | None = Field(
        default=None, max_length=1024, description="Arguments to the entrypoint."
    )
    working_dir: ShortStr | None = Field(default=None, description="Working directory.")
    environment_variables: list[EnvironmentVariable] | None = Field(
        default=None,
        max_length=1024,
        description="Environment variables, by name.",
        json_schema_extra=item_key("name"),
    )
    labels: dict[Annotated[str, StringConstraints(max_length=317)], ShortStr] | None = Field(
        default=None, max_length=64, description="Labels added to every object and pod."
    )
    annotations: dict[Annotated[str, StringConstraints(max_length=317)], LongStr] | None = Field(
        default=None, max_length=64, description="Annotations added to every object and pod."
    )
    compute: Compute | None = Field(default=None, description="Compute resources.")
    storage: Storage | None = Field(default=None, description="Volumes to mount.")
    node_pools: list[Annotated[str, StringConstraints(min_length=1, max_length=63)]] | None = Field(
        default=None, max_length=32, description="Node pools the pods may run in, in order."
    )
    node_type: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = Field(
        default=None, description="Node type (e.g. a GPU model) the pods must run on."
    )
    tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=64,
        description="Taints the pods tolerate, by key.",
        json_schema_extra=item_key("key"),
    )
    security: Security | None = Field(default=None, description="Container security settings.")
    priority_class: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = Field(
        default=None, description="Kubernetes PriorityClass of the pods."
    )
    preemptibility: Preemptibility | None = Field(
        default=None, description="Whether the scheduler may preempt the workload."
    )
    ports: list[Port] | None = Field(
        default=None,
        max_length=64,
        description="Container ports to expose, by name.",
        json_schema_extra=item_key("name"),
    )

    @model_validator(mode="after")
    def _unique_keys(self) -> CommonSpec:
        problems = []
        for field, items, key in (
            ("environmentVariables", self.environment_variables, "name"),
            ("ports", self.ports, "name"),
            ("tolerations", self.tolerations, "key"),
        ):
            seen: set[str] = set()
            for item in items or []:
                k = getattr(item, key)
                if k in seen:
                    problems.append(f"{field}: duplicate {key} {k!r}")
                seen.add(k)
        if self.storage:
            for field, vols, key in (
                ("storage.pvc", self.storage.pvc, "claim_name"),
                ("storage.hostPath", self.storage.host_path, "name"),
            ):
                seen = set()
                for vol in vols or []:
                    k = getattr(vol, key)
                    if k in seen:
                        problems.append(f"{field}: duplicate {to_camel(key)} {k!r}")
                    seen.add(k)
        if self.compute and self.compute.extended_resources:
            seen = set()
            for res in self.compute.extended_resources:
                if res.resource in seen:
                    problems.append(
                        f"compute.extendedResources: duplicate resource {res.resource!r}"
                    )
                seen.add(res.resource)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class InteractiveSpec(CommonSpec):
    tool: Literal["jupyter", "tensorboard", "none"] | None = Field(
        default=None, description="Tool the workspace serves; jupyter exposes port 8888."
    )


class TrainingSpec(CommonSpec):
    completions: Int32 | None = Field(
        default=None, ge=1, le=100000, description="Successful pods needed (default 1)."
    )
    parallelism: Int32 | None = Field(
        default=None, ge=1, le=100000, description="Pods running at once; at most completions."
    )
    backoff_limit: Int32 | None = Field(
        default=None, ge=0, le=1000, description="Retries before the training fails (default 6)."
    )
    auto_deletion_time_after_completion_seconds: Int32 | None = Field(
        default=None, ge=0, description="Delete the finished Job's objects after this many seconds."
    )

    @model_validator(mode="after")
    def _parallelism(self) -> TrainingSpec:
        completions = self.completions if self.completions is not None else 1
        if self.parallelism is not None and self.parallelism > completions:
            raise ValueError(
                f"parallelism ({self.parallelism}) must be no greater than "
                f"completions ({completions})"
            )
        return self


class DistributedSpec(CommonSpec):
    distributed_framework: Literal["PyTorch", "TF", "MPI"] | None = Field(
        default=None, description="Framework: PyTorch, TF or MPI (required)."
    )
    num_workers: Int32 | None = Field(
        default=None, ge=1, le=10000, description="Number of worker pods (at least 1)."
    )
    slots_per_worker: Int32 | None = Field(
        default=None, ge=1, le=1024, description="MPI slots (processes) per worker; MPI only."
    )
    min_replicas: Int32 | None = Field(
        default=None, ge=1, le=10000, description="Elastic PyTorch: fewest workers."
    )
    max_replicas: Int32 | None = Field(
        default=None, ge=1, le=10000, description="Elastic PyTorch: most workers."
    )
    master_spec_same_as_worker: bool | None = Field(
        default=None, description="The master uses the workers' spec (default true)."
    )
    master_spec: CommonSpec | None = Field(
        default=None, description="The master's spec when it differs from the workers'."
    )
    clean_pod_policy: Literal["Running", "All", "None"] | None = Field(
        default=None, description="Which pods to delete when the job finishes."
    )

    @model_validator(mode="after")
    def _framework_fields(self) -> DistributedSpec:
        problems = []
        framework = self.distributed_framework
        if self.slots_per_worker is not None and framework not in (None, "MPI"):
            problems.append("slotsPerWorker applies only to distributedFramework MPI")
        if (self.min_replicas is not None or self.max_replicas is not None) and framework not in (
            None,
            "PyTorch",
        ):
            problems.append("minReplicas/maxReplicas (elastic) apply only to PyTorch")
        if (
            self.min_replicas is not None
            and self.max_replicas is not None
            and self.min_replicas > self.max_replicas
        ):
            problems.append("minReplicas must be no greater than maxReplicas")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ServingPort(SpecModel):
    container: Int32 = Field(ge=1, le=65535, description="Container port the model serves on.")
    protocol: Literal["http", "grpc"] = Field(default="http", description="Serving protocol.")


class Autoscaling(SpecModel):
    min_replicas: Int32 | None = Field(default=None, ge=0, le=10000, description="Fewest replicas.")
    max_replicas: Int32 | None = Field(default=None, ge=1, le=10000, description="Most replicas.")
    metric: Literal["cpu-utilization", "concurrency", "throughput", "latency"] | None = Field(
        default=None, description="Metric that drives scaling; required when max > min."
    )
    # cpu-utilization lands in averageUtilization, a Kubernetes int32.
    metric_threshold: float | None = Field(
        default=None,
        gt=0,
        le=INT32.hi,
        description="Target value of the metric; required when max > min.",
    )

    @model_validator(mode="after")
    def _metric_when_scaling(self) -> Autoscaling:
        lo = self.min_replicas if self.min_replicas is not None else 1
        hi = self.max_replicas if self.max_replicas is not None else lo
        if hi < lo:
            raise ValueError("autoscaling.minReplicas must be no greater than maxReplicas")
        if hi > lo and (self.metric is None or self.metric_threshold is None):
            raise ValueError(
                "autoscaling.metric and autoscaling.metricThreshold are required when "
                "maxReplicas > minReplicas"
            )
        return self


class InferenceSpec(CommonSpec):
    serving_port: ServingPort | None = Field(
        default=None, description="Port the model serves on (required)."
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Replica autoscaling.")


SPEC_MODELS: dict[WorkloadType, type[CommonSpec]] = {
    "interactive": InteractiveSpec,
    "training": TrainingSpec,
    "distributed": DistributedSpec,
    "inference": InferenceSpec,
}


def missing_required(workload_type: WorkloadType, spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Fields the contract requires once defaults are applied: ``[(field, message)]``."""
    missing = []
    if not spec.get("image"):
        missing.append(("image", "an image is required"))
    if workload_type == "distributed" and not spec.get("distributedFramework"):
        missing.append(
            ("distributedFramework", "distributedFramework is required (PyTorch, TF or MPI)")
        )
    if workload_type == "inference" and not spec.get("servingPort"):
        missing.append(("servingPort", "servingPort is required for inference"))
    return missing
