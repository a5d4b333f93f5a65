"""Group commit: concurrent requests for the same key run as one batch, in one transaction.

A burst (10,000 members pressing one check-in button) would otherwise be 10,000 transactions queueing for
SQLite's single writer. The first request for a key starts a flush; every request that arrives while a batch
is running joins the next one, so batches grow exactly as large as the load makes them.

With `opener` (e.g. `in_transaction(sessionmaker)`), a batch is taken only once its transaction holds a database
connection: requests that arrive while the connection is busy with other work (SQLite has one) join the batch
instead of waiting behind a batch of one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.db import is_postgres

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 (an item)
R = TypeVar("R")


def in_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Callable[[], AbstractAsyncContextManager[AsyncSession]]:
    """An opener for `Coalescer`: a session whose transaction already holds a connection; committed on exit.

    On SQLite the batch's own unit of work begins and commits it instead: there the one connection is never held
    across a wait (models.db.LoopSQLite), so there is nothing to wait for before taking the batch, and beginning
    apart from the work would only cost a second round through SQLAlchemy."""

    @asynccontextmanager
    async def opened() -> AsyncIterator[AsyncSession]:
        async with sessionmaker() as session:
            if not is_postgres(session):
                yield session
                return
            async with session.begin():
                await session.connection()
                yield session

    return opened


class Coalescer(Generic[K, I, R]):
    """`await submit(key, item)` returns this item's result from `run(key, items, opened)`, which gets every item
    submitted for `key` while the previous batch ran (at most `max_batch`), and what `opener` yielded (None
    without one), and returns one result per item, in order. If a batch fails, each of its requests raises that
    error. Results are handed out after the opener has exited (its transaction committed)."""

    def __init__(
        self, run: Callable[..., Awaitable[Sequence[R]]], *, max_batch: int = 500,
        opener: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        self.run, self.max_batch, self.opener = run, max_batch, opener
        self.waiting: dict[K, list[tuple[I, asyncio.Future[R]]]] = {}
        self.flushing: dict[K, asyncio.Task[None]] = {}

    async def submit(self, key: K, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(key, []).append((item, future))
        if key not in self.flushing:
            self.flushing[key] = asyncio.create_task(self._flush(key))
        return await future

    def _take(self, key: K) -> list[tuple[I, asyncio.Future[R]]]:
        queue = self.waiting.get(key, [])
        batch, self.waiting[key] = queue[: self.max_batch], queue[self.max_batch :]
        return batch

    async def _flush(self, key: K) -> None:
        try:
            while self.waiting.get(key):
                batch: list[tuple[I, asyncio.Future[R]]] = []
                try:
                    async with (self.opener or nullcontext)() as opened:
                        batch = self._take(key)
                        results = await self.run(key, [item for item, _ in batch], opened)
                except Exception as error:  # every waiter hears about it; the flusher carries on
                    for _, future in batch or self._take(key):
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


class GroupDesk(Generic[I, R]):
    """One desk per process for requests about a group that a burst makes together (check-ins, chat points):
    they are recorded by `record_many(session, group_id, items, now=, group=)` in one transaction. The batch's
    time is its latest request's; its group row, the latest the callers read (None: record_many loads it)."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], record_many: Callable[..., Awaitable[Sequence[R]]]
    ) -> None:
        self.record_many = record_many
        self.coalescer: Coalescer[int, tuple[I, datetime, Any], R] = Coalescer(
            self._record, opener=in_transaction(sessionmaker)
        )

    async def submit(self, group_id: int, item: I, *, now: datetime | None = None, group: Any = None) -> R:
        return await self.coalescer.submit(group_id, (item, now or datetime.now(UTC), group))

    async def _record(
        self, group_id: int, requests: Sequence[tuple[I, datetime, Any]], session: AsyncSession
    ) -> Sequence[R]:
        return await self.record_many(session, group_id, [item for item, _, _ in requests],
                                      now=max(t for _, t, _ in requests), group=requests[-1][2])
