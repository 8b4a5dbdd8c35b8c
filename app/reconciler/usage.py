"""What each project uses and waits for, and each node pool holds, from one observation.

Pure functions over what the cluster shows (no I/O), and :class:`UsageTracker`, which a
reconciler keeps from cycle to cycle: it works out a workload's share again only when the
workload's observed objects or pods changed, so that a cycle over every project costs a lookup
per workload and never a query.

- *allocated*: what the scheduled pods that still run hold (a pod that succeeded or failed holds
  nothing; one terminating still does);
- *waiting*: what the pods not yet scheduled ask for, and what a job held back by its queue
  (suspended, with Kueue's queue label, and not deactivated) would ask for once admitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.cluster.backend import Observation, Observed
from app.domain import kinds
from app.domain.labels import GPU_RESOURCE, KUEUE_QUEUE_LABEL, PROJECT_LABEL
from app.domain.quantity import quantity_value
from app.domain.resources import (
    NOTHING,
    Amounts,
    ProjectUsage,
    pod_requests,
    template_requests,
)

DEFAULT_POOL = "default"


@dataclass(frozen=True, slots=True)
class WorkloadUsage:
    """One workload's share: its project, what it holds and waits for, and where its pods are."""

    project: str | None
    allocated: Amounts = NOTHING
    waiting: Amounts = NOTHING
    placed: tuple[tuple[str, Amounts], ...] = ()  # (node name, what a pod there holds)


@dataclass(frozen=True, slots=True)
class NodePool:
    name: str
    nodes: int
    allocatable: Amounts
    allocated: Amounts

    @property
    def free(self) -> Amounts:
        left = self.allocatable - self.allocated
        zero = Decimal(0)
        return Amounts(max(left.gpu, zero), max(left.cpu, zero), max(left.memory, zero))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(obj.get("metadata")).get("labels"))


def _queued(obj: Mapping[str, Any], deactivated: bool) -> Amounts:
    """What a job its queue holds back (suspended, Kueue's label) would ask for when admitted."""
    kind = kinds.of(obj)
    if kind is None or not kind.finite or deactivated or not _labels(obj).get(KUEUE_QUEUE_LABEL):
        return NOTHING
    spec = _mapping(obj.get("spec"))
    if kind.replica_specs:
        if _mapping(spec.get("runPolicy")).get("suspend") is not True:
            return NOTHING
        return Amounts.total(
            template_requests(_mapping(rs.get("template"))) * _count(rs.get("replicas"), 1)
            for rs in _mapping(spec.get(kind.replica_specs)).values()
            if isinstance(rs, Mapping)
        )
    if spec.get("suspend") is not True:
        return NOTHING
    parallelism = _count(spec.get("parallelism"), 1)
    completions = _count(spec.get("completions"), parallelism)
    return template_requests(_mapping(spec.get("template"))) * min(parallelism, completions)


def _count(value: Any, default: int) -> int:
    return value if type(value) is int and value >= 0 else default


def workload_usage(observed: Observed) -> WorkloadUsage:
    """A workload's share, from its observed objects and pods."""
    project: str | None = None
    allocated: list[Amounts] = []
    waiting: list[Amounts] = []
    placed: list[tuple[str, Amounts]] = []
    for pod in observed.pods:
        project = project or _labels(pod).get(PROJECT_LABEL)
        phase = _mapping(pod.get("status")).get("phase")
        if phase in ("Succeeded", "Failed"):
            continue
        requests = pod_requests(pod)
        node = _mapping(pod.get("spec")).get("nodeName")
        if node:
            allocated.append(requests)
            placed.append((str(node), requests))
        else:
            waiting.append(requests)
    # A Kueue Workload deactivated (spec.active false) is a stopped job, not a waiting one.
    deactivated = any(
        o.get("kind") == kinds.KUEUE_WORKLOAD.kind
        and _mapping(o.get("spec")).get("active") is False
        for o in observed.objects
    )
    for obj in observed.objects:
        project = project or _labels(obj).get(PROJECT_LABEL)
        if not observed.pods:
            waiting.append(_queued(obj, deactivated))
    return WorkloadUsage(
        project=project,
        allocated=Amounts.total(allocated),
        waiting=Amounts.total(waiting),
        placed=tuple(placed),
    )


def by_project(parts: Iterable[WorkloadUsage]) -> dict[str, ProjectUsage]:
    allocated: dict[str, list[Amounts]] = {}
    waiting: dict[str, list[Amounts]] = {}
    for part in parts:
        if part.project is None:
            continue
        allocated.setdefault(part.project, []).append(part.allocated)
        waiting.setdefault(part.project, []).append(part.waiting)
    return {
        project: ProjectUsage(Amounts.total(allocated[project]), Amounts.total(waiting[project]))
        for project in allocated
    }


def node_amounts(node: Mapping[str, Any]) -> Amounts:
    allocatable = _mapping(_mapping(node.get("status")).get("allocatable"))

    def one(key: str) -> Decimal:
        try:
            return quantity_value(allocatable.get(key, "0"))
        except ValueError:
            return Decimal(0)

    return Amounts(one(GPU_RESOURCE), one("cpu"), one("memory"))


def node_pools(
    nodes: Sequence[Mapping[str, Any]],
    placed: Iterable[tuple[str, Amounts]],
    *,
    label_key: str,
) -> list[NodePool]:
    """Per node pool (the nodes' ``label_key`` label, else ``default``), by name: how many
    nodes, what they offer and what the pods placed on them hold."""
    pool_of: dict[str, str] = {}
    members: dict[str, list[Amounts]] = {}
    for node in nodes:
        meta = _mapping(node.get("metadata"))
        pool = str(_mapping(meta.get("labels")).get(label_key) or DEFAULT_POOL)
        pool_of[str(meta.get("name"))] = pool
        members.setdefault(pool, []).append(node_amounts(node))
    held: dict[str, list[Amounts]] = {}
    for node_name, amounts in placed:
        found = pool_of.get(node_name)
        if found is not None:
            held.setdefault(found, []).append(amounts)
    return [
        NodePool(
            name=pool,
            nodes=len(members[pool]),
            allocatable=Amounts.total(members[pool]),
            allocated=Amounts.total(held.get(pool, ())),
        )
        for pool in sorted(members)
    ]


@dataclass
class UsageTracker:
    """Each workload's share, kept between cycles and worked out again only when what was
    observed of it is not the same objects as before (backends hand out the same lists while
    nothing changed)."""

    _parts: dict[str, tuple[Observed, WorkloadUsage]] = field(default_factory=dict)
    # Whether the last update found any workload's share new, changed or gone.
    changed: bool = True

    def update(self, observation: Observation) -> list[WorkloadUsage]:
        parts: dict[str, tuple[Observed, WorkloadUsage]] = {}
        fresh = 0
        for workload_id in observation.workloads:
            observed = observation.workloads[workload_id]
            kept = self._parts.get(workload_id)
            if (
                kept is not None
                and kept[0].objects is observed.objects
                and kept[0].pods is observed.pods
            ):
                parts[workload_id] = kept
            else:
                parts[workload_id] = (observed, workload_usage(observed))
                fresh += 1
        self.changed = fresh > 0 or len(parts) != len(self._parts)
        self._parts = parts
        return [usage for _, usage in parts.values()]
