"""The watched cache against a real kube-apiserver: it follows changes; it survives the API server
restarting, a watch cut mid-stream, a 410 after a long pause, and changes made while Runplane was
down; it says when it is stale; and changes reach a workload's status promptly, through the
reconciler's own loop."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes.client import ApiClient

from app.cluster.backend import ClusterUnreachable
from app.cluster.kubernetes import KubernetesBackend
from app.config import Settings
from app.db import BlockingDatabase
from app.domain import kinds
from app.main import create_app
from app.reconciler.loop import Reconciler
from tests.conftest import AUTH
from tests.kube import testenv
from tests.kube.helpers import TcpProxy, apply, delete, wait_for

pytestmark = pytest.mark.kube


def managed_pod(namespace: str, workload_id: str, name: str) -> dict[str, Any]:
    """A managed pod (as a controller would make it), on the kwok node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "runplane",
                "runplane.io/workload-id": workload_id,
                "watched": "yes",
            },
        },
        "spec": {
            "containers": [{"name": "main", "image": "busybox"}],
            "nodeName": "kwok-node-0",
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
        },
    }


@pytest.fixture
def proxy(kube_control_plane: testenv.ControlPlane) -> Iterator[TcpProxy]:
    p = TcpProxy(kube_control_plane.server)
    yield p
    p.close()


@pytest.fixture
def backend(
    kube_control_plane: testenv.ControlPlane, proxy: TcpProxy
) -> Iterator[KubernetesBackend]:
    b = KubernetesBackend(
        api_client=proxy.api_client(kube_control_plane.kubeconfig),
        qps=200,
        burst=400,
        watch_seconds=30,
        stall_seconds=40,
        sync_timeout=5,
    )
    yield b
    b.close()


def pods_of(backend: KubernetesBackend, workload_id: str) -> set[str]:
    return {p["metadata"]["name"] for p in backend.observe().of(workload_id).pods}


def eventually(backend: KubernetesBackend, workload_id: str, names: set[str], what: str) -> None:
    def seen() -> bool:
        try:
            return pods_of(backend, workload_id) == names
        except ClusterUnreachable:
            return False

    wait_for(what, seen, timeout=60, interval=0.1)


def test_the_cache_follows_changes_and_lists_once(
    backend: KubernetesBackend, kube_api: ApiClient, kube_namespace: str
) -> None:
    wid = str(uuid.uuid4())
    first = backend.observe()
    # One list per kind the cluster serves (KAI's Queue, for one, is never installed here).
    served = [i for i in backend.informers.values() if i.resource_version is not None]
    assert first.list_calls == len(served) > 0
    for i in range(3):
        apply(kube_api, managed_pod(kube_namespace, wid, f"p{i}"))
    eventually(backend, wid, {"p0", "p1", "p2"}, "the new pods")
    changed = backend.observe()
    delete(kube_api, "v1", "Pod", "p1", kube_namespace, grace_period_seconds=0)
    eventually(backend, wid, {"p0", "p2"}, "a pod to go")
    assert backend.observe().list_calls == 0  # no list since the first: only the watches
    assert changed.list_calls == 0
    assert sum(i.lists for i in backend.informers.values()) == len(served)


def test_a_watch_cut_mid_stream_resumes_without_losing_a_change(
    backend: KubernetesBackend, kube_api: ApiClient, kube_namespace: str, proxy: TcpProxy
) -> None:
    wid = str(uuid.uuid4())
    apply(kube_api, managed_pod(kube_namespace, wid, "before"))
    eventually(backend, wid, {"before"}, "the first pod")
    lists = sum(i.lists for i in backend.informers.values())
    proxy.cut()  # every watch stream ends mid-way
    apply(kube_api, managed_pod(kube_namespace, wid, "during"))
    eventually(backend, wid, {"before", "during"}, "the pod made while the watch was cut")
    # Resumed from its last version, or listed again: either way nothing was lost.
    assert sum(i.lists for i in backend.informers.values()) >= lists


def stale(backend: KubernetesBackend) -> bool:
    try:
        backend.observe()
    except ClusterUnreachable as exc:
        return "does not follow the API server" in str(exc)
    return False


def test_while_the_api_server_is_away_the_cache_says_so_then_resumes_without_a_list(
    backend: KubernetesBackend, kube_api: ApiClient, kube_namespace: str, proxy: TcpProxy
) -> None:
    wid = str(uuid.uuid4())
    apply(kube_api, managed_pod(kube_namespace, wid, "kept"))
    apply(kube_api, managed_pod(kube_namespace, wid, "gone"))
    eventually(backend, wid, {"kept", "gone"}, "the pods")
    lists = {i.name: i.lists for i in backend.informers.values()}
    proxy.down()  # the network to the API server is gone
    wait_for("the cache to say it is stale", lambda: stale(backend), timeout=60, interval=0.2)
    delete(kube_api, "v1", "Pod", "gone", kube_namespace, grace_period_seconds=0)
    apply(kube_api, managed_pod(kube_namespace, wid, "new"))
    proxy.up()
    eventually(backend, wid, {"kept", "new"}, "the cache to be right again")
    # The API server still had the history since the last version seen: the watches resumed
    # from it, and nothing was listed again.
    assert {i.name: i.lists for i in backend.informers.values()} == lists


