"""Every operation of the API, every request model, under hostile values (Hypothesis): no answer
is a 5xx, every refusal is a problem document that repeats no database error, the server logs
no error, and nothing out of range is stored (``tests/hostile.py``).

``HOSTILE_EXAMPLES`` sets the examples per test (default 40; 1000 makes a long run).
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.hostile import (
    cursors,
    dumps,
    hostile_text,
    out_of_range,
    policy_documents,
    request_bodies,
    with_hostile_value,
)

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "40"))
PROBLEM = "application/problem+json"
# What PostgreSQL says when a value reaches it unchecked: no answer may repeat it.
DATABASE_WORDS = ("PostgreSQL", "out of range", "bigint", "invalid input syntax", "Unicode escape")


def operations() -> list[Any]:
    from app.main import create_app
    from tests.conftest import make_settings

    document = create_app(make_settings()).openapi()
    return [
        pytest.param(method.upper(), path, id=f"{method.upper()} {path}")
        for path, ops in document["paths"].items()
        for method in ops
        if path.startswith("/api/")
    ]


@pytest.fixture
def world(client: TestClient) -> dict[str, str]:
    """Two projects, a workload and a token: what the paths' names and ids point at."""
    for name in ("team-a", "team-b"):
        assert client.post("/api/v1/projects", json={"name": name}).status_code == 201
    spec = {"image": "pytorch:2", "compute": {"cpuMemoryRequest": "1Gi"}}
    submitted = client.post(
        "/api/v1/workloads/trainings", json={"name": "w", "project": "team-a", "spec": spec}
    )
    assert submitted.status_code == 201, submitted.text
    token = client.post("/api/v1/tokens", json={"name": "t", "role": "viewer"})
    return {"workloadId": submitted.json()["id"], "tokenId": token.json()["id"]}


def _url_part(value: str) -> str:
    # Lone surrogates go out as the bytes a UTF-16-minded client would write: invalid UTF-8.
    return quote(value, safe="", errors="surrogatepass")


def _request_body(operation: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {})
    return content.get("application/json", {}).get("schema")


def _check(r: Any) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"] == PROBLEM, r.text
        shown = [w for w in DATABASE_WORDS if w in r.text]
        assert not shown, r.text


def _nothing_logged_nor_stored(caplog: pytest.LogCaptureFixture, engine: Engine) -> None:
    # Nothing reached PostgreSQL unchecked (app.problems says when it refuses a value), and
    # nothing failed without a 5xx either (an audit entry that could not be written).
    logged = [
        r
        for r in caplog.records
        if r.name == "runplane"
        and (r.levelno >= logging.ERROR or r.getMessage().startswith("PostgreSQL refused"))
    ]
    assert not logged, logged[0].getMessage()
    assert out_of_range(engine) == []


SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.mark.parametrize(("method", "path"), operations())
def test_no_operation_fails_or_stores_out_of_range_values(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
) -> None:
    """Hostile path and query parameters (cursors among them) and bodies with one or two
    hostile values or keys, anywhere."""
    document = client.app.openapi()  # type: ignore[attr-defined]
    operation = document["paths"][path][method.lower()]
    defs = document["components"]["schemas"]
    body_schema = _request_body(operation)
    if body_schema is None:
        bodies: st.SearchStrategy[Any] = st.none()
    elif body_schema.get("$ref", "").endswith("/PolicyWrite"):
        bodies = policy_documents(
            request_bodies({"$ref": "#/components/schemas/TrainingSpec"}, defs)
        )
    else:
        bodies = request_bodies(body_schema, defs)

    def parameter(param: dict[str, Any]) -> st.SearchStrategy[str]:
        name, schema = param["name"], param.get("schema", {})
        if name == "cursor":
            return cursors
        known = [world[name]] if name in world else []
        enum: list[Any] = schema.get("enum") or next(
            (s["enum"] for s in schema.get("anyOf", ()) if "enum" in s), []
        )
        sane = known + list(enum) + ["team-a", "1", "true", "2030-01-01T00:00:00Z"]
        return st.one_of(st.sampled_from(sane), hostile_text)

    params = [p for p in operation.get("parameters", ()) if p["in"] in ("path", "query")]

    @SETTINGS
    @given(st.data())
    def call(data: st.DataObject) -> None:
        url, query = path, []
        for param in params:
            if param["in"] == "query" and not data.draw(st.booleans()):
                continue
            value = data.draw(parameter(param), label=param["name"])
            if param["in"] == "path":
                url = url.replace("{" + param["name"] + "}", _url_part(value) or "x")
            else:
                query.append(f"{param['name']}={_url_part(value)}")
        if path.endswith("/watch") or path == "/api/v1/workloads":
            # A watch streams until its client leaves: this one leaves after a second (a
            # drawn timeoutSeconds stays; if it is not valid, the request is refused at once).
            if not any(q.startswith("timeoutSeconds=") for q in query):
                query.append("timeoutSeconds=1")
        body = data.draw(bodies, label="body")
        _check(
            client.request(
                method,
                url + ("?" + "&".join(query) if query else ""),
                content=None if body is None else dumps(body),
                headers={"Content-Type": "application/json"},
            )
        )

    call()
    _nothing_logged_nor_stored(caplog, engine)


BODY_ROUTES = {
    "POST /api/v1/projects": "/api/v1/projects",
    "PATCH /api/v1/projects/{project}": "/api/v1/projects/team-b",
    "PUT /api/v1/policies/global/{workloadType}": "/api/v1/policies/global/trainings",
    "PUT /api/v1/projects/{project}/policies/{workloadType}": (
        "/api/v1/projects/team-a/policies/trainings"
    ),
    "POST /api/v1/tokens": "/api/v1/tokens",
    **{
        f"POST /api/v1/workloads/{c}": f"/api/v1/workloads/{c}"
        for c in ("interactives", "trainings", "distributed", "inferences")
    },
}


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_every_field_of_every_request_model_under_hostile_values(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    route: str,
) -> None:
    """A valid body but for one value, for each field of the request model in turn (and the
    defaults and rules of policies), each the values that break a field of its type."""
    method, template = route.split(" ")
    document = client.app.openapi()  # type: ignore[attr-defined]
    defs = document["components"]["schemas"]
    schema = _request_body(document["paths"][template][method.lower()])
    if schema.get("$ref", "").endswith("/PolicyWrite"):
        spec = {"$ref": "#/components/schemas/TrainingSpec"}
        bodies = st.one_of(
            with_hostile_value(spec, defs).map(lambda d: {"defaults": d}),
            policy_documents(st.just({})),
        )
    else:
        bodies = with_hostile_value(schema, defs)

    @SETTINGS
    @given(bodies)
    def call(body: Any) -> None:
        _check(
            client.request(
                method,
                BODY_ROUTES[route],
                content=dumps(body),
                headers={"Content-Type": "application/json"},
            )
        )

    call()
    _nothing_logged_nor_stored(caplog, engine)
