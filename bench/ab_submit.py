"""CPU per submission of two or more revisions, interleaved, on one machine.

    DATABASE_URL=postgresql:///postgres?host=/var/run/postgresql \
        .venv/bin/python bench/ab_submit.py HEAD 27e1123 --rounds 15 --requests 800

Without DATABASE_URL, the scratch databases go to the embedded server (bench/common.py).

On a shared machine, throughput measured a minute apart moves by a factor of two (bench_submit.sh
takes ratios to the raw INSERT rate for that reason, and they move too). This compares revisions
instead: each gets its own checkout (``git worktree``), scratch database and Python process,
which drives the ASGI app in-process (no HTTP server, no load generator) with 8 concurrent
callers, as ``wrk -c8`` does, so that submissions batch as they do under load. The processes
take turns, one short burst each, and the figure is each process's own CPU time per submission
(``time.process_time``): the machine's changes of pace hit neighbouring bursts alike, and the
median of the per-round ratios to the first revision is reported. Each round runs the bursts
with a researcher's API token and with the bootstrap token.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.common import server_url  # noqa: E402

# The worker: one per revision, with that revision's app/ first on sys.path. Commands on stdin
# ("api N", "admin N"), one line of answer each: CPU microseconds per submission.
WORKER = r"""
import asyncio, json, sys, time, uuid
from app.config import Settings
from app.main import create_app

ADMIN = "runplane-dev-admin-token"
BODY = ('{"name":"%s","project":"bench","spec":{"image":"pytorch/pytorch:2.4","compute":'
        '{"gpuDevicesRequest":1,"cpuCoreRequest":2,"cpuMemoryRequest":"8Gi"},'
        '"environmentVariables":[{"name":"EPOCHS","value":"10"}]}}')
POLICY = (b'{"defaults":{"imagePullPolicy":"IfNotPresent","compute":{"cpuCoreLimit":4}},'
          b'"rules":{"compute":{"gpuDevicesRequest":{"max":8}},"image":{"pattern":"[a-z0-9./:_-]+"}}}')

async def call(app, method, path, body, token):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"bench"), (b"authorization", b"Bearer " + token.encode()),
                         (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()
    out = {}
    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] = out.get("body", b"") + message.get("body", b"")
    await app(scope, receive, send)
    return out["status"], out.get("body", b"")

async def main(url):
    app = create_app(Settings(database_url=url, admin_token=ADMIN, run_reconciler=False),
                     reconcile=False)
    async with app.router.lifespan_context(app):
        await call(app, "POST", "/api/v1/projects", b'{"name":"bench"}', ADMIN)
        await call(app, "PUT", "/api/v1/policies/global/trainings", POLICY, ADMIN)
        status, body = await call(app, "POST", "/api/v1/tokens",
            b'{"name":"bench","role":"researcher","projects":["bench"]}', ADMIN)
        tokens = {"api": json.loads(body)["token"], "admin": ADMIN}

        async def burst(token, n):
            async def caller():
                for _ in range(n // 8):
                    name = "t" + uuid.uuid4().hex[:20]
                    status, body = await call(app, "POST", "/api/v1/workloads/trainings",
                                              (BODY % name).encode(), token)
                    assert status == 201, body
            await asyncio.gather(*(caller() for _ in range(8)))

        await burst(tokens["api"], 400)  # warm: caches, prepared statements, the pool
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            who, n = line.split()
            started = time.process_time()
            await burst(tokens[who], int(n))
            print(f"{1e6 * (time.process_time() - started) / int(n):.1f}", flush=True)

import uvloop
uvloop.run(main(sys.argv[1]))
"""


def execute(engine: Engine, statement: str) -> None:
    with engine.connect() as conn:
        conn.execute(text(statement))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="+", help="git revisions; the first is the reference")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=800, help="submissions per burst")
    args = parser.parse_args()
    base = server_url()
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    python = sys.executable
    workers: list[tuple[str, subprocess.Popen[str]]] = []
    databases: list[str] = []
    with tempfile.TemporaryDirectory(prefix="runplane-ab-") as scratch:
        try:
            for i, rev in enumerate(args.revisions):
                tree = Path(scratch) / f"tree{i}"
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
                    check=True,
                    capture_output=True,
                )
                name = f"runplane_ab_{os.getpid()}_{i}"
                execute(admin, f"CREATE DATABASE {name}")
                databases.append(name)
                url = make_url(base).set(database=name).render_as_string(hide_password=False)
                env = {**os.environ, "PYTHONPATH": str(tree), "DATABASE_URL": url}
                env["RUNPLANE_LOG_LEVEL"] = "WARNING"
                subprocess.run(
                    [python, "-m", "app.cli", "migrate"],
                    env=env,
                    cwd=tree,
                    check=True,
                    capture_output=True,
                )
                worker = subprocess.Popen(
                    [python, "-c", WORKER, url],
                    env=env,
                    cwd=tree,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert worker.stdout is not None
                if worker.stdout.readline().strip() != "ready":
                    raise SystemExit(f"{rev}: the worker did not start")
                workers.append((rev, worker))
            results: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for who in ("api", "admin"):
                    for rev, worker in workers:
                        assert worker.stdin is not None
                        assert worker.stdout is not None
                        worker.stdin.write(f"{who} {args.requests}\n")
                        worker.stdin.flush()
                        results.setdefault((rev, who), []).append(float(worker.stdout.readline()))
        finally:
            for _, worker in workers:
                worker.kill()
                worker.wait()
            for name in databases:
                execute(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()
    # The checkouts are gone with the scratch folder: forget them.
    subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)
    reference = args.revisions[0]
    print(
        f"CPU µs per submission, median of {args.rounds} rounds of {args.requests}; ratio to "
        f"{reference}: median of the rounds' ratios"
    )
    for who in ("api", "admin"):
        for rev in args.revisions:
            own = results[(rev, who)]
            ratios = [a / b for a, b in zip(own, results[(reference, who)], strict=True)]
            print(
                f"{who:5} {rev:>12}: {statistics.median(own):7.0f} µs "
                f"(min {min(own):.0f}, max {max(own):.0f}) ratio {statistics.median(ratios):.2f}"
            )
    print(json.dumps({f"{rev} {who}": v for (rev, who), v in results.items()}))


if __name__ == "__main__":
    main()
