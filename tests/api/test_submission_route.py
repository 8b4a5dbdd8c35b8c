"""The submission endpoints' short path answers exactly as FastAPI's own handler does."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from app.auth.principal import Principal
from app.deps import get_principal
from app.workloads import routing
from app.workloads.routing import SubmissionRoute

URL = "/api/v1/workloads/trainings"
BODY = {"name": "w", "project": "team-a", "spec": {"image": "x", "compute": {"cpuCoreRequest": 2}}}


@pytest.fixture
def project(client: TestClient) -> str:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    client.put(
        "/api/v1/policies/global/trainings", json={"defaults": {"imagePullPolicy": "Always"}}
    )
    return "team-a"


def comparable(r: Any) -> Any:
    """An answer without what differs from one submission to the next (ids, times)."""
    body = r.json()
    if "manifests" in body:  # a dry run
        return r.status_code, body["spec"], body["appliedDefaults"], body["policy"]
    return r.status_code, {k: v for k, v in body.items() if k in ("errors", "detail", "spec")}


@pytest.fixture
def took_short_path(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per request the short path handled (FastAPI's handler never calls this name)."""
    seen: list[bool] = []

    async def spy(request: Request) -> Any:
        seen.append(True)
        return await get_principal(request)

    monkeypatch.setattr(routing, "get_principal", spy)
    return seen


@pytest.mark.parametrize(
    ("short", "fastapi"),
    [
        # dryRun: the short path knows "true" and "false"; FastAPI parses every other spelling.
        (({"dryRun": "true"}, {}), ({"dryRun": "1"}, {})),
        (({"dryRun": "false"}, {}), ({"dryRun": "no"}, {})),
        # A JSON subtype the short path leaves to FastAPI.
        (({}, {"content-type": "application/json"}), ({}, {"content-type": "application/x+json"})),
    ],
)
def test_both_paths_give_the_same_answer(
    client: TestClient,
    project: str,
    took_short_path: list[bool],
    short: tuple[dict[str, str], dict[str, str]],
    fastapi: tuple[dict[str, str], dict[str, str]],
) -> None:
    answers = []
    for i, (params, headers) in enumerate((short, fastapi)):
        body = json.dumps({**BODY, "name": f"w{i}"})
        headers = {"content-type": "application/json", **headers}
        answers.append(client.post(URL, params=params, content=body, headers=headers))
    assert took_short_path == [True]  # the first request only
    assert answers[0].status_code in (200, 201)
    assert comparable(answers[0]) == comparable(answers[1])


@pytest.mark.parametrize(
    "send",
    [
        lambda c: c.post(URL, content=b"{not json", headers={"content-type": "application/json"}),
        lambda c: c.post(URL, json={**BODY, "name": "Not-A-Label"}),
        lambda c: c.post(
            URL, json={**BODY, "spec": {"image": "x", "compute": {"cpuCoreRequest": -1}}}
        ),
        lambda c: c.post(URL, json=BODY, headers={"Idempotency-Key": "k" * 256}),
        lambda c: c.post(URL, json=BODY, params={"dryRun": "maybe"}),
        lambda c: c.post(URL, content=b"", headers={"content-type": "application/json"}),
    ],
    ids=["invalid JSON", "bad name", "negative CPU", "long key", "bad dryRun", "no body"],
)
def test_a_malformed_request_gets_fastapis_own_refusal(
    client: TestClient, project: str, took_short_path: list[bool], send: Any
) -> None:
    r = send(client)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"]
    assert took_short_path == []


def test_authentication_comes_first_on_both_paths(anon_client: TestClient) -> None:
    assert anon_client.post(URL, json=BODY).status_code == 401
    assert anon_client.post(URL, content=b"{not json").status_code == 401


def test_an_endpoint_must_declare_what_the_short_path_supplies() -> None:
    async def submit_odd(request: Request, body: dict[str, Any]) -> None:
        return None

    with pytest.raises(TypeError, match="must take"):
        APIRouter(route_class=SubmissionRoute).post("/odd")(submit_odd)


def test_overridden_dependencies_are_honoured(
    client: TestClient, project: str, took_short_path: list[bool]
) -> None:
    def viewer() -> Principal:
        return Principal(name="v", role="viewer", id="v", projects=frozenset({"team-a"}))

    app = cast(FastAPI, client.app)
    app.dependency_overrides[get_principal] = viewer
    try:
        assert client.post(URL, json=BODY).status_code == 403  # a viewer may not submit
    finally:
        app.dependency_overrides.clear()
    assert took_short_path == []
    assert client.post(URL, json=BODY).status_code == 201
    assert took_short_path == [True]
