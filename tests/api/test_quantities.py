"""Every quantity field refuses a value of the wrong type with a 422 at its path, never a 500:
spec quantities, extended resources, policy defaults and rules, project quotas."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.domain.quantity import quantity_value

WRONG_TYPES: list[Any] = [{}, {"value": "1Gi"}, [], ["1Gi"], True, False]
SPEC_QUANTITIES = ["gpuMemoryRequest", "cpuMemoryRequest", "cpuMemoryLimit"]


@pytest.fixture
def project(client: TestClient) -> str:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    return "team-a"


def submit(client: TestClient, project: str, compute: dict[str, Any]) -> Any:
    return client.post(
        "/api/v1/workloads/trainings",
        json={"name": "w", "project": project, "spec": {"image": "x", "compute": compute}},
    )


def refused_at(r: Any, field: str) -> str:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    messages = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert field in messages, messages
    return str(messages[field])


@pytest.mark.parametrize("bad", [*WRONG_TYPES, None, 5])
def test_the_parser_refuses_every_wrong_type_with_a_value_error(bad: Any) -> None:
    if bad == 5:
        assert quantity_value(bad) == 5  # a plain number is a quantity (policy rules use it)
        return
    with pytest.raises(ValueError, match="quantity"):
        quantity_value(bad)


@pytest.mark.parametrize("bad", [*WRONG_TYPES, 8])
@pytest.mark.parametrize("field", SPEC_QUANTITIES)
def test_spec_quantities(client: TestClient, project: str, field: str, bad: Any) -> None:
    r = submit(client, project, {field: bad})
    message = refused_at(r, f"spec.compute.{field}")
    assert "Kubernetes quantity" in message


@pytest.mark.parametrize("bad", [*WRONG_TYPES, None, 1])
def test_extended_resource_quantities(client: TestClient, project: str, bad: Any) -> None:
    resources = [{"resource": "example.com/fpga", "quantity": "1"}, {"resource": "a.b/c"}]
    resources[1]["quantity"] = bad
    r = submit(client, project, {"extendedResources": resources})
    refused_at(r, "spec.compute.extendedResources[1].quantity")


@pytest.mark.parametrize("bad", [*WRONG_TYPES, 3])
def test_policy_defaults(client: TestClient, bad: Any) -> None:
    r = client.put(
        "/api/v1/policies/global/trainings",
        json={
            "defaults": {
                "compute": {
                    "cpuMemoryRequest": bad,
                    "extendedResources": [{"resource": "a.b/c", "quantity": bad}],
                }
            }
        },
    )
    refused_at(r, "defaults.compute.cpuMemoryRequest")
    refused_at(r, "defaults.compute.extendedResources[0].quantity")


@pytest.mark.parametrize("bad", [*WRONG_TYPES, None, -1, "lots"])
@pytest.mark.parametrize("key", ["min", "max"])
def test_policy_rule_bounds(client: TestClient, key: str, bad: Any) -> None:
    r = client.put(
        "/api/v1/policies/global/trainings",
        json={"rules": {"compute": {"gpuMemoryRequest": {key: bad}}}},
    )
    assert "quantity" in refused_at(r, f"rules.compute.gpuMemoryRequest.{key}")


def test_policy_rule_bounds_take_quantities_and_plain_numbers(client: TestClient) -> None:
    r = client.put(
        "/api/v1/policies/global/trainings",
        json={"rules": {"compute": {"gpuMemoryRequest": {"min": 1024, "max": "10Gi"}}}},
    )
    assert r.status_code == 201, r.text


# An object is a quota's full form ({deserved, limit, overQuotaWeight}; {} deserves nothing):
# the other wrong types are refused as amounts.
@pytest.mark.parametrize("bad", [*(t for t in WRONG_TYPES if not isinstance(t, dict)), 16])
@pytest.mark.parametrize("field", ["cpu", "memory"])
def test_project_quotas(client: TestClient, project: str, field: str, bad: Any) -> None:
    # The reported bug: {"quota": {"memory": {}}} was a 500 (an unhashable value reached the
    # parser's cache).
    r = client.post("/api/v1/projects", json={"name": "x", "quota": {field: bad}})
    assert "Kubernetes quantity" in refused_at(r, f"quota.{field}")
    r = client.patch(f"/api/v1/projects/{project}", json={"quota": {field: bad}})
    assert "Kubernetes quantity" in refused_at(r, f"quota.{field}")
    assert client.get(f"/api/v1/projects/{project}").json()["quota"][field] is None


def test_an_unset_optional_quantity_is_not_an_error(client: TestClient, project: str) -> None:
    r = client.post("/api/v1/projects", json={"name": "x", "quota": {"memory": None}})
    assert r.status_code == 201, r.text
    r = submit(client, project, {"cpuMemoryLimit": None})
    assert r.status_code == 201, r.text


# Past what Kubernetes represents (2^63-1), however written; the probe stored the quotas and
# failed in rendering on the extended resource.
TOO_LARGE = ["1e28", "1e+300", "1e999999999", "9223372036854775808", "8Ei", "9999999999999P"]


@pytest.mark.parametrize("bad", TOO_LARGE)
def test_quantities_beyond_kubernetes_are_refused_everywhere(
    client: TestClient, project: str, bad: str
) -> None:
    r = submit(client, project, {"extendedResources": [{"resource": "x.io/y", "quantity": bad}]})
    assert "2^63-1" in refused_at(r, "spec.compute.extendedResources[0].quantity")
    assert "2^63-1" in refused_at(
        submit(client, project, {"cpuMemoryRequest": bad}), ("spec.compute.cpuMemoryRequest")
    )
    for field in ("cpu", "memory"):
        r = client.patch(f"/api/v1/projects/{project}", json={"quota": {field: bad}})
        assert "2^63-1" in refused_at(r, f"quota.{field}")
    rule = {"rules": {"compute": {"gpuMemoryRequest": {"max": bad}}}}
    refused_at(
        client.put("/api/v1/policies/global/trainings", json=rule),
        ("rules.compute.gpuMemoryRequest.max"),
    )
    assert client.get(f"/api/v1/projects/{project}").json()["quota"] == {
        "gpu": None,
        "cpu": None,
        "memory": None,
    }


def test_the_largest_quantity_kubernetes_represents_is_taken(
    client: TestClient, project: str
) -> None:
    largest = "9223372036854775807"
    r = submit(client, project, {"extendedResources": [{"resource": "x.io/y", "quantity": "7Ei"}]})
    assert r.status_code == 201, r.text
    r = client.patch(f"/api/v1/projects/{project}", json={"quota": {"memory": largest}})
    assert r.status_code == 200, r.text
    assert quantity_value("1e-999999999") > 0  # rounded up to 1n by Kubernetes, not refused
