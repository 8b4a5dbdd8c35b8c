"""The kubernetes backend at rest and on a change, against the real test control plane
(tools/k8s-testenv): list every kind every cycle (the code of REV) beside list-then-watch (this
code), in the same run, on the same machine.

    python bench/bench_watch.py [--counts 300 1000] [--window 30] [--compare REV]

For each N: N interactive workloads whose pods run on kwok nodes, nothing changing. Over
``--window`` seconds of steady state, for each version: its cycle times, its CPU, and the CPU
kube-apiserver spent beyond its idle CPU (measured with no Runplane running, just before and
just after; the lower counts). Then how long a change in the cluster (a StatefulSet scaled to 0
behind Runplane's back) takes to show in the workload's phase (p50, p99 of ``--changes``
changes), with the default 2 s interval.

Needs DATABASE_URL (a scratch database is made there) and the control plane binaries (built
by tools/k8s-testenv/build.sh on first use).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cluster.kubernetes import KubernetesBackend  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import BlockingDatabase  # noqa: E402
from app.main import create_app  # noqa: E402
from app.reconciler.loop import Reconciler  # noqa: E402
from bench.common import scratch_database  # noqa: E402
from tests.kube import testenv  # noqa: E402
from tests.kube.helpers import apply, wait_for  # noqa: E402

TOKEN = "bench-token"
NAMESPACE = "runplane-bench"
# The last commit whose kubernetes backend listed every kind every cycle.
LIST_EVERY_CYCLE = "d73fbe1"
INTERVAL = 2.0


def submit(engine: Engine, start: int, stop: int) -> None:
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(admin_token=TOKEN, database_url=url)
    with TestClient(
        create_app(settings, reconcile=False), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as c:
        if start == 0:
            r = c.post("/api/v1/projects", json={"name": "bench", "namespace": NAMESPACE})
            assert r.status_code == 201, r.text
        for i in range(start, stop):
            r = c.post(
                "/api/v1/workloads/interactives",
                json={"name": f"w{i}", "project": "bench", "spec": {"image": "jupyter"}},
            )
            assert r.status_code == 201, r.text


def running(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM workloads WHERE phase = 'Running'")) or 0)


def settle(engine: Engine, cp: testenv.ControlPlane, n: int) -> None:
    """Apply everything and wait until all n run (this code's reconciler, in process)."""
    url = engine.url.render_as_string(hide_password=False)
    with BlockingDatabase(url) as db:
        backend = KubernetesBackend(api_client=cp.api_client(), qps=500, burst=1000)
        try:
            reconciler = Reconciler(db=db, backend=backend, pending_timeout=600)

            def done() -> bool:
                reconciler.cycle()
                return running(engine) >= n

            wait_for(f"{n} workloads Running", done, timeout=600, interval=1)
        finally:
            backend.close()


def apiserver(cp: testenv.ControlPlane) -> psutil.Process:
    (component,) = [c for c in cp.components if c.name == "kube-apiserver"]
    assert component.process is not None
    return psutil.Process(component.process.pid)


def cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def driver(tree: Path, engine: Engine, cp: testenv.ControlPlane, seconds: float) -> Any:
    env = {**os.environ, "PYTHONPATH": str(tree), "RUNPLANE_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "watch_driver.py"),
            "--url",
            engine.url.render_as_string(hide_password=False),
            "--kubeconfig",
            str(cp.kubeconfig),
            "--seconds",
            str(seconds),
            "--interval",
            str(INTERVAL),
        ],
        env=env,
        cwd=tree,
        stdout=subprocess.PIPE,
        text=True,
    )


def idle_cpu(server: psutil.Process, window: float) -> float:
    """The API server's CPU over ``window`` seconds, as a share of one core."""
    before = cpu(server)
    time.sleep(window)
    return (cpu(server) - before) / window


def steady(tree: Path, engine: Engine, cp: testenv.ControlPlane, window: float) -> dict[str, Any]:
    """The driver of ``tree`` at rest: its cycles and CPU, and the API server's CPU meanwhile."""
    proc = driver(tree, engine, cp, window)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == {"measuring": True}
    server = apiserver(cp)
    before = cpu(server)
    result: dict[str, Any] = json.loads(proc.stdout.readline())
    result["apiserver_cpu"] = cpu(server) - before
    proc.wait(60)
    return result


