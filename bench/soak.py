"""Soak test: mixed traffic against `runplane serve` at a steady rate for minutes.

    python bench/soak.py [--rate 40] [--seconds 180] [--workers 1] [--port 8766]

Starts `runplane serve` (reconciler on, simulated cluster) on 127.0.0.1 against a scratch
database (DATABASE_URL's server, else the embedded one; dropped afterwards), then sends an open
loop of requests on schedule, whatever the latency (no coordinated omission): submit (trainings,
interactives, inferences), list, get, suspend, resume and delete, keeping a bounded population
of live workloads. Every answer must be the expected status. The RSS of the server processes is
sampled every few seconds with psutil. Prints throughput, p50/p99 per operation, the RSS series,
and exits non-zero on any error or when memory keeps growing.

Bounded: rate x seconds requests at most, a hard deadline, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_database  # noqa: E402

HOST = "127.0.0.1"
TOKEN = "soak-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPECS = {
    "trainings": {"image": "pytorch/pytorch:2.4", "compute": {"cpuCoreRequest": 0.5}},
    "interactives": {"image": "jupyter/base-notebook", "tool": "jupyter"},
    "inferences": {"image": "vllm/vllm-openai", "servingPort": {"container": 8000}},
}
# Operation mix, per 100 requests.
MIX = {"get": 30, "list": 20, "submit": 20, "suspend": 8, "resume": 8, "delete": 14}
EXPECTED = {"get": 200, "list": 200, "submit": 201, "suspend": 202, "resume": 202, "delete": 202}


@dataclass
class State:
    """The client's view: live workloads and what was last asked of each."""

    running: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    sent = 0


def pick(state: State, rng: random.Random, *, cap: int) -> str:
    op = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    live = len(state.running) + len(state.stopped)
    if op == "submit" and live >= cap:
        op = "delete"
    if op in ("get", "delete", "suspend") and not [w for w in state.running if w not in state.busy]:
        op = "submit" if op == "suspend" or live < cap else "list"
    if op == "resume" and not [w for w in state.stopped if w not in state.busy]:
        op = "get" if state.running else "submit"
    if op == "get" and not state.running:
        op = "submit"
    return op


def take(pool: list[str], state: State, rng: random.Random) -> str | None:
    """A workload no other request is acting on, marked busy; None if all are."""
    free = [w for w in pool if w not in state.busy]
    if not free:
        return None
    wid = rng.choice(free)
    state.busy.add(wid)
    return wid


async def one(client: httpx.AsyncClient, state: State, op: str, i: int, rng: random.Random) -> None:
    # Requests start later than they were picked: the workload picked may be taken by now.
    taken = {
        "suspend": lambda: take(state.running, state, rng),
        "resume": lambda: take(state.stopped, state, rng),
        "delete": lambda: take(state.running + state.stopped, state, rng),
    }
    wid = ""
    if op == "get" and not (state.running or state.stopped):
        op = "list"
    if op in taken:
        chosen = taken[op]()
        if chosen is None:
            op = "list"
        else:
            wid = chosen
    if op == "submit":
        kind = rng.choice(list(SPECS))
        call = client.post(
            f"/api/v1/workloads/{kind}",
            json={"name": f"s{i}", "project": "soak", "spec": SPECS[kind]},
        )
    elif op == "list":
        call = client.get("/api/v1/workloads", params={"project": "soak", "limit": 50})
    elif op == "get":
        wid = rng.choice(state.running + state.stopped)
        call = client.get(f"/api/v1/workloads/{wid}")
    elif op == "suspend":
        call = client.post(f"/api/v1/workloads/{wid}/suspend")
    elif op == "resume":
        call = client.post(f"/api/v1/workloads/{wid}/resume")
    else:
        call = client.delete(f"/api/v1/workloads/{wid}")
    started = time.perf_counter()
    try:
        r = await call
        status, text = r.status_code, r.text[:200]
    except httpx.HTTPError as exc:
        status, text = 0, repr(exc)
    state.latencies[op].append(time.perf_counter() - started)
    if status != EXPECTED[op]:
        state.errors.append(f"{op} {wid}: {status} {text}")
    elif op == "submit":
        state.running.append(r.json()["id"])
    elif op == "suspend":
        state.running.remove(wid)
        state.stopped.append(wid)
    elif op == "resume":
        state.stopped.remove(wid)
        state.running.append(wid)
    elif op == "delete":
        (state.running if wid in state.running else state.stopped).remove(wid)
    if op in ("suspend", "resume", "delete"):
        state.busy.discard(wid)  # a get never marked it: another request may hold it


