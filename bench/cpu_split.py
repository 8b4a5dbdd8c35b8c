"""Run a command; print the CPU seconds that the API (python), PostgreSQL and the command itself
used meanwhile, machine-wide. Divided by the requests served, that is the CPU per request.

    .venv/bin/python bench/cpu_split.py wrk -t2 -c8 -d10s -s bench/submit.lua http://127.0.0.1:8765
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def snapshot() -> dict[str, tuple[str, float]]:
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (cmd, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def group(cmd: str) -> str:
    if "postgres" in cmd:
        return "postgres"
    return "python" if "python" in cmd or "runplane" in cmd else "other"


def main() -> None:
    before, started = snapshot(), time.monotonic()
    subprocess.run(sys.argv[1:], check=False)
    wall, after = time.monotonic() - started, snapshot()
    used: dict[str, float] = {}
    for pid, (cmd, cpu) in after.items():
        used[group(cmd)] = used.get(group(cmd), 0) + cpu - before.get(pid, (cmd, 0.0))[1]
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"cpu seconds: python {used.get('python', 0):.2f}, postgres {used.get('postgres', 0):.2f},"
        f" command {own.ru_utime + own.ru_stime:.2f}; wall {wall:.2f} s"
    )


if __name__ == "__main__":
    main()
