"""10,000 members press the check-in button within a minute, fed through the real dispatcher.

Prints: presses per second through qunbot (all middlewares, SQLite or PostgreSQL), bare aiogram's no-op
dispatch rate measured in the same run, and their ratio: measured in paired rounds (bench.rounds: the ratio
printed is the median of 20 rounds' ratios). Checks that every member checked in exactly once and every press was
answered.

    python -m bench.checkin_burst                       # SQLite, 10,000 members
    python -m bench.checkin_burst --members 2000 --database postgresql+asyncpg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from aiogram import Dispatcher
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import CallbackQuery, Chat, Message, Update, User
from sqlalchemy import event, func, select, text

from bench.rounds import CONCURRENCY, feed_all, paired_rounds
from bot.settings import load_settings
from models.checkin import Checkin
from models.db import create_all, create_engine, create_sessionmaker
from tests.factories import BOT_USER, World

SCHEMA = "bench_checkin_burst"


def press(update_id: int, chat: Chat, user_id: int) -> Update:
    message = Message(message_id=1, date=datetime.now(UTC), chat=chat, from_user=BOT_USER, text="board")
    query = CallbackQuery(id=str(update_id), from_user=User(id=user_id, is_bot=False, first_name=f"M{user_id}"),
                          chat_instance="1", message=message, data="ci")
    return Update(update_id=update_id, callback_query=query)


def bare_dispatcher() -> Dispatcher:
    """Bare aiogram: one handler that answers the press, nothing else."""
    dp = Dispatcher()

    @dp.callback_query()
    async def noop(query: CallbackQuery) -> None:
        await query.answer()

    return dp


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
        editor = world.live_posts  # the runtime's, at the board's own pace
        chat = world.group("Bench")
        await world.send(chat, world.user("Owner"), "hello")  # the group row exists

        updates = [press(i + 1_000, chat, 2_000_000 + i) for i in range(members)]
        bare_updates = [press(10_000_000 + i, chat, 1_000 + i) for i in range(members)]
        bare_dp = bare_dispatcher()
        await feed_all(bare_dp, world.bot, bare_updates[:200])  # bare aiogram's first presses warm it up too
        start_calls = len(world.session.calls)
        paired = await paired_rounds(world.dp, updates, bare_dp, bare_updates, world.bot)
        ours = {u.callback_query.id for u in updates if u.callback_query is not None}
        answered = sum(isinstance(c, AnswerCallbackQuery) and c.callback_query_id in ours
                       for c in world.session.calls[start_calls:])
        seconds, rate, bare = paired.ours, members / paired.ours, members / paired.bare
        async with world.sessionmaker() as session:
            checkins = await session.scalar(select(func.count()).select_from(Checkin))
            distinct = await session.scalar(select(func.count(func.distinct(Checkin.user_id))))
        await editor.close(flush=False)
        await world.close()
        await engine.dispose()

    engine_name = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"check-in burst on {engine_name}: {members} members, concurrency {CONCURRENCY}")
    print(f"  check-ins: {checkins} rows, {distinct} distinct members; presses answered: {answered}")
    print(f"  qunbot:        {rate:10.0f} presses/s ({seconds:.1f} s for all; a minute allows {members / 60:.0f}/s)")
    print(f"  bare aiogram:  {bare:10.0f} no-op presses/s")
    print(f"  ratio qunbot / bare aiogram: {paired.report()}")
    assert checkins == members == distinct == answered, "every member exactly once, every press answered"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--database", default="", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.members, args.database))
