"""Natural batching: concurrent calls share one run, a lone call runs at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.batching import Batcher


class Recorder:
    def __init__(self, *, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(0.01)  # the write in flight, while others queue
        if self.fail_on in items:
            raise ValueError(f"refused {self.fail_on}")
        return [i * 10 for i in items]


def test_a_lone_call_runs_alone_and_at_once() -> None:
    run = Recorder()
    batcher = Batcher(run)
    assert asyncio.run(batcher(1)) == 10
    assert run.batches == [[1]]


def test_calls_that_arrive_during_a_write_go_together() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=3)

    async def scenario() -> list[int]:
        first = asyncio.ensure_future(batcher(0))
        await asyncio.sleep(0.001)  # the first write is in flight
        rest = [batcher(i) for i in range(1, 6)]
        return await asyncio.gather(first, *rest)

    assert asyncio.run(scenario()) == [0, 10, 20, 30, 40, 50]
    assert run.batches == [[0], [1, 2, 3], [4, 5]]  # each answer reached its own caller


def test_an_error_reaches_every_caller_of_its_batch_only() -> None:
    run = Recorder(fail_on=2)
    batcher = Batcher(run)

    async def scenario() -> tuple[object, ...]:
        first = asyncio.ensure_future(batcher(0))
        await asyncio.sleep(0.001)
        return await asyncio.gather(first, batcher(1), batcher(2), return_exceptions=True)

    first, *failed = asyncio.run(scenario())
    assert first == 0
    assert [str(e) for e in failed] == ["refused 2", "refused 2"]
    assert asyncio.run(batcher(3)) == 30  # and the batcher carries on


def test_a_new_event_loop_gets_a_working_batcher() -> None:
    run = Recorder()
    batcher = Batcher(run)

    async def abandon() -> None:
        asyncio.ensure_future(batcher(1))
        await asyncio.sleep(0.001)  # the loop closes (cancelling it) with the write in flight

    asyncio.run(abandon())
    assert run.batches == [[1]]
    assert asyncio.run(batcher(2)) == 20
    assert run.batches == [[1], [2]]
