"""GET /workloads?limit=50 latency with N workloads stored: first, middle and last pages.

    python bench/bench_list.py [N]          (default 100000)

Runs the app in-process (TestClient: no network, no server process) against a scratch database
on DATABASE_URL or the embedded server; each figure is the p50/p99 of 200 requests.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.config import Settings
from app.main import create_app
from app.schemas import encode_time_cursor
from bench.common import scratch_database

TOKEN = "bench-token"


def settings(engine: Engine) -> Settings:
    url = engine.url.render_as_string(hide_password=False)
    return Settings(admin_token=TOKEN, database_url=url)


def populate(engine: Engine, n: int) -> None:
    with TestClient(create_app(settings(engine), reconcile=False)) as c:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for p in ("team-a", "team-b"):
            c.post("/api/v1/projects", json={"name": p}, headers=headers)
        sample = c.post(
            "/api/v1/workloads/trainings",
            json={
                "name": "sample",
                "project": "team-a",
                "spec": {"image": "pytorch:2", "compute": {"gpuDevicesRequest": 1}},
            },
            headers=headers,
        ).json()
    # Copy the sample row n times with new ids, names, projects, phases and times.
    with engine.begin() as s:
        s.execute(
            text(
                """
                INSERT INTO workloads (id, name, project_id, project, namespace, type, spec,
                    submitted_spec, applied_defaults, policy_source, policy_version, manifests,
                    objects, desired_phase, phase, phase_message, phase_updated_at, conditions,
                    pods, generation, applied_generation, created_at, updated_at)
                SELECT gen_random_uuid(), 'w' || g, p.id, p.name, p.namespace, w.type, w.spec,
                    w.submitted_spec, w.applied_defaults, w.policy_source, w.policy_version,
                    w.manifests, w.objects, w.desired_phase,
                    (ARRAY['Running','Pending','Completed','Failed'])[1 + g % 4], '', now(),
                    w.conditions, w.pods, 1, 1,
                    now() - make_interval(secs => g), now()
                FROM generate_series(1, :n) g
                JOIN workloads w ON w.id = :sample
                JOIN projects p ON p.name = CASE WHEN g % 2 = 0 THEN 'team-a' ELSE 'team-b' END
                """
            ),
            {"n": n, "sample": sample["id"]},
        )
    # A fresh 100,000-row table is what autovacuum wakes up for: settle it before measuring.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE workloads"))


def measure(client: TestClient, url: str) -> tuple[float, float]:
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        r = client.get(url)
        samples.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1000, q[98] * 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with scratch_database() as engine:
        populate(engine, n)
        at = text(
            "SELECT created_at, id FROM workloads ORDER BY created_at DESC, id DESC "
            "OFFSET :o LIMIT 1"
        )
        with engine.connect() as s:
            mid = s.execute(at, {"o": n // 2}).one()
            last = s.execute(at, {"o": n - 30}).one()
        app = create_app(settings(engine), reconcile=False)
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            middle = encode_time_cursor(*mid)
            cases = {
                "first page": "/api/v1/workloads?limit=50",
                "middle page": f"/api/v1/workloads?limit=50&cursor={middle}",
                "last page": f"/api/v1/workloads?limit=50&cursor={encode_time_cursor(*last)}",
                "project filter, middle": f"/api/v1/workloads?limit=50&project=team-a"
                f"&cursor={middle}",
                "phase filter, middle": f"/api/v1/workloads?limit=50&phase=Failed&cursor={middle}",
            }
            print(f"{n} workloads stored; GET /workloads?limit=50, 200 requests each")
            for label, url in cases.items():
                p50, p99 = measure(c, url)
                print(f"  {label:<24} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")


if __name__ == "__main__":
    main()
