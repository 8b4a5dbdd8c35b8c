"""What the simulated containers print: deterministic, growing while they run, bounded."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from app.cluster.simulated_logs import LINE_SECONDS, Window, container_log, line_count, window
from app.workloads.changes import Watcher

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_running_training_prints_a_step_every_few_seconds_and_grows() -> None:
    run = Window(START, None, None)
    early = container_log(
        seed="w/p/c", workload_type="training", run=run, now=START + timedelta(seconds=9)
    )
    later = container_log(
        seed="w/p/c", workload_type="training", run=run, now=START + timedelta(seconds=30)
    )
    assert len(early) == 9 // LINE_SECONDS + 1
    assert later[: len(early)] == early  # the same lines, then more
    assert "loss" in later[-1][1]
    assert (
        container_log(
            seed="w/p/c", workload_type="training", run=run, now=START + timedelta(seconds=30)
        )
        == later
    )


def test_a_failed_run_ends_with_its_traceback_and_no_line_after_its_end() -> None:
    end = START + timedelta(seconds=20)
    run = Window(START, end, 3)
    lines = container_log(
        seed="s", workload_type="inference", run=run, now=end + timedelta(hours=1)
    )
    assert lines[-1] == (end, "RuntimeError: worker exited with code 3")
    assert all(at <= end for at, _ in lines)
    assert len(lines) == line_count(run, end + timedelta(hours=1))


def test_only_the_lines_asked_for_are_computed() -> None:
    run = Window(START, None, None)
    a_year = START + timedelta(days=365)
    tail = container_log(seed="s", workload_type="interactive", run=run, now=a_year, last=3)
    assert len(tail) == 3
    assert tail[-1][0] <= a_year
    assert (
        container_log(
            seed="s",
            workload_type="interactive",
            run=run,
            now=a_year,
            start=line_count(run, a_year),
        )
        == []
    )


def test_the_previous_run_is_the_last_terminated_state() -> None:
    container = {
        "state": "running",
        "startedAt": "2026-01-01T00:01:00Z",
        "lastState": {
            "state": "terminated",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:00:30Z",
            "exitCode": 137,
        },
    }
    assert window(container, previous=True) == Window(START, START + timedelta(seconds=30), 137)
    assert window(container, previous=False) == Window(START + timedelta(minutes=1), None, None)
    assert window({"state": "waiting"}, previous=False) is None


def test_a_watcher_that_falls_behind_is_told_to_read_afresh() -> None:
    async def run() -> list[object]:
        watcher = Watcher(wants=lambda row: True)
        for _ in range(watcher.queue.maxsize + 5):
            watcher.offer(object())  # type: ignore[arg-type]
        return [watcher.queue.get_nowait() for _ in range(watcher.queue.qsize())]

    # What was queued is dropped for one "read afresh", which the later changes follow.
    received = asyncio.run(run())
    assert received[0] is None
    assert len(received) == 5