def latencies(tree: Path, engine: Engine, cp: testenv.ControlPlane, changes: int) -> list[float]:
    """Seconds from a StatefulSet scaled to 0 in the cluster to the workload's phase changing."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, objects FROM workloads WHERE phase = 'Running' LIMIT :n"),
            {"n": changes},
        ).all()
    api = cp.api_client()
    proc = driver(tree, engine, cp, 10_000)
    assert proc.stdout is not None
    proc.stdout.readline()  # warmed up
    out = []
    try:
        for ident, objects in rows:
            (sts,) = [o["name"] for o in objects if o["kind"] == "StatefulSet"]

            def scale(replicas: int, sts: str = sts) -> None:
                apply(
                    api,
                    {
                        "apiVersion": "apps/v1",
                        "kind": "StatefulSet",
                        "metadata": {"name": sts, "namespace": NAMESPACE},
                        "spec": {"replicas": replicas},
                    },
                    field_manager="bench",
                    force=True,
                )

            def phase(ident: uuid.UUID = ident) -> str:
                with engine.connect() as conn:
                    return str(
                        conn.scalar(text("SELECT phase FROM workloads WHERE id = :i"), {"i": ident})
                    )

            changed = time.monotonic()
            scale(0)
            wait_for("the phase to change", lambda: phase() != "Running", timeout=60, interval=0.01)
            out.append(time.monotonic() - changed)
            scale(1)
            wait_for("Running again", lambda: phase() == "Running", timeout=120, interval=0.1)
    finally:
        proc.terminate()
        proc.wait(60)
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--compare", default=LIST_EVERY_CYCLE, help="the listing code's commit")
    args = parser.parse_args()

    old = Path(tempfile.mkdtemp(prefix="runplane-bench-old-")) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.compare],
        check=True,
        capture_output=True,
    )
    trees = {f"list every cycle ({args.compare})": old, "list, then watch": ROOT}
    nodes = math.ceil(max(args.counts) / 100) + 1
    try:
        with scratch_database() as engine, testenv.running(kwok_nodes=nodes) as cp:
            apply(cp.api_client(), {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": NAMESPACE}})  # fmt: skip
            print(
                f"kube-apiserver {testenv.read_versions()['KUBERNETES_VERSION']}, {nodes} kwok "
                f"nodes, interval {INTERVAL:g} s, steady window {args.window:g} s"
            )
            print(
                f"{'N':>6} {'version':<34} {'cycle p50':>9} {'cycle max':>9} "
                f"{'Runplane CPU':>12} {'API server CPU':>14} {'change p50':>10} {'p99':>6}"
            )
            done = 0
            for n in sorted(args.counts):
                submit(engine, done, n)
                done = n
                settle(engine, cp, n)
                server = apiserver(cp)
                for label, tree in trees.items():
                    # The API server's own CPU with no Runplane running, just before and just
                    # after: the lower of the two (it may still be settling the last changes).
                    idle_before = idle_cpu(server, args.window)
                    result = steady(tree, engine, cp, args.window)
                    idle = min(idle_before, idle_cpu(server, args.window))
                    lat = latencies(tree, engine, cp, args.changes)
                    cycles = result["cycles"] or [float("nan")]
                    own = result["cpu_seconds"] / result["seconds"]
                    busy = result["apiserver_cpu"] / result["seconds"]
                    api = busy - idle
                    print(
                        f"{n:>6} {label:<34} {statistics.median(cycles):>8.3f}s "
                        f"{max(cycles):>8.3f}s {own:>11.1%} {api:>13.1%} "
                        f"{quantile(lat, 0.5):>9.2f}s {quantile(lat, 0.99):>5.2f}s"
                        f"   (API server {busy:.1%} with it, {idle:.1%} without)",
                        flush=True,
                    )
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
            check=False,
            capture_output=True,
        )


if __name__ == "__main__":
    main()
