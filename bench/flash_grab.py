"""5,000 presses of a flash sale's grab button (抢购) on a stock of 100, fed through the real dispatcher.

Members press several times each (double taps, and the same callback query redelivered in new updates), in a
shuffled order, with BENCH_CONCURRENCY presses in flight. Checks: exactly 100 orders from 100 distinct members,
stock 0, every press answered. Prints qunbot's presses per second, p50/p99 press-to-answer, and the raw rate of
the bare conditional UPDATE (`UPDATE ... SET stock = stock - 1 WHERE id = 1 AND stock > 0 RETURNING stock`,
one transaction each, same engine, same concurrency) measured in the same run, and their ratio.

    python -m bench.flash_grab                       # SQLite (a temporary file)
    python -m bench.flash_grab --database postgresql+asyncpg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.methods import AnswerCallbackQuery
from aiogram.types import CallbackQuery, Message, Update, User
from sqlalchemy import event, func, select, text

from bot.settings import load_settings
from handlers.flashsale import FlashGrab
from models import flashsale, groups, schedules
from models.db import create_all, create_engine, create_sessionmaker, utcnow
from models.flashsale import FlashOrder, FlashRound
from scheduler.flashsale import post_flash_sale
from tests.factories import BOT_USER, World

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
SCHEMA = "bench_flash_grab"  # PostgreSQL: a schema of its own, dropped and made again each run


async def raw_update_rate(engine: Any, presses: int, stock: int) -> float:
    """Bare conditional decrements through the same engine: one transaction each, CONCURRENCY in flight."""
    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE IF EXISTS bench_raw_stock"))
        await connection.execute(text("CREATE TABLE bench_raw_stock (id INTEGER PRIMARY KEY, stock INTEGER NOT NULL)"))
        await connection.execute(text("INSERT INTO bench_raw_stock (id, stock) VALUES (1, :stock)"), {"stock": stock})
    statement = text("UPDATE bench_raw_stock SET stock = stock - 1 WHERE id = 1 AND stock > 0 RETURNING stock")
    queue = iter(range(presses))

    async def worker() -> None:
        for _ in queue:
            async with engine.begin() as connection:
                (await connection.execute(statement)).first()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    seconds = time.perf_counter() - started
    async with engine.begin() as connection:
        left = (await connection.execute(text("SELECT stock FROM bench_raw_stock WHERE id = 1"))).scalar()
        await connection.execute(text("DROP TABLE bench_raw_stock"))
    assert left == 0
    return presses / seconds


def plan_presses(world: World, chat: Any, message_id: int, round_id: int, presses: int,
                 members: int) -> list[Update]:
    """`presses` updates from `members` people: first presses, double taps (new query ids) and redeliveries
    (the same query id in a new update), shuffled."""
    people = [User(id=3_000_000 + i, is_bot=False, first_name=f"M{i}") for i in range(members)]
    data = FlashGrab(round_id=round_id).pack()
    message = Message(message_id=message_id, date=utcnow(), chat=chat, from_user=BOT_USER, text="…")
    rng = random.Random(7)
    queries: list[tuple[User, str]] = []
    for index in range(presses):
        person = people[index % members]
        if index >= members and rng.random() < 0.3 and queries:
            queries.append(rng.choice(queries))  # a redelivered press: same query id, new update id
        else:
            queries.append((person, f"q{index}"))
    rng.shuffle(queries)
    return [
        Update(update_id=10_000 + n, callback_query=CallbackQuery(
            id=query_id, from_user=person, chat_instance="1", message=message, data=data))
        for n, (person, query_id) in enumerate(queries)
    ]  # fmt: skip


async def main(presses: int, stock: int, members: int, database: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = database or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        engine = create_engine(url)
        if url.startswith("postgresql"):
            async with engine.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
                await connection.execute(text(f'CREATE SCHEMA "{SCHEMA}"'))
            await engine.dispose()

            @event.listens_for(engine.sync_engine, "connect")
            def _schema(dbapi_connection, _record):  # type: ignore[no-untyped-def]
                cursor = dbapi_connection.cursor()
                cursor.execute(f'SET search_path TO "{SCHEMA}"')
                cursor.close()
                dbapi_connection.commit()  # keep it even if the connection's first transaction rolls back

        await create_all(engine)
        settings = load_settings(_env_file=None, bot_token="4200:BENCH-TOKEN-abcdefghij")
        world = World(settings, create_sessionmaker(engine))
        i18n = world.runtime.i18n
        editor = world.live_posts  # the runtime's, at the sale post's own pace
        owner = world.user("Owner")
        chat = world.group("Bench", owner=owner)
        await world.send(chat, owner, "hello")  # the group row exists

        zone = ZoneInfo("Asia/Shanghai")
        began = (utcnow() - timedelta(minutes=1)).astimezone(zone)
        async with world.sessionmaker() as session:
            group = await groups.get_group(session, chat.id)
            assert group is not None and group.id is not None
            product = await flashsale.add_product(session, group.id, "面膜", 9900, stock, flash_price=3990)
            sale = await flashsale.create_sale(session, group.id, product.id or 0, f"{began:%H:%M}", 30)
            slot = schedules.Slot(0, group.id, chat.id, "flash_sale", sale.id or 0, began.date(), utcnow(),
                                  "Asia/Shanghai", None, 30)
            with i18n.context(), i18n.use_locale("zh_Hans"):
                message_id = await post_flash_sale(world.jobs(), session, slot)
            assert message_id is not None
            round_id = await session.scalar(select(FlashRound.id).where(FlashRound.sale_id == sale.id))
        assert round_id is not None

        raw = await raw_update_rate(engine, presses, stock)

        updates = plan_presses(world, chat, message_id, round_id, presses, members)
        latencies: list[float] = []
        queue = iter(updates)

        async def worker() -> None:
            for update in queue:
                pressed = time.perf_counter()
                await world.dp.feed_update(world.bot, update)
                latencies.append(time.perf_counter() - pressed)

        start_calls = len(world.session.calls)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        seconds = time.perf_counter() - started
        answered = sum(isinstance(c, AnswerCallbackQuery) for c in world.session.calls[start_calls:])
        async with world.sessionmaker() as session:
            orders = await session.scalar(select(func.count()).select_from(FlashOrder))
            distinct = await session.scalar(select(func.count(func.distinct(FlashOrder.user_id))))
            left = await session.scalar(select(FlashRound.stock).where(FlashRound.id == round_id))
        await editor.close(flush=False)
        await world.close()
        await engine.dispose()

    rate = presses / seconds
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    engine_name = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"flash grab on {engine_name}: {presses} presses by {members} members on stock {stock}, "
          f"concurrency {CONCURRENCY}")
    print(f"  orders: {orders} from {distinct} distinct members; stock left: {left}; presses answered: {answered}")
    print(f"  qunbot grabs:        {rate:9.0f} presses/s ({seconds:.2f} s), press-to-answer p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms")
    print(f"  raw conditional UPDATE: {raw:6.0f} statements/s (one transaction each)")
    print(f"  ratio qunbot / raw UPDATE: {rate / raw:.3f} (target >= 0.5)")
    assert orders == stock == distinct and left == 0 and answered == presses, "never oversold, one per member"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=5_000)
    parser.add_argument("--stock", type=int, default=100)
    parser.add_argument("--members", type=int, default=1_000)
    parser.add_argument("--database", default="", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.presses, args.stock, args.members, args.database))
