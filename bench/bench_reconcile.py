"""One reconcile cycle over N active simulated workloads: wall time and backend list calls.

    python bench/bench_reconcile.py [N ...] [--projects P]      (default: 1000 10000, 1 project)

Workloads are trainings of 1 GPU on a simulated cluster big enough to run them all. The first
cycle after they start running writes every status; later cycles find nothing changed.

With ``--projects P`` they are spread over P projects with quotas (GPUs: 45 deserved, limit 48,
weight 1..3, for 50 workloads each): the simulated scheduler applies the quotas, each cycle
works out every project's usage and the node pools and explains why the workloads held back by
their limit wait (2 in 50 here), with their place in their project's queue.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from app.cluster.simulated import SimulatedBackend
from app.cluster.simulation import ClusterShape, Timing
from app.db import BlockingDatabase
from app.models import Project, SimulatedWorkload, Workload
from app.reconciler.loop import Reconciler
from app.rendering import RenderContext, render
from bench.common import scratch_database


def project_quota(index: int) -> dict[str, Any]:
    return {
        "gpu": {"deserved": "45", "limit": "48", "overQuotaWeight": str(1 + index % 3)},
    }


def populate(engine: Engine, n: int, applied_at: datetime, projects: int) -> None:
    names = ["bench"] if projects <= 1 else [f"bench-{p:03d}" for p in range(projects)]
    ids = {name: uuid.uuid4() for name in names}
    workloads, simulated = [], []
    for i in range(n):
        wid = uuid.uuid4()
        project = names[i % len(names)]
        namespace = f"runplane-{project}"
        spec = {"image": "pytorch:2", "compute": {"gpuDevicesRequest": 1}}
        manifests = render(
            RenderContext(
                workload_id=str(wid),
                name=f"t{i}",
                project=project,
                namespace=namespace,
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
                "project_id": ids[project],
                "project": project,
                "namespace": namespace,
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
                "namespace": namespace,
                "manifests": manifests,
                # In submission order, a moment apart, as the reconciler applies them.
                "applied_at": applied_at + timedelta(microseconds=i),
            }
        )
    with Session(engine) as s, s.begin():
        for p, name in enumerate(names):
            quota = project_quota(p) if projects > 1 else {}
            s.add(Project(id=ids[name], name=name, namespace=f"runplane-{name}", quota=quota))
        s.flush()
        for start in range(0, n, 2000):
            s.execute(insert(Workload), workloads[start : start + 2000])
            s.execute(insert(SimulatedWorkload), simulated[start : start + 2000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--projects", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{'workloads':>10} {'projects':>8} {'cycle':>12} {'seconds':>8} {'list calls':>10} "
        f"{'updates':>8} {'waiting':>8}"
    )
    for n in args.sizes:
        with (
            scratch_database() as engine,
            BlockingDatabase(engine.url.render_as_string(hide_password=False)) as db,
        ):
            t0 = datetime(2026, 1, 1, tzinfo=UTC)
            populate(engine, n, t0, args.projects)
            now = [t0 + timedelta(seconds=30)]

            def clock(now: list[datetime] = now) -> datetime:
                return now[0]

            backend = SimulatedBackend(
                db,
                cluster=ClusterShape(nodes=max(n // 8, 1) + 1, gpus_per_node=8),
                timing=Timing(schedule_seconds=1, start_seconds=5, run_seconds=3600),
                clock=clock,
            )
            reconciler = Reconciler(db=db, backend=backend, pending_timeout=300, clock=clock)
            for label in ("first", "steady", "steady"):
                started = time.perf_counter()
                report = reconciler.cycle()
                elapsed = time.perf_counter() - started
                with engine.connect() as conn:
                    waiting = conn.execute(
                        text("SELECT count(*) FROM workloads WHERE phase = 'Pending'")
                    ).scalar()
                print(
                    f"{n:>10} {args.projects:>8} {label:>12} {elapsed:>8.3f} "
                    f"{report.list_calls:>10} {report.status_updates:>8} {waiting:>8}"
                )
                now[0] += timedelta(seconds=2)


if __name__ == "__main__":
    main()
