"""Distributed workloads through Runplane's API against the real Kubeflow operators.

The training operator (PyTorchJob, TFJob) and the MPI operator (MPIJob) run as processes against
the test control plane (``kube_operators``); the native PyTorch rendering runs through the real
Job controller. kwok plays each pod's fate from the annotation ``simulation.runplane.io/outcome``
(``tests/kube/kwok-outcomes.yaml``), which the workloads set in their spec's annotations, as they
would against the simulated cluster.

Each framework runs five workloads at once, submitted while the node is cordoned, so that each is
seen ``Pending`` with the scheduler's words before it runs:

- ``ok`` runs a few seconds and succeeds: ``Running`` with every pod, then ``Completed``;
- ``long`` runs on: suspended (the operator removes its pods), resumed, deleted (nothing of it is
  left in the cluster);
- ``fail`` exits with code 3: ``Failed`` with the operator's reason (the training operator's and
  the MPI launcher Job's ``backoffLimit`` once the replicas have restarted six times);
- ``pull`` has a worker that cannot pull its image: the message says so in the next cycle, and
  the pending timeout fails it;
- ``crash`` has a crash-looping replica: ``Degraded`` until the operator gives up (the native
  rendering's pods never restart: it fails at once).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
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
from tests.kube.helpers import apply, get, list_objects, wait_for

pytestmark = pytest.mark.kube

OUTCOME = "simulation.runplane.io/outcome"
RUN_SECONDS = "simulation.runplane.io/run-seconds"
EXIT_CODE = "simulation.runplane.io/exit-code"
PENDING_TIMEOUT = 8.0
NODE = "kwok-node-0"


def fate(outcome: str, run_seconds: int = 3600, **extra: str) -> dict[str, str]:
    return {OUTCOME: outcome, RUN_SECONDS: str(run_seconds), **extra}


def gave_up(reason: str) -> str:
    """The training operator's words when the restarts of ``fail`` reach its backoffLimit."""
    return rf"{reason}: Job fail has failed because it has reached the specified backoff limit"


@dataclass(frozen=True)
class Framework:
    spec: dict[str, Any]
    pods: int  # at full size
    native: bool = False
    # The replica that may have a spec of its own (masterSpec), and the one a test makes crash:
    # "master" (PyTorch's Master, TF's Chief, MPI's Launcher), "workers", or "all" for the
    # renderings with one pod template (elastic, native).
    own_spec: bool = True
    crashing: str = "workers"
    succeeded: str = ""  # the operator's words when it completes
    failed: str = ""  # ... and when it gives up on the workload ``fail``
    crash_fails: bool = False  # restartPolicy Never: a crash fails the workload at once


FRAMEWORKS: dict[str, Framework] = {
    "pytorch": Framework(
        {"distributedFramework": "PyTorch", "numWorkers": 2},
        pods=3,
        succeeded=r"PyTorchJobSucceeded: PyTorchJob ok is successfully completed\.",
        failed=gave_up("PyTorchJobFailed"),
    ),
    "elastic": Framework(
        {"distributedFramework": "PyTorch", "numWorkers": 2, "minReplicas": 1, "maxReplicas": 3},
        pods=2,
        own_spec=False,
        crashing="all",
        succeeded=r"PyTorchJobSucceeded: PyTorchJob \S+/ok successfully completed\.",
        failed=gave_up("PyTorchJobFailed"),
    ),
    "tf": Framework(
        {"distributedFramework": "TF", "numWorkers": 2},
        pods=3,
        succeeded=r"TFJobSucceeded: TFJob \S+/ok successfully completed\.",
        failed=gave_up("TFJobFailed"),
    ),
    "mpi": Framework(
        {"distributedFramework": "MPI", "numWorkers": 2, "slotsPerWorker": 2},
        pods=3,
        crashing="master",  # the launcher restarts (OnFailure); workers (Never) cannot
        succeeded=r"MPIJobSucceeded: MPIJob \S+/ok successfully completed\.",
        failed=r"BackoffLimitExceeded: Job has reached the specified backoff limit; "
        r"pod fail-worker-\d failed: container mpi-worker exited with code 3 \(Error\)"
        r"( \(and \d more\))?",
    ),
    "native": Framework(
        {"distributedFramework": "PyTorch", "numWorkers": 2},
        pods=3,
        native=True,
        own_spec=False,
        crashing="all",
        succeeded=r"(Completions|SuccessCriteriaMet)Reached: Reached expected number of "
        r"succeeded pods",
        failed=r"BackoffLimitExceeded: Job has reached the specified backoff limit; "
        r"pod fail-\d-\w+ failed: container pytorch exited with code 3 \(Error\)"
        r"( \(and \d more\))?",
        crash_fails=True,
    ),
}


