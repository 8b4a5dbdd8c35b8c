"""Why each waiting workload waits, with figures: pure, from one cycle's observation.

Every workload that asks for GPUs its pods do not have yet gets its place in its project's
queue (priority, then creation) and :func:`app.domain.scheduling.verdict`'s reason and words,
from its project's quota and what the project holds now, and the cluster's free capacity
(what other projects borrowed over their quota counts as free for a workload within its own,
since the scheduler reclaims it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

from app.domain import scheduling
from app.domain.quota import NO_QUOTA, Quota
from app.domain.resources import ProjectUsage
from app.reconciler.usage import WorkloadUsage

Explanation = tuple[str, str]  # (reason, message)
_REASONS: Mapping[str, str] = {
    "WaitsForQuota": "QuotaExceeded",
    "WaitsForCapacity": "InsufficientCapacity",
    "StartsNow": "WaitingInQueue",
}


def explain(
    parts: Mapping[str, WorkloadUsage],
    *,
    usage: Mapping[str, ProjectUsage],
    quotas: Mapping[str, Quota],
    capacity: scheduling.Capacity | None,
) -> dict[str, Explanation]:
    """By workload id, why each workload that waits for GPUs waits."""
    queues: dict[str, list[tuple[int, str, str, WorkloadUsage]]] = {}
    for workload_id, part in parts.items():
        if part.project and part.waiting.gpu > 0:
            queues.setdefault(part.project, []).append(
                (-part.priority, part.created, workload_id, part)
            )
    if not queues:
        return {}
    borrowed = _borrowed(parts, usage, quotas)
    out: dict[str, Explanation] = {}
    for project, queue in queues.items():
        queue.sort(key=lambda item: item[:3])
        quota = (quotas.get(project) or NO_QUOTA).gpu
        used = usage[project].allocated.gpu if project in usage else Decimal(0)
        room = capacity
        if capacity is not None:
            others = sum((b for p, b in borrowed.items() if p != project), Decimal(0))
            room = replace(capacity, reclaimable=others)
        for position, (_, _, workload_id, part) in enumerate(queue, start=1):
            verdict = scheduling.verdict(
                project=project,
                request=part.waiting.gpu,
                largest_pod=part.largest_waiting,
                is_preemptible=part.preemptible,
                quota=quota,
                used=used,
                capacity=room,
                position=position,
            )
            if verdict.outcome == "StartsNow":
                message = verdict.message.replace("Starts now:", "Waiting for the scheduler:", 1)
                out[workload_id] = (
                    "WaitingInQueue",
                    f"{message}; {scheduling.ordinal(position)} in the project's queue",
                )
            else:
                out[workload_id] = (_REASONS.get(verdict.outcome, verdict.reason), verdict.message)
    return out


def _borrowed(
    parts: Mapping[str, WorkloadUsage],
    usage: Mapping[str, ProjectUsage],
    quotas: Mapping[str, Quota],
) -> dict[str, Decimal]:
    """By project, the GPUs its preemptible workloads hold over its deserved quota."""
    preemptible: dict[str, Decimal] = {}
    for part in parts.values():
        if part.project and part.preemptible and part.allocated.gpu:
            preemptible[part.project] = (
                preemptible.get(part.project, Decimal(0)) + part.allocated.gpu
            )
    out: dict[str, Decimal] = {}
    for project, held in preemptible.items():
        deserved = (quotas.get(project) or NO_QUOTA).gpu.deserved
        if deserved is None or project not in usage:
            continue
        over = usage[project].allocated.gpu - deserved
        if over > 0:
            out[project] = min(over, held)
    return out
