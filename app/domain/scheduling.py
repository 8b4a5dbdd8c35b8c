"""How quotas decide when a workload starts, in KAI-Scheduler's and Run:ai's model: pure.

- Priority: a workload's ``priorityClass`` by KAI's default classes (``inference`` 125, ``build``
  100, ``interactive-preemptible`` 75, ``train`` 50); without one, by its type (interactive:
  build, inference: inference, training and distributed: train); an unknown class counts 0.
- Preemptibility: ``preemptibility`` when set, else preemptible below priority 100 (KAI's rule).
- Within its deserved quota a workload starts when capacity allows. Only a preemptible workload
  runs over quota, up to the limit, on idle capacity (shared among projects by
  ``overQuotaWeight``; weight 0 borrows nothing); a non-preemptible one never runs over quota.

:func:`verdict` says whether a workload of a given size would start now, wait for quota, wait for
capacity, or cannot start, with the figures, from a project's quota and usage and the cluster's
free capacity. The reconciler explains waiting workloads with it and a dry run answers with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from app.domain.labels import KAI_PREEMPTIBILITY_LABEL, WORKLOAD_TYPE_LABEL
from app.domain.quota import ResourceQuota

PRIORITY_CLASSES: Mapping[str, int] = {
    "inference": 125,
    "build": 100,
    "interactive-preemptible": 75,
    "train": 50,
}
DEFAULT_CLASS: Mapping[str, str] = {
    "interactive": "build",
    "inference": "inference",
    "training": "train",
    "distributed": "train",
}
NON_PREEMPTIBLE_FROM = 100


def priority(priority_class: str | None, workload_type: str | None) -> int:
    name = priority_class or DEFAULT_CLASS.get(workload_type or "", "train")
    return PRIORITY_CLASSES.get(name, 0)


def preemptible(preemptibility: str | None, priority_value: int) -> bool:
    if preemptibility in ("preemptible", "non-preemptible"):
        return preemptibility == "preemptible"
    return priority_value < NON_PREEMPTIBLE_FROM


def of_object(obj: Mapping[str, Any], template: Mapping[str, Any]) -> tuple[int, bool]:
    """(priority, preemptible) of a workload from its main object and a pod template of it."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    spec = template.get("spec") or {}
    value = priority(spec.get("priorityClassName"), labels.get(WORKLOAD_TYPE_LABEL))
    return value, preemptible(labels.get(KAI_PREEMPTIBILITY_LABEL), value)


# --- why a workload waits -------------------------------------------------------------------------

Reason = Literal["QuotaExceeded", "InsufficientCapacity", "WaitingInQueue"]
Outcome = Literal["StartsNow", "WaitsForQuota", "WaitsForCapacity", "CannotStart"]


@dataclass(frozen=True, slots=True)
class Capacity:
    """The cluster's GPUs: in all, on its largest node, free now, and the most free on one
    node; ``reclaimable``: what other projects' preemptible workloads hold over their quota."""

    total: Decimal
    largest_node: Decimal
    free: Decimal
    largest_free: Decimal
    reclaimable: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: Reason | Literal["Admissible"]
    message: str


def gpus(amount: Decimal) -> str:
    """``2 GPUs``, ``1 GPU``, ``0.5 GPU``, ``0 GPUs``."""
    text = format(amount.normalize(), "f")
    return f"{text} GPU" if 0 < amount <= 1 else f"{text} GPUs"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def number(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def quota_words(project: str, quota: ResourceQuota, used: Decimal) -> str:
    if quota.deserved is None:
        return f"project {project} uses {gpus(used)} (not limited)"
    limit = "no limit" if quota.limit is None else f"limit {number(quota.limit)}"
    return f"project {project} uses {number(used)} of {number(quota.deserved)} deserved ({limit})"


def verdict(
    *,
    project: str,
    request: Decimal,
    largest_pod: Decimal,
    is_preemptible: bool,
    quota: ResourceQuota,
    used: Decimal,
    capacity: Capacity | None,
    position: int | None = None,
) -> Verdict:
    """Whether ``request`` GPUs (pods of at most ``largest_pod``) of ``project`` would start now.

    ``used`` is what the project holds now; ``capacity`` the cluster's (None: unknown);
    ``position`` the workload's place among the project's waiting workloads (1 = first).
    """
    queue = f"; {ordinal(position)} in the project's queue" if position else ""
    needs = f"needs {gpus(request)}; {quota_words(project, quota, used)}"
    cap = quota.cap
    never = ", and a non-preemptible workload never runs over quota"
    if cap is not None and request > cap:
        return Verdict(
            "CannotStart",
            "QuotaExceeded",
            f"Cannot start: needs {gpus(request)}, more than project {project}'s limit of "
            f"{number(cap)}",
        )
    if not is_preemptible and quota.deserved is not None and request > quota.deserved:
        return Verdict(
            "CannotStart",
            "QuotaExceeded",
            f"Cannot start: needs {gpus(request)}, more than project {project}'s deserved "
            f"{number(quota.deserved)}{never}",
        )
    if capacity is not None and (request > capacity.total or largest_pod > capacity.largest_node):
        where = "in all" if request > capacity.total else "in all, and no node has room for a pod"
        return Verdict(
            "CannotStart",
            "InsufficientCapacity",
            f"Cannot start: needs {gpus(request)}; the cluster has {gpus(capacity.total)} {where}",
        )
    over_limit = cap is not None and used + request > cap
    within = quota.deserved is None or used + request <= quota.deserved
    if over_limit or (not within and (not is_preemptible or quota.over_quota_weight == 0)):
        why = "" if over_limit or is_preemptible else never
        return Verdict("WaitsForQuota", "QuotaExceeded", f"Waiting for quota: {needs}{why}{queue}")
    if capacity is not None:
        # Within its deserved quota a workload takes back what others borrowed.
        free = capacity.free + (capacity.reclaimable if within else 0)
        if request > free or (largest_pod > capacity.largest_free and not within):
            room = (
                f"{gpus(capacity.free)} free in the cluster, at most "
                f"{number(capacity.largest_free)} on one node"
            )
            return Verdict(
                "WaitsForCapacity",
                "InsufficientCapacity",
                f"Waiting for capacity: {needs}; {room}{queue}",
            )
    how = "" if within else " (over quota, on idle capacity: it may be preempted)"
    return Verdict("StartsNow", "Admissible", f"Starts now: {needs}{how}")