def specs(fw: Framework) -> dict[str, dict[str, Any]]:
    """The five workloads of a framework: their specs, fates in the annotations."""

    def with_fates(workers: dict[str, str], master: dict[str, str] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"image": "trainer:1", **fw.spec, "annotations": workers}
        if master is not None:
            spec["masterSpecSameAsWorker"] = False
            spec["masterSpec"] = {"annotations": master}
        return spec

    crash = fate("crash-loop", 1)
    if fw.crashing == "master":
        crashing = with_fates(fate("succeed"), crash)
    elif fw.crashing == "workers":
        crashing = with_fates(crash, fate("succeed"))
    else:
        crashing = with_fates(crash)
    return {
        "ok": with_fates(fate("succeed", 8)),
        "long": with_fates(fate("succeed")),
        "fail": with_fates(fate("fail", 1, **{EXIT_CODE: "3"})),
        "pull": (
            with_fates(fate("image-pull-error"), fate("succeed"))
            if fw.own_spec
            else with_fates(fate("image-pull-error"))
        ),
        "crash": crashing,
    }


# --- driving Runplane ---------------------------------------------------------------------------


@dataclass
class Runplane:
    """Runplane's API and its reconciler against the test cluster, cycled by the test."""

    client: TestClient
    reconciler: Reconciler
    ids: dict[str, str] = field(default_factory=dict)

    def submit(self, project: str, name: str, spec: Mapping[str, Any]) -> None:
        r = self.client.post(
            "/api/v1/workloads/distributed", json={"name": name, "project": project, "spec": spec}
        )
        assert r.status_code == 201, r.text
        self.ids[name] = r.json()["id"]

    def workload(self, name: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/workloads/{self.ids[name]}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def events(self, name: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/v1/workloads/{self.ids[name]}/events", params={"limit": 500})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def phases(self, name: str) -> list[str]:
        """The phases the workload went through, oldest first, from its events."""
        phases: list[str] = []
        for e in self.events(name):
            if not phases or phases[-1] != e["phase"]:
                phases.append(e["phase"])
        return phases

    def post(self, name: str, action: str) -> None:
        if action == "delete":
            r = self.client.delete(f"/api/v1/workloads/{self.ids[name]}")
        else:
            r = self.client.post(f"/api/v1/workloads/{self.ids[name]}/{action}")
        assert r.status_code == 202, r.text

    def until(
        self,
        what: str,
        done: Callable[[dict[str, dict[str, Any]]], bool],
        timeout: float = 90.0,
    ) -> dict[str, dict[str, Any]]:
        """Run reconcile cycles until ``done`` holds for the workloads as the API reads them."""
        deadline = time.monotonic() + timeout
        while True:
            self.reconciler.cycle()
            seen = {name: self.workload(name) for name in self.ids}
            if done(seen):
                return seen
            if time.monotonic() > deadline:
                now = {n: (w["phase"], w["phaseMessage"]) for n, w in seen.items()}
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {now}")
            time.sleep(0.5)


@pytest.fixture
def runplane(
    kube_operators: testenv.KubeflowOperators, db: BlockingDatabase, settings: Settings
) -> Iterator[Callable[[bool], Runplane]]:
    made: list[tuple[TestClient, KubernetesBackend]] = []

    def make(native: bool) -> Runplane:
        backend = KubernetesBackend(
            api_client=kube_operators.control_plane.api_client(), qps=200, burst=400
        )
        app = create_app(settings.model_copy(update={"pytorch_native": native}), reconcile=False)
        client = TestClient(app, headers=AUTH)
        client.__enter__()
        made.append((client, backend))
        return Runplane(client, Reconciler(db=db, backend=backend, pending_timeout=PENDING_TIMEOUT))

    yield make
    for client, backend in made:
        client.__exit__(None, None, None)
        backend.close()


def cordon(api: ApiClient, unschedulable: bool) -> None:
    apply(
        api,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE},
            "spec": {"unschedulable": unschedulable},
        },
        field_manager="runplane-test-cordon",
        force=True,
    )


