"""The ``kubernetes`` backend at the HTTP level, against a Kubernetes-aware fake API server.

The fake is kmock's emulator, extended in :mod:`tests.cluster.kube_fake`; the manifests come from
:mod:`tests.cluster.kube_samples`, which a real-cluster suite can reuse.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kubernetes.config import incluster_config

from app.cluster.backend import (
    ClusterError,
    ClusterUnreachable,
    KindNotInstalled,
    ObjectRef,
    ObjectRejected,
)
from app.cluster.kubernetes import (
    CLUSTER_KINDS,
    NAMESPACE_PERMISSIONS,
    OBSERVED_KINDS,
    REQUIRED_PERMISSIONS,
    WATCHED_KINDS,
    KubernetesBackend,
    Permission,
    TokenBucket,
    required_permissions,
)
from app.cluster.logs import LOG_PERMISSIONS
from app.domain import kinds
from app.domain.kinds import MANAGED
from app.domain.labels import MANAGED_SELECTOR
from app.rendering.context import SCHEDULERS, Scheduler
from app.rendering.project import ProjectContext, project_objects, render_project, shared
from tests.cluster import kube_samples as samples
from tests.cluster.kube_fake import FakeKubeAPI

NS = samples.NAMESPACE
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
N_OBSERVED = len(WATCHED_KINDS)


def new_id() -> str:
    return str(uuid.uuid4())


def refs(manifests: list[dict[str, Any]]) -> list[ObjectRef]:
    return [ObjectRef.of(m) for m in manifests]


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        fake.add_namespace(NS)
        yield fake
        close_backends()


_made: list[KubernetesBackend] = []


def make_backend(api: FakeKubeAPI, **options: Any) -> KubernetesBackend:
    options.setdefault("qps", 10_000)
    options.setdefault("burst", 10_000)
    return tracked(KubernetesBackend(api_client=api.api_client(), **options))


def tracked(backend: KubernetesBackend) -> KubernetesBackend:
    """``backend``, closed when the test ends (passed or failed)."""
    _made.append(backend)
    return backend


def close_backends() -> None:
    """Stop the watches of every backend a test made, before its fake API server goes."""
    while _made:
        _made.pop().close()


@pytest.fixture
def backend(api: FakeKubeAPI) -> KubernetesBackend:
    return make_backend(api)


def patches(api: FakeKubeAPI) -> list[kmock.Request]:
    return [r for r in api.calls() if r.method == kmock.method.PATCH]


def watches(api: FakeKubeAPI) -> list[kmock.Request]:
    return [r for r in api.requests() if r.action == kmock.action.WATCH]


def lists(api: FakeKubeAPI, since: int = 0) -> list[kmock.Request]:
    """The list calls (discovery documents, also GETs without a name, excepted)."""
    return [
        r
        for r in api.requests()[since:]
        if r.action == kmock.action.LIST and r.resource is not None and r.resource.plural
    ]


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


# --- apply ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("v1/Service", f"/api/v1/namespaces/{NS}/services/obj"),
        ("apps/v1/StatefulSet", f"/apis/apps/v1/namespaces/{NS}/statefulsets/obj"),
        ("apps/v1/Deployment", f"/apis/apps/v1/namespaces/{NS}/deployments/obj"),
        ("batch/v1/Job", f"/apis/batch/v1/namespaces/{NS}/jobs/obj"),
        (
            "autoscaling/v2/HorizontalPodAutoscaler",
            f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/obj",
        ),
        ("kubeflow.org/v1/PyTorchJob", f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs/obj"),
        ("kubeflow.org/v1/TFJob", f"/apis/kubeflow.org/v1/namespaces/{NS}/tfjobs/obj"),
        ("kubeflow.org/v2beta1/MPIJob", f"/apis/kubeflow.org/v2beta1/namespaces/{NS}/mpijobs/obj"),
    ],
)
def test_apply_is_a_server_side_apply_patch_to_the_object_url(
    api: FakeKubeAPI, backend: KubernetesBackend, key: str, path: str
) -> None:
    wid = new_id()
    manifest = samples.BY_KIND[key](wid, name="obj")
    backend.apply(workload_id=wid, namespace=NS, manifests=[manifest])

    (request,) = patches(api)
    assert request.url.path == path
    assert request.params == {"fieldManager": "runplane", "force": "true"}
    assert request.headers["Content-Type"] == "application/apply-patch+yaml"
    assert request.data == manifest


def test_every_managed_kind_has_a_sample() -> None:
    assert set(samples.BY_KIND) == {f"{k.api_version}/{k.kind}" for k in MANAGED}


def test_apply_stores_every_object_of_each_workload_type(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    for workload_type in samples.WORKLOAD_TYPES:
        wid = new_id()
        manifests = samples.workload(workload_type, wid, name=workload_type)
        backend.apply(workload_id=wid, namespace=NS, manifests=manifests)
    assert set(api.stored("apps/v1/statefulsets")) == {(NS, "interactive")}
    assert set(api.stored("apps/v1/deployments")) == {(NS, "inference")}
    assert set(api.stored("v1/services")) == {(NS, "interactive"), (NS, "inference")}
    assert set(api.stored("kubeflow.org/v2beta1/mpijobs")) == {(NS, "mpi")}


def test_apply_fills_in_the_namespace_without_touching_the_input(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    wid = new_id()
    manifest = samples.job(wid, name="train")
    del manifest["metadata"]["namespace"]
    before = copy.deepcopy(manifest)
    backend.apply(workload_id=wid, namespace=NS, manifests=[manifest])
    assert manifest == before
    assert patches(api)[0].data["metadata"]["namespace"] == NS


def test_applying_the_stopped_form_updates_the_object(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    wid = new_id()
    backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])
    backend.apply(
        workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t", suspend=True)]
    )
    assert api.stored("batch/v1/jobs")[NS, "t"]["spec"]["suspend"] is True


def test_apply_refuses_a_kind_runplane_does_not_manage(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    wid = new_id()
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": samples.labels(wid, "training")},
    }
    with pytest.raises(ObjectRejected, match="ConfigMap"):
        backend.apply(workload_id=wid, namespace=NS, manifests=[config_map])
    assert not list(api.calls())


def test_apply_refuses_objects_observe_could_not_see(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    wid = new_id()
    manifest = samples.job(wid, name="t")
    with pytest.raises(ObjectRejected, match="runplane.io/workload-id"):
        backend.apply(workload_id=new_id(), namespace=NS, manifests=[manifest])
    del manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    with pytest.raises(ObjectRejected, match="managed-by"):
        backend.apply(workload_id=wid, namespace=NS, manifests=[manifest])
    assert not list(api.calls())


# --- namespaces ----------------------------------------------------------------------------------


def test_apply_creates_the_namespace_once_when_allowed(api: FakeKubeAPI) -> None:
    backend = make_backend(api, create_namespaces=True)
    wid = new_id()
    manifests = samples.workload("interactive", wid, name="nb", namespace="runplane-new")
    backend.apply(workload_id=wid, namespace="runplane-new", manifests=manifests)
    backend.apply(workload_id=wid, namespace="runplane-new", manifests=manifests)

    posts = [r for r in api.calls() if r.method == kmock.method.POST]
    assert len(posts) == 1
    assert posts[0].url.path == "/api/v1/namespaces"
    assert posts[0].data["metadata"] == {
        "name": "runplane-new",
        "labels": {"app.kubernetes.io/managed-by": "runplane"},
    }
    assert len(patches(api)) == 4
    assert set(api.stored("apps/v1/statefulsets")) == {("runplane-new", "nb")}


def test_an_existing_namespace_is_left_as_it_is(api: FakeKubeAPI) -> None:
    backend = make_backend(api, create_namespaces=True)
    wid = new_id()
    backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])
    assert [r.method for r in api.calls()] == [kmock.method.POST, kmock.method.PATCH]
    assert "labels" not in api.stored("v1/namespaces")[None, NS]["metadata"]  # 409, no change


def test_a_namespace_deleted_behind_our_back_is_created_again(api: FakeKubeAPI) -> None:
    backend = make_backend(api, create_namespaces=True)
    wid = new_id()
    backend.apply(workload_id=wid, namespace="runplane-x", manifests=[])
    del api.handler.objects["v1/namespaces", None, "runplane-x"]
    backend.apply(
        workload_id=wid,
        namespace="runplane-x",
        manifests=[samples.job(wid, name="t", namespace="runplane-x")],
    )
    methods = [r.method for r in api.calls()]
    assert methods == [kmock.method.POST, kmock.method.PATCH, kmock.method.POST, kmock.method.PATCH]
    assert ("runplane-x", "t") in api.stored("batch/v1/jobs")


def test_a_missing_namespace_rejects_the_workload_when_creation_is_off(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    wid = new_id()
    job = samples.job(wid, name="t", namespace="runplane-absent")
    with pytest.raises(ObjectRejected, match="namespace runplane-absent does not exist"):
        backend.apply(workload_id=wid, namespace="runplane-absent", manifests=[job])
    assert all(r.method != kmock.method.POST for r in api.calls())


# --- missing CRDs --------------------------------------------------------------------------------


@pytest.fixture
def bare_api() -> Iterator[FakeKubeAPI]:
    """A cluster without the Kubeflow and MPI operators."""
    with FakeKubeAPI(kubeflow=False) as fake:
        fake.add_namespace(NS)
        yield fake
        close_backends()


@pytest.mark.parametrize(
    ("workload_type", "api_version", "kind"),
    [
        ("pytorch", "kubeflow.org/v1", "PyTorchJob"),
        ("tf", "kubeflow.org/v1", "TFJob"),
        ("mpi", "kubeflow.org/v2beta1", "MPIJob"),
    ],
)
def test_apply_of_a_kind_without_its_crd_raises_kind_not_installed(
    bare_api: FakeKubeAPI, workload_type: str, api_version: str, kind: str
) -> None:
    backend = make_backend(bare_api)
    wid = new_id()
    manifests = samples.workload(workload_type, wid, name="dist")
    with pytest.raises(KindNotInstalled) as caught:
        backend.apply(workload_id=wid, namespace=NS, manifests=manifests)
    assert (caught.value.api_version, caught.value.kind) == (api_version, kind)
    assert "operator" in str(caught.value)
    assert not list(bare_api.calls())


def test_a_workload_with_a_missing_kind_leaves_nothing_half_applied(bare_api: FakeKubeAPI) -> None:
    backend = make_backend(bare_api)
    wid = new_id()
    manifests = [samples.service(wid, name="d"), samples.pytorchjob(wid, name="d")]
    with pytest.raises(KindNotInstalled):
        backend.apply(workload_id=wid, namespace=NS, manifests=manifests)
    assert not bare_api.stored("v1/services")


def test_apply_404_for_a_crd_removed_since_discovery_raises_kind_not_installed(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    backend.observe()  # discovery now says kubeflow.org/v1 serves pytorchjobs
    api.undeclare("kubeflow.org/v1/pytorchjobs")
    wid = new_id()
    with pytest.raises(KindNotInstalled) as caught:
        backend.apply(workload_id=wid, namespace=NS, manifests=[samples.pytorchjob(wid, name="d")])
    assert caught.value.kind == "PyTorchJob"
    assert len(patches(api)) == 1
    # The TFJob CRD of the same group is still there.
    backend.apply(workload_id=wid, namespace=NS, manifests=[samples.tfjob(wid, name="d")])


def listed_kubeflow(api: FakeKubeAPI, since: int) -> set[str]:
    return {
        str(r.url.path).rsplit("/", 1)[-1] for r in lists(api, since) if "kubeflow" in r.url.path
    }


def test_observe_skips_the_kinds_the_cluster_does_not_serve(bare_api: FakeKubeAPI) -> None:
    backend = make_backend(bare_api)
    observation = backend.observe()
    assert observation.list_calls == N_OBSERVED - 3
    assert listed_kubeflow(bare_api, 0) == set()


def wait_until(condition: Any, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_observe_notices_operators_and_crds_installed_later(bare_api: FakeKubeAPI) -> None:
    backend = make_backend(bare_api, missing_kind_ttl=0.3)
    bare_api.declare("kubeflow.org/v1/pytorchjobs", "PyTorchJob")
    backend.observe()
    assert listed_kubeflow(bare_api, 0) == {"pytorchjobs"}
    bare_api.declare("kubeflow.org/v1/tfjobs", "TFJob")  # one more CRD in a served group
    bare_api.declare("kubeflow.org/v2beta1/mpijobs", "MPIJob")  # a new group-version
    wid = new_id()
    bare_api.put("kubeflow.org/v2beta1/mpijobs", samples.mpijob(wid, name="m"))
    # Asked again once missing_kind_ttl has passed, then listed and watched like the others.
    wait_until(
        lambda: listed_kubeflow(bare_api, 0) == {"pytorchjobs", "tfjobs", "mpijobs"}, "lists"
    )
    wait_until(lambda: backend.observe().of(wid).objects, "the MPIJob in the cache")


# --- observe -------------------------------------------------------------------------------------


def apply_all_types(
    backend: KubernetesBackend, count: int, *, prefix: str = "w"
) -> list[tuple[str, str]]:
    """``count`` workloads of every type; answers (workload id, type) pairs."""
    applied = []
    for i in range(count):
        for workload_type in samples.WORKLOAD_TYPES:
            wid = new_id()
            manifests = samples.workload(workload_type, wid, name=f"{prefix}{i}-{workload_type}")
            backend.apply(workload_id=wid, namespace=NS, manifests=manifests)
            applied.append((wid, workload_type))
    return applied


def test_observe_lists_and_watches_each_kind_once_whatever_the_number_of_workloads(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    apply_all_types(backend, 8, prefix="c8-")
    observation = backend.observe()
    assert observation.list_calls == N_OBSERVED
    assert observation.changed is None  # the first observation: everything is new
    calls = lists(api)
    assert sorted(r.url.path for r in calls) == sorted(
        ("/api/v1" if k.api_version == "v1" else f"/apis/{k.api_version}") + f"/{k.plural}"
        for k in WATCHED_KINDS
    )
    # Nodes, Kueue's Workloads and events carry no label of Runplane's: they are listed whole
    # (the events informer keeps those of the namespaces Runplane uses).
    managed = {f"/{k.plural}" for k in OBSERVED_KINDS}
    for r in calls:
        selected = any(r.url.path.endswith(p) for p in managed)
        assert r.params.get("labelSelector") == (MANAGED_SELECTOR if selected else None)
    wait_until(lambda: len(watches(api)) == N_OBSERVED, "a watch per kind")
    unselected = [r for r in watches(api) if "labelSelector" not in r.params]
    assert len(unselected) == len(CLUSTER_KINDS) + 1
    assert all(r.params.get("allowWatchBookmarks") == "true" for r in watches(api))
    # More workloads arrive through the watches: no more lists, whatever their number.
    applied = apply_all_types(backend, 8, prefix="more-")
    total = 16 * len(samples.WORKLOAD_TYPES)
    wait_until(lambda: len(backend.observe().workloads) == total, f"{total} workloads")
    again = backend.observe()
    assert again.list_calls == 0
    assert len(lists(api)) == N_OBSERVED
    assert len(watches(api)) == N_OBSERVED
    assert again.changed == frozenset()  # nothing new since the previous observation
    assert {wid for wid, _ in applied} <= set(again.workloads)


def test_observe_says_which_workloads_changed(api: FakeKubeAPI, backend: KubernetesBackend) -> None:
    first, second = new_id(), new_id()
    api.put("v1/pods", samples.pod(first, name="a"))
    backend.observe()
    api.put("v1/pods", samples.pod(second, name="b"))
    wait_until(lambda: second in backend.observe().workloads, "the new pod")
    api.put("v1/pods", {**samples.pod(first, name="a"), "status": {"phase": "Running"}})
    wait_until(lambda: first in (backend.observe().changed or ()), "the changed pod")


def test_observe_groups_objects_and_pods_by_workload(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    applied = dict(apply_all_types(backend, 1))
    by_type = {t: wid for wid, t in applied.items()}
    training, inference = by_type["training"], by_type["inference"]
    api.put("v1/pods", samples.pod(training, name="train-0-abcde"))
    api.put("v1/pods", samples.pod(inference, name="serve-1", workload_type="inference"))
    api.put("v1/pods", samples.pod(inference, name="serve-2", workload_type="inference"))
    unmanaged = samples.pod(new_id(), name="someone-elses")
    del unmanaged["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    api.put("v1/pods", unmanaged)

    observation = backend.observe()
    assert set(observation.workloads) == set(applied)
    inf = observation.of(inference)
    assert sorted(o["kind"] for o in inf.objects) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Service",
    ]
    assert sorted(p["metadata"]["name"] for p in inf.pods) == ["serve-1", "serve-2"]
    assert [p["metadata"]["name"] for p in observation.of(training).pods] == ["train-0-abcde"]
    assert [o["kind"] for o in observation.of(by_type["mpi"]).objects] == ["MPIJob"]
    assert observation.of(new_id()).objects == []


def test_observe_returns_objects_as_the_server_sends_them_with_their_kind(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    wid = new_id()
    pod = samples.pod(wid, name="p", phase="Pending")
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False"}]
    api.put("v1/pods", pod)
    backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])

    observed = backend.observe().of(wid)
    # The fake, like a real server, drops apiVersion and kind from built-in list items.
    assert observed.pods == [pod]
    assert observed.objects == [samples.job(wid, name="t")]


def test_observe_follows_continue_pagination(api: FakeKubeAPI) -> None:
    backend = make_backend(api, page_size=2)
    wid = new_id()
    for i in range(5):
        api.put("v1/pods", samples.pod(wid, name=f"p{i}"))
    observation = backend.observe()
    assert sorted(p["metadata"]["name"] for p in observation.of(wid).pods) == [
        f"p{i}" for i in range(5)
    ]
    pod_lists = [r for r in lists(api) if r.url.path == "/api/v1/pods"]
    assert [r.params.get("limit") for r in pod_lists] == ["2", "2", "2"]
    assert "continue" not in pod_lists[0].params
    assert all(r.params.get("continue") for r in pod_lists[1:])
    assert observation.list_calls == N_OBSERVED  # one list of each kind, however many pages


def test_observe_relists_when_a_continue_token_expires(api: FakeKubeAPI) -> None:
    backend = make_backend(api, page_size=2)
    wid = new_id()
    for i in range(5):
        api.put("v1/pods", samples.pod(wid, name=f"p{i}"))
    api.handler.expire_continue = 1
    observation = backend.observe()
    assert sorted(p["metadata"]["name"] for p in observation.of(wid).pods) == [
        f"p{i}" for i in range(5)
    ]
    pod_lists = [r for r in lists(api) if r.url.path == "/api/v1/pods"]
    assert len(pod_lists) == 2 + 3  # a page, the 410, then the whole list again

    api.handler.expire_continue = 100
    expiring = make_backend(api, page_size=2, sync_timeout=5)  # a few tries, on a busy machine too
    with pytest.raises(ClusterUnreachable, match="expiring"):
        expiring.observe()


def test_observe_fails_whole_on_a_server_error(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    (
        api.handler[kmock.action.LIST][kmock.resource("v1/pods")]
        << 500
        << status_body(500, "InternalError", "etcdserver: request timed out")
    )
    with pytest.raises(ClusterError, match="etcdserver: request timed out") as caught:
        backend.observe()
    assert not isinstance(caught.value, ObjectRejected)


# --- errors --------------------------------------------------------------------------------------


def test_a_422_is_object_rejected_with_the_servers_message(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    message = (
        'Deployment.apps "serve" is invalid: spec.template.spec.containers[0].image: Required value'
    )
    api.handler[kmock.method.PATCH] << 422 << status_body(422, "Invalid", message)
    wid = new_id()
    with pytest.raises(ObjectRejected) as caught:
        backend.apply(
            workload_id=wid, namespace=NS, manifests=[samples.deployment(wid, name="serve")]
        )
    assert message in str(caught.value)
    assert f"Deployment {NS}/serve" in str(caught.value)


def test_a_403_is_object_rejected(api: FakeKubeAPI, backend: KubernetesBackend) -> None:
    message = 'jobs.batch "t" is forbidden: exceeded quota: gpu, requested: nvidia.com/gpu=8'
    api.handler[kmock.method.PATCH] << 403 << status_body(403, "Forbidden", message)
    wid = new_id()
    with pytest.raises(ObjectRejected, match="exceeded quota"):
        backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])


def test_a_terminating_namespace_is_retried_later(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    body = status_body(403, "Forbidden", "unable to create new content in namespace x")
    body["details"] = {"causes": [{"reason": "NamespaceTerminating"}]}
    api.handler[kmock.method.PATCH] << 403 << body
    wid = new_id()
    with pytest.raises(ClusterError) as caught:
        backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])
    assert not isinstance(caught.value, ObjectRejected)


@pytest.mark.parametrize("code", [500, 503, 429, 409, 401])
def test_server_errors_and_throttling_are_cluster_errors(
    api: FakeKubeAPI, backend: KubernetesBackend, code: int
) -> None:
    api.handler[kmock.method.PATCH] << code << status_body(code, "Whatever", "try again later")
    wid = new_id()
    with pytest.raises(ClusterError, match="try again later") as caught:
        backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])
    assert not isinstance(caught.value, ObjectRejected)


def test_a_non_status_error_body_is_quoted(api: FakeKubeAPI, backend: KubernetesBackend) -> None:
    api.handler[kmock.method.PATCH] << 502 << b"<html>Bad Gateway</html>"
    wid = new_id()
    with pytest.raises(ClusterError, match="Bad Gateway"):
        backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_connection_refused_is_a_cluster_error(api: FakeKubeAPI) -> None:
    client = api.api_client()
    client.configuration.host = f"http://127.0.0.1:{closed_port()}"
    backend = tracked(KubernetesBackend(api_client=client))
    wid = new_id()
    with pytest.raises(ClusterError, match="cannot reach the Kubernetes API") as caught:
        backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])
    assert not isinstance(caught.value, ObjectRejected)
    with pytest.raises(ClusterError, match="cannot reach"):
        backend.observe()
    with pytest.raises(ClusterError, match="cannot reach"):
        backend.delete(workload_id=wid, namespace=NS, objects=[ObjectRef("batch/v1", "Job", "t")])


def test_a_timeout_is_a_cluster_error(api: FakeKubeAPI) -> None:
    async def slow(request: kmock.Request) -> dict[str, Any]:
        await asyncio.sleep(2)
        return {}

    api.handler[kmock.method.PATCH] << slow
    backend = make_backend(api, request_timeout=0.3)
    wid = new_id()
    started = time.monotonic()
    with pytest.raises(ClusterError, match="timed out"):
        backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])
    assert time.monotonic() - started < 1.5


# --- delete --------------------------------------------------------------------------------------


def test_delete_removes_the_objects_with_foreground_propagation(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    wid = new_id()
    manifests = samples.workload("inference", wid, name="serve")
    backend.apply(workload_id=wid, namespace=NS, manifests=manifests)
    backend.delete(workload_id=wid, namespace=NS, objects=refs(manifests))

    deletes = [r for r in api.calls() if r.method == kmock.method.DELETE]
    assert [r.url.path for r in deletes] == [
        f"/apis/apps/v1/namespaces/{NS}/deployments/serve",
        f"/api/v1/namespaces/{NS}/services/serve",
        f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/serve",
    ]
    assert all(r.data["propagationPolicy"] == "Foreground" for r in deletes)
    assert not api.stored("apps/v1/deployments")
    assert backend.observe().of(wid).objects == []


def test_delete_can_use_background_propagation(api: FakeKubeAPI) -> None:
    backend = make_backend(api, propagation_policy="Background")
    wid = new_id()
    manifests = [samples.job(wid, name="t")]
    backend.apply(workload_id=wid, namespace=NS, manifests=manifests)
    backend.delete(workload_id=wid, namespace=NS, objects=refs(manifests))
    (request,) = [r for r in api.calls() if r.method == kmock.method.DELETE]
    assert request.data == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
    }


def test_delete_of_objects_already_gone_is_fine(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    manifests = samples.workload("interactive", new_id(), name="nb")
    backend.delete(workload_id=new_id(), namespace=NS, objects=refs(manifests))
    backend.delete(workload_id=new_id(), namespace="runplane-gone", objects=refs(manifests))
    assert len([r for r in api.calls() if r.method == kmock.method.DELETE]) == 4


def test_delete_skips_kinds_the_cluster_does_not_serve(bare_api: FakeKubeAPI) -> None:
    backend = make_backend(bare_api)
    backend.delete(
        workload_id=new_id(),
        namespace=NS,
        objects=[ObjectRef("kubeflow.org/v1", "PyTorchJob", "d")],
    )
    assert not list(bare_api.calls())


@pytest.mark.parametrize(("code", "error"), [(500, ClusterError), (403, ObjectRejected)])
def test_delete_errors(
    api: FakeKubeAPI, backend: KubernetesBackend, code: int, error: type[ClusterError]
) -> None:
    wid = new_id()
    backend.apply(workload_id=wid, namespace=NS, manifests=[samples.job(wid, name="t")])
    api.handler[kmock.method.DELETE] << code << status_body(code, "Whatever", "no can do")
    with pytest.raises(error, match="no can do"):
        backend.delete(workload_id=wid, namespace=NS, objects=[ObjectRef("batch/v1", "Job", "t")])


# --- rate limit ----------------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_token_bucket_allows_a_burst_then_qps() -> None:
    t = FakeTime()
    bucket = TokenBucket(qps=10, burst=3, clock=t.clock, sleep=t.sleep)
    waits = [bucket.acquire() for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.1, 0.1, 0.1])
    assert t.now == pytest.approx(0.3)
    t.now += 10  # idle: refills up to the burst, no more
    assert [bucket.acquire() for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_token_bucket_queues_concurrent_callers_by_reservation() -> None:
    t = FakeTime()
    # A sleep that does not advance the clock: callers arriving at the same instant.
    bucket = TokenBucket(qps=5, burst=1, clock=t.clock, sleep=lambda s: None)
    assert [bucket.acquire() for _ in range(4)] == pytest.approx([0, 0.2, 0.4, 0.6])


@pytest.mark.parametrize(("qps", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0)])
def test_token_bucket_refuses_nonsense(qps: float, burst: int) -> None:
    with pytest.raises(ValueError, match="qps|burst"):
        TokenBucket(qps=qps, burst=burst)


def test_backend_calls_are_rate_limited(api: FakeKubeAPI) -> None:
    t = FakeTime()
    backend = make_backend(api, qps=10, burst=4, clock=t.clock, sleep=t.sleep)
    wid = new_id()
    since = len(api.requests())
    backend.apply(
        workload_id=wid, namespace=NS, manifests=samples.workload("inference", wid, name="i")
    )
    calls = len(api.requests()) - since  # discovery and one apply per object
    assert calls > 4
    assert len(t.slept) == calls - 4
    assert t.now == pytest.approx((calls - 4) / 10)


def test_backend_rate_limit_in_real_time(api: FakeKubeAPI) -> None:
    backend = make_backend(api, qps=40, burst=1)
    wid = new_id()
    started = time.monotonic()
    since = len(api.requests())
    backend.apply(
        workload_id=wid, namespace=NS, manifests=samples.workload("inference", wid, name="i")
    )
    calls = len(api.requests()) - since
    assert time.monotonic() - started >= (calls - 1) / 40 * 0.9


# --- configuration -------------------------------------------------------------------------------


def write_kubeconfig(path: Path, servers: dict[str, str]) -> Path:
    """A kubeconfig with one context per server, the first one current."""
    names = list(servers)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in servers.items()],
        "users": [{"name": "u", "user": {"token": "test-token"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in names],
        "current-context": names[0],
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


@pytest.mark.usefixtures("outside_a_cluster")
def test_from_environment_uses_kubeconfig_outside_a_cluster(
    api: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "config", {"fake": api.url})
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    backend = KubernetesBackend.from_environment(create_namespaces=True, qps=500, burst=7)
    try:
        assert backend.observe().list_calls == N_OBSERVED
        assert backend.create_namespaces is True
        assert backend.permissions == required_permissions(create_namespaces=True)
    finally:
        backend.close()
    assert api.requests()[-1].headers["Authorization"] == "Bearer test-token"


def test_from_environment_prefers_the_pods_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("service-account-token")
    ca.write_text("a CA bundle")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    kubeconfig = write_kubeconfig(tmp_path / "config", {"elsewhere": "http://127.0.0.1:1"})
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

    backend = KubernetesBackend.from_environment()
    configuration = backend.api_client.configuration
    assert configuration.host == "https://10.96.0.1:443"
    assert configuration.ssl_ca_cert == str(ca)
    auth = configuration.auth_settings()["BearerToken"]
    assert auth["value"] == "bearer service-account-token"
    backend.close()


@pytest.mark.usefixtures("outside_a_cluster")
def test_kubeconfig_and_context_can_be_named(api: FakeKubeAPI, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    kubeconfig = write_kubeconfig(tmp_path / "config", {"dead": dead, "fake": api.url})
    backend = tracked(KubernetesBackend(kubeconfig=str(kubeconfig), context="fake"))
    assert backend.observe().list_calls == N_OBSERVED
    other = tracked(KubernetesBackend.from_environment(kubeconfig=str(kubeconfig)))
    with pytest.raises(ClusterError, match="cannot reach"):
        other.observe()


@pytest.mark.usefixtures("outside_a_cluster")
def test_no_configuration_at_all_is_a_clear_cluster_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(ClusterError, match="no Kubernetes configuration"):
        KubernetesBackend.from_environment()


# --- permissions ---------------------------------------------------------------------------------


def cluster_role_permissions(path: Path) -> dict[str, set[Permission]]:
    """Each ClusterRole in a manifest file, as the (group, resource, verb) set it grants."""
    roles: dict[str, set[Permission]] = {}
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] != "ClusterRole":
            continue
        granted = roles.setdefault(doc["metadata"]["name"], set())
        for rule in doc["rules"]:
            assert "nonResourceURLs" not in rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb)
                        granted.add((group, resource, verb))
    return roles


def test_the_cluster_role_grants_exactly_the_required_permissions() -> None:
    assert cluster_role_permissions(DEPLOY / "rbac.yaml") == {
        "runplane": set(REQUIRED_PERMISSIONS | LOG_PERMISSIONS)
    }
    assert cluster_role_permissions(DEPLOY / "rbac-namespaces.yaml") == {
        "runplane-namespaces": set(NAMESPACE_PERMISSIONS)
    }


def test_the_roles_are_bound_to_the_deployments_service_account() -> None:
    bindings = [
        doc
        for name in ("rbac.yaml", "rbac-namespaces.yaml")
        for doc in yaml.safe_load_all((DEPLOY / name).read_text())
        if doc["kind"] == "ClusterRoleBinding"
    ]
    assert {b["roleRef"]["name"] for b in bindings} == {"runplane", "runplane-namespaces"}
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "runplane", "namespace": "runplane-system"}
        ]
    deployment = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "runplane"
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RUNPLANE_CLUSTER"] == "kubernetes"
    assert env["RUNPLANE_KUBE_CREATE_NAMESPACES"] == "true"  # as rbac-namespaces.yaml is bound
    assert container["envFrom"] == [{"secretRef": {"name": "runplane"}}]
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (DEPLOY / name).is_file()
    assert "rbac-namespaces.yaml" in kustomization["resources"]


def permissions_used(requests: list[kmock.Request]) -> set[Permission]:
    """The RBAC (group, resource, verb) each request needs, as the API server would check."""
    used: set[Permission] = set()
    for r in requests:
        if r.resource is None or r.resource.plural is None:
            continue  # discovery: no RBAC rule needed
        group, plural = r.resource.group or "", r.resource.plural
        if r.method == kmock.method.PATCH:
            # Server-side apply that creates the object is also authorized as a create; a
            # Kueue Workload is only ever patched once Kueue made it.
            used.add((group, plural, "patch"))
            if plural != "workloads":
                used.add((group, plural, "create"))
        elif r.method == kmock.method.POST:
            used.add((group, plural, "create"))
        elif r.method == kmock.method.DELETE:
            used.add((group, plural, "delete"))
        elif r.action == kmock.action.WATCH:
            used.add((group, plural, "watch"))
        elif r.method == kmock.method.GET:
            used.add((group, plural, "list" if r.name is None else "get"))
    return used


@pytest.mark.parametrize("create_namespaces", [True, False])
def test_the_backend_uses_exactly_the_permissions_it_declares(
    api: FakeKubeAPI, create_namespaces: bool
) -> None:
    backend = make_backend(api, create_namespaces=create_namespaces)
    applied: list[tuple[str, list[dict[str, Any]]]] = []
    for workload_type in samples.WORKLOAD_TYPES:
        wid = new_id()
        manifests = samples.workload(workload_type, wid, name=workload_type)
        backend.apply(workload_id=wid, namespace=NS, manifests=manifests)
        applied.append((wid, manifests))
    for scheduler in SCHEDULERS:
        objects = project_objects(project_context(scheduler))
        backend.apply_project(
            project="team-a", manifests=render_project(project_context(scheduler))
        )
        backend.apply_project(project="", manifests=shared(scheduler))
        backend.delete_project_objects(
            project="team-a", objects=[ObjectRef.of(o) for o in objects[1:]]
        )
    queued_id = put_queued_job(api)
    wait_until(lambda: len(backend.observe().of(queued_id).objects) == 2, "the Kueue Workload")
    backend.set_queue_active(workload_id=queued_id, namespace=NS, active=False)
    wait_until(lambda: len(watches(api)) == len(WATCHED_KINDS), "a watch per kind")
    for wid, manifests in applied:
        backend.delete(workload_id=wid, namespace=NS, objects=refs(manifests))

    used = permissions_used(api.requests())
    assert used == required_permissions(create_namespaces=create_namespaces)
    assert used == backend.permissions


def _event(name: str, *, namespace: str, kind: str, about: str, reason: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace, "uid": new_id()},
        "involvedObject": {"kind": kind, "name": about, "namespace": namespace},
        "type": "Warning",
        "reason": reason,
        "message": f"{reason} of {about}",
        "count": 1,
    }


def test_events_are_watched_by_workload_and_only_in_runplanes_namespaces(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    training, inference = new_id(), new_id()
    backend.apply(
        workload_id=training,
        namespace=NS,
        manifests=samples.workload("training", training, name="t"),
    )
    backend.apply(
        workload_id=inference,
        namespace=NS,
        manifests=samples.workload("inference", inference, name="serve"),
    )
    api.put("v1/pods", samples.pod(training, name="t-abcde"))
    backend.observe()
    api.add_namespace("elsewhere")
    api.put("v1/events", _event("e1", namespace=NS, kind="Pod", about="t-abcde", reason="BackOff"))
    api.put("v1/events", _event("e2", namespace=NS, kind="Job", about="t", reason="FailedCreate"))
    # A Deployment's ReplicaSet reports the pods it cannot create (an exceeded quota).
    api.put(
        "v1/events",
        _event("e3", namespace=NS, kind="ReplicaSet", about="serve-7d9f8", reason="FailedCreate"),
    )
    api.put("v1/events", _event("e4", namespace=NS, kind="Pod", about="unknown", reason="X"))
    api.put(
        "v1/events", _event("e5", namespace="elsewhere", kind="Pod", about="t-abcde", reason="Y")
    )
    wait_until(lambda: len(backend.observe().of(training).events) == 2, "the training's events")
    observation = backend.observe()
    assert sorted(e["reason"] for e in observation.of(training).events) == [
        "BackOff",
        "FailedCreate",
    ]
    wait_until(lambda: backend.observe().of(inference).events, "the inference's events")
    (quota,) = backend.observe().of(inference).events
    assert quota["involvedObject"]["kind"] == "ReplicaSet"
    # Events of other namespaces are not even cached.
    informer = backend.informers[kinds.EVENT]
    assert {ns for ns, _ in informer.objects} == {NS}


def test_observe_reads_the_nodes_whatever_their_labels(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "gpu-1", "labels": {"runplane.io/node-pool": "a100"}},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }
    api.put("v1/nodes", node)
    assert [n["metadata"]["name"] for n in backend.observe().nodes or ()] == ["gpu-1"]
    api.put("v1/nodes", {**node, "metadata": {"name": "gpu-2"}})
    wait_until(lambda: len(backend.observe().nodes or ()) == 2, "the second node")


def put_queued_job(api: FakeKubeAPI) -> str:
    """A Job with Kueue's label, and the Workload Kueue would make for it; its workload id."""
    wid = new_id()
    job = samples.job(wid, name=f"queued-{wid[:8]}")
    job["metadata"]["uid"] = f"uid-{wid}"
    job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    api.put("batch/v1/jobs", job)
    owner = {"kind": "Job", "name": job["metadata"]["name"], "uid": f"uid-{wid}"}
    workload = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {"name": f"job-{wid[:8]}", "namespace": NS, "ownerReferences": [owner]},
        "spec": {"active": True, "queueName": "team-a"},
    }
    api.put("kueue.x-k8s.io/v1beta2/workloads", workload)
    return wid


