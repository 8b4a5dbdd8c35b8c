"""The committed OpenAPI document is the contract: it must match what the app serves."""

from __future__ import annotations

import json
from pathlib import Path

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
