"""The authorization matrix, built from the app's own route table.

Every route under /api/v1 is called with no token, a bad, an expired and a revoked token (401),
and as admin, researcher and viewer against a project in their scope (team-a) and one outside
it (team-b). The expected answer comes from the route's decision in ``app.auth.access``; a
route without a decision, or without a sample request here, fails ``test_every_route_...``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.audit.recorder import AuditedRoute
from app.auth.access import DECISIONS, Decision
from app.auth.principal import Principal, Role
from app.config import Settings
from app.main import create_app
from tests.auth.conftest import PROBLEM, SPECS, Mint, World, assert_problem, bearer
from tests.conftest import SqlSession, restore, snapshot

# Routes under /api/v1 that need no token at all.
PUBLIC = {("GET", "/api/v1/openapi.json")}


def api_routes() -> list[tuple[str, str, Any]]:
    app = create_app(Settings(database_url=None), reconcile=False)
    found = []
    for ctx in iter_route_contexts(app.routes):
        template = ctx.path_format
        if not template or not template.startswith("/api/v1/"):
            continue
        for method in sorted((ctx.methods or set()) - {"HEAD"}):
            if (method, template) not in PUBLIC:
                found.append((method, template, ctx.original_route))
    return found


ROUTES = api_routes()


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    json: Any = None
    params: dict[str, str] | None = None


Sample = Callable[[World, str], Req]
Setup = Callable[[SqlSession, str], None]


def _no_active_workloads(sql: SqlSession, project: str) -> None:
    with sql() as session:
        session.execute(
            text("UPDATE workloads SET phase = 'Deleted', deleted_at = now() WHERE project = :p"),
            {"p": project},
        )


def _submission(collection: str) -> Sample:
    def sample(w: World, p: str) -> Req:
        body = {"name": "new-one", "project": p, "spec": SPECS[collection]}
        return Req("POST", f"/api/v1/workloads/{collection}", body)

    return sample


P = "/api/v1"
POLICY = P + "/projects/{project}/policies/{workloadType}"
WORKLOAD = P + "/workloads/{workloadId}"

# One request per route that succeeds for an admin; ``p`` is the target project.
SAMPLES: dict[tuple[str, str], Sample] = {
    ("POST", P + "/projects"): lambda w, p: Req("POST", "/api/v1/projects", {"name": "new-one"}),
    ("GET", P + "/projects"): lambda w, p: Req("GET", "/api/v1/projects"),
    ("GET", P + "/projects/{project}"): lambda w, p: Req("GET", f"/api/v1/projects/{p}"),
    ("GET", P + "/projects/{project}/manifests"): lambda w, p: Req(
        "GET", f"/api/v1/projects/{p}/manifests"
    ),
    ("PATCH", P + "/projects/{project}"): lambda w, p: Req(
        "PATCH", f"/api/v1/projects/{p}", {"description": "changed"}
    ),
    ("DELETE", P + "/projects/{project}"): lambda w, p: Req("DELETE", f"/api/v1/projects/{p}"),
    ("GET", P + "/policies"): lambda w, p: Req("GET", "/api/v1/policies"),
    ("GET", P + "/policies/global/{workloadType}"): lambda w, p: Req(
        "GET", "/api/v1/policies/global/trainings"
    ),
    ("PUT", P + "/policies/global/{workloadType}"): lambda w, p: Req(
        "PUT", "/api/v1/policies/global/trainings", {"defaults": {"image": "y"}}
    ),
    ("DELETE", P + "/policies/global/{workloadType}"): lambda w, p: Req(
        "DELETE", "/api/v1/policies/global/trainings"
    ),
    ("GET", POLICY): lambda w, p: Req("GET", f"/api/v1/projects/{p}/policies/trainings"),
    ("PUT", POLICY): lambda w, p: Req(
        "PUT", f"/api/v1/projects/{p}/policies/trainings", {"defaults": {"image": "z"}}
    ),
    ("DELETE", POLICY): lambda w, p: Req("DELETE", f"/api/v1/projects/{p}/policies/trainings"),
    ("GET", POLICY + "/effective"): lambda w, p: Req(
        "GET", f"/api/v1/projects/{p}/policies/trainings/effective"
    ),
    ("GET", P + "/explain/{workloadType}"): lambda w, p: Req(
        "GET", "/api/v1/explain/trainings", params={"project": p}
    ),
    **{("POST", f"{P}/workloads/{c}"): _submission(c) for c in SPECS},
    ("GET", P + "/workloads"): lambda w, p: Req("GET", "/api/v1/workloads"),
    ("GET", WORKLOAD): lambda w, p: Req("GET", f"/api/v1/workloads/{w.workloads[p]}"),
    ("GET", WORKLOAD + "/events"): lambda w, p: Req(
        "GET", f"/api/v1/workloads/{w.workloads[p]}/events"
    ),
    ("GET", WORKLOAD + "/manifests"): lambda w, p: Req(
        "GET", f"/api/v1/workloads/{w.workloads[p]}/manifests"
    ),
    ("GET", WORKLOAD + "/pods"): lambda w, p: Req(
        "GET", f"/api/v1/workloads/{w.workloads[p]}/pods"
    ),
    ("GET", WORKLOAD + "/logs"): lambda w, p: Req(
        "GET", f"/api/v1/workloads/{w.workloads[p]}/logs"
    ),
    ("GET", WORKLOAD + "/watch"): lambda w, p: Req(
        "GET", f"/api/v1/workloads/{w.workloads[p]}/watch?timeoutSeconds=1"
    ),
    ("POST", WORKLOAD + "/suspend"): lambda w, p: Req(
        "POST", f"/api/v1/workloads/{w.workloads[p]}/suspend"
    ),
    ("POST", WORKLOAD + "/resume"): lambda w, p: Req(
        "POST", f"/api/v1/workloads/{w.workloads[p]}/resume"
    ),
    ("DELETE", WORKLOAD): lambda w, p: Req("DELETE", f"/api/v1/workloads/{w.workloads[p]}"),
    ("POST", P + "/tokens"): lambda w, p: Req(
        "POST", "/api/v1/tokens", {"name": "new-one", "role": "viewer", "projects": ["team-a"]}
    ),
    ("GET", P + "/tokens"): lambda w, p: Req("GET", "/api/v1/tokens"),
    ("DELETE", P + "/tokens/{tokenId}"): lambda w, p: Req("DELETE", f"/api/v1/tokens/{w.victim}"),
    ("GET", P + "/audit"): lambda w, p: Req("GET", "/api/v1/audit"),
    ("GET", P + "/nodepools"): lambda w, p: Req("GET", "/api/v1/nodepools"),
}
SETUPS: dict[tuple[str, str], Setup] = {
    ("DELETE", P + "/projects/{project}"): _no_active_workloads,
}


def test_every_route_has_a_decision_a_sample_and_an_audit() -> None:
    keys = {(m, t) for m, t, _ in ROUTES}
    assert keys - DECISIONS.keys() == set(), "routes without an access decision"
    assert DECISIONS.keys() - keys == set(), "decisions for routes that no longer exist"
    assert keys - SAMPLES.keys() == set(), "routes without a sample request in this test"
    for method, template, route in ROUTES:
        assert isinstance(route, AuditedRoute), f"{method} {template} is not audited"


def expected(decision: Decision, role: Role, project: str) -> int | None:
    """None: allowed (2xx). Out of scope is 404 before a role is 403."""
    caller = Principal(name=role, role=role, projects={"team-a": uuid.uuid4()})
    scoped = decision.scope in ("path", "body", "resource", "query")
    if scoped and not caller.sees(project):
        return 404
    return None if caller.at_least(decision.role) else 403


def call(client: TestClient, req: Req, headers: dict[str, str]) -> Any:
    return client.request(req.method, req.path, json=req.json, params=req.params, headers=headers)


ROUTE_PARAMS = [pytest.param(m, t, id=f"{m} {t}") for m, t, _ in ROUTES]


@pytest.mark.parametrize(("method", "template"), ROUTE_PARAMS)
def test_role_and_scope(
    client: TestClient,
    sql: SqlSession,
    engine: Engine,
    world: World,
    method: str,
    template: str,
) -> None:
    key = (method, template)
    decision = DECISIONS[key]
    scoped = decision.scope in ("path", "body", "resource", "query")
    wrong = []
    roles: tuple[Role, ...] = ("admin", "researcher", "viewer")
    seeded = snapshot(engine)
    for role in roles:
        for project in ("team-a", "team-b") if scoped else ("team-a",):
            # Each call starts from the same world: whatever the last one changed is undone.
            restore(engine, seeded)
            if key in SETUPS:
                SETUPS[key](sql, project)
            r = call(client, SAMPLES[key](world, project), bearer(world.secrets[role]))
            want = expected(decision, role, project)
            ok = (
                200 <= r.status_code < 300
                if want is None
                else r.status_code == want
                and r.headers["content-type"] == PROBLEM
                # Exactly what a missing project or workload says: nothing tells them apart.
                and (want != 404 or "does not exist" in r.json()["detail"])
            )
            if not ok:
                wrong.append(
                    f"{role} on {project}: want {want or '2xx'}, got {r.status_code} {r.text}"
                )
    assert not wrong, "\n".join(wrong)


CREDENTIALS = {
    "none": None,
    "bad": "Bearer rp_" + "x" * 43,
    "bad-jwt": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "not-bearer": "Basic YWRtaW46YWRtaW4=",
    "expired": "expired",
    "revoked": "revoked",
}


@pytest.mark.parametrize(("method", "template"), ROUTE_PARAMS)
def test_unauthenticated_is_401(
    anon_client: TestClient, mint: Mint, method: str, template: str
) -> None:
    # Nothing needs to exist: authentication comes before anything is looked up.
    world = World(workloads={"team-a": str(uuid.uuid4())}, victim=uuid.uuid4())
    world.secrets = {
        "expired": mint("expired", "researcher", expired=True),
        "revoked": mint("revoked", "researcher", revoked=True),
    }
    req = SAMPLES[(method, template)](world, "team-a")
    for credential, value in CREDENTIALS.items():
        headers: dict[str, str] = {}
        if value in ("expired", "revoked"):
            headers = bearer(world.secrets[value])
        elif value is not None:
            headers = {"Authorization": value}
        r = call(anon_client, req, headers)
        body = assert_problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer", credential
        for secret in world.secrets.values():
            assert secret not in r.text
        if credential in ("expired", "revoked"):
            assert credential in body["detail"]
