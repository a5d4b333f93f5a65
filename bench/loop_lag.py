"""Known-long work beside a burst of group traffic: does the event loop stay free?

A burst of group messages and check-in button presses runs through the real dispatcher while, beside it, a
lottery draw over 100,000 entrants, a monthly leaderboard over a year of ledger entries and a group-buy export
(the participants list of /groupbuy export) run. A ticker sleeping 5 ms at a time measures the loop: the stall
is the longest gap between two ticks beyond those 5 ms. Press-to-answer is the time from feeding a press to the
bot's answerCallbackQuery. The burst runs once alone first, for comparison. Every SQLite driver is measured
(SQLITE_DRIVER=loop and =aiosqlite), and PostgreSQL when --database is given.

Prints, per database: `max loop stall: N ms` and the p99 press-to-answer. Target: max stall <= 20 ms.

Python's full garbage collections stop every thread for as long as they take to scan the heap (here 60-500 ms
for the ~270,000 objects alive after the fill, on a loaded machine): that is no database work, so after filling
the bench does what a long-running process does after its start, `gc.freeze()` (the objects alive now are never
scanned again), and prints the longest collection seen during each run. `--no-freeze` measures without it.

    python -m bench.loop_lag
    python -m bench.loop_lag --entrants 20000 --ledger 100000 --database postgresql+asyncpg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiogram.methods import AnswerCallbackQuery
from aiogram.types import Update
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.checkin_burst import press
from bench.database import postgres_engine
from bench.lottery_draw import fill as fill_lottery
from bench.moderation_path import chatter
from bot.settings import load_settings
from models import groupbuy, lottery, points
from models.db import SQLITE_DRIVERS, create_all, create_engine, create_sessionmaker, insert, utcnow
from models.groupbuy import GroupBuyEntry
from models.groups import get_group
from models.points import PointsEntry
from tests.factories import World

TICK = 0.005
CONCURRENCY = 16  # updates in flight at once, like a busy webhook


class Collections:
    """The longest garbage collection while it runs (gc.callbacks)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._started = 0.0

    def _watch(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.worst = max(self.worst, time.perf_counter() - self._started)

    def __enter__(self) -> Collections:
        gc.callbacks.append(self._watch)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._watch)


