"""A followed log of ``--megabytes`` MB through `runplane serve`: the API process's memory.

    python bench/bench_logs.py [--megabytes 100]

Starts a stand-in for the API server's pod log endpoint (a process of its own that streams
``--megabytes`` MB of log lines, chunked, then ends as a container does), and
`runplane serve --no-reconciler` with the kubernetes backend pointed at it (a kubeconfig), on
a scratch database (DATABASE_URL or the embedded server). A training is submitted and given a
running pod, then ``GET /workloads/{id}/logs?follow=true`` is read to its end while the API
process's resident memory is sampled every 100 ms: its growth over the whole stream is what a
followed log costs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg
from psycopg.types.json import Jsonb

from bench.bench_sse import TOKEN, free_port, rss_kib
from bench.common import ROOT, scratch_database

LINE = b"2026-01-01T00:00:00.000000000Z step 000123 | loss 0.4321 | lr 3.0e-04 | 1024 samples/s\n"


def serve_fake_log(port: int, megabytes: int) -> None:
    total = megabytes * 1_000_000
    chunk = LINE * (65536 // len(LINE))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < total:
                part = chunk[: total - sent]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                sent += len(part)
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a reader that stops early (limitBytes) resets the connection: expected

    Server(("127.0.0.1", port), Handler).serve_forever()


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://127.0.0.1:%d"}}]
users: [{name: fake, user: {token: fake}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake_log(args.serve_fake, args.megabytes)
        return
    fake_port, port = free_port(), free_port()
    fake = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-fake",
            str(fake_port),
            "--megabytes",
            str(args.megabytes),
        ]
    )
    with tempfile.TemporaryDirectory() as tmp, scratch_database("runplane_bench_logs") as engine:
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG % fake_port)
        url = engine.url.render_as_string(hide_password=False)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "RUNPLANE_ADMIN_TOKEN": TOKEN,
            "RUNPLANE_CLUSTER": "kubernetes",
            "KUBECONFIG": str(kubeconfig),
        }
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/runplane"), "serve", "--port", str(port), "--no-reconciler"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "serve.log", "w"),  # noqa: SIM115
        )
        try:
            run(port, url, server.pid, args.megabytes)
        finally:
            server.terminate()
            server.wait(timeout=30)
            fake.terminate()
            if os.environ.get("BENCH_SHOW_LOG"):
                print((Path(tmp) / "serve.log").read_text()[-5000:])


def run(port: int, url: str, pid: int, megabytes: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as c:
        for _ in range(200):
            try:
                if c.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        c.post("/api/v1/projects", json={"name": "bench"})
        wid = c.post(
            "/api/v1/workloads/trainings",
            json={"name": "big", "project": "bench", "spec": {"image": "x"}},
        ).json()["id"]
        pod = {
            "name": "big-abcde",
            "role": "worker",
            "node": "n",
            "phase": "Running",
            "ready": True,
            "restarts": 0,
            "startTime": None,
            "gpus": 0,
            "containers": [
                {"name": "main", "image": "x", "ready": True, "restarts": 0, "state": "running"}
            ],
        }
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(
                "UPDATE workloads SET phase = 'Running', pod_list = %s WHERE id = %s",
                (Jsonb([pod]), wid),
            )
        # Warm up (the kubernetes client and its models load on first use).
        c.get(f"/api/v1/workloads/{wid}/logs", params={"limitBytes": 1000})
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(rss_kib(pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        before = rss_kib(pid)
        sampler.start()
        started = time.perf_counter()
        received = 0
        params = {"follow": "true", "limitBytes": 1 << 30}
        with c.stream("GET", f"/api/v1/workloads/{wid}/logs", params=params) as r:
            for chunk in r.iter_raw(65536):
                received += len(chunk)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    print(
        f"followed log: {received / 1e6:.0f} MB in {seconds:.1f} s "
        f"({received / 1e6 / seconds:.0f} MB/s)"
    )
    print(
        f"API process RSS: {before / 1024:.1f} MiB before; during the stream "
        f"min {min(samples) / 1024:.1f}, max {max(samples) / 1024:.1f} MiB "
        f"({len(samples)} samples); growth {(max(samples) - before) / 1024:.1f} MiB"
    )
    assert received == megabytes * 1_000_000, received


if __name__ == "__main__":
    main()