def test_a_410_after_a_long_pause_lists_again(
    backend: KubernetesBackend,
    kube_api: ApiClient,
    kube_namespace: str,
    proxy: TcpProxy,
    kube_control_plane: testenv.ControlPlane,
) -> None:
    wid = str(uuid.uuid4())
    apply(kube_api, managed_pod(kube_namespace, wid, "kept"))
    apply(kube_api, managed_pod(kube_namespace, wid, "gone"))
    eventually(backend, wid, {"kept", "gone"}, "the pods")
    pods = backend.informers[kinds.POD]
    lists = pods.lists
    # A long pause: Runplane is cut off while the API server restarts and things change. The
    # restarted server keeps no history older than its start: resuming from the version seen
    # last answers 410 Gone, and each informer lists again.
    proxy.down()
    kube_control_plane.restart_apiserver()
    delete(kube_api, "v1", "Pod", "gone", kube_namespace, grace_period_seconds=0)
    apply(kube_api, managed_pod(kube_namespace, wid, "new"))
    proxy.up()
    eventually(backend, wid, {"kept", "new"}, "the cache to be right again")
    assert pods.lists == lists + 1


def test_changes_made_while_runplane_was_down_are_seen_when_it_starts(
    kube_control_plane: testenv.ControlPlane, kube_api: ApiClient, kube_namespace: str
) -> None:
    wid = str(uuid.uuid4())
    first = KubernetesBackend(api_client=kube_control_plane.api_client(), qps=200, burst=400)
    try:
        apply(kube_api, managed_pod(kube_namespace, wid, "old"))
        eventually(first, wid, {"old"}, "the pod")
    finally:
        first.close()
    delete(kube_api, "v1", "Pod", "old", kube_namespace, grace_period_seconds=0)
    apply(kube_api, managed_pod(kube_namespace, wid, "young"))
    second = KubernetesBackend(api_client=kube_control_plane.api_client(), qps=200, burst=400)
    try:
        assert pods_of(second, wid) == {"young"}
    finally:
        second.close()


def test_a_change_reaches_the_status_within_an_interval_and_a_submission_is_applied_at_once(
    kube_control_plane: testenv.ControlPlane,
    kube_api: ApiClient,
    kube_namespace: str,
    db: BlockingDatabase,
    settings: Settings,
) -> None:
    interval = 5.0
    backend = KubernetesBackend(api_client=kube_control_plane.api_client(), qps=200, burst=400)
    reconciler = Reconciler(db=db, backend=backend, pending_timeout=120)
    stop = threading.Event()
    loop = threading.Thread(target=reconciler.run, args=(stop,), kwargs={"interval": interval})
    with TestClient(create_app(settings, reconcile=False), headers=AUTH) as c:
        r = c.post("/api/v1/projects", json={"name": "kube", "namespace": kube_namespace})
        assert r.status_code == 201, r.text
        loop.start()
        try:
            wait_for("a first cycle", lambda: reconciler.last_report is not None, timeout=30)
            submitted = time.monotonic()
            r = c.post(
                "/api/v1/workloads/interactives",
                json={"name": "ws", "project": "kube", "spec": {"image": "jupyter"}},
            )
            assert r.status_code == 201, r.text
            url = f"/api/v1/workloads/{r.json()['id']}"

            def applied() -> bool:
                events = c.get(f"{url}/events").json()["items"]
                return any(e["reason"] == "Applied" for e in events)

            wait_for("the submission to be applied", applied, timeout=30, interval=0.05)
            assert time.monotonic() - submitted < interval, "waited for the next tick"
            wait_for(
                "Running", lambda: c.get(url).json()["phase"] == "Running", timeout=60, interval=0.1
            )
            # A change in the cluster: someone scales the StatefulSet to nothing behind
            # Runplane's back. Seen within an interval of the change, not at the next tick.
            (sts,) = [
                o
                for o in backend.observe().of(r.json()["id"]).objects
                if o["kind"] == "StatefulSet"
            ]
            changed_at = time.monotonic()
            apply(
                kube_api,
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "metadata": {"name": sts["metadata"]["name"], "namespace": kube_namespace},
                    "spec": {"replicas": 0},
                },
                field_manager="someone-else",
                force=True,
            )
            wait_for(
                "the status to change",
                lambda: c.get(url).json()["phase"] != "Running",
                timeout=30,
                interval=0.05,
            )
            assert time.monotonic() - changed_at < interval
        finally:
            stop.set()
            loop.join(30)
            backend.close()
