"""Quotas through the real Kueue (v0.17.0's manager, ``kube_kueue``): Runplane's API and its
reconciler against the test control plane, where kwok's node offers 8 ``nvidia.com/gpu``.

A project with 2 GPUs deserved (``scheduler: kueue``) gets its ClusterQueue and LocalQueue from
the reconciler; of two 2-GPU trainings Kueue admits one, the other is Pending with Kueue's own
words and starts when the first finishes. Suspend and resume go through Kueue's Workload
(``spec.active``): Runplane never writes the Job's ``suspend`` again once Kueue owns it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes.client import ApiClient

from app.cluster.kubernetes import KubernetesBackend
from app.config import Settings
from app.db import BlockingDatabase
from app.main import create_app
from app.reconciler.loop import Reconciler
from tests.conftest import AUTH
from tests.kube import testenv
from tests.kube.helpers import get, list_objects
from tests.kube.test_operators import Runplane

pytestmark = pytest.mark.kube

RUN_SECONDS = 12


def submit(rp: Runplane, name: str) -> None:
    """A 2-GPU training of project ``kq`` that kwok runs for RUN_SECONDS, then succeeds."""
    spec = {
        "image": "trainer:1",
        "compute": {"gpuDevicesRequest": 2},
        "annotations": {
            "simulation.runplane.io/outcome": "succeed",
            "simulation.runplane.io/run-seconds": str(RUN_SECONDS),
        },
    }
    r = rp.client.post(
        "/api/v1/workloads/trainings", json={"name": name, "project": "kq", "spec": spec}
    )
    assert r.status_code == 201, r.text
    rp.ids[name] = r.json()["id"]


@pytest.fixture
def runplane(
    kube_kueue: testenv.KueueManager, db: BlockingDatabase, settings: Settings
) -> Iterator[Runplane]:
    backend = KubernetesBackend(
        api_client=kube_kueue.control_plane.api_client(), qps=200, burst=400
    )
    app = create_app(settings.model_copy(update={"scheduler": "kueue"}), reconcile=False)
    with TestClient(app, headers=AUTH) as client:
        yield Runplane(
            client,
            Reconciler(db=db, backend=backend, pending_timeout=60, default_scheduler="kueue"),
        )
    backend.close()


def phases(seen: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(w["phase"] for w in seen.values())


def test_two_trainings_on_two_deserved_gpus_take_turns_through_kueue(
    runplane: Runplane, kube_api: ApiClient, kube_namespace: str
) -> None:
    rp = runplane
    r = rp.client.post(
        "/api/v1/projects",
        json={"name": "kq", "namespace": kube_namespace, "quota": {"gpu": {"deserved": 2}}},
    )
    assert r.status_code == 201, r.text
    submit(rp, "first")
    submit(rp, "second")

    # Kueue admits one; the other waits with Kueue's words.
    seen = rp.until(
        "one Running, one Pending",
        lambda ws: (
            phases(ws) == ["Pending", "Running"]
            and any(w["phaseMessage"].startswith("Kueue: ") for w in ws.values())
        ),
    )
    waiting = next(n for n, w in seen.items() if w["phase"] == "Pending")
    running = next(n for n in seen if n != waiting)
    body = seen[waiting]
    assert body["phaseMessage"].startswith("Kueue: couldn't assign flavors"), body
    assert "insufficient unused quota for nvidia.com/gpu" in body["phaseMessage"]
    reserved = {c["type"]: c for c in body["conditions"]}["QuotaReserved"]
    assert (reserved["status"], reserved["reason"]) == ("False", "Pending")
    assert {c["type"] for c in seen[running]["conditions"]} >= {"QuotaReserved", "Admitted"}
    project = rp.client.get("/api/v1/projects/kq").json()
    assert project["cluster"] == {"synced": True, "message": ""}
    assert (project["usage"]["gpu"]["allocated"], project["usage"]["gpu"]["waiting"]) == (2, 2)
    cluster_queue = get(kube_api, "kueue.x-k8s.io/v1beta2", "ClusterQueue", kube_namespace)
    assert cluster_queue is not None
    assert cluster_queue["spec"]["cohortName"] == "runplane"

    # The first finishes: the second is admitted and runs.
    rp.until(
        "the waiting one running",
        lambda ws: ws[running]["phase"] == "Completed" and ws[waiting]["phase"] == "Running",
        timeout=120,
    )

    # Suspend through Kueue: its Workload deactivated, Kueue suspends the Job.
    r = rp.client.post(f"/api/v1/workloads/{rp.ids[waiting]}/suspend")
    assert r.status_code == 202
    rp.until("stopped", lambda ws: ws[waiting]["phase"] == "Stopped")
    (queued,) = [
        w
        for w in list_objects(kube_api, "kueue.x-k8s.io/v1beta2", "Workload", kube_namespace)
        if any(o["name"] == waiting for o in w["metadata"].get("ownerReferences") or ())
    ]
    assert queued["spec"]["active"] is False
    job = get(kube_api, "batch/v1", "Job", waiting, kube_namespace)
    assert job is not None
    assert job["spec"]["suspend"] is True
    # What Runplane wrote to stop it is the Workload's spec.active, nothing of the Job's.
    writers = {m["manager"]: str(m.get("fieldsV1")) for m in queued["metadata"]["managedFields"]}
    assert "f:active" in writers["runplane"]
    # Resume through Kueue: admitted again, it runs, and stays unsuspended cycle after cycle.
    r = rp.client.post(f"/api/v1/workloads/{rp.ids[waiting]}/resume")
    assert r.status_code == 202
    rp.until("running again", lambda ws: ws[waiting]["phase"] == "Running")
    for _ in range(3):
        rp.reconciler.cycle()
        job = get(kube_api, "batch/v1", "Job", waiting, kube_namespace)
        assert job is not None
        assert job["spec"]["suspend"] is False
    rp.until("completed", lambda ws: ws[waiting]["phase"] == "Completed", timeout=120)
