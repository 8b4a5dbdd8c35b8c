"""What the simulated cluster's containers print: pure, deterministic, no I/O.

:func:`container_log` answers the lines a container wrote between its start and ``now`` (or its
end), one every :data:`LINE_SECONDS`: a training prints its steps and loss, an inference server
its requests, a notebook its server's chatter; a container that failed ends with a traceback.
The same workload, pod, container and time give the same lines, so a log read twice agrees with
itself and grows only while the container runs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

LINE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Window:
    """When a container ran: from ``start`` to ``end`` (None: still running), how it ended."""

    start: datetime
    end: datetime | None
    exit_code: int | None


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def window(container: Mapping[str, Any], *, previous: bool) -> Window | None:
    """The run a log request reads: the current one, or the last terminated one
    (``previous``). None when there is none (not started yet, or no earlier run)."""
    state = container.get("lastState") if previous else container
    if not isinstance(state, Mapping) or state.get("state") not in ("running", "terminated"):
        return None
    start = _time(state.get("startedAt"))
    if start is None:
        return None
    end = _time(state.get("finishedAt")) if state.get("state") == "terminated" else None
    code = state.get("exitCode")
    return Window(start, end, code if isinstance(code, int) else None)


def _number(seed: str, index: int) -> int:
    digest = hashlib.md5(f"{seed}/{index}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4])


def _training(seed: str, i: int) -> str:
    n = _number(seed, i)
    loss = 2.5 / (1 + i / 20) + (n % 1000) / 20000
    if i == 0:
        return "Loading dataset: 60000 train / 10000 eval examples"
    return f"step {i * 10:>6} | loss {loss:.4f} | lr 3.0e-04 | {800 + n % 400} samples/s"


def _inference(seed: str, i: int) -> str:
    n = _number(seed, i)
    if i == 0:
        return "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)"
    path = ("/v1/completions", "/v1/chat/completions", "/health")[n % 3]
    status = 200 if n % 50 else 503
    return f'INFO:     10.0.{n % 4}.{n % 250 + 2}:{30000 + n % 30000} - "POST {path} HTTP/1.1" ' + (
        f"{status} {20 + n % 180}ms"
    )


def _interactive(seed: str, i: int) -> str:
    n = _number(seed, i)
    if i == 0:
        return "[I ServerApp] Jupyter Server is running at: http://localhost:8888/lab"
    kinds = ("Kernel started", "Saving file at /work/notebook.ipynb", "Kernel restarted")
    return f"[I ServerApp] {kinds[n % 3]}: {seed[-8:]}-{n % 10000:04d}"


_PRINTERS = {"training": _training, "distributed": _training, "inference": _inference}


def line_count(run: Window, now: datetime) -> int:
    """How many lines the run has written by ``now``, its ending included."""
    until = min(now, run.end) if run.end is not None else now
    if until < run.start:
        return 0
    count = int((until - run.start).total_seconds() // LINE_SECONDS) + 1
    if run.end is not None:
        # The last regular line is the one written before the end.
        span = (run.end - run.start).total_seconds()
        count = min(count, max(1, math.ceil(span / LINE_SECONDS)))
        if now >= run.end:
            count += len(_ending(run.exit_code))
    return count


def container_log(
    *,
    seed: str,
    workload_type: str,
    run: Window,
    now: datetime,
    start: int = 0,
    last: int | None = None,
) -> list[tuple[datetime, str]]:
    """The run's lines from index ``start`` (or only its ``last`` ones) up to ``now``, with
    the time each was written: computed, so a long run costs only the lines asked for."""
    printer = _PRINTERS.get(workload_type, _interactive)
    total = line_count(run, now)
    ending = _ending(run.exit_code) if run.end is not None and now >= run.end else []
    regular = total - len(ending)
    first = max(start, total - last) if last is not None else start
    lines = [
        (run.start + timedelta(seconds=i * LINE_SECONDS), printer(seed, i))
        for i in range(first, regular)
    ]
    assert run.end is not None or not ending
    lines.extend(
        (run.end, text) for i, text in enumerate(ending) if regular + i >= first and run.end
    )
    return lines


def _ending(exit_code: int | None) -> list[str]:
    if not exit_code:
        return ["Done."]
    return [
        "Traceback (most recent call last):",
        '  File "/app/main.py", line 42, in <module>',
        "    main()",
        f"RuntimeError: worker exited with code {exit_code}",
    ]
