"""Fuzz the committed OpenAPI contract against a live server, with every schemathesis phase:
explicit examples, coverage (boundary and invalid values of each parameter), fuzzing (valid and
invalid requests) and stateful sequences that follow the document's links (create a project or
a workload, then read, update, suspend, resume or delete it). Each answer is checked against
the document.

The seed differs per run (``tests/conftest.py`` picks it; pytest prints it at the end) and a
failure names it: ``FUZZ_SEED=<seed> make fuzz`` replays the run. The default run has a small
budget (``FUZZ_EXAMPLES`` per operation, ``FUZZ_STEPS`` per stateful scenario); ``make fuzz``
a large one.

Checked on every answer: no 5xx; the status is one the operation documents; content type,
headers and body match the documented response; invalid input is refused with a 4xx; a call
without the token is refused; every error is an RFC 9457 problem whose ``status`` is the HTTP
status and that names no server file; in sequences, what was deleted stays gone and what was
created can be read. After the operations, and after each sequence: nothing out of range was
stored (``tests/hostile.py``).
"""

from __future__ import annotations

import logging
import os
import sys
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
    ensure_resource_availability,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)
from sqlalchemy import Engine, text

from app.main import create_app
from tests.conftest import AUTH, ROOT, TABLES, make_settings, restore, snapshot
from tests.hostile import out_of_range
from tests.reliability.live import LiveServer

pytestmark = pytest.mark.slow

CONTRACT = ROOT / "openapi" / "openapi.json"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
STEPS = int(os.environ.get("FUZZ_STEPS", "6"))
SEED = int(os.environ.get("FUZZ_SEED") or 0)
REPLAY = f"replay with FUZZ_SEED={SEED} FUZZ_EXAMPLES={EXAMPLES} FUZZ_STEPS={STEPS}"
# Invalid input must be refused with one of these (never a 5xx). 413 is how a body over the
# limit is refused, e.g. 10,000 environment variables of long strings.
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
# Where server files live: no answer may show them (a path in a message helps an attacker and
# says nothing to a user).
SERVER_PATHS = tuple({str(ROOT), sys.prefix, str(Path(os.__file__).parent)})

schema = schemathesis.openapi.from_path(
    CONTRACT,
    config=SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            # Every call carries the admin token (headers=AUTH); ignored_auth tries without.
            "generation": {"with-security-parameters": False},
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSED}},
        }
    ),
)


@schema.hook("map_query")
def _watches_end(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """A watch streams until its client leaves: the fuzzer's watches end after a second (a
    generated ``timeoutSeconds`` that is invalid is kept: the request is refused at once)."""
    path = context.operation.path if context.operation is not None else ""
    if path.endswith("/watch") or path == "/api/v1/workloads":
        query = dict(query or {})
        given = query.get("timeoutSeconds")
        if given is None or (isinstance(given, int) and 1 <= given <= 86400):
            query["timeoutSeconds"] = 1
    return query


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


def no_server_paths(ctx: Any, response: Any, case: Any) -> bool | None:
    """No answer shows where the server's files are."""
    text = response.text
    shown = [path for path in SERVER_PATHS if path in text]
    assert not shown, f"the answer shows server paths {shown}: {text[:500]}"
    return True


def gone_after_delete(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' use_after_free, but for workloads: a deleted workload stays readable by
    id, in phase Deleted (SPEC §4), so reading it after DELETE is the contract, not a bug."""
    if case.operation.path.startswith("/api/v1/workloads/"):
        return None
    result: bool | None = use_after_free(ctx, response, case)
    return result


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    problem_json,
    no_server_paths,
]
STATEFUL_CHECKS = [*CHECKS, gone_after_delete, ensure_resource_availability]
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


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


@pytest.fixture(autouse=True)
def _nothing_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # What a bad request may not cause without a 5xx either: e.g. an audit entry that could not
    # be written (a NUL character in a name).
    yield
    errors = [r for r in caplog.records if r.name == "runplane" and r.levelno >= logging.ERROR]
    assert not errors, f"the server logged {errors[0].getMessage()!r} ({REPLAY})"


@schema.parametrize()
@settings(SETTINGS)
def test_operation_honours_the_contract(case: Any, live: str) -> None:
    try:
        case.call_and_validate(base_url=live, headers=AUTH, checks=CHECKS)
    except BaseException as exc:
        exc.add_note(REPLAY)
        raise


def test_nothing_out_of_range_was_stored(live: str, engine: Engine) -> None:
    # Runs after every operation's examples (pytest keeps a module's order), on what they left.
    assert out_of_range(engine) == [], REPLAY


def test_linked_operations_honour_the_contract(live: str, engine: Engine) -> None:
    start = snapshot(engine)

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        # Each sequence starts from the same data: Hypothesis replays a failing sequence to
        # shrink it, and a replay that met the first run's leftovers (a name now taken, a
        # project now deleted) would take another path.
        def setup(self) -> None:
            restore(engine, start)
            super().setup()

        def teardown(self) -> None:
            assert out_of_range(engine) == [], "a sequence stored values out of range"
            super().teardown()

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": live, "headers": AUTH}

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(
                response, checks=STATEFUL_CHECKS, transport_kwargs=kwargs, recorder=self.recorder
            )

    try:
        seed(SEED)(Workflow).run(settings=settings(SETTINGS, stateful_step_count=STEPS))
    except BaseException as exc:
        exc.add_note(REPLAY)
        raise
    finally:
        restore(engine, start)
