"""Start and stop `runplane serve` on the embedded server again and again, alternating SIGTERM
and Ctrl-C (SIGINT to the process group), with one SIGKILL among them; then say whether any
PostgreSQL of that data directory is still running. The check of the issue "the embedded
PostgreSQL lives and dies with the service".

    .venv/bin/python tools/embedded_cycles.py [--runs 10] [--kill-at 5] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")  # the test helpers' imports warn of things that do not matter here

from tests.embedded.processes import embedded_env, postmasters, registered  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--kill-at", type=int, default=5, help="the run stopped by SIGKILL")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, help="default: a new temporary directory")
    args = parser.parse_args()

    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="runplane-cycles-"))).resolve()
    pgdata = data_dir / "postgres"
    env = embedded_env(RUNPLANE_DATA_DIR=str(data_dir), RUNPLANE_LOG_LEVEL="WARNING")
    runplane = Path(sys.executable).with_name("runplane")
    port = free_port()
    print(f"data directory {data_dir}, port {port}, --workers {args.workers}")
    failures = 0
    starts_failed = 0
    for run in range(1, args.runs + 1):
        how = "SIGKILL" if run == args.kill_at else ("SIGTERM" if run % 2 else "Ctrl-C")
        log = (data_dir / f"serve-{run}.log").open("wb")
        began = time.monotonic()
        proc = subprocess.Popen(
            [str(runplane), "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        up = None
        while time.monotonic() - began < 120 and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    up = time.monotonic() - began
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        users = sorted(registered(pgdata)) if pgdata.exists() else []
        sent = time.monotonic()
        if how == "SIGKILL":
            proc.kill()
        elif how == "Ctrl-C":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        status = proc.wait(60)
        exited = time.monotonic() - sent
        while postmasters(pgdata) and time.monotonic() - sent < 30:
            time.sleep(0.05)
        left = postmasters(pgdata)
        gone = time.monotonic() - sent
        log.close()
        ok = up is not None and (bool(left) if how == "SIGKILL" else not left and status == 0)
        failures += not ok
        starts_failed += up is None
        print(
            f"run {run:2}: started {'in %.1f s' % up if up is not None else 'NOT'}"
            f" (registered {users}); {how:7} -> exit {status} after {exited:.1f} s; "
            + (
                f"postgres still running (pid {left[0].pid}), as expected after SIGKILL"
                if how == "SIGKILL" and left
                else f"postgres stopped {gone:.1f} s after the signal"
                if not left
                else f"POSTGRES STILL RUNNING (pid {left[0].pid})"
            )
            + ("" if ok else "   <-- FAILED")
        )
    left = postmasters(pgdata)
    print(
        "at the end: "
        + (f"POSTGRES OF {pgdata} RUNNING: {[p.pid for p in left]}" if left else
           f"no postgres of {pgdata} is running")
        + f"; starts that failed: {starts_failed} of {args.runs}; runs not as expected: {failures}"
    )
    return 1 if failures or left else 0


if __name__ == "__main__":
    sys.exit(main())
