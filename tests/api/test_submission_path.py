"""The submission path's per-process cache never lets a workload in under a policy, project or
queue it was not checked against; concurrent submissions are stored together, each on its own
merits; and the pool answers a database that is away or busy in bounded time."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import PoolTimeout
from sqlalchemy import Engine, text

from app.config import Settings
from app.db import Database
from app.errors import Conflict
from app.workloads import submission
from app.workloads.schemas import TrainingSubmission
from app.workloads.schemas import Workload as WorkloadRead

POLICY = "/api/v1/policies/global/trainings"
AUDIT_ENTRY = {"actor": "t", "method": "POST", "route": "/x", "status": 201, "dry_run": False}


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


# --- what the database holds ------------------------------------------------------------------


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


def test_the_path_stores_replays_and_refuses(
    client: TestClient, project: str, engine: Engine
) -> None:
    body = {"name": "w", "project": "team-a", "spec": {"image": "x"}}
    key = {"Idempotency-Key": "k1"}
    first = client.post("/api/v1/workloads/trainings", json=body, headers=key)
    assert first.status_code == 201, first.text
    replayed = client.post("/api/v1/workloads/trainings", json=body, headers=key)
    assert (replayed.status_code, replayed.json()) == (201, first.json())
    assert replayed.headers["location"] == first.headers["location"]
    other = client.post("/api/v1/workloads/trainings", json={**body, "name": "v"}, headers=key)
    assert other.status_code == 422
    taken = client.post("/api/v1/workloads/trainings", json=body)
    assert taken.status_code == 409
    assert count(engine, "workloads") == 1
    assert count(engine, "workload_events") == 1
    assert count(engine, "idempotency_keys") == 1
    with engine.connect() as conn:
        entries = conn.execute(text("SELECT route, status, target FROM audit_log ORDER BY id"))
        routes = [(route, status) for route, status, _ in entries]
    assert routes == [
        ("/api/v1/projects", 201),
        ("/api/v1/workloads/trainings", 201),
        ("/api/v1/workloads/trainings", 201),  # the replay answers, and is recorded
        ("/api/v1/workloads/trainings", 422),
        ("/api/v1/workloads/trainings", 409),
    ]


def test_a_policy_written_by_another_process_is_seen(
    client: TestClient, project: str, engine: Engine
) -> None:
    body = {"name": "w", "project": "team-a", "spec": {"image": "x"}}
    assert client.post("/api/v1/workloads/trainings", json=body).status_code == 201
    # Another API process's write: straight into the table, this process hears nothing.
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO policies (id, project_id, workload_type, defaults, rules,"
                " inherit_global, version, updated_by) VALUES (gen_random_uuid(), NULL,"
                " 'training', '{}', '{\"image\": {\"pattern\": \"allowed/.*\"}}', false, 1,"
                " 'elsewhere')"
            )
        )
    r = client.post("/api/v1/workloads/trainings", json={**body, "name": "v"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "spec.image"
    assert count(engine, "workloads") == 1


def test_a_busy_pool_makes_a_request_wait_then_gives_up(database: str) -> None:
    db = Database(database, size=1, timeout=0.2)

    async def scenario() -> None:
        await db.open()
        try:
            async with db.connection() as held:
                with pytest.raises(PoolTimeout):
                    async with db.connection():
                        pass
            async with db.connection() as again:
                assert again is held  # back in the pool, and reused
            # A broken connection is dropped when it comes back, and replaced.
            async with db.connection() as conn:
                await conn.close()
            async with db.connection() as fresh:
                assert fresh is not held
                assert await (await fresh.execute("SELECT 1")).fetchone() == (1,)
        finally:
            await db.close()

    asyncio.run(scenario())


def test_an_unreachable_server_fails_within_the_pool_timeout() -> None:
    db = Database("postgresql:///x?host=/nonexistent-socket-dir", size=1, timeout=0.5)

    async def scenario() -> float:
        await db.open()
        started = time.monotonic()
        try:
            with pytest.raises(PoolTimeout):
                async with db.connection():
                    pass
        finally:
            await db.close()
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 2


def test_a_batch_stores_each_submission_or_says_why_not(
    client: TestClient, project: str, settings: Settings, database: str, engine: Engine
) -> None:
    taken_first = client.post(
        "/api/v1/workloads/trainings",
        json={"name": "taken", "project": "team-a", "spec": {"image": "x"}},
    )
    assert taken_first.status_code == 201

    async def scenario() -> tuple[Any, ...]:
        db = Database(database, size=2)
        await db.open()

        async def one(name: str, spec: dict[str, Any]) -> Any:
            body = TrainingSubmission.model_validate(
                {"name": name, "project": "team-a", "spec": spec}
            )
            prepared = await submission.checked(
                db, workload_type="training", body=body, settings=settings, scope=None
            )
            return await submission.storer(db).batcher(submission.Storing(prepared, AUDIT_ENTRY))

        try:
            # Queued together before the first write starts: one batch of four.
            return await asyncio.gather(
                one("a", {"image": "x"}),
                one("taken", {"image": "x"}),
                one("nul", {"image": "x", "workingDir": "/a\x00"}),  # PostgreSQL refuses \u0000
                one("b", {"image": "x"}),
            )
        finally:
            await db.close()

    a, taken, nul, b = asyncio.run(scenario())
    assert isinstance(a, submission.Accepted)
    assert isinstance(b, submission.Accepted)
    assert isinstance(taken, Conflict)
    assert isinstance(nul, psycopg.DataError)
    with engine.connect() as conn:
        names = set(conn.scalars(text("SELECT name FROM workloads")))
    assert names == {"taken", "a", "b"}
    assert count(engine, "workload_events") == 3


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


def test_whatever_fails_a_batch_fails_only_its_own_item(
    client: TestClient,
    project: str,
    settings: Settings,
    database: str,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Below the checks at the edge: items that fail the shared statement each in their own
    way (PostgreSQL refuses one, orjson cannot write another, a third has the statement
    cancelled, as a statement timeout would) cost the others nothing."""
    batches: list[int] = []
    store = submission.store

    async def recording(conn: Any, batch: Any) -> Any:
        batches.append(len(batch))
        if any(item.prepared.name == "cancelled" for item in batch):
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        return await store(conn, batch)

    monkeypatch.setattr(submission, "store", recording)

    async def scenario() -> list[submission.Stored]:
        db = Database(database, size=4)
        await db.open()

        async def prepared(name: str, tamper: dict[str, Any]) -> submission.Storing:
            body = TrainingSubmission.model_validate(
                {"name": name, "project": "team-a", "spec": {"image": "x"}}
            )
            checked = await submission.checked(
                db, workload_type="training", body=body, settings=settings, scope=None, refresh=True
            )
            spec = {**checked.spec, **tamper}
            return submission.Storing(dataclasses.replace(checked, spec=spec), AUDIT_ENTRY)

        try:
            items = [
                await prepared("a", {}),
                await prepared("nul", {"workingDir": "/\x00"}),
                await prepared("b", {}),
                await prepared("huge", {"security": {"runAsUid": 2**70}}),
                await prepared("cancelled", {}),
                await prepared("c", {}),
            ]
            # Queued in one turn of the event loop: they go in one batch.
            return await asyncio.gather(*(submission.storer(db).batcher(i) for i in items))
        finally:
            await db.close()

    a, nul, b, huge, cancelled, c = asyncio.run(scenario())
    assert batches[0] == 6  # all six met in one statement
    assert all(isinstance(ok, submission.Accepted) for ok in (a, b, c))
    assert isinstance(nul, psycopg.DataError)
    assert isinstance(huge, TypeError)  # orjson: "Integer exceeds 64-bit range"
    assert isinstance(cancelled, psycopg.errors.QueryCanceled)
    with engine.connect() as conn:
        names = set(conn.scalars(text("SELECT name FROM workloads")))
    assert names == {"a", "b", "c"}
