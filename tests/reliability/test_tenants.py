"""No tenant can hurt another: one project's researcher sends bad submissions while another
project's sends good ones, concurrently, over real HTTP, so that the service stores them in
shared batches (app.batching). Every good one is stored; every bad one is refused with a 422,
never a 5xx; nothing out of range is stored."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from app.main import create_app
from tests.conftest import AUTH, make_settings
from tests.hostile import out_of_range
from tests.reliability.live import LiveServer

pytestmark = pytest.mark.slow

ROUNDS = 8
PER_ROUND = 6
TRAINING = "/api/v1/workloads/trainings"
INFERENCE = "/api/v1/workloads/inferences"
SERVING = '"servingPort": {"container": 8000}'
AUTOSCALED = '"autoscaling": {"minReplicas": 1, "maxReplicas": 3, "metric": "concurrency"'
# What the probe found breaking shared batches, and the rest of each class: (route, raw body
# with {name} for the workload's name). Raw, for what json.dumps will not write (1e309).
BAD: list[tuple[str, str]] = [
    (TRAINING, '"security": {"runAsUid": 100000000000000000000}'),
    (TRAINING, '"security": {"runAsGid": 9223372036854775808}'),
    (TRAINING, '"completions": 2147483648'),
    (TRAINING, '"tolerations": [{"key": "k", "effect": "NoExecute", "seconds": 1e400}]'),
    (TRAINING, '"compute": {"extendedResources": [{"resource": "x.io/y", "quantity": "1e28"}]}'),
    (TRAINING, '"compute": {"cpuMemoryRequest": "1e999999999"}'),
    (TRAINING, '"compute": {"cpuCoreRequest": NaN}'),
    (TRAINING, '"workingDir": "/a\\u0000"'),
    (TRAINING, '"annotations": {"note": "\\ud800"}'),
    (TRAINING, '"storage": {"hostPath": [{"name": "r", "path": "/", "mountPath": "/host"}]}'),
    (TRAINING, '"priorityClass": "system-node-critical"'),
    (TRAINING, '"tolerations": [{"key": "", "operator": "Exists"}]'),
    (INFERENCE, f'{SERVING}, {AUTOSCALED}, "metricThreshold": 1e309}}'),
    (INFERENCE, f'{SERVING}, {AUTOSCALED}, "metricThreshold": Infinity}}'),
]


def body(name: str, project: str, extra: str) -> bytes:
    spec = '{"image": "pytorch:2"' + (f", {extra}" if extra else "") + "}"
    return f'{{"name": "{name}", "project": "{project}", "spec": {spec}}}'.encode()


def test_one_tenants_bad_submissions_cost_another_nothing(database: str, engine: Engine) -> None:
    app = create_app(make_settings(database_url=database), reconcile=False)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH) as admin:
        tokens = {}
        for project in ("good", "bad"):
            assert admin.post("/api/v1/projects", json={"name": project}).status_code == 201
            r = admin.post(
                "/api/v1/tokens",
                json={"name": project, "role": "researcher", "projects": [project]},
            )
            tokens[project] = {"Authorization": f"Bearer {r.json()['token']}"}

        async def rounds() -> Counter[tuple[str, int]]:
            seen: Counter[tuple[str, int]] = Counter()
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

                async def send(kind: str, route: str, content: bytes) -> tuple[str, Any]:
                    headers = {**tokens[kind], "Content-Type": "application/json"}
                    return kind, await client.post(route, content=content, headers=headers)

                for r in range(ROUNDS):
                    calls = []
                    for i in range(PER_ROUND):
                        calls.append(send("good", TRAINING, body(f"g{r}x{i}", "good", "")))
                        route, extra = BAD[(r * PER_ROUND + i) % len(BAD)]
                        calls.append(send("bad", route, body(f"b{r}x{i}", "bad", extra)))
                    for kind, response in await asyncio.gather(*calls):
                        seen[(kind, response.status_code)] += 1
                        if kind == "bad":
                            problem = response.json()
                            assert "PostgreSQL" not in json.dumps(problem), problem
            return seen

        seen = asyncio.run(rounds())

    assert seen == {("good", 201): ROUNDS * PER_ROUND, ("bad", 422): ROUNDS * PER_ROUND}
    with engine.connect() as conn:
        stored = Counter(conn.scalars(text("SELECT project FROM workloads")))
    assert stored == {"good": ROUNDS * PER_ROUND}
    assert out_of_range(engine) == []
