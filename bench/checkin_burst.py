"""10,000 members press the check-in button within a minute, fed through the real dispatcher.

Prints: presses per second through qunbot (all middlewares, SQLite or PostgreSQL), bare aiogram's no-op
dispatch rate measured in the same run (just before and just after, averaged), and their ratio. Checks that every
member checked in exactly once and every press was answered.

    python -m bench.checkin_burst                       # SQLite, 10,000 members
    python -m bench.checkin_burst --members 2000 --database postgresql+asyncpg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiogram import Dispatcher
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import CallbackQuery, Chat, Message, Update, User
from sqlalchemy import event, func, select, text

from bot.settings import load_settings
from handlers.checkin import BoardEditor
from models.checkin import Checkin
from models.db import create_all, create_engine, create_sessionmaker
from tests.factories import BOT_USER, World

CONCURRENCY = int(__import__("os").environ.get("BENCH_CONCURRENCY", "64"))
SCHEMA = "bench_checkin_burst"


def press(update_id: int, chat: Chat, user_id: int) -> Update:
    message = Message(message_id=1, date=datetime.now(UTC), chat=chat, from_user=BOT_USER, text="board")
    query = CallbackQuery(id=str(update_id), from_user=User(id=user_id, is_bot=False, first_name=f"M{user_id}"),
                          chat_instance="1", message=message, data="ci")
    return Update(update_id=update_id, callback_query=query)


async def feed_all(dp: Dispatcher, bot, updates: list[Update]) -> float:  # type: ignore[no-untyped-def]
    queue = iter(updates)

    async def worker() -> None:
        for update in queue:
            await dp.feed_update(bot, update)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


async def bare_aiogram_rate(world: World, chat: Chat, members: int) -> float:
    dp = Dispatcher()

    @dp.callback_query()
    async def noop(query: CallbackQuery) -> None:
        await query.answer()

    updates = [press(10_000_000 + i, chat, 1_000 + i) for i in range(members)]
    return members / await feed_all(dp, world.bot, updates)


async def main(members: int, database: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = database or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        engine = create_engine(url)
        if url.startswith("postgresql"):  # a schema of its own, dropped and made again each run
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
        editor = BoardEditor(world.bot, world.sessionmaker, world.dp["i18n"])
        world.dp.workflow_data["board_editor"] = editor
        chat = world.group("Bench")
        await world.send(chat, world.user("Owner"), "hello")  # the group row exists

        bare_before = await bare_aiogram_rate(world, chat, members)
        start_calls = len(world.session.calls)
        updates = [press(i + 1_000, chat, 2_000_000 + i) for i in range(members)]
        seconds = await feed_all(world.dp, world.bot, updates)
        rate = members / seconds
        answered = sum(isinstance(c, AnswerCallbackQuery) for c in world.session.calls[start_calls:])
        bare_after = await bare_aiogram_rate(world, chat, members)  # the same window on a shared machine
        bare = (bare_before + bare_after) / 2
        async with world.sessionmaker() as session:
            checkins = await session.scalar(select(func.count()).select_from(Checkin))
            distinct = await session.scalar(select(func.count(func.distinct(Checkin.user_id))))
        for task in list(editor.pending.values()):
            task.cancel()
        await world.close()
        await engine.dispose()

    engine_name = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"check-in burst on {engine_name}: {members} members, concurrency {CONCURRENCY}")
    print(f"  check-ins: {checkins} rows, {distinct} distinct members; presses answered: {answered}")
    print(f"  qunbot:        {rate:10.0f} presses/s ({seconds:.1f} s for all; a minute allows {members / 60:.0f}/s)")
    print(f"  bare aiogram:  {bare:10.0f} no-op presses/s "
          f"(mean of {bare_before:.0f} before and {bare_after:.0f} after)")
    print(f"  ratio qunbot / bare aiogram: {rate / bare:.3f}")
    assert checkins == members == distinct == answered, "every member exactly once, every press answered"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--database", default="", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.members, args.database))
