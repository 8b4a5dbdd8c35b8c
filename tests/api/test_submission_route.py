"""SubmissionRoute: the short way through a submission runs every dependency FastAPI would, and
answers as FastAPI's handler does; whatever it cannot answer so, FastAPI answers."""

from __future__ import annotations

import re
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from app.deps import AUTHORIZE
from app.workloads import submission_route
from app.workloads.submission_route import SubmissionRoute

# --- the route class on an app of its own ---------------------------------------------------------

ran: list[str] = []


async def gate(request: Request) -> None:
    """Stands for main.py's dependencies of every route: it runs once per request."""
    ran.append("gate")


async def caller(request: Request) -> str:
    ran.append("caller")
    return request.headers.get("x-caller", "anonymous")


def page(limit: int = 10) -> int:
    """A dependency of more than the request: only FastAPI's handler can run it."""
    ran.append(f"page {limit}")
    return limit


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: int = 1


async def endpoint(
    request: Request,
    who: Annotated[str, Depends(caller)],
    again: Annotated[str, Depends(caller)],  # the same dependency: solved once, as FastAPI does
    body: Body,
    dry_run: Annotated[bool, Query(alias="dryRun")] = False,
    key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=8)] = None,
) -> Response:
    return JSONResponse({"who": who, "again": again, "name": body.name, "dryRun": dry_run})


def toy(*dependencies: Any) -> FastAPI:
    router = APIRouter(route_class=SubmissionRoute)
    router.add_api_route("/things", endpoint, methods=["POST"], status_code=201)
    app = FastAPI()
    app.include_router(router, dependencies=list(dependencies))
    return app


@pytest.fixture
def shortcuts(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each request went the short way (True) or to FastAPI's handler (False)."""
    taken: list[bool] = []
    answer = submission_route._Shortcut.answer

    async def spy(self: Any, request: Request) -> Response | None:
        try:
            response = await answer(self, request)
        except Exception:
            taken.append(True)  # the endpoint's or a dependency's error, raised the short way
            raise
        taken.append(response is not None)
        return response

    monkeypatch.setattr(submission_route._Shortcut, "answer", spy)
    ran.clear()
    return taken


def test_the_short_way_runs_the_includes_dependencies_and_the_routes(
    shortcuts: list[bool],
) -> None:
    with TestClient(toy(Depends(gate))) as c:
        r = c.post("/things", json={"name": "a"}, headers={"x-caller": "ann"})
    assert r.status_code == 200, r.text  # the endpoint's own response
    assert r.json() == {"who": "ann", "again": "ann", "name": "a", "dryRun": False}
    assert shortcuts == [True]
    assert ran == ["gate", "caller"]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/things?dryRun=true", {"name": "a"}, {}, 200),  # a query parameter
        ("/things", {"name": "a"}, {"Idempotency-Key": "k1"}, 200),  # a header parameter
        ("/things", {"name": "a"}, {"Idempotency-Key": "far-too-long"}, 422),
        ("/things", {"name": "a", "extra": 1}, {}, 422),  # what the model refuses
    ],
)
def test_fastapi_answers_what_the_short_way_does_not_take(
    shortcuts: list[bool], path: str, body: Any, headers: dict[str, str], status: int
) -> None:
    with TestClient(toy(Depends(gate))) as c:
        r = c.post(path, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert True not in shortcuts
    if status == 200:
        assert ran == ["gate", "caller"]  # once each: declining ran none of them
    if status == 422:
        assert r.json()["detail"][0]["loc"][0] in ("body", "header")


def test_a_dependency_the_short_way_cannot_run_leaves_the_route_to_fastapi(
    shortcuts: list[bool],
) -> None:
    with TestClient(toy(Depends(gate), Depends(page))) as c:
        assert c.post("/things?limit=3", json={"name": "a"}).status_code == 200
        assert ran == ["gate", "page 3", "caller"]
        assert c.post("/things?limit=x", json={"name": "a"}).status_code == 422
    assert shortcuts == []  # never even tried


def test_dependency_overrides_are_obeyed(shortcuts: list[bool]) -> None:
    async def someone(request: Request) -> str:
        return "override"

    app = toy(Depends(gate))
    app.dependency_overrides[caller] = someone
    with TestClient(app) as c:
        assert c.post("/things", json={"name": "a"}).json()["who"] == "override"
    assert True not in shortcuts


# --- the submission endpoints: the same answers both ways ---------------------------------------

POLICY = {"rules": {"compute": {"gpuDevicesRequest": {"max": 2}}}}
URL = "/api/v1/workloads/trainings"


def submission(name: str, **spec: Any) -> dict[str, Any]:
    return {"name": name, "project": "team-a", "spec": {"image": "x", **spec}}


# Each case, and how the short way treats it: answers ("short"), gives it to FastAPI once the
# model refused the body ("declined"), or leaves it to FastAPI at once ("fastapi").
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("accepted", {"json": submission("{n}")}, "short"),
    ("name taken", {"json": submission("taken")}, "short"),
    ("policy violated", {"json": submission("{n}", compute={"gpuDevicesRequest": 4})}, "short"),
    ("no such project", {"json": {**submission("{n}"), "project": "nope"}}, "short"),
    ("no credentials", {"json": submission("{n}"), "headers": {"Authorization": ""}}, "short"),
    ("unstorable text", {"json": submission("{n}", command="a\u0000b")}, "declined"),
    ("wrong type", {"json": submission("{n}", compute={"gpuDevicesRequest": "four"})}, "declined"),
    ("unknown field", {"json": {**submission("{n}"), "color": "red"}}, "declined"),
    ("not JSON", {"content": b"name=a", "headers": {"Content-Type": "text/plain"}}, "fastapi"),
    (
        "broken JSON",
        {"content": b'{"name":', "headers": {"Content-Type": "application/json"}},
        "declined",
    ),
    ("dry run", {"json": submission("{n}"), "params": {"dryRun": "true"}}, "fastapi"),
    ("idempotent", {"json": submission("{n}"), "headers": {"Idempotency-Key": "k-{n}"}}, "fastapi"),
]
# What differs between two equal answers: a new workload's id, name and times.
_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d{4}-\d\d-\d\dT[0-9:.]+Z?"
    r"|(short|long)-1"
)


def _fill(value: Any, n: str) -> Any:
    if isinstance(value, str):
        return value.replace("{n}", n)
    if isinstance(value, dict):
        return {k: _fill(v, n) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("case", "kwargs", "way"), CASES, ids=[c for c, _, _ in CASES])
def test_a_submission_gets_the_same_answer_either_way(
    client: TestClient, shortcuts: list[bool], case: str, kwargs: dict[str, Any], way: str
) -> None:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    assert client.put("/api/v1/policies/global/trainings", json=POLICY).status_code == 201
    assert client.post(URL, json=submission("taken")).status_code == 201
    shortcuts.clear()
    answers = []
    for n in ("short-1", "long-1"):
        if n == "long-1":  # an override of the route's dependency: FastAPI's handler answers
            client.app.dependency_overrides[AUTHORIZE] = AUTHORIZE  # type: ignore[attr-defined]
        r = client.post(URL, **_fill(kwargs, n))
        answers.append((r.status_code, r.headers.get("content-type"), _VOLATILE.sub("~", r.text)))
    client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert answers[0] == answers[1]
    assert shortcuts == {"short": [True], "declined": [False], "fastapi": []}[way]
