"""The committed OpenAPI document is the contract: it must match what the app serves."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate

from app.config import Settings
from app.main import create_app
from app.openapi import openapi_json

COMMITTED = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_app() -> None:
    served = openapi_json(create_app(Settings(database_url=None)))
    assert COMMITTED.read_text() == served, (
        "openapi/openapi.json is stale: run `runplane openapi --out openapi/openapi.json`"
    )


def test_every_operation_has_an_id_and_declares_problems() -> None:
    doc = json.loads(COMMITTED.read_text())
    ids = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ids.append(op["operationId"])
            assert op["operationId"][0].islower(), op["operationId"]
            assert "_" not in op["operationId"], op["operationId"]
            if path.startswith("/api/v1"):
                for code in ("401", "422"):
                    ref = op["responses"][code]["content"]["application/problem+json"]["schema"]
                    assert ref == {"$ref": "#/components/schemas/Problem"}, (method, path, code)
    assert len(ids) == len(set(ids))
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_committed_openapi_is_a_valid_document() -> None:
    # Every $ref resolves, every schema is well formed: what generators refuse otherwise.
    validate(json.loads(COMMITTED.read_text()))


def operations() -> list[tuple[str, str, dict[str, object]]]:
    doc = json.loads(COMMITTED.read_text())
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def test_every_api_call_declares_the_bearer_token_and_health_needs_none() -> None:
    doc = json.loads(COMMITTED.read_text())
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert "security" not in doc  # no global requirement to override
    for path, method, op in operations():
        if path.startswith("/api/v1"):
            assert op.get("security") == [{"bearerAuth": []}], (method, path)
        else:
            assert "security" not in op, (method, path)
    public = {path for path, _, op in operations() if "security" not in op}
    assert public == {"/healthz", "/readyz", "/metrics"}


def test_every_operation_has_one_tag() -> None:
    # Generated clients make one class per tag: a second tag exports the operation twice.
    for path, method, op in operations():
        tags = op.get("tags")
        assert isinstance(tags, list), (method, path)
        assert len(tags) == 1, (method, path, tags)


def test_create_operations_link_to_what_they_created() -> None:
    ops = {op["operationId"]: op for _, _, op in operations()}
    for create, param, targets in (
        ("createProject", "project", {"getProject", "updateProject", "deleteProject"}),
        ("createToken", "tokenId", {"revokeToken"}),
        *(
            (submit, "workloadId", {"getWorkload", "suspendWorkload", "resumeWorkload"})
            for submit in (
                "submitInteractive",
                "submitTraining",
                "submitDistributed",
                "submitInference",
            )
        ),
    ):
        found = ops[create]["responses"]["201"]["links"]  # type: ignore[index]
        assert targets <= {link["operationId"] for link in found.values()}, create
        for link in found.values():
            assert link["operationId"] in ops, link
            assert set(link["parameters"]) == {param}, link