def leftovers(api: ApiClient, namespace: str, name: str) -> list[str]:
    """Everything in the namespace that belongs to workload ``name``, by the names the
    operators and controllers give what they create."""
    mine = re.compile(rf"^{re.escape(name)}($|-)")
    found = []
    for api_version, kind in (
        ("v1", "Pod"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("batch/v1", "Job"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("kubeflow.org/v1", "PyTorchJob"),
        ("kubeflow.org/v1", "TFJob"),
        ("kubeflow.org/v2beta1", "MPIJob"),
    ):
        for obj in list_objects(api, api_version, kind, namespace):
            meta = obj["metadata"]
            owned_by_it = any(mine.match(o["name"]) for o in meta.get("ownerReferences") or ())
            if mine.match(meta["name"]) or owned_by_it:
                found.append(f"{kind}/{meta['name']}")
    return found


def stuck_pods(api: ApiClient, namespace: str, name: str) -> list[str]:
    """The pods of workload ``name`` that wait on their image."""
    return [
        p["metadata"]["name"]
        for p in list_objects(api, "v1", "Pod", namespace)
        if p["metadata"]["name"].startswith(f"{name}-")
        and any(
            (cs.get("state", {}).get("waiting") or {}).get("reason")
            in ("ErrImagePull", "ImagePullBackOff")
            for cs in p["status"].get("containerStatuses") or ()
        )
    ]


def in_order(seen: list[str], expected: list[str]) -> bool:
    """Whether ``expected`` occurs in ``seen`` in this order (other phases may come between)."""
    it = iter(seen)
    return all(phase in it for phase in expected)


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_distributed_workloads_through_the_real_operators(
    framework: str,
    runplane: Callable[[bool], Runplane],
    kube_api: ApiClient,
    kube_namespace: str,
) -> None:
    fw = FRAMEWORKS[framework]
    rp = runplane(fw.native)
    r = rp.client.post("/api/v1/projects", json={"name": "kube", "namespace": kube_namespace})
    assert r.status_code == 201, r.text

    # Submitted while no node takes pods: each is seen Pending, with the scheduler's words.
    cordon(kube_api, True)
    try:
        for name, spec in specs(fw).items():
            rp.submit("kube", name, spec)
        rp.until(
            "every workload Pending with the scheduler's words",
            lambda ws: all(
                w["phase"] == "Pending" and "node(s) were unschedulable" in w["phaseMessage"]
                for w in ws.values()
            ),
        )
    finally:
        cordon(kube_api, False)

    # ``pull`` shows its stuck worker in the cycle after the pod is stuck.
    stuck = wait_for(
        "a pull pod stuck", lambda: stuck_pods(kube_api, kube_namespace, "pull") or None
    )
    time.sleep(0.2)  # for watch events in flight, should the backend watch
    rp.reconciler.cycle()
    pull = rp.workload("pull")
    assert pull["phase"] in ("Initializing", "Degraded"), pull
    assert any(f"in pod {pod}" in pull["phaseMessage"] for pod in stuck), (stuck, pull)
    assert re.search(
        r"ErrImagePull: container \S+ in pod pull-\S+: rpc error: code = NotFound desc = "
        r'failed to pull and unpack image "trainer:1"',
        pull["phaseMessage"],
    ), pull["phaseMessage"]

    # Running with every pod ready.
    seen = rp.until(
        "ok and long Running with every pod",
        lambda ws: all(
            ws[n]["phase"] == "Running" and ws[n]["pods"]["running"] == fw.pods
            for n in ("ok", "long")
        ),
    )
    for name in ("ok", "long"):
        assert seen[name]["pods"] == {
            "requested": fw.pods,
            "running": fw.pods,
            "pending": 0,
            "succeeded": 0,
            "failed": 0,
        }
        assert seen[name]["phaseMessage"] == f"{fw.pods}/{fw.pods} pods ready"
    if framework == "mpi":  # slotsPerWorker reached the operator: its hostfile
        config = get(kube_api, "v1", "ConfigMap", "ok-config", kube_namespace)
        assert config is not None
        assert "slots=2" in config["data"]["hostfile"]

    # ok completes; fail fails with the operator's reason; pull fails after the pending timeout;
    # crash is Degraded while it crash-loops.
    seen = rp.until(
        "ok Completed, fail and pull Failed",
        lambda ws: (
            ws["ok"]["phase"] == "Completed"
            and ws["fail"]["phase"] == "Failed"
            and ws["pull"]["phase"] == "Failed"
        ),
    )
    assert re.fullmatch(fw.succeeded, seen["ok"]["phaseMessage"]), seen["ok"]["phaseMessage"]
    assert re.fullmatch(fw.failed, seen["fail"]["phaseMessage"]), seen["fail"]["phaseMessage"]
    assert seen["pull"]["phaseMessage"].startswith(
        f"stuck for more than {int(PENDING_TIMEOUT)}s: ErrImagePull: container "
    ), seen["pull"]["phaseMessage"]
    assert in_order(rp.phases("ok"), ["Creating", "Pending", "Running", "Completed"])
    assert in_order(rp.phases("pull"), ["Pending", "Failed"])
    assert "Running" not in rp.phases("pull")
    if not fw.crash_fails:
        # The exit code shows while it restarts, before the operator gives up.
        assert any("last exit code 3 (Error)" in e["message"] for e in rp.events("fail"))
    # crash is Degraded while it crash-loops, until the operator gives up (its backoffLimit).
    seen = rp.until("crash Failed", lambda ws: ws["crash"]["phase"] == "Failed")
    crash_events = rp.events("crash")
    if fw.crash_fails:
        assert "exited with code 1 (Error)" in seen["crash"]["phaseMessage"]
    else:
        assert in_order(rp.phases("crash"), ["Pending", "Degraded", "Failed"])
        degraded = [e["message"] for e in crash_events if e["phase"] == "Degraded"]
        assert any(
            re.search(
                r"CrashLoopBackOff: container \S+ in pod crash-\S+ restarted \d+ times?; "
                r"last exit code 1 \(Error\)",
                m,
            )
            for m in degraded
        ), degraded

    # Suspend: the operator removes the pods; resume: running again at full size.
    rp.post("long", "suspend")
    rp.until("long Stopped", lambda ws: ws["long"]["phase"] == "Stopped")
    pods = list_objects(kube_api, "v1", "Pod", kube_namespace)
    assert [p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("long-")] == []
    rp.post("long", "resume")
    seen = rp.until("long Running again", lambda ws: ws["long"]["phase"] == "Running")
    assert seen["long"]["pods"]["running"] == fw.pods
    assert in_order(rp.phases("long"), ["Running", "Stopped", "Running"])

    # Delete: nothing of it is left, the objects the operators made included.
    rp.post("long", "delete")
    rp.until("long Deleted", lambda ws: ws["long"]["phase"] == "Deleted")
    assert leftovers(kube_api, kube_namespace, "long") == []
