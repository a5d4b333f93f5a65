"""Group chatter through the full moderation and chat-points path, fed through the real dispatcher.

Members talk in a group (mostly clean messages, a few with spam links or WeChat diversion) and every message
passes all middlewares, the moderation listener and chat points. Members spoke once before the measured run (each
of those first messages earned chat points; its rate is printed too), so now their messages rest between awards,
as most messages in a lively group do. Prints messages per second through qunbot (SQLite by default), bare
aiogram's no-op message dispatch rate measured in the same run, and their ratio.

The two are measured in paired rounds (bench.rounds: the ratio printed is the median of 20 rounds' ratios).
Checks that every spam message was deleted and no clean one was.

    python -m bench.moderation_path                     # SQLite, 5,000 messages from 2,500 members (none floods)
    python -m bench.moderation_path --messages 20000 --members 2000
    python -m bench.moderation_path --spam-every 0       # clean chatter only
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiogram import Dispatcher
from aiogram.methods import DeleteMessage
from aiogram.types import Chat, Message, Update, User

from bench.rounds import CONCURRENCY, feed_all, paired_rounds
from bot.settings import load_settings
from handlers.moderation import ModerationState, message_facts
from models import groups
from models.db import create_all, create_engine, create_sessionmaker
from models.moderation_policy import find_violation
from tests.factories import World

SPAM_EVERY = 50  # one message in 50 breaks a rule
CLEAN = ["今天的团购什么时候开始？", "这个面霜真的好用", "请问还有货吗", "已下单，期待收货", "有没有优惠券呀",
         "good morning everyone", "晒单：刚收到，包装很好", "周末有秒杀吗"]
SPAM = ["便宜代购 加微信 abc12345", "cheap followers http://spam-shop.example.com/buy"]


def chatter(
    first_update: int, chat: Chat, count: int, members: int, spam_every: int = SPAM_EVERY
) -> tuple[list[Update], int]:
    updates, spam = [], 0
    for i in range(count):
        is_spam = spam_every > 0 and i % spam_every == spam_every - 1
        spam += is_spam
        text = SPAM[i % 2] if is_spam else f"{CLEAN[i % len(CLEAN)]} {i}"
        user = User(id=3_000_000 + i % members, is_bot=False, first_name=f"M{i % members}", language_code="zh-hans")
        message = Message(message_id=i + 1, date=datetime.now(UTC), chat=chat, from_user=user, text=text)
        updates.append(Update(update_id=first_update + i, message=message))
    return updates, spam


def bare_dispatcher() -> Dispatcher:
    """Bare aiogram: one no-op message handler, nothing else."""
    dp = Dispatcher()

    @dp.message()
    async def noop(message: Message) -> None:
        return None

    return dp


def moderation_check_rate(group, updates: list[Update]) -> float:  # type: ignore[no-untyped-def]
    """The listener's own work per message, without the database or the dispatcher."""
    state = ModerationState()
    started = time.perf_counter()
    for update in updates:
        message = update.message
        assert message is not None and message.from_user is not None
        compiled = state.compiled(group)
        pace = state.pace(message.chat.id, message.from_user.id, message.text, compiled.rules, time.monotonic())
        find_violation(message_facts(message), compiled, new_member=False, pace=pace)
    return len(updates) / (time.perf_counter() - started)


async def main(count: int, members: int, database: str, spam_every: int = SPAM_EVERY, rounds: int = 20) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = database or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        engine = create_engine(url)
        await create_all(engine)
        settings = load_settings(_env_file=None, bot_token="4200:BENCH-TOKEN-abcdefghij")
        world = World(settings, create_sessionmaker(engine))
        chat = world.group("Bench", owner=world.user("Owner"))
        await world.send(chat, world.user("Owner"), "hello")  # the group row exists

        bare_dp = bare_dispatcher()
        # Members speak once before the run (the bot knows them), as in a living group.
        warm, _spam = chatter(1_000, chat, members, members, spam_every)
        bare_warm, _spam = chatter(50_000_000, chat, members, members, spam_every)
        earning_seconds = await feed_all(world.dp, world.bot, warm)  # each first message earns points
        earning_rate = len(warm) / earning_seconds
        warm_ratio = earning_rate / (len(bare_warm) / await feed_all(bare_dp, world.bot, bare_warm))
        start_calls = len(world.session.calls)
        updates, spam = chatter(100_000, chat, count, members, spam_every)
        bare_updates, _spam = chatter(60_000_000, chat, count, members, spam_every)
        paired = await paired_rounds(world.dp, updates, bare_dp, bare_updates, world.bot, rounds)
        seconds, bare_seconds = paired.ours, paired.bare
        rate, bare = count / seconds, count / bare_seconds
        deleted = sum(isinstance(c, DeleteMessage) for c in world.session.calls[start_calls:])
        async with world.sessionmaker() as session:
            group = await groups.get_group(session, chat.id)
        check_rate = moderation_check_rate(group, updates)
        await world.close()
        await engine.dispose()

    print(f"moderation path on SQLite: {count} messages from {members} members ({spam} spam), "
          f"concurrency {CONCURRENCY}")
    print(f"  deleted: {deleted} (expected {spam})")
    print(f"  qunbot:        {rate:10.0f} messages/s ({seconds:.1f} s for all)")
    print(f"  bare aiogram:  {bare:10.0f} no-op messages/s ({bare_seconds:.1f} s for all)")
    print(f"  ratio qunbot / bare aiogram: {paired.report()}")
    print(f"  (the warm-up, every member's first message earning chat points: {earning_rate:.0f} messages/s, "
          f"ratio {warm_ratio:.3f})")
    print(f"  the moderation check alone (rules cached, pace, detectors): {check_rate:10.0f} messages/s")
    assert deleted == spam, "every spam message deleted, no clean one"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--members", type=int, default=2_500)  # 2 messages each: nobody trips the flood rule
    parser.add_argument("--spam-every", type=int, default=SPAM_EVERY, help="one message in N is spam (0: none)")
    parser.add_argument("--database", default="", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds of bare aiogram and qunbot")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.members, args.database, args.spam_every, args.rounds))
