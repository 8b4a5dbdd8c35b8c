"""One syntax for field paths in every error answer: ``spec.environmentVariables[0].name``,
``spec.labels["team"]``, whichever check found the problem."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.fieldpath import error_message, field_path
from app.policies import engine
from app.rendering import common
from app.workloads import submission


@pytest.mark.parametrize(
    ("loc", "prefix", "maps", "path"),
    [
        (("compute", "gpuDevicesRequest"), "spec", (), "spec.compute.gpuDevicesRequest"),
        (("environmentVariables", 0, "name"), "spec", (), "spec.environmentVariables[0].name"),
        (("environmentVariables", 2), "", (), "environmentVariables[2]"),
        (("labels", "team"), "defaults", {"labels"}, 'defaults.labels["team"]'),
        (("labels", "a.b/c", "[key]"), "", {"labels"}, 'labels["a.b/c"]'),
        # pydantic's names for its validator steps are not fields
        (
            ("compute", "cpuMemoryLimit", "function-after[_check(), str]"),
            "",
            (),
            "compute.cpuMemoryLimit",
        ),
        ((), "spec", (), "spec"),
        ((), "", (), ""),
    ],
)
def test_field_path(loc: tuple[Any, ...], prefix: str, maps: set[str], path: str) -> None:
    assert field_path(loc, prefix=prefix, maps=maps) == path


def test_error_message() -> None:
    assert (
        error_message({"type": "missing", "msg": "Field required", "loc": ("a",)}) == "is required"
    )
    assert error_message({"type": "extra_forbidden", "msg": "x", "loc": ("a",)}) == "unknown field"
    assert error_message({"type": "value_error", "msg": "Value error, bad", "loc": ("a",)}) == "bad"
    key_error = {"type": "string_too_long", "msg": "too long", "loc": ("labels", "k", "[key]")}
    assert error_message(key_error) == "key: too long"


BAD_ITEM = {"name": "1-starts-with-a-digit", "value": "v"}
LONG_KEY = "k" * 400


def test_request_validation_writes_indexes_and_keys_in_brackets(client: TestClient) -> None:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    r = client.post(
        "/api/v1/workloads/trainings",
        json={
            "name": "w",
            "project": "team-a",
            "spec": {
                "image": "x",
                "environmentVariables": [{"name": "OK"}, BAD_ITEM],
                "labels": {LONG_KEY: "v", "team": "v" * 2000},
            },
        },
    )
    assert r.status_code == 422, r.text
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {
        "spec.environmentVariables[1]",
        f'spec.labels["{LONG_KEY}"]',
        'spec.labels["team"]',
    }


def test_policy_defaults_write_them_the_same_way(client: TestClient) -> None:
    r = client.put(
        "/api/v1/policies/global/trainings",
        json={
            "defaults": {"environmentVariables": [{"name": "OK"}, BAD_ITEM], "labels": {"team": 1}}
        },
    )
    assert r.status_code == 422, r.text
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"defaults.environmentVariables[1]", 'defaults.labels["team"]'}


def test_checks_after_defaults_and_of_the_master_spec_write_them_the_same_way() -> None:
    spec = {"image": "x", "environmentVariables": [{"name": "OK"}, BAD_ITEM], "labels": {"t": 1}}
    fields = {e["field"] for e in submission._spec_errors("training", spec)}
    assert fields == {"spec.environmentVariables[1]", 'spec.labels["t"]'}
    fields = {f for f, _ in common.revalidate_common(spec, "masterSpec")}
    assert fields == {"masterSpec.environmentVariables[1]", 'masterSpec.labels["t"]'}
    problems = engine.validate_policy("distributed", defaults={"masterSpec": spec}, rules={})
    assert {p.field for p in problems} == {
        "defaults.masterSpec.environmentVariables[1]",
        'defaults.masterSpec.labels["t"]',
    }
