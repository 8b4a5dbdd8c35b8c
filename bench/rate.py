"""Open-loop load at a fixed rate: POST trainings at R per second for S seconds; print p50/p99.

    python bench/rate.py URL RATE SECONDS

Requests are sent on schedule whatever the answers' latency (no coordinated omission), over a
pool of keep-alive connections.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

import httpx


async def main(url: str, rate: float, seconds: float) -> None:
    token = os.environ.get("TOKEN", "runplane-dev-admin-token")
    project = os.environ.get("PROJECT", "bench")
    run = os.environ.get("RUN", "rate")
    latencies: list[float] = []
    slow: list[float] = []  # when (seconds into the run) each request slower than 100 ms left
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

        async def one(i: int) -> None:
            nonlocal errors
            body = {
                "name": f"{run}-{i}",
                "project": project,
                "spec": {"image": "pytorch/pytorch:2.4", "compute": {"gpuDevicesRequest": 1}},
            }
            started = time.perf_counter()
            try:
                r = await client.post(
                    "/api/v1/workloads/trainings",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
                if r.status_code != 201:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)
            if latencies[-1] > 0.1:
                slow.append(started - start)

        tasks = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    latencies.sort()
    p = statistics.quantiles(latencies, n=100)
    print(
        f"rate {rate:.0f}/s for {seconds:.0f} s: {len(latencies)} requests, {errors} errors, "
        f"p50 {p[49] * 1000:.1f} ms, p99 {p[98] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )
    if slow:
        print(f"  {len(slow)} slower than 100 ms, sent from {min(slow):.1f} s to {max(slow):.1f} s")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
