"""One reconcile cycle over N active simulated workloads: wall time and backend list calls.

    python bench/bench_reconcile.py [N ...]      (default: 1000 10000)

Workloads are trainings of 1 GPU on a simulated cluster big enough to run them all. The first
cycle after they start running writes every status; later cycles find nothing changed.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from app.cluster.simulated import SimulatedBackend
from app.cluster.simulation import ClusterShape, Timing
from app.db import BlockingDatabase
from app.models import Project, SimulatedWorkload, Workload
from app.reconciler.loop import Reconciler
from app.rendering import RenderContext, render
from bench.common import scratch_database


def populate(engine: Engine, n: int, applied_at: datetime) -> None:
    project_id = uuid.uuid4()
    workloads, simulated = [], []
    for i in range(n):
        wid = uuid.uuid4()
        spec = {"image": "pytorch:2", "compute": {"gpuDevicesRequest": 1}}
        manifests = render(
            RenderContext(
                workload_id=str(wid),
                name=f"t{i}",
                project="bench",
                namespace="runplane-bench",
                workload_type="training",
                spec=spec,
            )
        )
        objects = [
            {"apiVersion": m["apiVersion"], "kind": m["kind"], "name": m["metadata"]["name"]}
            for m in manifests
        ]
        workloads.append(
            {
                "id": wid,
                "name": f"t{i}",
                "project_id": project_id,
                "project": "bench",
                "namespace": "runplane-bench",
                "type": "training",
                "spec": spec,
                "submitted_spec": spec,
                "applied_defaults": [],
                "policy_source": "none",
                "manifests": manifests,
                "objects": objects,
                "phase": "Pending",
                "phase_message": "",
                "conditions": [],
                "pods": {},
                "generation": 1,
                "applied_generation": 1,
            }
        )
        simulated.append(
            {
                "workload_id": wid,
                "namespace": "runplane-bench",
                "manifests": manifests,
                "applied_at": applied_at,
            }
        )
    with Session(engine) as s, s.begin():
        s.add(Project(id=project_id, name="bench", namespace="runplane-bench"))
        s.flush()
        for start in range(0, n, 2000):
            s.execute(insert(Workload), workloads[start : start + 2000])
            s.execute(insert(SimulatedWorkload), simulated[start : start + 2000])


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    print(f"{'workloads':>10} {'cycle':>12} {'seconds':>8} {'list calls':>10} {'updates':>8}")
    for n in sizes:
        with (
            scratch_database() as engine,
            BlockingDatabase(engine.url.render_as_string(hide_password=False)) as db,
        ):
            t0 = datetime(2026, 1, 1, tzinfo=UTC)
            populate(engine, n, t0)
            now = [t0 + timedelta(seconds=30)]

            def clock(now: list[datetime] = now) -> datetime:
                return now[0]

            backend = SimulatedBackend(
                db,
                cluster=ClusterShape(nodes=n, gpus_per_node=8),
                timing=Timing(schedule_seconds=1, start_seconds=5, run_seconds=3600),
                clock=clock,
            )
            reconciler = Reconciler(db=db, backend=backend, pending_timeout=300, clock=clock)
            for label in ("first", "steady", "steady"):
                started = time.perf_counter()
                report = reconciler.cycle()
                elapsed = time.perf_counter() - started
                print(
                    f"{n:>10} {label:>12} {elapsed:>8.3f} {report.list_calls:>10} "
                    f"{report.status_updates:>8}"
                )
                now[0] += timedelta(seconds=2)


if __name__ == "__main__":
    main()
