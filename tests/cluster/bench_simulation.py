"""Benchmark: simulate + derive_status over N workloads, as one reconcile cycle does.

Run: ``.venv/bin/python -m tests.cluster.bench_simulation [--workloads 10000] [--nodes 2000x8]``.
Prints CPU microseconds per workload for an uncached simulate call (a backend's first cycle), a
steady-state call with a SimCache, and derive_status; the best of a few rounds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from app.cluster.simulation import SimCache, SimInput, parse_nodes, simulate
from app.reconciler.status import derive_status
from tests.cluster import manifests as m

T = TypeVar("T")
T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


def workloads(count: int) -> list[SimInput]:
    """A mix of the four types, one applied every 10 ms; trainings run for a day."""
    items = []
    for i in range(count):
        wid = f"w{i}"
        kind = i % 4
        if kind == 0:
            manifests = m.training(wid, name=f"t{i}", annotations={m.RUN_SECONDS: "86400"})
        elif kind == 1:
            manifests = m.interactive(wid, name=f"n{i}")
        elif kind == 2:
            manifests = m.inference(wid, name=f"s{i}", replicas=1, max_replicas=3)
        else:
            manifests = m.kubeflow("PyTorchJob", wid, name=f"d{i}", workers=1)
        items.append(
            SimInput(key=wid, manifests=manifests, applied_at=T0 + timedelta(seconds=i / 100))
        )
    return items


def best(rounds: int, run: Callable[[], T]) -> tuple[float, T]:
    times, result = [], None
    for _ in range(rounds):
        start = time.process_time()
        result = run()
        times.append(time.process_time() - start)
    assert result is not None
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--nodes", default="2000x8", help="NODESxGPUS")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    items, cluster = workloads(args.workloads), parse_nodes(args.nodes)
    now = T0 + timedelta(minutes=10)

    uncached, results = best(
        args.rounds, lambda: simulate(workloads=items, cluster=cluster, now=now)
    )
    cache = SimCache()
    simulate(workloads=items, cluster=cluster, now=now, cache=cache)
    clock = [now]

    def steady() -> list[object]:
        clock[0] += timedelta(seconds=2)  # the next reconcile cycle
        return list(simulate(workloads=items, cluster=cluster, now=clock[0], cache=cache))

    cached, _ = best(args.rounds, steady)

    def derive() -> int:
        for r in results:
            derive_status(
                workload_type="training",
                desired_phase="Running",
                objects=r.objects,
                pods=r.pods,
                applied=True,
                now=now,
                pending_timeout=timedelta(minutes=5),
            )
        return len(results)

    derived, _ = best(args.rounds, derive)
    pods = sum(len(r.pods) for r in results)
    per = 1e6 / args.workloads
    print(
        f"{args.workloads} workloads, {pods} pods, cluster {args.nodes}: per workload "
        f"simulate {uncached * per:.1f} us uncached, {cached * per:.1f} us with SimCache; "
        f"derive_status {derived * per:.1f} us; "
        f"steady cycle (cached simulate + derive) {cached + derived:.3f} s"
    )


if __name__ == "__main__":
    main()
