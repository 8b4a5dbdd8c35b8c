"""Natural batching: concurrent calls coalesced into one, without a timer.

While a batch is being written, new items queue and go together in the next one. A lone item
goes at once, so batching adds no latency when the load is light, and grows with the load
exactly as far as the work in flight makes callers wait anyway (the idea of group commit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Calls ``run`` with the items queued so far, ``max_size`` at most, one batch at a time.

    ``run`` answers one result per item, in order; if it raises, every caller of the batch
    gets the error.
    """

    def __init__(
        self, run: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, max_size: int = 64
    ) -> None:
        self._run = run
        self.max_size = max_size
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            # (A task of another loop is of a closed one: a test's. Its items died with it.)
            self._pending = [(i, f) for i, f in self._pending if f.get_loop() is loop]
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        # One turn of the event loop first: requests already on their way here join this batch.
        await asyncio.sleep(0)
        while self._pending:
            batch = self._pending[: self.max_size]
            del self._pending[: self.max_size]
            try:
                results = await self._run([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
