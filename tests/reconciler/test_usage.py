"""Usage and node pools from what the cluster shows: pure, from plain objects."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from app.cluster.backend import Observation, Observed
from app.domain.resources import Amounts, pod_requests
from app.reconciler.usage import UsageTracker, by_project, node_pools, workload_usage
from tests.cluster import manifests as m

GI = 1024**3


def pod(
    name: str,
    *,
    node: str | None,
    phase: str = "Running",
    gpus: str | None = "2",
    project: str = "team-a",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "500m", "memory": "1Gi"}}
    if gpus is not None:
        resources["limits"] = {"nvidia.com/gpu": gpus}
    spec: dict[str, Any] = {"containers": [{"name": "main", "resources": resources}]}
    if node:
        spec["nodeName"] = node
    return {
        "metadata": {
            "name": name,
            "labels": {"runplane.io/project": project},
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def test_a_pods_request_is_its_containers_or_its_largest_init_container() -> None:
    p = pod("p", node="n")
    p["spec"]["containers"].append({"name": "side", "resources": {"limits": {"cpu": "1"}}})
    p["spec"]["initContainers"] = [{"name": "init", "resources": {"requests": {"memory": "8Gi"}}}]
    # A request left out defaults to the limit: the sidecar asks for 1 CPU.
    assert pod_requests(p) == Amounts(Decimal(2), Decimal("1.5"), Decimal(8 * GI))


def test_a_gpu_fraction_counts_as_its_portion() -> None:
    p = pod("p", node="n", gpus=None, annotations={"gpu-fraction": "0.5"})
    assert pod_requests(p).gpu == Decimal("0.5")


def test_scheduled_pods_are_allocated_unscheduled_ones_wait_finished_ones_hold_nothing() -> None:
    usage = workload_usage(
        Observed(
            objects=[],
            pods=[
                pod("a", node="node-1"),
                pod("b", node=None, phase="Pending"),
                pod("c", node="node-1", phase="Succeeded"),
                pod("d", node="node-2", phase="Failed"),
            ],
        )
    )
    assert usage.project == "team-a"
    assert usage.allocated == Amounts(Decimal(2), Decimal("0.5"), Decimal(GI))
    assert usage.waiting == Amounts(Decimal(2), Decimal("0.5"), Decimal(GI))
    assert [node for node, _ in usage.placed] == ["node-1"]


def test_a_job_its_queue_holds_back_waits_for_its_whole_size() -> None:
    job = m.training("w", gpus=2, parallelism=3, completions=5, suspend=True)
    job[0]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    usage = workload_usage(Observed(objects=job, pods=[]))
    assert usage.waiting.gpu == 6  # 3 pods at a time
    assert usage.allocated.gpu == 0
    # Stopped through Kueue (its Workload deactivated): it does not wait for anything.
    kueue_workload = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload"}
    stopped = [*job, {**kueue_workload, "spec": {"active": False}}]
    assert not workload_usage(Observed(objects=stopped, pods=[])).waiting
    # Without a queue, a suspended job is stopped, not waiting.
    assert not workload_usage(Observed(objects=m.training("w", suspend=True), pods=[])).waiting


def test_a_queued_kubeflow_job_waits_for_every_replica() -> None:
    job = m.kubeflow("PyTorchJob", "w", workers=3, gpus=2, suspend=True)
    job[0]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    assert workload_usage(Observed(objects=job, pods=[])).waiting.gpu == 8


def test_usage_adds_up_by_project() -> None:
    parts = [
        workload_usage(Observed(pods=[pod("a", node="n1")])),
        workload_usage(Observed(pods=[pod("b", node="n1"), pod("c", node=None)])),
        workload_usage(Observed(pods=[pod("d", node="n2", project="team-b", gpus="1")])),
    ]
    usage = by_project(parts)
    assert usage["team-a"].allocated.gpu == 4
    assert usage["team-a"].waiting.gpu == 2
    assert usage["team-b"].allocated.gpu == 1
    assert usage["team-a"].to_dict()["allocated"] == {"gpu": "4", "cpu": "1", "memory": str(2 * GI)}


def node(name: str, pool: str | None, gpus: int) -> dict[str, Any]:
    labels = {"runplane.io/node-pool": pool} if pool else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "32", "memory": "256Gi"}},
    }


def test_node_pools_group_nodes_by_their_label() -> None:
    nodes = [node("a1", "a100", 8), node("a2", "a100", 8), node("h1", None, 4)]
    placed = [("a1", Amounts(gpu=Decimal(6))), ("h1", Amounts(gpu=Decimal(1))), ("gone", Amounts())]
    pools = node_pools(nodes, placed, label_key="runplane.io/node-pool")
    seen = [
        (p.name, p.nodes, int(p.allocatable.gpu), int(p.allocated.gpu), int(p.free.gpu))
        for p in pools
    ]
    assert seen == [("a100", 2, 16, 6, 10), ("default", 1, 4, 1, 3)]
    assert pools[0].allocatable.memory == 512 * GI


def test_the_tracker_works_a_workload_out_again_only_when_it_changed() -> None:
    tracker = UsageTracker()
    same = Observed(pods=[pod("a", node="n1")])
    first = tracker.update(Observation(workloads={"w": same}, list_calls=1))
    assert tracker.changed
    again = tracker.update(Observation(workloads={"w": same}, list_calls=1))
    assert not tracker.changed
    assert again["w"] is first["w"]
    moved = Observed(pods=[pod("a", node="n1", phase="Succeeded")])
    assert not tracker.update(Observation(workloads={"w": moved}, list_calls=1))["w"].allocated
    assert tracker.changed
    tracker.update(Observation(workloads={}, list_calls=1))
    assert tracker.changed  # one is gone
