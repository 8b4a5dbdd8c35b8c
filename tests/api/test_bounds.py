"""Every value bounded at the edge: integers in the range of the Kubernetes field they land in,
finite numbers, text that can be stored, keyset cursors of their own type; each a 422 at its
path, before anything renders, serialises or stores it. And the headers every answer carries."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


@pytest.fixture
def project(client: TestClient) -> str:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    return "team-a"


def raw(client: TestClient, path: str, body: str, method: str = "POST") -> Any:
    return client.request(method, path, content=body, headers={"Content-Type": "application/json"})


def errors_of(r: Any) -> dict[str, str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    for word in ("PostgreSQL", "bigint", "out of range"):
        assert word not in r.text
    return {e["field"]: e["message"] for e in r.json()["errors"]}


def training(client: TestClient, spec: str, *, name: str = "w") -> Any:
    fields = ", ".join(f for f in ('"image": "x"', spec) if f)
    body = f'{{"name": "{name}", "project": "team-a", "spec": {{{fields}}}}}'
    return raw(client, "/api/v1/workloads/trainings", body)


# (spec JSON, field, the largest value it takes): int64 where Kubernetes has int64
# (runAsUser, tolerationSeconds), int32 where it has int32 (ttlSecondsAfterFinished).
INTEGERS = [
    ('"security": {{"runAsUid": {}}}', "spec.security.runAsUid", INT64_MAX),
    ('"security": {{"runAsGid": {}}}', "spec.security.runAsGid", INT64_MAX),
    (
        '"tolerations": [{{"key": "k", "effect": "NoExecute", "seconds": {}}}]',
        "spec.tolerations[0].seconds",
        INT64_MAX,
    ),
    (
        '"autoDeletionTimeAfterCompletionSeconds": {}',
        "spec.autoDeletionTimeAfterCompletionSeconds",
        INT32_MAX,
    ),
]


@pytest.mark.parametrize(("template", "field", "largest"), INTEGERS)
def test_integers_fit_the_kubernetes_field_they_land_in(
    client: TestClient, project: str, template: str, field: str, largest: int
) -> None:
    for too_large in (largest + 1, 10**20, 2**64):
        assert field in errors_of(training(client, template.format(too_large)))
    r = training(client, template.format(largest))
    assert r.status_code == 201, r.text
    manifest = client.get(f"{r.headers['location']}/manifests").json()[0]
    assert str(largest) in json.dumps(manifest)


@pytest.mark.parametrize("number", ["1e309", "-1e309", "Infinity", "-Infinity", "NaN"])
def test_numbers_are_finite(client: TestClient, project: str, number: str) -> None:
    spec = (
        '"servingPort": {"container": 8000}, "autoscaling": {"minReplicas": 1, '
        f'"maxReplicas": 3, "metric": "concurrency", "metricThreshold": {number}}}'
    )
    body = f'{{"name": "w", "project": "team-a", "spec": {{"image": "x", {spec}}}}}'
    errors = errors_of(raw(client, "/api/v1/workloads/inferences", body))
    assert "finite" in errors["spec.autoscaling.metricThreshold"]
    assert (
        "finite"
        in errors_of(training(client, f'"compute": {{"cpuCoreRequest": {number}}}'))[
            "spec.compute.cpuCoreRequest"
        ]
    )
    rule = f'{{"rules": {{"compute": {{"cpuCoreRequest": {{"max": {number}}}}}}}}}'
    errors = errors_of(raw(client, "/api/v1/policies/global/trainings", rule, "PUT"))
    assert "finite" in errors["rules.compute.cpuCoreRequest.max"]


def test_a_policy_rule_holds_no_integer_past_64_bits(client: TestClient) -> None:
    rules = {"compute": {"gpuDevicesRequest": {"max": 2**64, "options": [1, 10**30]}}}
    errors = errors_of(client.put("/api/v1/policies/global/trainings", json={"rules": rules}))
    assert errors.keys() == {
        "rules.compute.gpuDevicesRequest.max",
        "rules.compute.gpuDevicesRequest.options[1]",
    }


@pytest.mark.parametrize(
    ("text", "why"),
    [("a\\u0000b", "NUL"), ("\\ud800", "surrogates"), ("x\\udfff", "surrogates")],
)
def test_text_that_cannot_be_stored_is_refused_where_it_is(
    client: TestClient, project: str, text: str, why: str
) -> None:
    # The probe: each of these was a 500 while the answer itself was being written.
    for doc, field in (
        (f'{{"rules": {{"image": {{"pattern": "{text}"}}}}}}', "rules.image.pattern"),
        (f'{{"rules": {{"image": {{"{text}": 1}}}}}}', f'rules.image["{text}"]'),
        (f'{{"rules": {{"image": {{"options": ["{text}"]}}}}}}', "rules.image.options[0]"),
        (f'{{"defaults": {{"workingDir": "{text}"}}}}', "defaults.workingDir"),
    ):
        errors = errors_of(raw(client, "/api/v1/policies/global/trainings", doc, "PUT"))
        assert why in errors[field.replace("\\\\", "\\")], errors
    errors = errors_of(training(client, f'"args": ["ok", "{text}"]'))
    assert why in errors["spec.args[1]"]
    errors = errors_of(client.get("/api/v1/workloads", params={"project": "a\x00b"}))
    assert "NUL" in errors["project"]


LISTS = [
    "/api/v1/projects",
    "/api/v1/audit",
    "/api/v1/tokens",
    "/api/v1/workloads",
    "/api/v1/policies",
    "{workload}/events",
]


def cursor(raw_json: str) -> str:
    return base64.urlsafe_b64encode(raw_json.encode()).decode().rstrip("=")


HAND_MADE = [
    "[true]",
    '["\\ud800"]',
    '["a\\u0000"]',
    "[18446744073709551616]",
    "[-1]",
    "[1e400]",
    "[NaN]",
    "[null]",
    "[[1]]",
    "[{}]",
    '["0001-01-01T00:00:00+23:59", "00000000-0000-0000-0000-000000000000"]',
    '[true, "00000000-0000-0000-0000-000000000000"]',
    "{}",
    "[]",
]


@pytest.mark.parametrize("path", LISTS)
def test_cursors_hold_only_what_this_api_writes_in_them(
    client: TestClient, project: str, path: str
) -> None:
    # The probe: [true] or a lone surrogate in a cursor was a 500 on events, audit, projects.
    url = path.replace("{workload}", training(client, "").headers["location"])
    for value in HAND_MADE:
        errors = errors_of(client.get(url, params={"cursor": cursor(value)}))
        assert errors == {"cursor": "invalid cursor; use the `next` of a page"}, value


@pytest.mark.parametrize("path", LISTS)
def test_cursors_this_api_wrote_still_page(client: TestClient, project: str, path: str) -> None:
    for name in ("b", "c"):
        client.post("/api/v1/projects", json={"name": name})
        client.post("/api/v1/tokens", json={"name": name, "role": "viewer"})
        client.put(f"/api/v1/projects/{name}/policies/trainings", json={})
    workload = training(client, "").headers["location"]
    training(client, "", name="v")
    client.post(f"{workload}/suspend")
    url = path.replace("{workload}", workload)
    first = client.get(url, params={"limit": 1}).json()
    assert first["next"], first
    second = client.get(url, params={"limit": 1, "cursor": first["next"]})
    assert second.status_code == 200, second.text
    assert second.json()["items"]
    assert second.json()["items"] != first["items"]


def test_every_answer_says_nosniff_and_api_answers_are_not_cached(
    client: TestClient, project: str
) -> None:
    for path in ("/healthz", "/metrics", "/docs", "/nowhere"):
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert "cache-control" not in r.headers, path
    for r in (
        client.get("/api/v1/projects"),
        client.get("/api/v1/projects/nowhere"),
        client.post("/api/v1/projects", json={}),
        client.get("/api/v1/openapi.json"),
        client.post("/api/v1/projects", content=b"x" * (2 << 20)),  # 413, from the middleware
        client.get("/api/v1/projects", headers={"Authorization": "Bearer wrong"}),
    ):
        assert r.headers["x-content-type-options"] == "nosniff", r.request.url
        assert r.headers["cache-control"] == "no-store", r.request.url
