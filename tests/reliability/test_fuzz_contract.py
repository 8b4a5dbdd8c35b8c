"""Fuzz the committed OpenAPI contract in process: schemathesis generates valid and invalid
requests for every operation and checks each answer against the document.

Bounded for the default run: a fixed number of examples per operation, derandomized (the same
requests every run, so a failure reproduces). ``make fuzz`` runs the same test with a larger
budget (``FUZZ_EXAMPLES``) and, with ``FUZZ_SEED``, a different but still fixed seed.

Checked on every answer: no 5xx; the status is one the operation documents; content type,
headers and body match the documented response; invalid input is refused with a 4xx; and every
error is an RFC 9457 problem whose ``status`` is the HTTP status.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, text

from app.main import create_app
from tests.conftest import AUTH, TABLES, make_settings
from tests.reliability.live import LiveServer

pytestmark = pytest.mark.slow

CONTRACT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("FUZZ_SEED", "20260101"))
# Invalid input must be refused with one of these (never a 5xx). 413 is how a body over the
# limit is refused, e.g. 10,000 environment variables of long strings.
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]

schema = schemathesis.openapi.from_path(
    CONTRACT,
    config=SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REFUSED}}}
    ),
)


def problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx is ``application/problem+json`` with the RFC 9457 members."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type") or [""]
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.split(";")[0].strip() == "application/problem+json", (
        f"a {response.status_code} answered {content_type!r}, not application/problem+json"
    )
    body = response.json()
    missing = {"type", "title", "status", "detail", "instance"} - set(body)
    assert not missing, f"the problem document lacks {sorted(missing)}: {body}"
    assert body["status"] == response.status_code, body
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    problem_json,
]


@pytest.fixture(scope="module")
def live(engine: Engine) -> Iterator[str]:
    """One server for every operation, over real HTTP: what one operation's examples create
    (projects, policies, workloads, tokens) is there for the next operation's, as in a real
    service; the tables are emptied afterwards."""
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(make_settings(database_url=url), reconcile=False)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH) as client:
        for name in ("team-a", "0", "a"):
            assert client.post("/api/v1/projects", json={"name": name}).status_code == 201
        submitted = client.post(
            "/api/v1/workloads/trainings",
            json={"name": "t1", "project": "team-a", "spec": {"image": "pytorch:2"}},
        )
        assert submitted.status_code == 201, submitted.text
        policy = client.put(
            "/api/v1/policies/global/trainings",
            json={"rules": {"image": {"pattern": "[a-z0-9./:_-]+"}}},
        )
        assert policy.status_code in (200, 201), policy.text
        yield server.url
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))


@schema.parametrize()
@seed(SEED)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
def test_operation_honours_the_contract(case: Any, live: str) -> None:
    case.call_and_validate(base_url=live, headers=AUTH, checks=CHECKS)
