"""OpenAPI helpers: declared error responses, links, bearer security and the committed
document."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from app.errors import PROBLEM_JSON
from app.schemas import Problem

_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or invalid bearer token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    412: "The If-Match version is stale",
    413: "Request body too large",
    422: "Validation failed; `errors` lists every problem",
    503: "A dependency is unavailable",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer these problem statuses."""
    return {
        code: {
            "model": Problem,
            "description": _DESCRIPTIONS[code],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in codes
    }


def links(parameter: str, source: str, *operation_ids: str) -> dict[str, Any]:
    """OpenAPI links from a created resource to the operations on it: ``parameter`` of each
    operation is ``source`` of the answer's body. Clients and schemathesis' stateful tests
    follow them."""
    return {
        "links": {
            op[0].upper() + op[1:]: {
                "operationId": op,
                "parameters": {parameter: f"$response.body#/{source}"},
            }
            for op in operation_ids
        }
    }


def openapi_json(app: FastAPI) -> str:
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
