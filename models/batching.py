"""Group commit: concurrent requests for the same key run as one batch, in one transaction.

A burst (10,000 members pressing one check-in button) would otherwise be 10,000 transactions queueing for
SQLite's single writer. The first request for a key starts a flush; every request that arrives while a batch
is running joins the next one, so batches grow exactly as large as the load makes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 (an item)
R = TypeVar("R")


class Coalescer(Generic[K, I, R]):
    """`await submit(key, item)` returns this item's result from `run(key, items)`, which gets every item
    submitted for `key` while the previous batch ran (at most `max_batch`) and returns one result per item,
    in order. If a batch fails, each of its requests raises that error."""

    def __init__(self, run: Callable[[K, Sequence[I]], Awaitable[Sequence[R]]], *, max_batch: int = 500) -> None:
        self.run, self.max_batch = run, max_batch
        self.waiting: dict[K, list[tuple[I, asyncio.Future[R]]]] = {}
        self.flushing: dict[K, asyncio.Task[None]] = {}

    async def submit(self, key: K, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(key, []).append((item, future))
        if key not in self.flushing:
            self.flushing[key] = asyncio.create_task(self._flush(key))
        return await future

    async def _flush(self, key: K) -> None:
        try:
            while self.waiting.get(key):
                queue = self.waiting[key]
                batch, self.waiting[key] = queue[: self.max_batch], queue[self.max_batch :]
                try:
                    results = await self.run(key, [item for item, _ in batch])
                except Exception as error:  # every waiter hears about it; the flusher carries on
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            for _, future in self.waiting.pop(key, []):  # only when cancelled (shutdown)
                future.cancel()
            self.flushing.pop(key, None)
