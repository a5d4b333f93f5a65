"""The multi-worker mode for real: `qunbot run --workers 3 --no-scheduler` and `qunbot scheduler`, started together
on an empty PostgreSQL database with Redis, against the sandbox with Telegram's limits on. 1,000+ check-in presses
with double taps: 0 lost, 0 unanswered, 0 `429`, 0 duplicates, every process up. Also: two workers' shared
outbound limiter and flood counters agree, and fall back to per-process limits (losing nothing) without Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from bot.factory import create_bot
from bot.limits import TelegramLimits
from bot.sandbox import Sandbox
from bot.settings import load_settings
from bot.shared_limits import SharedPacer, SharedPaces, SharedRedis
from handlers.moderation import ModerationState
from models.checkin import Checkin
from models.db import create_engine, create_sessionmaker
from models.moderation import ModerationRules
from tests.conftest import POSTGRES_URL
from tests.test_end_to_end import free_port

FAST = TelegramLimits().scaled(0.05)
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own; each test also takes its own key prefix
ROOT = Path(__file__).resolve().parent.parent


def redis_is_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


# CI (.ci/run sets QUNBOT_REQUIRE_REDIS) must run these, not skip them.
needs_redis = pytest.mark.skipif(not redis_is_up() and not os.environ.get("QUNBOT_REQUIRE_REDIS"),
                                 reason="Redis is not running on 127.0.0.1:6379")


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def forget(shared: SharedRedis) -> None:
    keys = [key async for key in shared.redis.scan_iter(f"{shared.prefix}:*")]
    if keys:
        await shared.redis.delete(*keys)
    await shared.close()


# -- the shared parts, two "workers" in one test ----------------------------------------------------------------


@needs_redis
async def test_two_workers_share_one_outbound_budget_and_get_no_429() -> None:
    # Each worker alone would allow itself 20 a "minute" in the group: together they must not exceed it.
    async with Sandbox(limits=FAST) as sb:
        owner = sb.add_user("Lin")
        group = sb.create_group("Fans", owner=owner)
        await sb.add_bot(group, by=owner, admin=True)
        settings = load_settings(_env_file=None).model_copy(
            update={"bot_token": SecretStr(sb.token), "telegram_api_url": sb.base_url})
        key = prefix()
        shared = [SharedRedis(REDIS_URL, key), SharedRedis(REDIS_URL, key)]
        bots = [create_bot(settings, limits=FAST, pacer=SharedPacer(s, FAST)) for s in shared]
        try:
            await asyncio.gather(*(bots[i % 2].send_message(group.id, f"post {i}") for i in range(30)))
        finally:
            for bot in bots:
                await bot.session.close()
            await shared[1].close()
            await forget(shared[0])
        assert sb.stats.rate_limited_total == 0
        assert sorted(m.text for m in sb.messages(group)) == sorted(f"post {i}" for i in range(30))


@needs_redis
async def test_a_429_seen_by_one_worker_holds_the_other() -> None:
    key = prefix()
    first, second = SharedRedis(REDIS_URL, key), SharedRedis(REDIS_URL, key)
    try:
        pacer_a, pacer_b = SharedPacer(first, TelegramLimits()), SharedPacer(second, TelegramLimits())
        await pacer_a.block(None, 0.6)  # a global 429 with retry_after 0.6 s
        started = asyncio.get_running_loop().time()
        await pacer_b.acquire(-100123)
        assert asyncio.get_running_loop().time() - started >= 0.5
    finally:
        await second.close()
        await forget(first)


async def test_without_redis_the_limits_fall_back_to_the_process_and_nothing_is_lost(caplog) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox(limits=FAST) as sb:
        owner = sb.add_user("Lin")
        group = sb.create_group("Fans", owner=owner)
        await sb.add_bot(group, by=owner, admin=True)
        settings = load_settings(_env_file=None).model_copy(
            update={"bot_token": SecretStr(sb.token), "telegram_api_url": sb.base_url})
        dead = SharedRedis(f"redis://127.0.0.1:{free_port()}/0", prefix())  # nothing listens there
        bot = create_bot(settings, limits=FAST, pacer=SharedPacer(dead, FAST))
        try:
            await asyncio.gather(*(bot.send_message(group.id, f"post {i}") for i in range(5)))
        finally:
            await bot.session.close()
            await dead.close()
        assert len(sb.messages(group)) == 5
        assert dead.fallbacks >= 5
        assert any("Redis failed" in r.getMessage() for r in caplog.records)


@needs_redis
async def test_two_workers_count_one_members_flood_together() -> None:
    rules = ModerationRules(enabled=True, flood_messages=4, flood_seconds=10, flood_repeat=0)
    key = prefix()
    shared = [SharedRedis(REDIS_URL, key), SharedRedis(REDIS_URL, key)]
    states = [ModerationState(shared=SharedPaces(s)) for s in shared]
    try:
        verdicts = [await states[i % 2].count_pace(-100, 7, f"hi {i}", rules, 0.0) for i in range(4)]
    finally:
        await shared[1].close()
        await forget(shared[0])
    # Each worker saw only two messages; together they are four inside the window: a flood.
    assert verdicts == [None, None, None, "flood"]


@needs_redis
async def test_two_workers_count_a_repeated_text_together() -> None:
    rules = ModerationRules(enabled=True, flood_messages=0, flood_repeat=2)
    key = prefix()
    shared = [SharedRedis(REDIS_URL, key), SharedRedis(REDIS_URL, key)]
    states = [ModerationState(shared=SharedPaces(s)) for s in shared]
    try:
        verdicts = [await states[i % 2].count_pace(-100, 7, "BUY  now", rules, 0.0) for i in range(3)]
    finally:
        await shared[1].close()
        await forget(shared[0])
    assert verdicts == [None, None, "repeat"]


# -- three web workers and a scheduler, as processes ------------------------------------------------------------


@asynccontextmanager
async def empty_database() -> AsyncIterator[str]:
    """An empty database for processes of their own: a new role whose search_path is its own new, empty schema on
    the test server (dropped afterwards; DROP DATABASE waits for a checkpoint, minutes on a busy disk)."""
    import asyncpg

    server = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"mw_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE ROLE "{name}" LOGIN')
        await admin.execute(f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"')
        await admin.execute(f'ALTER ROLE "{name}" SET search_path = "{name}"')
    finally:
        await admin.close()
    host_and_database = POSTGRES_URL.split("@", 1)[1]
    try:
        yield f"postgresql+asyncpg://{name}@{host_and_database}"
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
            await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        finally:
            await admin.close()


async def start(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    handle = log.open("wb")
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, cwd=str(ROOT), env=env,
                                                stdout=handle, stderr=asyncio.subprocess.STDOUT)


async def stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), 40)
    except TimeoutError:
        process.kill()
        return await process.wait()


MEMBERS_PER_GROUP = 130
GROUPS = 4  # 4 x 130 members x 2 taps = 1,040 presses


@pytest.mark.postgres
@needs_redis
async def test_three_web_workers_and_a_scheduler_on_an_empty_database_answer_every_press_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if not POSTGRES_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    port = free_port()
    key = prefix()
    async with Sandbox() as sb, empty_database() as database_url:  # Telegram's real limits
        owner = sb.add_user("Lin", username="lin", language_code="en")
        rooms = []
        for g in range(GROUPS):
            group = sb.create_group(f"Fans {g}", owner=owner)
            members = [sb.add_user(f"M{g}-{i}", language_code="en") for i in range(MEMBERS_PER_GROUP)]
            for member in members:
                sb.add_member(group, member)
            rooms.append((group, members))
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "BOT_TOKEN": sb.token,
            "TELEGRAM_API_URL": sb.base_url,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": key,
            "WEBHOOK_URL": f"http://127.0.0.1:{port}/tg/webhook",
            "WEBHOOK_SECRET": "multi-worker-secret",
            "WEBHOOK_LISTEN": f"127.0.0.1:{port}",
            "DB_POOL_SIZE": "4",
            "DB_MAX_OVERFLOW": "4",
            "LOG_LEVEL": "INFO",
        }
        web_log, scheduler_log = tmp_path / "web.log", tmp_path / "scheduler.log"
        # Started together on the empty database: both migrate, one after the other, under the advisory lock.
        web = await start(["run", "--workers", "3", "--no-scheduler"], env, web_log)
        scheduler = await start(["scheduler"], env, scheduler_log)
        t0 = asyncio.get_running_loop().time()
        try:
            await sb.wait_for("setWebhook", timeout=60, since=0)
            print("webhook set after", asyncio.get_running_loop().time() - t0)
            for group, _ in rooms:
                await sb.add_bot(group, by=owner, admin=True)
            boards = []
            for group, members in rooms:
                await sb.send(group, members[0], "/checkin")
                boards.append(await board_of(sb, group))
            gate = asyncio.Semaphore(150)

            async def tap(member: Any, board: Any) -> Any:
                async with gate:
                    return await sb.press(member, board, "ci", timeout=30)

            presses = [tap(member, board) for (group, members), board in zip(rooms, boards, strict=True)
                       for member in members for _ in range(2)]  # a double tap: the same button twice at once
            print("boards after", asyncio.get_running_loop().time() - t0)
            answers = await asyncio.gather(*presses)
            print("presses after", asyncio.get_running_loop().time() - t0)
            alive = web.returncode is None and scheduler.returncode is None
        finally:
            web_code, scheduler_code = await stop(web), await stop(scheduler)
        print("stopped after", asyncio.get_running_loop().time() - t0)
        logs = web_log.read_text(errors="replace") + scheduler_log.read_text(errors="replace")
        assert len(answers) >= 1000
        assert sum(not a.answered for a in answers) == 0, logs[-3000:]  # 0 unanswered
        assert sb.stats.rate_limited_total == 0, sb.stats.rate_limited  # 0 429
        assert alive and "exited (code" not in logs, logs[-3000:]  # every process stayed up
        assert "Traceback" not in logs, logs[-5000:]
        assert (web_code, scheduler_code) == (0, 0), logs[-3000:]
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                per_member = select(Checkin.group_id, Checkin.user_id, func.count())
                rows = (await session.execute(per_member.group_by(Checkin.group_id, Checkin.user_id))).all()
        finally:
            await engine.dispose()
        assert len(rows) == GROUPS * MEMBERS_PER_GROUP  # 0 lost: every member checked in
        assert all(count == 1 for _, _, count in rows)  # 0 duplicates


async def board_of(sb: Sandbox, group: Any) -> Any:
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        for message in reversed(sb.messages(group)):
            if not message.deleted and any(data == "ci" for _, data in sb.buttons(message)):
                return message
        await asyncio.sleep(0.1)
    raise AssertionError(f"no check-in board in {group.title}: {[m.text for m in sb.messages(group)]}")


class FakeTelegram:
    """getChatAdministrators from a list that a test changes (a demotion)."""

    def __init__(self, admins: set[int]) -> None:
        self.admins = admins
        self.asked = 0

    async def get_chat_administrators(self, chat_id: int) -> list[Any]:
        from types import SimpleNamespace

        self.asked += 1
        return [SimpleNamespace(user=SimpleNamespace(id=uid), status="administrator") for uid in self.admins]


@needs_redis
async def test_a_demotion_seen_by_one_worker_reaches_the_others_before_their_cache_expires() -> None:
    from bot.shared_limits import SharedAdminCache

    key = prefix()
    shared = [SharedRedis(REDIS_URL, key), SharedRedis(REDIS_URL, key)]
    a, b = SharedAdminCache(shared[0]), SharedAdminCache(shared[1])
    telegram = FakeTelegram({1, 2})
    try:
        assert 2 in (await a.get(telegram, -100)).admin_ids  # type: ignore[union-attr]
        assert 2 in (await b.get(telegram, -100)).admin_ids  # type: ignore[union-attr]
        telegram.admins.discard(2)
        a.member_changed(-100, 2, "member")  # worker A handled the chat_member update
        await asyncio.sleep(0.1)  # its note to the others reaches Redis
        assert 2 not in (await a.get(telegram, -100)).admin_ids  # type: ignore[union-attr]
        assert 2 not in (await b.get(telegram, -100)).admin_ids  # type: ignore[union-attr]  # B asked again
    finally:
        await shared[1].close()
        await forget(shared[0])


def test_several_workers_need_a_webhook_and_pool_sizes_are_settings() -> None:
    from bot.factory import create_engine_for
    from bot.settings import SettingsError

    with pytest.raises(SettingsError, match="WORKERS"):
        load_settings(_env_file=None, workers=3)
    settings = load_settings(_env_file=None, database_url="postgresql+asyncpg://u@127.0.0.1:1/x",
                             db_pool_size=3, db_max_overflow=2)
    engine = create_engine_for(settings)
    assert (engine.pool.size(), engine.pool._max_overflow) == (3, 2)  # type: ignore[attr-defined]


async def test_the_migration_lock_lets_processes_started_together_migrate_one_after_the_other() -> None:
    if not POSTGRES_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    from models.migrate import upgrade_to_head

    async with empty_database() as url:
        engines = [create_engine(url) for _ in range(4)]
        try:
            await asyncio.gather(*(upgrade_to_head(engine) for engine in engines))  # raced on alembic_version
        finally:
            for engine in engines:
                await engine.dispose()
