"""What the benches share: a database of their own (a temporary SQLite file, or a fresh schema on PostgreSQL that
is dropped afterwards), a bench group, and the loop-stall measurement."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models.db import create_all, create_engine
from models.groups import ChatSeen, upsert_group

T = TypeVar("T")


async def postgres_engine(url: str) -> tuple[AsyncEngine, str]:
    """A fresh schema, so the bench never touches other rows."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    await admin.dispose()
    engine = create_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _path(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute(f'SET search_path TO "{schema}"')
        cursor.close()

    return engine, schema


@asynccontextmanager
async def bench_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on `url` with every table created; on PostgreSQL in a schema of its own, dropped at the end."""
    schema = None
    if url.startswith("postgresql"):
        engine, schema = await postgres_engine(url)
    else:
        engine = create_engine(url)
    try:
        await create_all(engine)
        yield engine
    finally:
        await engine.dispose()
        if schema is not None:
            admin = create_engine(url)
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            await admin.dispose()


async def bench_group(sessionmaker: async_sessionmaker[AsyncSession], chat_id: int, zone: str) -> int:
    """A supergroup row for the bench; its Group.id."""
    async with sessionmaker() as session:
        group = await upsert_group(session, ChatSeen(chat_id, "Bench", "supergroup"), default_timezone=zone)
        await session.commit()
        assert group.id is not None
        return group.id


async def loop_stall(stop: asyncio.Event) -> float:
    """The longest gap between two wake-ups of a task that asks to run every millisecond (seconds)."""
    worst, last = 0.0, time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst, last = max(worst, now - last - 0.001), now
    return worst


async def timed(work: Awaitable[T]) -> tuple[T, float, float]:
    """(result, seconds, worst loop stall in seconds) of awaiting `work`."""
    stop = asyncio.Event()
    ticker: asyncio.Task[Any] = asyncio.create_task(loop_stall(stop))
    await asyncio.sleep(0.005)
    started = time.perf_counter()
    result = await work
    elapsed = time.perf_counter() - started
    stop.set()
    return result, elapsed, await ticker
