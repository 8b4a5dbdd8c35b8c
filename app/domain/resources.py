"""What pods ask of the scheduler, in the units quotas count: GPUs, CPU cores, memory bytes.

Pure. A pod's request is what the scheduler reserves for it: its containers' requests added up
(a request left out defaults to the limit, as the API server does), or its largest init
container's if that is more. GPUs are ``nvidia.com/gpu``, and a KAI ``gpu-fraction`` pod counts
as its fraction (KAI-Scheduler counts a 0.5 GPU as 0.5 of the quota).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.domain import kinds
from app.domain.labels import GPU_RESOURCE, KAI_GPU_FRACTION_ANNOTATION
from app.domain.quantity import quantity_value
from app.domain.quota import RESOURCES, Resource

_ZERO = Decimal(0)
_KEYS: Mapping[Resource, str] = {"gpu": GPU_RESOURCE, "cpu": "cpu", "memory": "memory"}


@dataclass(frozen=True, slots=True)
class Amounts:
    """GPUs, CPU cores and memory bytes."""

    gpu: Decimal = _ZERO
    cpu: Decimal = _ZERO
    memory: Decimal = _ZERO

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(self.gpu + other.gpu, self.cpu + other.cpu, self.memory + other.memory)

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(self.gpu - other.gpu, self.cpu - other.cpu, self.memory - other.memory)

    def __mul__(self, count: int) -> Amounts:
        return Amounts(self.gpu * count, self.cpu * count, self.memory * count)

    def of(self, resource: Resource) -> Decimal:
        value: Decimal = getattr(self, resource)
        return value

    def __bool__(self) -> bool:
        return bool(self.gpu or self.cpu or self.memory)

    @staticmethod
    def total(items: Iterable[Amounts]) -> Amounts:
        gpu = cpu = memory = _ZERO
        for a in items:
            gpu, cpu, memory = gpu + a.gpu, cpu + a.cpu, memory + a.memory
        return Amounts(gpu, cpu, memory)

    def to_dict(self) -> dict[str, str]:
        return {r: format(self.of(r).normalize(), "f") for r in RESOURCES}


NOTHING = Amounts()


@dataclass(frozen=True, slots=True)
class ProjectUsage:
    """What a project's pods hold (allocated) and ask for without being scheduled (waiting)."""

    allocated: Amounts = NOTHING
    waiting: Amounts = NOTHING

    def to_dict(self) -> dict[str, Any]:
        return {"allocated": self.allocated.to_dict(), "waiting": self.waiting.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ProjectUsage:
        if not data:
            return cls()

        def amounts(part: Any) -> Amounts:
            part = part or {}
            return Amounts(*(Decimal(str(part.get(r, "0"))) for r in RESOURCES))

        return cls(amounts(data.get("allocated")), amounts(data.get("waiting")))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _value(value: Any) -> Decimal:
    try:
        return quantity_value(value)
    except ValueError:
        return _ZERO  # the API server refuses such a value: nothing of the kind runs


def _container(container: Mapping[str, Any]) -> Amounts:
    resources = _mapping(container.get("resources"))
    requests, limits = _mapping(resources.get("requests")), _mapping(resources.get("limits"))

    def one(resource: Resource) -> Decimal:
        key = _KEYS[resource]
        value = requests.get(key, limits.get(key))
        return _ZERO if value is None else _value(value)

    return Amounts(one("gpu"), one("cpu"), one("memory"))


def _max(a: Amounts, b: Amounts) -> Amounts:
    return Amounts(max(a.gpu, b.gpu), max(a.cpu, b.cpu), max(a.memory, b.memory))


def pod_spec_requests(
    spec: Mapping[str, Any], annotations: Mapping[str, Any] | None = None
) -> Amounts:
    """What one pod of this spec (and these annotations) asks for."""
    total = Amounts.total(_container(c) for c in spec.get("containers") or ())
    for init in spec.get("initContainers") or ():
        total = _max(total, _container(init))
    fraction = (annotations or {}).get(KAI_GPU_FRACTION_ANNOTATION)
    if fraction is not None and not total.gpu:
        total = Amounts(_value(fraction), total.cpu, total.memory)
    return total


def pod_requests(pod: Mapping[str, Any]) -> Amounts:
    meta = _mapping(pod.get("metadata"))
    return pod_spec_requests(_mapping(pod.get("spec")), _mapping(meta.get("annotations")))


def template_requests(template: Mapping[str, Any]) -> Amounts:
    meta = _mapping(template.get("metadata"))
    return pod_spec_requests(_mapping(template.get("spec")), _mapping(meta.get("annotations")))


def _count(value: Any, default: int) -> int:
    return value if type(value) is int and value >= 0 else default


def pod_templates(obj: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], int]]:
    """The pod templates of a workload's main object and how many pods of each it runs at a
    time (a Job's parallelism, a set's replicas, each Kubeflow replica type's); [] for others."""
    kind = kinds.of(obj)
    if kind is None or kind.owner_rank is None:
        return []
    spec = _mapping(obj.get("spec"))
    if kind.replica_specs:
        return [
            (_mapping(rs.get("template")), _count(rs.get("replicas"), 1))
            for rs in _mapping(spec.get(kind.replica_specs)).values()
            if isinstance(rs, Mapping)
        ]
    if kind.stop == "suspend":  # a Job
        parallelism = _count(spec.get("parallelism"), 1)
        count = min(parallelism, _count(spec.get("completions"), parallelism))
    else:
        count = _count(spec.get("replicas"), 1)
    return [(_mapping(spec.get("template")), count)]


def workload_requests(manifests: Iterable[Mapping[str, Any]]) -> tuple[Amounts, Decimal]:
    """What a workload's manifests ask for when they run at their size, and the GPUs of its
    largest pod (the workload's main object: an MPIJob's launcher Job is its own)."""
    owners = [m for m in manifests if (k := kinds.of(m)) is not None and k.owner_rank is not None]
    if not owners:
        return NOTHING, _ZERO
    main = min(owners, key=lambda m: (kinds.of(m) or kinds.JOB).owner_rank or 0)
    total: list[Amounts] = []
    largest = _ZERO
    for template, count in pod_templates(main):
        one = template_requests(template)
        total.append(one * count)
        if count:
            largest = max(largest, one.gpu)
    return Amounts.total(total), largest
