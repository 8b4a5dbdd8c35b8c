"""Fixtures for access control: a seeded world of two projects, and tokens of every kind."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth import tokens
from app.auth.principal import Role
from app.db import BlockingDatabase
from app.models import ApiToken, AuditEntry
from tests.conftest import SqlSession

PROBLEM = "application/problem+json"
TRAINING = {"image": "pytorch/pytorch:2.4", "compute": {"gpuDevicesRequest": 1}}
SPECS: dict[str, dict[str, Any]] = {
    "interactives": {"image": "jupyter/base-notebook", "tool": "jupyter"},
    "trainings": TRAINING,
    "distributed": {
        "image": "pytorch/pytorch:2.4",
        "distributedFramework": "PyTorch",
        "numWorkers": 2,
    },
    "inferences": {"image": "vllm/vllm-openai", "servingPort": {"container": 8000}},
}

Mint = Callable[..., str]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM, r.headers
    body: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail", "instance"} <= body.keys()
    assert body["status"] == status
    return body


@pytest.fixture
def mint(db: BlockingDatabase, sql: SqlSession) -> Mint:
    """Store a token directly and return its secret; ``expired``/``revoked`` bypass the API."""

    def mint(
        name: str,
        role: Role,
        projects: tuple[str, ...] = (),
        *,
        expired: bool = False,
        revoked: bool = False,
    ) -> str:
        token, secret = db.run(
            tokens.create,
            name=name,
            role=role,
            projects=list(projects),
            expires_at=None,
            created_by="test",
        )
        with sql() as session:
            row = session.get(ApiToken, token.id)
            assert row is not None
            if expired:
                row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
            if revoked:
                row.revoked_at = datetime.now(UTC)
        return secret

    return mint


def token_id(sql: SqlSession, name: str) -> uuid.UUID:
    with sql() as session:
        return session.scalars(select(ApiToken.id).where(ApiToken.name == name)).one()


def audit_rows(sql: SqlSession) -> list[AuditEntry]:
    with sql() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


@dataclass
class World:
    """Projects team-a and team-b, each with a project policy and a training workload; the
    researcher and viewer tokens see team-a only."""

    workloads: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    victim: uuid.UUID | None = None


@pytest.fixture
def world(client: TestClient, sql: SqlSession, mint: Mint) -> World:
    w = World()
    for name in ("team-a", "team-b"):
        assert client.post("/api/v1/projects", json={"name": name}).status_code == 201
    put = client.put("/api/v1/policies/global/trainings", json={"defaults": {"image": "x"}})
    assert put.status_code == 201, put.text
    for name in ("team-a", "team-b"):
        r = client.put(f"/api/v1/projects/{name}/policies/trainings", json={"inheritGlobal": True})
        assert r.status_code == 201, r.text
        r = client.post(
            "/api/v1/workloads/trainings",
            json={"name": "w1", "project": name, "spec": TRAINING},
        )
        assert r.status_code == 201, r.text
        w.workloads[name] = r.json()["id"]
    w.secrets = {
        "admin": mint("admin-token", "admin"),
        "researcher": mint("researcher-a", "researcher", ("team-a",)),
        "viewer": mint("viewer-a", "viewer", ("team-a",)),
        "expired": mint("expired-a", "researcher", ("team-a",), expired=True),
        "revoked": mint("revoked-a", "researcher", ("team-a",), revoked=True),
    }
    mint("victim", "viewer", ("team-b",))
    w.victim = token_id(sql, "victim")
    return w
