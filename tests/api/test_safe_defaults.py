"""Safe defaults (Pod Security Standards, baseline, and what only cluster operators should do):
refused with no policy at all, each with a 422 that says why and how to allow it; allowed field
by field by a policy rule ``allowUnsafe``; explained; and projects stay out of the namespaces
Kubernetes owns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

UNSAFE: dict[str, tuple[dict[str, Any], Any]] = {
    # field: (spec that sets it, the value the violation names)
    "storage.hostPath": (
        {"storage": {"hostPath": [{"name": "root", "path": "/", "mountPath": "/host"}]}},
        [{"name": "root", "path": "/", "mountPath": "/host"}],
    ),
    "priorityClass": ({"priorityClass": "system-node-critical"}, "system-node-critical"),
    "tolerations": (
        {"tolerations": [{"key": "", "operator": "Exists"}, {"key": "gpu", "operator": "Exists"}]},
        [{"key": "", "operator": "Exists"}],
    ),
    "annotations": (
        {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}},
        {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"},
    ),
}
GLOBAL = "/api/v1/policies/global/trainings"


@pytest.fixture
def project(client: TestClient) -> str:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    return "team-a"


def submit(
    client: TestClient, spec: dict[str, Any], name: str = "w", kind: str = "trainings"
) -> Any:
    body = {"name": name, "project": "team-a", "spec": {"image": "x", **spec}}
    return client.post(f"/api/v1/workloads/{kind}", json=body)


def rule_for(path: str, rule: dict[str, Any]) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    tree: dict[str, Any] = {leaf: rule}
    for part in reversed(parents):
        tree = {part: tree}
    return tree


@pytest.mark.parametrize("field", UNSAFE)
def test_refused_by_default_and_allowed_by_policy(
    client: TestClient, project: str, field: str
) -> None:
    spec, value = UNSAFE[field]
    r = submit(client, spec)
    assert r.status_code == 422, r.text
    (violation,) = r.json()["errors"]
    assert violation["field"] == f"spec.{field}"
    assert (violation["rule"], violation["source"], violation["value"]) == (
        "baseline",
        "baseline",
        value,
    )
    assert f'{{"allowUnsafe": true}} on {field}' in violation["message"]
    assert client.get("/api/v1/workloads").json()["items"] == []

    allowing = {"rules": rule_for(field, {"allowUnsafe": True})}
    assert client.put(GLOBAL, json=allowing).status_code == 201
    r = submit(client, spec)
    assert r.status_code == 201, r.text
    # Allowing one field allows that field only.
    others = {k: v for f, (s, _) in UNSAFE.items() if f != field for k, v in s.items()}
    r = submit(client, others, name="v")
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {f"spec.{f}" for f in UNSAFE} - {
        f"spec.{field}"
    }

    # A project policy of its own replaces the global one (SPEC §1): the default is back...
    own = "/api/v1/projects/team-a/policies/trainings"
    assert client.put(own, json={"defaults": {"image": "y"}}).status_code == 201
    assert submit(client, spec, name="u").status_code == 422
    # ... unless it inherits the global policy, field by field.
    r = client.put(
        own,
        json={"defaults": {"image": "y"}, "inheritGlobal": True},
        headers={"If-Match": client.get(own).headers["etag"]},
    )
    assert r.status_code == 200, r.text
    assert submit(client, spec, name="u").status_code == 201


def test_what_the_safe_defaults_let_through(client: TestClient, project: str) -> None:
    fine = {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClass": "high",
        "annotations": {
            "container.apparmor.security.beta.kubernetes.io/main": "runtime/default",
            "container.apparmor.security.beta.kubernetes.io/side": "localhost/my-profile",
            "note": "system-node-critical",
        },
        "security": {"runAsUid": 0, "allowPrivilegeEscalation": True},  # baseline allows both
        "storage": {"pvc": [{"claimName": "data", "path": "/data"}]},
    }
    r = submit(client, fine)
    assert r.status_code == 201, r.text
    # Nothing a spec can express renders to what the baseline profile forbids outright.
    manifests = json.dumps(client.get(f"{r.headers['location']}/manifests").json())
    for forbidden in ("hostNetwork", "hostPID", "hostIPC", "privileged", "hostPort", "hostPath"):
        assert forbidden not in manifests


def test_the_master_of_a_distributed_workload_is_held_to_them_too(
    client: TestClient, project: str
) -> None:
    spec = {
        "distributedFramework": "PyTorch",
        "numWorkers": 1,
        "masterSpecSameAsWorker": False,
        "masterSpec": {"image": "x", "priorityClass": "system-cluster-critical"},
    }
    r = submit(client, spec, kind="distributed")
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["spec.masterSpec.priorityClass"]
    rule = {"rules": {"masterSpec": {"priorityClass": {"allowUnsafe": True}}}}
    assert client.put("/api/v1/policies/global/distributed", json=rule).status_code == 201
    assert submit(client, spec, kind="distributed").status_code == 201


def test_a_policy_is_checked_against_them_when_written(client: TestClient, project: str) -> None:
    unsafe_default = {"defaults": {"priorityClass": "system-node-critical"}}
    r = client.put(GLOBAL, json=unsafe_default)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "defaults.priorityClass"
    assert "allowUnsafe" in error["message"]
    allowed = {**unsafe_default, "rules": {"priorityClass": {"allowUnsafe": True}}}
    assert client.put(GLOBAL, json=allowed).status_code == 201
    assert submit(client, {}).json()["spec"]["priorityClass"] == "system-node-critical"

    for bad, message in (
        ({"priorityClass": {"allowUnsafe": "yes"}}, "must be true or false"),
        ({"image": {"allowUnsafe": True}}, "does not apply"),
    ):
        r = client.put(GLOBAL, json={"rules": bad})
        assert r.status_code == 422, r.text
        assert message in r.json()["errors"][0]["message"]


def test_explain_says_what_is_refused_and_how_to_allow_it(client: TestClient) -> None:
    fields = {f["field"]: f for f in client.get("/api/v1/explain/trainings").json()["fields"]}
    guarded = {path for path, f in fields.items() if f.get("safeDefault")}
    assert guarded == set(UNSAFE)
    for path in UNSAFE:
        assert "allowUnsafe" in fields[path]["ruleKeys"]
        assert '{"allowUnsafe": true}' in fields[path]["safeDefault"]
    assert "allowUnsafe" not in fields["image"]["ruleKeys"]
    client.put(GLOBAL, json={"rules": {"tolerations": {"allowUnsafe": True}}})
    tolerations = client.get("/api/v1/explain/trainings", params={"field": "tolerations"}).json()[
        "fields"
    ][0]
    assert tolerations["rules"] == {"allowUnsafe": True}


@pytest.mark.parametrize(
    "namespace", ["kube-system", "kube-public", "kube-node-lease", "kube-x", "default"]
)
def test_projects_stay_out_of_the_namespaces_kubernetes_owns(
    client: TestClient, namespace: str
) -> None:
    r = client.post("/api/v1/projects", json={"name": "ops", "namespace": namespace})
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "namespace"
    assert "belongs to Kubernetes" in error["message"]
    assert client.get("/api/v1/projects").json()["items"] == []
    # A project named like one gets a namespace of its own.
    r = client.post("/api/v1/projects", json={"name": "default"})
    assert r.status_code == 201, r.text
    assert r.json()["namespace"] == "runplane-default"
