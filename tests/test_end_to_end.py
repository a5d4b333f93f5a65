"""The real `qunbot run` path (migrations, HTTP, flow controller, scheduler) against the sandbox: long polling
and webhook mode, and how the bot copes with Telegram's 429, 403 and group migration."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiogram.exceptions import TelegramForbiddenError
from pydantic import SecretStr

from bot.factory import create_bot
from bot.limits import TelegramLimits
from bot.runner import run
from bot.sandbox import Sandbox
from bot.settings import load_settings
from models import groups
from models.db import create_all, create_engine, create_sessionmaker

FAST = TelegramLimits().scaled(0.05)  # Telegram's limits, twenty times faster: a "minute" is 3 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running_bot(sb: Sandbox, tmp_path: Any, **overrides: Any) -> AsyncIterator[dict[str, Any]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
    settings = load_settings(_env_file=None, database_url=url).model_copy(
        update={"bot_token": SecretStr(sb.token), "telegram_api_url": sb.base_url, **overrides}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, polling_timeout=1))
    await sb.wait_for("setMyCommands", timeout=20, since=0)
    try:
        yield {"settings": settings, "url": url}
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


async def play_basic_group(sb: Sandbox) -> tuple[Any, Any]:
    owner = sb.add_user("Lin", username="lin", language_code="en")
    group = sb.create_group("Fans", owner=owner)
    await sb.add_bot(group, by=owner, admin=True)
    await sb.send(group, owner, "/timezone Asia/Taipei")
    await sb.settle(timeout=10, quiet=1.2)
    return owner, group


async def test_polling_mode_serves_a_group(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb, running_bot(sb, tmp_path) as ctx:
        owner, group = await play_basic_group(sb)
        texts = [m.text for m in sb.messages(group)]
        assert any("Asia/Taipei" in (t or "") for t in texts)
        # The command menus were set per scope and language.
        assert any(c["command"] == "timezone" for c in sb.commands({"type": "all_chat_administrators"}, "en"))
        engine = create_engine(ctx["url"])
        async with create_sessionmaker(engine)() as session:
            row = await groups.get_group(session, group.id)
        await engine.dispose()
        assert row.timezone == "Asia/Taipei" and row.bot_status == "administrator"


async def test_webhook_mode_serves_a_group_and_refuses_a_wrong_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    hook = f"http://127.0.0.1:{port}/tg/webhook"
    async with Sandbox() as sb, running_bot(
        sb, tmp_path, webhook_url=hook, webhook_secret=SecretStr("s3cret-token"), webhook_listen=f"127.0.0.1:{port}"
    ):
        info = await sb.wait_for("setWebhook", timeout=10, since=0)
        assert info.params["url"] == hook
        owner, group = await play_basic_group(sb)
        assert any("Asia/Taipei" in (m.text or "") for m in sb.messages(group))
        update = {"update_id": 999, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"},
                                                 "text": "/start"}}
        async with aiohttp.ClientSession() as http:
            async with http.post(hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}) as resp:
                assert resp.status == 401
            async with http.post(hook, json=update) as resp:
                assert resp.status == 401


@pytest.fixture
async def db(tmp_path):  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
    await create_all(engine)
    yield create_sessionmaker(engine)
    await engine.dispose()


def bot_for(sb: Sandbox, sessionmaker: Any, limits: TelegramLimits) -> Any:
    settings = load_settings(_env_file=None).model_copy(
        update={"bot_token": SecretStr(sb.token), "telegram_api_url": sb.base_url}
    )
    return create_bot(settings, sessionmaker=sessionmaker, limits=limits)


async def test_429s_are_waited_out_and_nothing_is_lost_or_doubled(db) -> None:  # type: ignore[no-untyped-def]
    # The bot believes it may send 100 a "minute"; the sandbox allows Telegram's 20: it must answer 429s.
    loose = TelegramLimits(global_per_second=30, chat_per_second=1, group_per_minute=100,
                           second=FAST.second, minute=FAST.minute)
    async with Sandbox(limits=FAST) as sb:
        owner = sb.add_user("Lin")
        group = sb.create_group("Fans", owner=owner)
        await sb.add_bot(group, by=owner, admin=True)
        bot = bot_for(sb, db, loose)
        try:
            await asyncio.gather(*(bot.send_message(group.id, f"post {i}") for i in range(22)))
        finally:
            await bot.session.close()
        assert sb.stats.rate_limited_total > 0
        sent = sorted(m.text for m in sb.messages(group) if m.text and m.text.startswith("post "))
        assert sent == sorted(f"post {i}" for i in range(22))


async def test_pacing_keeps_under_telegrams_limits(db) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox(limits=FAST) as sb:
        owner = sb.add_user("Lin")
        chats = []
        for n in range(3):
            chat = sb.create_group(f"Group {n}", owner=owner)
            await sb.add_bot(chat, by=owner, admin=True)
            chats.append(chat)
        bot = bot_for(sb, db, FAST)
        try:
            await asyncio.gather(*(bot.send_message(c.id, f"m{i}") for c in chats for i in range(25)))
        finally:
            await bot.session.close()
        assert sb.stats.rate_limited_total == 0
        for chat in chats:
            assert len([m for m in sb.messages(chat) if m.text and m.text.startswith("m")]) == 25


async def test_403_marks_the_group_inactive(db) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox(limits=FAST) as sb:
        owner = sb.add_user("Lin")
        group = sb.create_group("Fans", owner=owner)
        async with db() as session:
            await groups.upsert_group(session, groups.ChatSeen(group.id, "Fans", "supergroup"),
                                      default_timezone="Asia/Shanghai")
        await sb.add_bot(group, by=owner)
        await sb.kick_bot(group, by=owner)
        bot = bot_for(sb, db, FAST)
        try:
            with pytest.raises(TelegramForbiddenError):
                await bot.send_message(group.id, "anyone there?")
        finally:
            await bot.session.close()
        async with db() as session:
            assert (await groups.get_group(session, group.id)).active is False


async def test_migration_moves_the_group_and_the_message_arrives(db) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox(limits=FAST) as sb:
        owner = sb.add_user("Lin")
        old = sb.create_group("Fans", owner=owner, supergroup=False)
        await sb.add_bot(old, by=owner, admin=True)
        async with db() as session:
            seen = groups.ChatSeen(old.id, "Fans", "group")
            await groups.upsert_group(session, seen, default_timezone="Asia/Shanghai")
        new = await sb.upgrade_to_supergroup(old)
        bot = bot_for(sb, db, FAST)
        try:
            await bot.send_message(old.id, "still here")
        finally:
            await bot.session.close()
        assert any(m.text == "still here" for m in sb.messages(new))
        async with db() as session:
            assert await groups.get_group(session, old.id) is None
            assert (await groups.get_group(session, new.id)).chat_type == "supergroup"


async def test_qunbot_run_stops_cleanly_on_sigterm_and_never_logs_the_token(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal
    import sys
    import time

    async with Sandbox() as sb:
        env = {
            **os.environ,
            "BOT_TOKEN": sb.token,
            "TELEGRAM_API_URL": sb.base_url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
            "LOG_LEVEL": "DEBUG",
            "WEBHOOK_URL": "",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        await sb.wait_for("setMyCommands", timeout=30, since=0)
        owner = sb.add_user("Lin", language_code="en")
        await sb.send(sb.private_chat(owner), owner, "/help")
        await sb.settle(timeout=10, quiet=0.5)
        assert sb.last_message(sb.private_chat(owner)) is not None
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0
        assert time.monotonic() - started < 15
        log = output.decode()
        assert "stopped" in log
        assert sb.token not in log and sb.token.split(":")[1] not in log
