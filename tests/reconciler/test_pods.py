"""Pods and URLs as a researcher reads them, from objects shaped as the API server shows them."""

from __future__ import annotations

from typing import Any

from app.reconciler.pods import kept_views, main_pod, pod_views
from app.reconciler.urls import workload_urls


def _pod(name: str, labels: dict[str, str], **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "runplane-team-a",
            "labels": labels,
            "ownerReferences": [{"kind": "PyTorchJob", "name": "ddp"}],
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {
                    "name": "pytorch",
                    "image": "pytorch:2",
                    "resources": {"limits": {"nvidia.com/gpu": "2"}},
                }
            ],
        },
        "status": status,
    }


CRASHED = {
    "name": "pytorch",
    "image": "pytorch:2",
    "ready": False,
    "restartCount": 3,
    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
    "lastState": {
        "terminated": {
            "reason": "OOMKilled",
            "exitCode": 137,
            "startedAt": "2026-01-01T00:00:10Z",
            "finishedAt": "2026-01-01T00:00:20Z",
        }
    },
}


def test_each_pod_shows_role_node_state_and_the_reason_of_its_containers() -> None:
    worker = _pod(
        "ddp-worker-0",
        {"runplane.io/role": "worker"},
        phase="Running",
        startTime="2026-01-01T00:00:05Z",
        conditions=[{"type": "Ready", "status": "False"}],
        containerStatuses=[CRASHED],
    )
    master = _pod(
        "ddp-master-0",
        {"training.kubeflow.org/replica-type": "Master"},
        phase="Running",
        conditions=[{"type": "Ready", "status": "True"}],
        containerStatuses=[
            {
                "name": "pytorch",
                "image": "pytorch:2",
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-01T00:00:09Z"}},
            }
        ],
    )
    views = pod_views([worker, master])
    assert [(v["name"], v["role"]) for v in views] == [
        ("ddp-master-0", "master"),
        ("ddp-worker-0", "worker"),
    ]
    assert main_pod(views) == views[0]
    crashed = views[1]
    assert crashed["node"] == "node-1"
    assert crashed["ready"] is False
    assert crashed["restarts"] == 3
    assert crashed["gpus"] == 2
    assert crashed["startTime"] == "2026-01-01T00:00:05Z"
    (container,) = crashed["containers"]
    assert container["state"] == "waiting"
    assert container["reason"] == "CrashLoopBackOff"
    assert container["lastState"] == {
        "state": "terminated",
        "reason": "OOMKilled",
        "exitCode": 137,
        "startedAt": "2026-01-01T00:00:10Z",
        "finishedAt": "2026-01-01T00:00:20Z",
    }
    assert views[0]["containers"][0]["state"] == "running"


def test_an_unscheduled_pod_says_why_and_a_fraction_is_its_portion() -> None:
    pod = _pod(
        "nb-0",
        {},
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
            }
        ],
    )
    pod["metadata"]["ownerReferences"] = [{"kind": "StatefulSet", "name": "nb"}]
    pod["metadata"]["annotations"] = {"gpu-fraction": "0.5"}
    del pod["spec"]["nodeName"]
    (view,) = pod_views([pod])
    assert view["role"] == "replica"
    assert view["node"] is None
    assert view["gpus"] == 0.5
    assert view["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in view["message"]
    # Not created yet: the container is listed, waiting, with its image.
    assert view["containers"] == [
        {"name": "pytorch", "image": "pytorch:2", "ready": False, "restarts": 0, "state": "waiting"}
    ]


def test_a_finished_workload_keeps_its_pods_final_states_once_they_are_gone() -> None:
    final = pod_views([_pod("t-abcde", {}, phase="Succeeded")])
    assert kept_views(previous=final, observed=[], phase="Completed") == final
    assert kept_views(previous=final, observed=[], phase="Deleted") == final
    # A stopped workload's pods are really gone.
    assert kept_views(previous=final, observed=[], phase="Stopped") == []


def _service(name: str, service_type: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": service_type,
        "clusterIP": "10.96.0.7",
        "ports": [{"name": "jupyter", "port": 8888, **extra.pop("port", {})}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "runplane-team-a"},
        "spec": spec,
        **extra,
    }


def test_urls_in_cluster_node_port_and_load_balancer_once_assigned() -> None:
    objects = [
        _service("nb", "ClusterIP"),
        _service("nb-nodeport", "NodePort", port={"nodePort": 31001}),
        _service("nb-lb", "LoadBalancer", port={"nodePort": 31002}, status={"loadBalancer": {}}),
    ]
    urls = workload_urls("interactive", objects)
    assert [(u["type"], u["host"], u["port"]) for u in urls] == [
        ("ClusterIP", "nb.runplane-team-a.svc", 8888),
        ("ClusterIP", "nb-nodeport.runplane-team-a.svc", 8888),
        ("ClusterIP", "nb-lb.runplane-team-a.svc", 8888),
        ("NodePort", None, 31001),
        ("NodePort", None, 31002),
    ]
    assert urls[0]["url"] == "http://nb.runplane-team-a.svc:8888"
    objects[2]["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}
    assert workload_urls("interactive", objects)[-1] == {
        "type": "LoadBalancer",
        "name": "jupyter",
        "host": "203.0.113.9",
        "port": 8888,
        "url": "http://203.0.113.9:8888",
    }


def test_no_urls_for_a_headless_service_or_a_training() -> None:
    headless = _service("ddp", "ClusterIP")
    headless["spec"]["clusterIP"] = "None"
    assert workload_urls("inference", [headless]) == []
    assert workload_urls("training", [_service("t", "ClusterIP")]) == []