class Ticker:
    """The event loop's longest stall while it runs: the longest gap between 5 ms sleeps, beyond the 5 ms."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - TICK)
            last = now

    def __enter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@dataclass
class Run:
    stall: float  # seconds
    collection: float  # the longest garbage collection, seconds
    p50: float
    p99: float
    presses: int
    messages: int
    seconds: float
    work: dict[str, float]


async def fill_ledger(sessionmaker: async_sessionmaker[AsyncSession], group_id: int, entries: int,
                      members: int) -> None:
    """A year of ledger entries (earned points, spread evenly over the 365 days before now)."""
    now, rng = utcnow(), random.Random(7)
    year = timedelta(days=365).total_seconds()
    rows = [
        {"group_id": group_id, "user_id": 5_000_000 + rng.randrange(members), "delta": rng.choice((1, 2, 5, 10)),
         "kind": "chat", "key": f"bench:{i}", "created_at": now - timedelta(seconds=year * i / entries)}
        for i in range(entries)
    ]
    async with sessionmaker() as session, session.begin():
        for start in range(0, entries, 5000):
            await session.execute(insert(session, PointsEntry), rows[start:start + 5000])


async def fill_groupbuy(sessionmaker: async_sessionmaker[AsyncSession], group_id: int, people: int) -> int:
    """A group buy with `people` participants (its export is the /groupbuy export list)."""
    now = utcnow()
    async with sessionmaker() as session:
        row, _created = await groupbuy.create_groupbuy(
            session, group_id, "Bench cream", price_cents=9900, group_price_cents=6900, min_participants=2,
            total_quantity=1_000_000, per_member_limit=5, deadline=now + timedelta(days=2), now=now)
        assert row.id is not None
        rows = [{"groupbuy_id": row.id, "user_id": 6_000_000 + i, "quantity": 1, "order_code": f"B{row.id}-{i}",
                 "joined_at": now, "changed_at": now} for i in range(people)]
        async with session.begin():
            for start in range(0, people, 5000):
                await session.execute(insert(session, GroupBuyEntry), rows[start:start + 5000])
        return row.id


async def burst(world: World, updates: list[Update], beside: list[tuple[str, Callable[[], Awaitable[Any]]]],
                ) -> Run:
    """Feed `updates` CONCURRENCY at a time while each of `beside` runs once, starting a little into the burst."""
    answered: dict[str, float] = {}
    session = world.session
    original = session.make_request

    async def timed(bot: Any, method: Any, timeout: int | None = None) -> Any:  # noqa: ASYNC109
        if isinstance(method, AnswerCallbackQuery):
            answered.setdefault(method.callback_query_id, time.perf_counter())
        return await original(bot, method, timeout)

    session.make_request = timed  # type: ignore[method-assign]
    fed: dict[str, float] = {}
    queue = iter(updates)
    work: dict[str, float] = {}

    async def worker() -> None:
        for update in queue:
            if update.callback_query is not None:
                fed[update.callback_query.id] = time.perf_counter()
            await world.dp.feed_update(world.bot, update)

    async def long_work(name: str, job: Callable[[], Awaitable[Any]]) -> None:
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        await job()
        work[name] = time.perf_counter() - started

    try:
        with Ticker() as ticker, Collections() as collections:
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)), *(long_work(*job) for job in beside))
            seconds = time.perf_counter() - started
    finally:
        session.make_request = original  # type: ignore[method-assign]
    waits = sorted(answered[key] - fed[key] for key in fed if key in answered)
    assert len(waits) == len(fed), "every press answered"
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return Run(ticker.worst, collections.worst, statistics.median(waits), p99, len(fed), len(updates) - len(fed),
               seconds, work)


def traffic(first_update: int, chat: Any, messages: int, presses: int) -> list[Update]:
    """Group chatter and check-in presses, interleaved."""
    talk, _spam = chatter(first_update, chat, messages, max(1, messages // 2), spam_every=0)
    taps = [press(first_update + messages + i, chat, 7_000_000 + first_update + i) for i in range(presses)]
    mixed: list[Update] = []
    for i in range(max(len(talk), len(taps))):
        mixed.extend(u[i] for u in (talk, taps) if i < len(u))
    return mixed


async def measure(engine: AsyncEngine, label: str, args: argparse.Namespace) -> None:
    await create_all(engine)
    sessionmaker = create_sessionmaker(engine)
    settings = load_settings(_env_file=None, bot_token="4200:BENCH-TOKEN-abcdefghij")
    world = World(settings, sessionmaker)
    owner = world.user("Owner")
    chat = world.group("Bench", owner=owner)
    await world.send(chat, owner, "hello")  # the group row exists
    async with sessionmaker() as session:
        group = await get_group(session, chat.id)
    assert group is not None and group.id is not None
    group_id = group.id
    lottery_id = await fill_lottery(sessionmaker, group_id, args.entrants)
    await fill_ledger(sessionmaker, group_id, args.ledger, args.members)
    groupbuy_id = await fill_groupbuy(sessionmaker, group_id, args.participants)
    now = utcnow()
    month_end = now - timedelta(days=now.day)  # the last full month: a month of entries on its board

    async def draw() -> None:
        async with sessionmaker() as session:
            result = await lottery.draw_lottery(session, lottery_id, force=True)
        assert result is not None and result.entrants == args.entrants

    async def board() -> None:
        async with sessionmaker() as session:
            rows = await points.leaderboard(session, group_id, "month", now=month_end, limit=10)
        assert len(rows) == 10

    async def export() -> None:
        async with sessionmaker() as session:
            people = await groupbuy.participants(session, groupbuy_id)
        assert len(people) == args.participants

    await burst(world, traffic(500_000, chat, 300, 100), [])  # first-time work (catalogs, caches, the board)
    gc.collect()
    if args.freeze:
        gc.freeze()
    alone = await burst(world, traffic(1_000_000, chat, args.messages, args.presses), [])
    beside = await burst(world, traffic(2_000_000, chat, args.messages, args.presses),
                         [("draw", draw), ("leaderboard", board), ("export", export)])
    await world.close()
    gc.unfreeze()
    # Live posts still waiting to be edited (the check-in board's) would run after the database is gone.
    leftover = asyncio.all_tasks() - {asyncio.current_task()}
    for task in leftover:
        task.cancel()
    await asyncio.gather(*leftover, return_exceptions=True)

    print(f"{label}: {beside.messages} messages and {beside.presses} presses, concurrency {CONCURRENCY}")
    for name, run in (("burst alone:   ", alone), ("with long work:", beside)):
        print(f"  {name}  max loop stall {run.stall * 1000:5.1f} ms; press-to-answer p50 {run.p50 * 1000:.1f} ms, "
              f"p99 {run.p99 * 1000:.1f} ms ({run.seconds:.1f} s; longest garbage collection "
              f"{run.collection * 1000:.0f} ms)")
    print("  long work took:   " + ", ".join(f"{name} {s * 1000:.0f} ms" for name, s in beside.work.items())
          + f" (draw over {args.entrants:,} entrants; month board over a year of {args.ledger:,} entries; "
          f"export of {args.participants:,} participants)")
    print(f"  max loop stall: {beside.stall * 1000:.0f} ms (target <= 20 ms) "
          f"{'OK' if beside.stall <= 0.020 else 'OVER'}")
    print(f"  p99 press-to-answer: {beside.p99 * 1000:.0f} ms")


async def main(args: argparse.Namespace) -> None:
    for driver in args.drivers.split(","):
        with tempfile.TemporaryDirectory() as folder:
            engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}", sqlite_driver=driver)  # type: ignore[arg-type]
            try:
                await measure(engine, f"SQLite, SQLITE_DRIVER={driver}", args)
            finally:
                await engine.dispose()
    if args.database:
        engine, schema = await postgres_engine(args.database)
        try:
            await measure(engine, "PostgreSQL", args)
        finally:
            await engine.dispose()
            admin = create_engine(args.database)
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            await admin.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entrants", type=int, default=100_000)
    parser.add_argument("--ledger", type=int, default=400_000, help="ledger entries over the year")
    parser.add_argument("--members", type=int, default=5_000, help="members the ledger entries belong to")
    parser.add_argument("--participants", type=int, default=10_000, help="participants in the exported group buy")
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--presses", type=int, default=1_000)
    parser.add_argument("--drivers", default=",".join(SQLITE_DRIVERS), help="SQLite drivers to measure")
    parser.add_argument("--database", default="", help="also measure this PostgreSQL URL")
    parser.add_argument("--no-freeze", dest="freeze", action="store_false", help="no gc.freeze() after the fill")
    asyncio.run(main(parser.parse_args()))
