"""Why a workload waits: the scheduler's eviction mark, the reconciler's explanation with
figures, Kueue's own conditions; and the explanations from one cycle's usage and quotas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.cluster.backend import Observed
from app.domain.quota import Quota, ResourceQuota
from app.domain.scheduling import Capacity
from app.reconciler.queueing import explain
from app.reconciler.status import WorkloadStatus, derive_status
from app.reconciler.usage import by_project, workload_usage
from tests.cluster import manifests as m

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
QUOTA = ("QuotaExceeded", "Waiting for quota: needs 2 GPUs; project team-a uses 4 of 4 deserved")


def pending_pod(
    name: str = "p", *, conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"runplane.io/project": "team-a"}},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]},
        "status": {"phase": "Pending", "conditions": conditions or []},
    }


def status(
    objects: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    *,
    waiting: tuple[str, str] | None = None,
    previous: WorkloadStatus | None = None,
) -> WorkloadStatus:
    return derive_status(
        workload_type="training",
        desired_phase="Running",
        objects=objects,
        pods=pods,
        applied=True,
        now=NOW,
        pending_timeout=timedelta(minutes=5),
        previous=previous,
        waiting=waiting,
    )


UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
}


def test_the_explanation_replaces_the_bare_wait_and_keeps_the_schedulers_words_on_capacity() -> (
    None
):
    quota = status(m.training("w"), [pending_pod(conditions=[UNSCHEDULABLE])], waiting=QUOTA)
    assert (quota.phase, quota.reason, quota.message) == ("Pending", *QUOTA)
    capacity = ("InsufficientCapacity", "Waiting for capacity: needs 2 GPUs")
    short = status(m.training("w"), [pending_pod(conditions=[UNSCHEDULABLE])], waiting=capacity)
    assert short.reason == "InsufficientCapacity"
    assert short.message == (
        "Waiting for capacity: needs 2 GPUs (the scheduler: Unschedulable: 0/2 nodes are "
        "available: 2 Insufficient nvidia.com/gpu.)"
    )
    # Without an explanation, the scheduler's words as before.
    assert status(m.training("w"), [pending_pod(conditions=[UNSCHEDULABLE])]).reason == (
        "Unschedulable"
    )


def test_an_explanation_never_hides_what_else_is_wrong() -> None:
    stuck = pending_pod()
    stuck["spec"]["nodeName"] = "n1"
    stuck["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {"name": "c", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no"}}}
        ],
    }
    found = status(m.training("w"), [stuck], waiting=QUOTA)
    assert found.reason == "ImagePullBackOff"


def test_an_evicted_workload_is_pending_again_and_says_who_reclaimed_what() -> None:
    mark = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": "project team-a reclaimed 2 GPUs of its deserved quota for workload a1",
    }
    running = WorkloadStatus(phase="Running", message="1/1 pods ready")
    found = status(
        m.training("w"),
        [pending_pod(conditions=[mark, UNSCHEDULABLE])],
        waiting=("InsufficientCapacity", "Waiting for capacity: needs 2 GPUs"),
        previous=running,
    )
    assert (found.phase, found.reason) == ("Pending", "Preempted")
    assert found.message == (
        "Preempted: project team-a reclaimed 2 GPUs of its deserved quota for workload a1; "
        "Waiting for capacity: needs 2 GPUs"
    )


def kueue_workload(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {"name": "job-w-1a2b3", "namespace": "runplane-team-a"},
        "spec": {"active": True, "queueName": "team-a"},
        "status": {"conditions": list(conditions)},
    }


def queued_job() -> list[dict[str, Any]]:
    job = m.training("w", suspend=True)
    job[0]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    return job


def test_kueue_says_why_a_job_it_holds_back_waits_and_its_conditions_show() -> None:
    pending = {
        "type": "QuotaReserved",
        "status": "False",
        "reason": "Pending",
        "message": "couldn't assign flavors to pod set main: insufficient unused quota for "
        "nvidia.com/gpu in flavor runplane, 2 more needed",
        "lastTransitionTime": "2026-01-01T11:59:00Z",
    }
    found = status([*queued_job(), kueue_workload(pending)], [], waiting=QUOTA)
    assert (found.phase, found.reason) == ("Pending", "QuotaExceeded")
    assert found.message == f"Kueue: {pending['message']}"
    (shown,) = [c for c in found.conditions if c.type == "QuotaReserved"]
    assert (shown.status, shown.reason, shown.message) == ("False", "Pending", pending["message"])
    evicted = {
        "type": "Evicted",
        "status": "True",
        "reason": "Preempted",
        "message": "Preempted to accommodate a workload (UID: 1) due to reclamation within the "
        "cohort",
    }
    found = status([*queued_job(), kueue_workload(pending, evicted)], [])
    assert (found.reason, found.message) == ("Preempted", f"Kueue: {evicted['message']}")
    assert {c.type for c in found.conditions} >= {"QuotaReserved", "Evicted"}


def usage_of(objects: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Any:
    return workload_usage(Observed(objects=objects, pods=pods))


def test_explanations_rank_each_projects_queue_by_priority_then_creation() -> None:
    def waiting(wid: str, created: str, priority_class: str | None = None) -> Any:
        job = m.training(wid, gpus=2)
        job[0]["metadata"]["creationTimestamp"] = created
        if priority_class:
            job[0]["spec"]["template"]["spec"]["priorityClassName"] = priority_class
        return usage_of(job, [pending_pod(wid)])

    running = pending_pod("r")
    running["spec"]["nodeName"] = "n1"
    running["status"]["phase"] = "Running"
    parts = {
        "held": usage_of(m.training("held", gpus=4), [running, {**running, "metadata": {
            **running["metadata"], "name": "r2"}}]),
        "old": waiting("old", "2026-01-01T10:00:00Z"),
        "new": waiting("new", "2026-01-01T11:00:00Z"),
        "urgent": waiting("urgent", "2026-01-01T11:30:00Z", "interactive-preemptible"),
    }  # fmt: skip
    quotas = {"team-a": Quota(gpu=ResourceQuota(Decimal(4), Decimal(4)))}
    found = explain(
        parts,
        usage=by_project(parts.values()),
        quotas=quotas,
        capacity=Capacity(Decimal(8), Decimal(4), Decimal(4), Decimal(2)),
    )
    assert set(found) == {"old", "new", "urgent"}
    assert found["urgent"][1].endswith("1st in the project's queue")
    assert found["old"][1].endswith("2nd in the project's queue")
    assert found["new"] == (
        "QuotaExceeded",
        "Waiting for quota: needs 2 GPUs; project team-a uses 4 of 4 deserved (limit 4); "
        "3rd in the project's queue",
    )


def test_only_the_schedulers_preemption_mark_on_a_waiting_pod_says_preempted() -> None:
    """A pod the taint manager marks for deletion was not preempted; nor was a pod still
    running when it was marked (its replacement waits for capacity, plainly)."""
    capacity = ("InsufficientCapacity", "Waiting for capacity: needs 2 GPUs")
    tainted = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
    }
    found = status(
        m.training("w"), [pending_pod(conditions=[tainted, UNSCHEDULABLE])], waiting=capacity
    )
    assert (found.reason, found.message.split(" (")[0]) == capacity
    marked = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": "project team-a reclaimed 2 GPUs of its deserved quota for workload a1",
    }
    leaving = pending_pod("old", conditions=[marked])
    leaving["spec"]["nodeName"] = "n1"
    leaving["status"]["phase"] = "Running"
    found = status(
        m.training("w"),
        [leaving, pending_pod("new", conditions=[UNSCHEDULABLE])],
        waiting=capacity,
    )
    assert not found.message.startswith("Preempted"), found.message


def test_kueue_admission_checks_hold_a_job_with_quota_reserved() -> None:
    """Quota reserved but not admitted yet (an admission check pending): Kueue's words; once
    admitted, Kueue holds nothing back."""
    reserved = {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}
    not_admitted = {
        "type": "Admitted",
        "status": "False",
        "reason": "NoReservation",
        "message": "The workload has not all checks ready",
    }
    found = status([*queued_job(), kueue_workload(reserved, not_admitted)], [])
    assert (found.phase, found.reason) == ("Pending", "WaitingInQueue")
    assert found.message == "Kueue: The workload has not all checks ready"
    # Admitted False with no QuotaReserved condition at all: Kueue's words still.
    found = status([*queued_job(), kueue_workload(not_admitted)], [])
    assert (found.reason, found.message) == (
        "WaitingInQueue",
        "Kueue: The workload has not all checks ready",
    )
    admitted = {"type": "Admitted", "status": "True", "reason": "Admitted"}
    found = status([*queued_job(), kueue_workload(reserved, admitted)], [])
    assert not found.message.startswith("Kueue"), found.message
