"""A reconciler of the kubernetes backend, run for a while: what bench/bench_watch.py measures.

    python bench/watch_driver.py --url DATABASE_URL --kubeconfig FILE --seconds S [--interval I]

It imports ``app`` from PYTHONPATH, so that the bench can run it on two versions of the code
(the one that listed every kind every cycle, and this one) in the same run. It prints one JSON
line: the duration of each cycle and the CPU seconds this process used (all its threads).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

from kubernetes import config

from app.cluster.kubernetes import KubernetesBackend
from app.reconciler.loop import Reconciler


def database(url: str) -> Any:
    try:
        from app.db import BlockingDatabase  # type: ignore[attr-defined, unused-ignore]

        return BlockingDatabase(url)
    except ImportError:  # the code before the one data layer
        from app.db import Database

        return Database.from_url(url, pool_size=2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--seconds", type=float, required=True, help="seconds measured")
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    backend = KubernetesBackend(
        api_client=config.new_client_from_config(config_file=args.kubeconfig),  # type: ignore[no-untyped-call]
        qps=200,
        burst=400,
    )
    reconciler = Reconciler(db=database(args.url), backend=backend, pending_timeout=600)
    cycles: list[float] = []
    cycle = reconciler.cycle
    measuring = threading.Event()

    def timed() -> Any:
        started = time.perf_counter()
        try:
            return cycle()
        finally:
            if measuring.is_set():
                cycles.append(time.perf_counter() - started)

    reconciler.cycle = timed  # type: ignore[method-assign]
    stop = threading.Event()
    loop = threading.Thread(target=reconciler.run, args=(stop,), kwargs={"interval": args.interval})
    loop.start()
    time.sleep(args.warmup)
    print(json.dumps({"measuring": True}), flush=True)
    cpu = os.times()
    measuring.set()
    time.sleep(args.seconds)
    stop.set()
    loop.join(60)
    used = os.times()
    print(
        json.dumps(
            {
                "cycles": cycles,
                "cpu_seconds": used.user + used.system - cpu.user - cpu.system,
                "seconds": args.seconds,
            }
        ),
        flush=True,
    )
    os._exit(0)  # don't wait for the informers' threads


if __name__ == "__main__":
    main()
