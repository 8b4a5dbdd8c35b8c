"""The submission path's per-process cache never lets a workload in under a policy, project or
queue it was not checked against, and the event-loop connection pool behaves like the engine's."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import PoolTimeout
from sqlalchemy import Engine, func, select, text

from app.config import Settings
from app.db import Database, DriverPool
from app.errors import Conflict
from app.main import create_app
from app.models import AuditEntry, IdempotencyKey, Workload, WorkloadEvent
from app.workloads import submission
from app.workloads.schemas import TrainingSubmission
from app.workloads.schemas import Workload as WorkloadRead
from tests.conftest import AUTH

POLICY = "/api/v1/policies/global/trainings"
AUDIT_ENTRY = {"actor": "t", "method": "POST", "route": "/x", "status": 201}


@pytest.fixture
def project(client: TestClient) -> str:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    return "team-a"


def submit(client: TestClient, name: str, spec: dict[str, Any], **kw: Any) -> Any:
    return client.post(
        "/api/v1/workloads/trainings",
        json={"name": name, "project": "team-a", "spec": spec},
        **kw,
    )


def test_a_new_rule_applies_to_the_next_submission(client: TestClient, project: str) -> None:
    rule = {"rules": {"compute": {"gpuDevicesRequest": {"max": 4}}}}
    assert client.put(POLICY, json=rule).status_code == 201
    ok = submit(client, "a", {"image": "x", "compute": {"gpuDevicesRequest": 2}})
    assert ok.status_code == 201
    assert ok.json()["policy"] == {"source": "global", "version": 1}
    # The process cached version 1; the statement that stores sees version 2 and the
    # submission is checked again.
    client.put(POLICY, json={"rules": {"compute": {"gpuDevicesRequest": {"max": 1}}}})
    refused = submit(client, "b", {"image": "x", "compute": {"gpuDevicesRequest": 2}})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "spec.compute.gpuDevicesRequest"
    again = submit(client, "c", {"image": "x", "compute": {"gpuDevicesRequest": 1}})
    assert again.json()["policy"] == {"source": "global", "version": 2}


def test_a_new_default_is_not_refused_from_a_stale_cache(client: TestClient, project: str) -> None:
    assert submit(client, "a", {"image": "x"}).status_code == 201  # caches "no policy"
    assert submit(client, "b", {}).status_code == 422  # no image, and no default for one
    client.put(POLICY, json={"defaults": {"image": "pytorch/pytorch:2.4"}})
    r = submit(client, "c", {})
    assert r.status_code == 201, r.text
    assert r.json()["appliedDefaults"] == ["image"]
    assert r.json()["spec"]["image"] == "pytorch/pytorch:2.4"


def test_a_project_change_reaches_the_manifests(client: TestClient, project: str) -> None:
    assert submit(client, "a", {"image": "x"}).status_code == 201
    changed = client.patch("/api/v1/projects/team-a", json={"queue": "q", "scheduler": "kueue"})
    assert changed.status_code == 200, changed.text
    r = submit(client, "b", {"image": "x"})
    assert r.status_code == 201
    manifests = client.get(f"/api/v1/workloads/{r.json()['id']}/manifests").json()
    labels = manifests[0]["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "q"


def test_a_recreated_project_gets_its_own_workloads(client: TestClient, project: str) -> None:
    assert submit(client, "a", {}).status_code == 422  # no image; the project is now cached
    assert client.delete("/api/v1/projects/team-a").status_code == 204
    assert submit(client, "b", {"image": "x"}).status_code == 404
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    r = submit(client, "b", {"image": "x"})
    assert r.status_code == 201, r.text
    listed = client.get("/api/v1/workloads?project=team-a").json()["items"]
    assert [w["name"] for w in listed] == ["b"]


# --- through the event-loop pool (an engine-bound database, real commits) --------------------


def count(db: Database, model: type[Any]) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_the_pooled_path_stores_replays_and_refuses(
    committed_db: Database, settings: Settings
) -> None:
    app = create_app(settings, db=committed_db)
    body = {"name": "w", "project": "team-a", "spec": {"image": "x"}}
    with TestClient(app, headers=AUTH) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        key = {"Idempotency-Key": "k1"}
        first = c.post("/api/v1/workloads/trainings", json=body, headers=key)
        assert first.status_code == 201, first.text
        replayed = c.post("/api/v1/workloads/trainings", json=body, headers=key)
        assert (replayed.status_code, replayed.json()) == (201, first.json())
        assert replayed.headers["location"] == first.headers["location"]
        other = c.post("/api/v1/workloads/trainings", json={**body, "name": "v"}, headers=key)
        assert other.status_code == 422
        taken = c.post("/api/v1/workloads/trainings", json=body)
        assert taken.status_code == 409
    assert count(committed_db, Workload) == 1
    assert count(committed_db, WorkloadEvent) == 1
    assert count(committed_db, IdempotencyKey) == 1
    with committed_db.session() as s:
        entries = s.execute(
            select(AuditEntry.route, AuditEntry.status).order_by(AuditEntry.id)
        ).all()
    assert [tuple(e) for e in entries] == [
        ("/api/v1/projects", 201),
        ("/api/v1/workloads/trainings", 201),
        ("/api/v1/workloads/trainings", 201),  # the replay answers, and is recorded
        ("/api/v1/workloads/trainings", 422),
        ("/api/v1/workloads/trainings", 409),
    ]


def test_a_policy_written_by_another_process_is_seen(
    committed_db: Database, settings: Settings
) -> None:
    app = create_app(settings, db=committed_db)
    body = {"name": "w", "project": "team-a", "spec": {"image": "x"}}
    with TestClient(app, headers=AUTH) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        assert c.post("/api/v1/workloads/trainings", json=body).status_code == 201
        # Another API process's write: straight into the table, this process hears nothing.
        with committed_db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO policies (id, project_id, workload_type, defaults, rules,"
                    " inherit_global, version, updated_by) VALUES (gen_random_uuid(), NULL,"
                    " 'training', '{}', '{\"image\": {\"pattern\": \"allowed/.*\"}}', false, 1,"
                    " 'elsewhere')"
                )
            )
        r = c.post("/api/v1/workloads/trainings", json={**body, "name": "v"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "spec.image"
    assert count(committed_db, Workload) == 1


def test_the_pool_waits_then_gives_up_and_reuses_connections(engine: Engine) -> None:
    pool = DriverPool.like(engine)
    pool.size, pool.timeout = 1, 0.2

    async def scenario() -> None:
        async with pool.connection() as held:
            with pytest.raises(PoolTimeout):
                async with pool.connection():
                    pass
        async with pool.connection() as again:
            assert again is held  # back in the pool, and reused
            await again.execute("SELECT 1")
        # A broken connection is dropped when it comes back, and replaced.
        async with pool.connection() as conn:
            await conn.close()
        async with pool.connection() as fresh:
            assert fresh is not held
            assert await (await fresh.execute("SELECT 1")).fetchone() == (1,)
        await pool.close()

    asyncio.run(scenario())


def test_an_unreachable_server_fails_at_once() -> None:
    pool = DriverPool("host=/nonexistent-socket-dir dbname=x", size=1, timeout=30, recycle=60)

    async def scenario() -> None:
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection():
                pass

    asyncio.run(asyncio.wait_for(scenario(), 5))  # not the 30 s of the busy-pool wait


def test_a_batch_stores_each_submission_or_says_why_not(
    committed_db: Database, settings: Settings
) -> None:
    with TestClient(create_app(settings, db=committed_db), headers=AUTH) as c:
        assert c.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
        taken_first = c.post(
            "/api/v1/workloads/trainings",
            json={"name": "taken", "project": "team-a", "spec": {"image": "x"}},
        )
        assert taken_first.status_code == 201

    async def scenario() -> tuple[Any, ...]:
        async def one(name: str, spec: dict[str, Any]) -> Any:
            body = TrainingSubmission.model_validate(
                {"name": name, "project": "team-a", "spec": spec}
            )
            prepared = await submission.checked(
                committed_db, workload_type="training", body=body, settings=settings
            )
            return await submission.storer(committed_db).batcher(
                submission.Storing(
                    prepared, {"actor": "t", "method": "POST", "route": "/x", "status": 201}
                )
            )

        # Queued together before the first write starts: one batch of four.
        return await asyncio.gather(
            one("a", {"image": "x"}),
            one("taken", {"image": "x"}),
            one("nul", {"image": "x", "workingDir": "/a\x00"}),  # PostgreSQL refuses \u0000
            one("b", {"image": "x"}),
        )

    a, taken, nul, b = asyncio.run(scenario())
    assert isinstance(a, submission.Accepted)
    assert isinstance(b, submission.Accepted)
    assert isinstance(taken, Conflict)
    assert isinstance(nul, psycopg.DataError)
    with committed_db.session() as s:
        names = set(s.scalars(select(Workload.name)))
    assert names == {"taken", "a", "b"}
    assert count(committed_db, WorkloadEvent) == 3


def test_the_answer_is_what_the_workload_schema_writes(client: TestClient, project: str) -> None:
    client.put(POLICY, json={"defaults": {"compute": {"cpuCoreLimit": 1.5}}})
    spec = {
        "image": "x",
        "compute": {"cpuCoreRequest": 0.5, "cpuMemoryRequest": "1Gi"},
        "environmentVariables": [{"name": "GREETING", "value": 'grüße ✓ "quoted" \\n'}],
    }
    r = submit(client, "schema", spec)
    assert r.status_code == 201, r.text
    # Written by orjson on the hot path: byte for byte what pydantic writes for the schema.
    assert WorkloadRead.model_validate_json(r.content).model_dump_json().encode() == r.content
    assert r.json() == client.get(r.headers["location"]).json()
