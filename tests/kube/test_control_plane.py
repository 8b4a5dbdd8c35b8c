"""Smoke tests of the local control plane: what the `kubernetes` backend relies on, for real.

Server-side apply and field ownership, label selectors, conflicts, deletion with propagation
(garbage collection by kube-controller-manager), the Kubeflow CRDs' schemas, server-side dry-run,
and pods scheduled onto a kwok fake node that move through kwok's stages.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from tests.kube import testenv
from tests.kube.helpers import (
    apply,
    delete,
    error_message,
    get,
    list_objects,
    server_dry_run,
    wait_for,
)

pytestmark = pytest.mark.kube


def config_map(
    name: str, namespace: str, data: dict[str, Any], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def job(name: str, namespace: str, *, suspend: bool = False, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {"runplane.io/test": name}},
        "spec": {
            "suspend": suspend,
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"runplane.io/test": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.invalid/trainer:1",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
            **spec,
        },
    }


def managers(obj: dict[str, Any]) -> dict[str, str]:
    return {m["manager"]: m["operation"] for m in obj["metadata"].get("managedFields", [])}


def test_server_version_matches_pinned_kubernetes(kube_api: ApiClient) -> None:
    info = client.VersionApi(kube_api).get_code()
    assert info.git_version == testenv.read_versions()["KUBERNETES_VERSION"]


def test_server_side_apply_config_map(kube_api: ApiClient, kube_namespace: str) -> None:
    obj = apply(kube_api, config_map("settings", kube_namespace, {"a": "1", "b": "2"}))
    assert obj["data"] == {"a": "1", "b": "2"}
    assert managers(obj) == {"runplane": "Apply"}

    # Applying again without "a" removes it: the manager owned it and no longer applies it.
    again = apply(kube_api, config_map("settings", kube_namespace, {"b": "2", "c": "3"}))
    assert again["data"] == {"b": "2", "c": "3"}

    # An identical apply is a no-op: nothing is written.
    same = apply(kube_api, config_map("settings", kube_namespace, {"b": "2", "c": "3"}))
    assert same["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]

    typed = client.CoreV1Api(kube_api).read_namespaced_config_map("settings", kube_namespace)
    assert typed.data == {"b": "2", "c": "3"}


def test_server_side_apply_job(kube_api: ApiClient, kube_namespace: str) -> None:
    obj = apply(kube_api, job("train", kube_namespace, suspend=True))
    assert managers(obj) == {"runplane": "Apply"}
    # The server defaulted what the manifest left out.
    assert obj["spec"]["completions"] == 1
    assert obj["spec"]["parallelism"] == 1
    assert obj["spec"]["completionMode"] == "NonIndexed"
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"

    # Built-in validation is the real one: a Job's pods can't restart Always.
    bad = job("bad-restart", kube_namespace, suspend=True)
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiException) as err:
        apply(kube_api, bad)
    assert err.value.status == 422
    assert "spec.template.spec.restartPolicy" in str(err.value.body)

    # Job templates are immutable once created.
    changed = job("train", kube_namespace, suspend=True)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/other:2"
    with pytest.raises(ApiException) as err:
        apply(kube_api, changed)
    assert err.value.status == 422
    assert "field is immutable" in str(err.value.body)


def test_label_selector_list(kube_api: ApiClient, kube_namespace: str) -> None:
    ns = kube_namespace
    for name, labels in {
        "a": {"runplane.io/workload": "w1", "tier": "train"},
        "b": {"runplane.io/workload": "w1", "tier": "serve"},
        "c": {"runplane.io/workload": "w2", "tier": "train"},
        "d": {"other": "x"},
    }.items():
        apply(kube_api, config_map(name, ns, {}, labels))

    def names(selector: str) -> set[str]:
        items = list_objects(kube_api, "v1", "ConfigMap", ns, label_selector=selector)
        return {i["metadata"]["name"] for i in items}

    assert names("runplane.io/workload=w1") == {"a", "b"}
    assert names("runplane.io/workload in (w1,w2),tier!=serve") == {"a", "c"}
    assert names("runplane.io/workload") == {"a", "b", "c"}
    assert names("!runplane.io/workload") >= {"d"}  # kube-root-ca.crt has no labels either
    typed = client.CoreV1Api(kube_api).list_namespaced_config_map(
        ns, label_selector="tier=train,runplane.io/workload=w2"
    )
    assert [i.metadata.name for i in typed.items if i.metadata] == ["c"]


def test_apply_conflict_with_another_field_manager(
    kube_api: ApiClient, kube_namespace: str
) -> None:
    apply(
        kube_api,
        config_map("owned", kube_namespace, {"replicas": "3"}),
        field_manager="autoscaler",
    )
    with pytest.raises(ApiException) as err:
        apply(kube_api, config_map("owned", kube_namespace, {"replicas": "1"}))
    assert err.value.status == 409
    status = json.loads(err.value.body or "{}")
    assert status["reason"] == "Conflict"
    assert 'conflict with "autoscaler"' in error_message(err.value)
    assert {(c["reason"], c["field"]) for c in status["details"]["causes"]} == {
        ("FieldManagerConflict", ".data.replicas")
    }

    # force takes the field over.
    obj = apply(kube_api, config_map("owned", kube_namespace, {"replicas": "1"}), force=True)
    assert obj["data"] == {"replicas": "1"}
    assert managers(obj)["runplane"] == "Apply"
    owned_by_autoscaler = [
        m for m in obj["metadata"]["managedFields"] if m["manager"] == "autoscaler"
    ]
    assert all("f:replicas" not in str(m.get("fieldsV1")) for m in owned_by_autoscaler)


def test_update_with_stale_resource_version_conflicts(
    kube_api: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    apply(kube_api, config_map("cas", kube_namespace, {"v": "1"}))
    stale = core.read_namespaced_config_map("cas", kube_namespace)
    apply(kube_api, config_map("cas", kube_namespace, {"v": "2"}))
    stale.data = {"v": "3"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cas", kube_namespace, stale)
    assert err.value.status == 409
    assert "the object has been modified" in str(err.value.body)


def _owned_config_map(kube_api: ApiClient, ns: str, owner: dict[str, Any], name: str) -> None:
    child = config_map(name, ns, {})
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
        }
    ]
    apply(kube_api, child)


def test_delete_propagation_and_garbage_collection(
    kube_api: ApiClient, kube_namespace: str
) -> None:
    ns = kube_namespace
    # Background: the owner goes at once, the garbage collector removes the dependent.
    owner = apply(kube_api, config_map("owner-bg", ns, {}))
    _owned_config_map(kube_api, ns, owner, "child-bg")
    delete(kube_api, "v1", "ConfigMap", "owner-bg", ns, propagation_policy="Background")
    wait_for(
        "child-bg collected",
        lambda: get(kube_api, "v1", "ConfigMap", "child-bg", ns) is None,
        timeout=60,
    )

    # Orphan: the dependent stays, without its ownerReference.
    owner = apply(kube_api, config_map("owner-orphan", ns, {}))
    _owned_config_map(kube_api, ns, owner, "child-orphan")
    delete(kube_api, "v1", "ConfigMap", "owner-orphan", ns, propagation_policy="Orphan")

    def orphaned() -> bool:
        gone = get(kube_api, "v1", "ConfigMap", "owner-orphan", ns) is None
        child = get(kube_api, "v1", "ConfigMap", "child-orphan", ns)
        return gone and child is not None and not child["metadata"].get("ownerReferences")

    wait_for("child-orphan orphaned", orphaned, timeout=60)

    # Foreground on a Job: its pods (made by the job controller) go first, then the Job.
    apply(kube_api, job("fg", ns, parallelism=2, completions=2))
    wait_for(
        "2 pods of job fg",
        lambda: len(list_objects(kube_api, "v1", "Pod", ns, label_selector="job-name=fg")) == 2,
        timeout=60,
    )
    deleting = delete(kube_api, "batch/v1", "Job", "fg", ns, propagation_policy="Foreground")
    assert deleting is not None
    assert "foregroundDeletion" in deleting["metadata"].get("finalizers", [])
    wait_for(
        "job fg and its pods deleted",
        lambda: (
            get(kube_api, "batch/v1", "Job", "fg", ns) is None
            and not list_objects(kube_api, "v1", "Pod", ns, label_selector="job-name=fg")
        ),
        timeout=90,
    )


def pod_template(name: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"training.kubeflow.org/replica": name}},
        "spec": {
            "containers": [
                {
                    "name": "pytorch" if name != "tf" else "tensorflow",
                    "image": "registry.invalid/trainer:1",
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ]
        },
    }


def kubeflow_job(kind: str, namespace: str, name: str = "kf") -> dict[str, Any]:
    if kind == "PyTorchJob":
        spec: dict[str, Any] = {
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "restartPolicy": "OnFailure",
                    "template": pod_template("m"),
                },
                "Worker": {
                    "replicas": 2,
                    "restartPolicy": "OnFailure",
                    "template": pod_template("w"),
                },
            }
        }
        api_version = "kubeflow.org/v1"
    elif kind == "TFJob":
        spec = {
            "tfReplicaSpecs": {
                "Chief": {"replicas": 1, "template": pod_template("tf")},
                "Worker": {"replicas": 2, "template": pod_template("tf")},
            }
        }
        api_version = "kubeflow.org/v1"
    else:
        spec = {
            "slotsPerWorker": 1,
            "mpiImplementation": "OpenMPI",
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "template": pod_template("l")},
                "Worker": {"replicas": 2, "template": pod_template("w")},
            },
        }
        api_version = "kubeflow.org/v2beta1"
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


KUBEFLOW_KINDS = ["PyTorchJob", "TFJob", "MPIJob"]


@pytest.mark.parametrize("kind", KUBEFLOW_KINDS)
def test_kubeflow_job_applies_against_installed_crd(
    kube_api: ApiClient, kube_namespace: str, kind: str
) -> None:
    manifest = kubeflow_job(kind, kube_namespace)
    assert server_dry_run(kube_api, manifest) is None
    obj = apply(kube_api, manifest)
    assert obj["kind"] == kind
    assert managers(obj) == {"runplane": "Apply"}
    stored = get(kube_api, manifest["apiVersion"], kind, "kf", kube_namespace)
    assert stored is not None
    assert stored["spec"] == obj["spec"]

    if kind == "MPIJob":  # an enum in the CRD schema
        manifest["spec"]["mpiImplementation"] = "LAM"
        message = server_dry_run(kube_api, manifest)
        assert message is not None
        assert "spec.mpiImplementation: Unsupported value" in message
    else:  # a CEL transition rule (x-kubernetes-validations: self == oldSelf)
        manifest["spec"]["runPolicy"] = {"schedulingPolicy": {"queue": "a"}}
        apply(kube_api, manifest)
        manifest["spec"]["runPolicy"] = {"schedulingPolicy": {"queue": "b"}}
        with pytest.raises(ApiException) as err:
            apply(kube_api, manifest)
        assert err.value.status == 422
        assert "spec.runPolicy.schedulingPolicy.queue is immutable" in error_message(err.value)


def _malformations(kind: str, ns: str) -> dict[str, tuple[dict[str, Any], int, str]]:
    """what -> (manifest, HTTP status of a server-side apply, part of the server's message)."""
    key = {
        "PyTorchJob": "pytorchReplicaSpecs",
        "TFJob": "tfReplicaSpecs",
        "MPIJob": "mpiReplicaSpecs",
    }[kind]
    missing = kubeflow_job(kind, ns, "bad-missing")
    del missing["spec"][key]
    wrong_type = kubeflow_job(kind, ns, "bad-type")
    next(iter(wrong_type["spec"][key].values()))["replicas"] = "two"
    bad_port = kubeflow_job(kind, ns, "bad-port")
    next(iter(bad_port["spec"][key].values()))["template"]["spec"]["containers"][0]["ports"] = [
        {"containerPort": "http"}
    ]
    quantity = kubeflow_job(kind, ns, "bad-quantity")
    quantity["spec"]["runPolicy"] = {"schedulingPolicy": {"minResources": {"cpu": "lots"}}}
    return {
        "required replica specs missing": (missing, 422, f"spec.{key}: Required value"),
        "minResources not a quantity": (quantity, 422, "minResources.cpu: Invalid value"),
        # Server-side apply reports a wrong type as a 500 "failed to create typed patch object".
        "replicas is a string": (wrong_type, 500, "replicas: expected numeric"),
        "containerPort is a string": (bad_port, 500, "containerPort: expected numeric"),
    }


@pytest.mark.parametrize("kind", KUBEFLOW_KINDS)
def test_malformed_kubeflow_job_rejected_by_crd_schema(
    kube_api: ApiClient, kube_namespace: str, kind: str
) -> None:
    for what, (manifest, status, expected) in _malformations(kind, kube_namespace).items():
        message = server_dry_run(kube_api, manifest)
        assert message is not None, what
        assert expected in message, (what, message)
        with pytest.raises(ApiException) as err:
            apply(kube_api, manifest)
        assert err.value.status == status, (what, err.value.body)
        name = manifest["metadata"]["name"]
        assert get(kube_api, manifest["apiVersion"], kind, name, kube_namespace) is None


def test_server_dry_run(kube_api: ApiClient, kube_namespace: str) -> None:
    ns = kube_namespace
    assert server_dry_run(kube_api, config_map("dry", ns, {"k": "v"})) is None
    assert get(kube_api, "v1", "ConfigMap", "dry", ns) is None  # nothing stored

    message = server_dry_run(kube_api, config_map("dry", ns, {"k": 1}))
    assert message is not None
    assert "data.k" in message  # a ConfigMap's data values are strings

    assert server_dry_run(kube_api, job("dry-job", ns)) is None
    assert get(kube_api, "batch/v1", "Job", "dry-job", ns) is None

    unknown = {"apiVersion": "example.com/v1", "kind": "Nope", "metadata": {"name": "x"}}
    assert "example.com/v1" in str(server_dry_run(kube_api, unknown))

    missing_ns = config_map("dry", "no-such-namespace", {})
    assert 'namespaces "no-such-namespace" not found' in str(server_dry_run(kube_api, missing_ns))


def test_job_pod_scheduled_to_kwok_node_runs_and_succeeds(
    kube_api: ApiClient, kube_namespace: str
) -> None:
    ns = kube_namespace
    apply(kube_api, job("kwok-job", ns))

    def pods() -> list[dict[str, Any]]:
        return list_objects(kube_api, "v1", "Pod", ns, label_selector="job-name=kwok-job")

    pod = wait_for(
        "a scheduled pod", lambda: next((p for p in pods() if p["spec"].get("nodeName")), None)
    )
    assert pod["spec"]["nodeName"] == "kwok-node-0"

    def succeeded() -> dict[str, Any] | None:
        return next((p for p in pods() if p["status"].get("phase") == "Succeeded"), None)

    done = wait_for("pod Succeeded (kwok pod-ready then pod-complete)", succeeded, timeout=60)
    state = done["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["reason"] == "Completed"
    assert done["status"]["podIP"].startswith("10.244.")

    def complete() -> bool:
        obj = get(kube_api, "batch/v1", "Job", "kwok-job", ns) or {}
        conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
        return conds.get("Complete") == "True"

    wait_for("job Complete", complete, timeout=60)


def test_deployment_pods_run_on_kwok_node(kube_api: ApiClient, kube_namespace: str) -> None:
    labels = {"app": "serve"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "serve", "namespace": kube_namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": "registry.invalid/serve:1"}]},
            },
        },
    }
    apply(kube_api, deployment)

    def ready() -> bool:
        obj = get(kube_api, "apps/v1", "Deployment", "serve", kube_namespace) or {}
        return bool(obj.get("status", {}).get("readyReplicas") == 2)

    wait_for("deployment serve 2/2 ready", ready, timeout=90)
    pods = list_objects(kube_api, "v1", "Pod", kube_namespace, label_selector="app=serve")
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    assert {p["spec"]["nodeName"] for p in pods} == {"kwok-node-0"}