def test_stop_and_resume_through_kueue_write_only_the_workloads_active(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    wid = new_id()
    with pytest.raises(ClusterError, match="waiting for Kueue"):
        backend.set_queue_active(workload_id=wid, namespace=NS, active=False)
    wid = put_queued_job(api)
    wait_until(lambda: len(backend.observe().of(wid).objects) == 2, "the Kueue Workload")
    backend.set_queue_active(workload_id=wid, namespace=NS, active=False)
    (patch,) = patches(api)
    assert patch.url.path == f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{NS}/workloads/job-{wid[:8]}"
    assert patch.params["fieldManager"] == "runplane"
    assert patch.data["spec"] == {"active": False}
    assert not [r for r in patches(api) if "/jobs/" in r.url.path]  # the Job is Kueue's


def test_a_kueue_workload_joins_the_workload_of_the_job_it_queues(
    api: FakeKubeAPI, backend: KubernetesBackend
) -> None:
    wid = new_id()
    job = samples.job(wid, name="train")
    job["metadata"]["uid"] = "job-uid-1"
    api.put("batch/v1/jobs", job)
    backend.observe()
    # (The fake's watches send what exists again: let them settle.)
    wait_until(lambda: len(watches(api)) == N_OBSERVED, "a watch per kind")
    time.sleep(0.3)
    first = backend.observe().of(wid)
    assert [o["kind"] for o in first.objects] == ["Job"]
    # While nothing changes, the same objects are handed out (usage is worked out once).
    assert backend.observe().of(wid) is first
    queued: dict[str, Any] = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": "job-train-1a2b3",
            "namespace": NS,
            "ownerReferences": [{"kind": "Job", "name": "train", "uid": "job-uid-1"}],
        },
        "status": {"conditions": [{"type": "QuotaReserved", "status": "False"}]},
    }
    api.put("kueue.x-k8s.io/v1beta2/workloads", queued)
    wait_until(lambda: wid in (backend.observe().changed or ()), "the Kueue Workload")
    objects = backend.observe().of(wid).objects
    assert [o["kind"] for o in objects] == ["Job", "Workload"]
    # Someone else's Kueue Workload joins nothing.
    other = {**queued, "metadata": {**queued["metadata"], "name": "x", "ownerReferences": []}}
    api.put("kueue.x-k8s.io/v1beta2/workloads", other)
    time.sleep(0.3)
    assert [o["kind"] for o in backend.observe().of(wid).objects] == ["Job", "Workload"]