def settle(task: asyncio.Task[None], tasks: set[asyncio.Task[None]], state: State) -> None:
    tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        state.errors.append(f"client bug: {task.exception()!r}")


def rss_mb(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


async def drive(
    url: str, server: psutil.Process, args: argparse.Namespace
) -> tuple[State, list[tuple[float, float]], float]:
    """Send the open loop; return the state, the RSS samples (elapsed s, MiB) and the time."""
    state = State()
    rng = random.Random(args.seed)
    samples: list[tuple[float, float]] = []
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits, timeout=30) as client:
        r = await client.post("/api/v1/projects", json={"name": "soak"})
        assert r.status_code == 201, r.text
        tasks: set[asyncio.Task[None]] = set()
        total = int(args.rate * args.seconds)
        start = time.perf_counter()
        next_sample = start
        for i in range(total):
            now = time.perf_counter()
            if now >= next_sample:
                samples.append((now - start, rss_mb(server)))
                next_sample += args.sample_every
            delay = start + i / args.rate - now
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(client, state, pick(state, rng, cap=args.cap), i, rng))
            tasks.add(task)
            task.add_done_callback(lambda t: settle(t, tasks, state))
            state.sent += 1
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=60)
            if pending:
                state.errors.append(f"{len(pending)} requests unanswered 60 s after the last")
                for task in pending:
                    task.cancel()
        elapsed = time.perf_counter() - start
        samples.append((elapsed, rss_mb(server)))
    return state, samples, elapsed


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def report(
    state: State, samples: list[tuple[float, float]], elapsed: float, args: argparse.Namespace
) -> None:
    every = [x for v in state.latencies.values() for x in v]
    print(
        f"soak: {state.sent} requests in {elapsed:.0f} s = {state.sent / elapsed:.1f} req/s "
        f"(target {args.rate:g}/s, {args.workers} worker(s)), {len(state.errors)} errors"
    )
    print(f"  {'operation':<10}{'count':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for op in [*MIX, "all"]:
        values = every if op == "all" else state.latencies.get(op, [])
        if values:
            print(
                f"  {op:<10}{len(values):>7}{pct(values, 50):>9.1f}{pct(values, 99):>9.1f}"
                f"{max(values) * 1000:>9.1f}"
            )
    print("  RSS of the server processes (MiB) by elapsed second:")
    print("   " + "  ".join(f"{t:.0f}s:{m:.0f}" for t, m in samples))
    for e in state.errors[:10]:
        print("  error:", e)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=180.0, help="how long to send")
    parser.add_argument("--workers", type=int, default=1, help="runplane serve --workers")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--cap", type=int, default=100, help="live workloads at most")
    parser.add_argument("--sample-every", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-growth-mib", type=float, default=40.0, help="allowed RSS growth, 2nd half"
    )
    args = parser.parse_args()
    if args.seconds > 3600 or args.rate > 1000:
        sys.exit("soak: refusing more than an hour or 1000 requests/s")

    with scratch_database("runplane_soak") as engine:
        env = {
            **os.environ,
            "DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "RUNPLANE_ADMIN_TOKEN": TOKEN,
            "RUNPLANE_LOG_LEVEL": "WARNING",
            "RUNPLANE_SIM_RUN_SECONDS": "86400",  # nothing completes: every workload stays live
            "RUNPLANE_DATABASE_POOL_SIZE": "10",
        }
        log = open("/tmp/runplane-soak-serve.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "runplane"), "serve", "--host", HOST]
            + ["--port", str(args.port), "--workers", str(args.workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://{HOST}:{args.port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    sys.exit("soak: runplane serve exited; see /tmp/runplane-soak-serve.log")
                time.sleep(0.25)
            else:
                sys.exit("soak: runplane serve did not become ready")
            state, samples, elapsed = asyncio.run(drive(url, psutil.Process(proc.pid), args))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    report(state, samples, elapsed, args)
    growth = second_half_growth(samples)
    print(f"  RSS growth over the second half: {growth:+.1f} MiB (allowed {args.max_growth_mib})")
    if state.errors or growth > args.max_growth_mib:
        sys.exit(1)


def second_half_growth(samples: list[tuple[float, float]]) -> float:
    """Max RSS in the last quarter minus max RSS around the middle: warm-up growth (caches,
    pools, the first workloads) is allowed; steady growth after it is a leak."""
    if len(samples) < 4:
        return 0.0
    half = len(samples) // 2
    middle = max(m for _, m in samples[half - 1 : half + 1])
    last = max(m for _, m in samples[-max(1, len(samples) // 4) :])
    return last - middle


if __name__ == "__main__":
    main()
