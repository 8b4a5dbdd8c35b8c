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
from app.domain import kinds, scheduling
from app.domain.labels import GPU_RESOURCE, KUEUE_QUEUE_LABEL, PROJECT_LABEL
from app.domain.quantity import quantity_value
from app.domain.resources import (
    NOTHING,
    Amounts,
    ProjectUsage,
    pod_requests,
    pod_templates,
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
    # For its place in its project's queue and why it waits: the GPUs of its largest waiting
    # pod, its priority, whether it may be preempted, when it was created.
    largest_waiting: Decimal = Decimal(0)
    priority: int = 0
    preemptible: bool = True
    created: str = ""


@dataclass(frozen=True, slots=True)
class NodePool:
    name: str
    nodes: int
    allocatable: Amounts
    allocated: Amounts
    largest_node: Decimal = Decimal(0)  # GPUs of its largest node
    largest_free: Decimal = Decimal(0)  # the most GPUs free on one of its nodes

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nodes": self.nodes,
            "allocatable": self.allocatable.to_dict(),
            "allocated": self.allocated.to_dict(),
            "largest_node": str(self.largest_node),
            "largest_free": str(self.largest_free),
        }

    @property
    def free(self) -> Amounts:
        left = self.allocatable - self.allocated
        zero = Decimal(0)
        return Amounts(max(left.gpu, zero), max(left.cpu, zero), max(left.memory, zero))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(obj.get("metadata")).get("labels"))


def _queued(obj: Mapping[str, Any]) -> list[Amounts]:
    """What a job its queue holds back (suspended, Kueue's label) would ask for when admitted,
    pod by pod."""
    kind = kinds.of(obj)
    if kind is None or not kind.finite or not _labels(obj).get(KUEUE_QUEUE_LABEL):
        return []
    spec = _mapping(obj.get("spec"))
    suspended = _mapping(spec.get("runPolicy")).get("suspend") if kind.replica_specs else None
    if (suspended if kind.replica_specs else spec.get("suspend")) is not True:
        return []
    return [template_requests(t) for t, count in pod_templates(obj) for _ in range(count)]


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
    main: Mapping[str, Any] | None = None
    for obj in observed.objects:
        project = project or _labels(obj).get(PROJECT_LABEL)
        kind = kinds.of(obj)
        if kind is not None and kind.owner_rank is not None:
            rank = kind.owner_rank
            if main is None or rank < ((kinds.of(main) or kind).owner_rank or 0):
                main = obj
        if not observed.pods and not deactivated:
            waiting += _queued(obj)
    templates = pod_templates(main) if main is not None else []
    priority, preemptible = scheduling.of_object(main or {}, templates[0][0] if templates else {})
    created = _mapping((main or {}).get("metadata")).get("creationTimestamp")
    return WorkloadUsage(
        project=project,
        allocated=Amounts.total(allocated),
        waiting=Amounts.total(waiting),
        placed=tuple(placed),
        largest_waiting=max((a.gpu for a in waiting), default=Decimal(0)),
        priority=priority,
        preemptible=preemptible,
        created=str(created or ""),
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
    free: dict[str, Decimal] = {}  # GPUs free by node
    for node in nodes:
        meta = _mapping(node.get("metadata"))
        pool = str(_mapping(meta.get("labels")).get(label_key) or DEFAULT_POOL)
        name = str(meta.get("name"))
        pool_of[name] = pool
        offered = node_amounts(node)
        members.setdefault(pool, []).append(offered)
        free[name] = offered.gpu
    held: dict[str, list[Amounts]] = {}
    for node_name, amounts in placed:
        found = pool_of.get(node_name)
        if found is not None:
            held.setdefault(found, []).append(amounts)
            free[node_name] -= amounts.gpu
    zero = Decimal(0)
    return [
        NodePool(
            name=pool,
            nodes=len(members[pool]),
            allocatable=Amounts.total(members[pool]),
            allocated=Amounts.total(held.get(pool, ())),
            largest_node=max(a.gpu for a in members[pool]),
            largest_free=max(
                (max(f, zero) for n, f in free.items() if pool_of[n] == pool), default=zero
            ),
        )
        for pool in sorted(members)
    ]


def capacity(
    nodes: Sequence[Mapping[str, Any]], placed: Iterable[tuple[str, Amounts]]
) -> scheduling.Capacity:
    """The cluster's GPUs in all and free, overall and on its best node."""
    offered = {str(_mapping(n.get("metadata")).get("name")): node_amounts(n).gpu for n in nodes}
    free = dict(offered)
    for node_name, amounts in placed:
        if node_name in free:
            free[node_name] -= amounts.gpu
    zero = Decimal(0)
    return scheduling.Capacity(
        total=sum(offered.values(), zero),
        largest_node=max(offered.values(), default=zero),
        free=sum((max(f, zero) for f in free.values()), zero),
        largest_free=max((max(f, zero) for f in free.values()), default=zero),
    )


@dataclass
class UsageTracker:
    """Each workload's share, kept between cycles and worked out again only when what was
    observed of it is not the same objects as before (backends hand out the same lists while
    nothing changed)."""

    _parts: dict[str, tuple[Observed, WorkloadUsage]] = field(default_factory=dict)
    # Whether the last update found any workload's share new, changed or gone.
    changed: bool = True

    def update(self, observation: Observation) -> dict[str, WorkloadUsage]:
        """Each observed workload's share, by workload id."""
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
        return {workload_id: usage for workload_id, (_, usage) in parts.items()}
