"""The researcher's view against a real kube-apiserver (kwok nodes): pods, cluster events and
URLs as the API shows them, from the kubernetes backend's watched cache and the reconciler."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.cluster.kubernetes import KubernetesBackend
from app.config import Settings
from app.db import BlockingDatabase
from app.main import create_app
from app.reconciler.loop import Reconciler
from tests.conftest import AUTH
from tests.kube import testenv
from tests.kube.helpers import wait_for

pytestmark = pytest.mark.kube

OUTCOME = "simulation.runplane.io/outcome"


def test_pods_events_and_urls_on_the_real_control_plane(
    kube_control_plane: testenv.ControlPlane,
    kube_namespace: str,
    db: BlockingDatabase,
    settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    backend = KubernetesBackend(api_client=kube_control_plane.api_client(), qps=200, burst=400)
    request.addfinalizer(backend.close)  # also when the test fails
    reconciler = Reconciler(db=db, backend=backend, pending_timeout=300)
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as c:
        r = c.post("/api/v1/projects", json={"name": "view", "namespace": kube_namespace})
        assert r.status_code == 201, r.text
        ids = {}
        for name, (collection, spec) in {
            "train": ("trainings", {"image": "busybox"}),
            "bad": ("trainings", {"image": "nope:1", "annotations": {OUTCOME: "image-pull-error"}}),
            "nb": (
                "interactives",
                {
                    "image": "jupyter/base-notebook",
                    "ports": [
                        {"name": "lab", "container": 8888},
                        {"name": "ssh", "container": 22, "serviceType": "NodePort"},
                    ],
                },
            ),
        }.items():
            r = c.post(
                f"/api/v1/workloads/{collection}",
                json={"name": name, "project": "view", "spec": spec},
            )
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]

        def get(name: str, what: str = "") -> Any:
            return c.get(f"/api/v1/workloads/{ids[name]}{what}").json()

        def cluster_events(name: str) -> list[dict[str, Any]]:
            items = get(name, "/events?limit=500")["items"]
            return [e for e in items if e["source"] == "kubernetes"]

        def settled() -> bool:
            reconciler.cycle()
            pulls = get("bad", "/pods")["items"]
            return (
                get("train")["phase"] == "Completed"
                and get("nb")["phase"] == "Running"
                and bool(pulls)
                and pulls[0]["containers"][0].get("reason") in ("ErrImagePull", "ImagePullBackOff")
                and any(e["reason"] == "Failed" for e in cluster_events("bad"))
            )

        wait_for("the workloads to settle", settled, timeout=120, interval=1)

        (pod,) = get("train", "/pods")["items"]
        assert pod["role"] == "worker"
        assert pod["node"]
        assert pod["phase"] == "Succeeded"
        assert pod["containers"][0]["state"] == "terminated"
        assert pod["containers"][0]["exitCode"] == 0
        # The scheduler's event about the pod, in the workload's timeline.
        scheduled = [e for e in cluster_events("train") if e["reason"] == "Scheduled"]
        assert scheduled
        assert scheduled[0]["involvedObject"] == {"kind": "Pod", "name": pod["name"]}

        (bad,) = get("bad", "/pods")["items"]
        assert "nope:1" in bad["containers"][0]["message"]
        failed = [e for e in cluster_events("bad") if e["reason"] == "Failed"]
        assert failed[0]["type"] == "Warning"

        urls = {u["type"]: u for u in reversed(get("nb")["urls"])}
        assert urls["ClusterIP"]["host"] == f"nb.{kube_namespace}.svc"
        assert urls["ClusterIP"]["port"] == 8888
        assert 30000 <= urls["NodePort"]["port"] <= 32767  # allocated by the API server

        # The warnings outlive the workload's objects.
        assert c.delete(f"/api/v1/workloads/{ids['bad']}").status_code == 202

        def deleted() -> bool:
            reconciler.cycle()
            return bool(get("bad")["phase"] == "Deleted")

        wait_for("the failing training to be deleted", deleted, timeout=90, interval=1)
        assert any(e["reason"] == "Failed" for e in cluster_events("bad"))
