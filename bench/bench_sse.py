"""Live updates: N Server-Sent Events watchers on one `runplane serve` process.

    python bench/bench_sse.py [--watchers 1000] [--workloads 100] [--rounds 5]

Starts `runplane serve --no-reconciler` on a scratch database (DATABASE_URL or the embedded
server), submits ``--workloads`` trainings, opens ``--watchers`` connections to
``GET /workloads/{id}/watch`` (spread evenly over the workloads), and measures the API
process's resident memory before and after (per watcher). Then, ``--rounds`` times, writes every
workload's status in one transaction, as a reconciler cycle does, and records for every watcher
how long after that transaction committed the change reached it: p50, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg

from bench.common import ROOT, scratch_database

TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Watcher:
    def __init__(self, port: int, workload_id: str) -> None:
        self.port, self.workload_id = port, workload_id
        self.buffer = b""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            (
                f"GET /api/v1/workloads/{self.workload_id}/watch HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        await self.writer.drain()
        await self.wait_for(b"event: workload")  # the workload as it reads now

    async def wait_for(self, marker: bytes) -> float:
        """When ``marker`` arrived (perf_counter)."""
        assert self.reader is not None
        while marker not in self.buffer:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise RuntimeError("the stream ended")
            self.buffer += chunk
        at = time.perf_counter()
        self.buffer = self.buffer[self.buffer.index(marker) + len(marker) :]
        return at


async def run(args: argparse.Namespace, url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "RUNPLANE_ADMIN_TOKEN": TOKEN,
        "RUNPLANE_DATABASE_POOL_SIZE": "20",
    }
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/runplane"), "serve", "--port", str(port), "--no-reconciler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            for _ in range(200):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            await client.post("/api/v1/projects", json={"name": "bench"})
            ids = []
            for i in range(args.workloads):
                r = await client.post(
                    "/api/v1/workloads/trainings",
                    json={"name": f"w{i}", "project": "bench", "spec": {"image": "x"}},
                )
                ids.append(r.json()["id"])
        # One watcher first: the listener and everything it loads are there before measuring.
        first = Watcher(port, ids[0])
        await first.open()
        before = rss_kib(server.pid)
        watchers = [Watcher(port, ids[i % len(ids)]) for i in range(args.watchers)]
        for start in range(0, len(watchers), 100):
            await asyncio.gather(*(w.open() for w in watchers[start : start + 100]))
        after = rss_kib(server.pid)
        latencies: list[float] = []
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            for round_ in range(args.rounds):
                marker = f"bench-round-{round_}"
                waits = [asyncio.create_task(w.wait_for(marker.encode())) for w in watchers]
                await asyncio.sleep(0.2)
                with conn.transaction():
                    conn.execute(
                        "UPDATE workloads SET phase_message = %s, updated_at = now()"
                        " WHERE id = ANY(%s::uuid[])",
                        (marker, ids),
                    )
                committed = time.perf_counter()
                arrived = await asyncio.wait_for(asyncio.gather(*waits), 30)
                latencies.extend(at - committed for at in arrived)
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(f"watchers={args.watchers} workloads={args.workloads} rounds={args.rounds}")
        print(
            f"API process RSS: {before / 1024:.1f} MiB with 1 watcher, "
            f"{after / 1024:.1f} MiB with {args.watchers + 1}: "
            f"{(after - before) / args.watchers:.1f} KiB per watcher"
        )
        print(
            f"change -> watcher: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms over {len(latencies)} deliveries"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with scratch_database("runplane_bench_sse") as engine:
        asyncio.run(run(args, engine.url.render_as_string(hide_password=False)))


if __name__ == "__main__":
    main()