def project_context(scheduler: Scheduler) -> ProjectContext:
    return ProjectContext.of(
        name="team-a",
        namespace=NS,
        queue=None,
        scheduler=scheduler,
        quota={"gpu": {"deserved": "4", "limit": "8", "overQuotaWeight": "1"}},
        default_scheduler="none",
    )


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_projects_objects_are_applied_where_they_live_and_observed_by_project(
    api: FakeKubeAPI, backend: KubernetesBackend, scheduler: Scheduler
) -> None:
    ctx = project_context(scheduler)
    backend.apply_project(project="team-a", manifests=render_project(ctx))
    backend.apply_project(project="", manifests=shared(scheduler))
    paths = sorted(r.url.path for r in patches(api))
    expected = {
        "kueue": [
            "/apis/kueue.x-k8s.io/v1beta2/clusterqueues/" + NS,
            "/apis/kueue.x-k8s.io/v1beta2/namespaces/" + NS + "/localqueues/team-a",
            "/apis/kueue.x-k8s.io/v1beta2/resourceflavors/runplane",
        ],
        "kai": [
            "/apis/scheduling.run.ai/v2/queues/runplane",
            "/apis/scheduling.run.ai/v2/queues/team-a",
        ],
        "none": [f"/api/v1/namespaces/{NS}/resourcequotas/runplane-quota"],
    }[scheduler]
    assert paths == expected
    assert all(r.params["fieldManager"] == "runplane" for r in patches(api))
    observed = backend.observe().projects or {}
    own = sorted(o["kind"] for o in observed.get("team-a", []))
    assert own == sorted(o["kind"] for o in render_project(ctx)[1:])
    assert sorted(o["kind"] for o in observed.get("", [])) == [o["kind"] for o in shared(scheduler)]
    # Removed: gone from the cluster and from what is observed.
    backend.delete_project_objects(
        project="team-a", objects=[ObjectRef.of(o) for o in render_project(ctx)[1:]]
    )
    wait_until(lambda: not (backend.observe().projects or {}).get("team-a"), "the deletion")


def test_a_projects_objects_without_their_labels_are_refused(backend: KubernetesBackend) -> None:
    (_, local_queue) = render_project(project_context("kueue"))[1:]
    with pytest.raises(ObjectRejected, match="lacks the labels"):
        backend.apply_project(project="team-b", manifests=[local_queue])
    with pytest.raises(ObjectRejected, match="not a project's object"):
        backend.apply_project(project="team-a", manifests=[samples.job(new_id(), name="j")])


def test_a_scheduler_not_installed_is_said_before_anything_is_applied(
    backend: KubernetesBackend, api: FakeKubeAPI
) -> None:
    api.undeclare("scheduling.run.ai/v2/queues")
    with pytest.raises(KindNotInstalled, match="KAI-Scheduler"):
        backend.apply_project(project="team-a", manifests=render_project(project_context("kai")))
    assert patches(api) == []
