"""Outbound that recovers: Telegram answering nginx's HTML 502, refusing connections, then hanging. Every reply is
delivered once after recovery; a scheduled post goes out once, late, inside the grace window (bot/retry.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from bot.factory import create_bot, create_runtime
from bot.retry import DeliveryUnknown, RetryPolicy, TelegramUnavailable, classify
from bot.sandbox import Sandbox
from bot.settings import load_settings
from models import groups
from models.db import create_all, create_engine, create_sessionmaker
from models.groups import ChatSeen
from scheduler.runner import JobContext, run_schedules
from tests.test_end_to_end import running_bot
from tests.test_schedule import SHANGHAI_8AM

QUICK = RetryPolicy(answer_budget=3, call_budget=4, answer_attempt=0.5, call_attempt=0.5,
                    first_backoff=0.05, max_backoff=0.3)


@pytest.fixture
async def db(tmp_path):  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'recovery.db'}")
    await create_all(engine)
    yield create_sessionmaker(engine)
    await engine.dispose()


def settings_for(sb: Sandbox) -> Any:
    return load_settings(_env_file=None).model_copy(
        update={"bot_token": SecretStr(sb.token), "telegram_api_url": sb.base_url}
    )


async def after(seconds: float, action: Any) -> None:
    await asyncio.sleep(seconds)
    result = action()
    if asyncio.iscoroutine(result):
        await result


def bot_messages(sb: Sandbox, chat: Any) -> list[str]:
    return [m.text or "" for m in sb.messages(chat) if not m.deleted]


async def group_with_bot(sb: Sandbox) -> tuple[Any, Any]:
    owner = sb.add_user("Lin", username="lin", language_code="en")
    group = sb.create_group("Fans", owner=owner)
    await sb.add_bot(group, by=owner, admin=True)
    return owner, group


# -- what is repeated, and what is not ------------------------------------------------------------------------


def test_a_send_that_may_have_arrived_is_not_repeated_but_an_answer_or_an_edit_is() -> None:
    assert classify("sendMessage", TimeoutError()).retry is False
    assert classify("copyMessage", TimeoutError()).retry is False
    assert classify("answerCallbackQuery", TimeoutError()).retry is True
    assert classify("editMessageText", TimeoutError()).retry is True
    assert classify("sendChatAction", TimeoutError()).retry is True
    assert classify("sendMessage", ValueError()) is None  # not the road's failure: re-raised as it is


async def test_a_reply_during_a_502_with_an_html_body_is_delivered_once_after_recovery(db) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb:
        _, group = await group_with_bot(sb)
        bot = create_bot(settings_for(sb), sessionmaker=db, retry=QUICK)
        try:
            sb.fail_with_502()
            recovery = asyncio.create_task(after(0.6, sb.recover))
            await bot.send_message(group.id, "saved: English")
            await recovery
        finally:
            await bot.session.close()
        assert sb.stats.errors["502"] >= 1
        assert bot_messages(sb, group).count("saved: English") == 1


async def test_a_reply_while_connections_are_refused_is_delivered_once_after_recovery(db) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb:
        _, group = await group_with_bot(sb)
        bot = create_bot(settings_for(sb), sessionmaker=db, retry=QUICK)
        try:
            await bot.get_me()  # a kept-alive connection exists; refusing must close it too
            await sb.refuse_connections()
            recovery = asyncio.create_task(after(0.6, sb.recover))
            await bot.send_message(group.id, "saved: English")
            await recovery
        finally:
            await bot.session.close()
        assert bot_messages(sb, group).count("saved: English") == 1


async def test_a_send_into_a_hang_is_not_repeated_and_arrives_once_when_telegram_wakes(db) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb:
        _, group = await group_with_bot(sb)
        bot = create_bot(settings_for(sb), sessionmaker=db, retry=QUICK)
        try:
            sb.hang()
            with pytest.raises(DeliveryUnknown):
                await bot.send_message(group.id, "hello")
            await sb.recover()
            await asyncio.sleep(0.3)  # the held call runs now
        finally:
            await bot.session.close()
        assert bot_messages(sb, group).count("hello") == 1


async def test_a_call_that_outlasts_its_budget_gives_up_in_bounded_time(db) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb:
        _, group = await group_with_bot(sb)
        bot = create_bot(settings_for(sb), sessionmaker=db, retry=QUICK)
        try:
            sb.fail_with_502()  # for good: the call must give up on its own, not wait for Telegram to recover
            with pytest.raises(TelegramUnavailable):
                await bot.send_message(group.id, "never")
        finally:
            await sb.recover()
            await bot.session.close()
        assert "never" not in bot_messages(sb, group)


# -- the whole bot: a member's reply through 502, refusal and hang --------------------------------------------


async def test_replies_through_502_refusal_and_hang_are_each_delivered_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_end_to_end import free_port

    port = free_port()
    hook = f"http://127.0.0.1:{port}/tg/webhook"
    async with Sandbox() as sb, running_bot(
        sb, tmp_path, webhook_url=hook, webhook_secret=SecretStr("s3cret"), webhook_listen=f"127.0.0.1:{port}"
    ):
        owner, group = await group_with_bot(sb)
        await sb.settle(timeout=10, quiet=1.0)
        zones = {"502": "Asia/Taipei", "refuse": "Europe/Paris", "hang": "America/New_York"}
        for fault, zone in zones.items():
            if fault == "502":
                sb.fail_with_502()
            elif fault == "refuse":
                await sb.refuse_connections()
            else:
                sb.hang()
            await sb.send(group, owner, f"/timezone {zone}")
            await asyncio.sleep(1.5)
            await sb.recover()
            await sb.settle(timeout=15, quiet=1.5)
        texts = bot_messages(sb, group)
        for zone in zones.values():
            assert sum(zone in t for t in texts) == 1, (zone, texts)


# -- the scheduler: late, once, inside the grace window -------------------------------------------------------


async def scheduler_world(sb: Sandbox, db: Any, policy: RetryPolicy) -> tuple[JobContext, Any]:
    _, group = await group_with_bot(sb)
    async with db() as session:
        await groups.upsert_group(session, ChatSeen(group.id, "Fans", "supergroup"), default_timezone="Asia/Shanghai")
    settings = settings_for(sb)
    bot = create_bot(settings, sessionmaker=db, retry=policy)
    return JobContext(bot, create_runtime(settings, db)), group


def boards(sb: Sandbox, chat: Any) -> int:
    return sum("2026-11-23" in t for t in bot_messages(sb, chat))


async def test_a_hanging_telegram_holds_a_tick_no_longer_than_its_budget_and_the_board_is_posted_once(db) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb:
        ctx, group = await scheduler_world(sb, db, QUICK)
        try:
            sb.hang()
            # The tick returns while Telegram still hangs (recovery comes only after it): it never blocks.
            await run_schedules(ctx, SHANGHAI_8AM + timedelta(seconds=5), kinds={"checkin_board"}, tick_budget=1.0)
            assert sb.server.fault == "hang"
            await sb.recover()
            await asyncio.sleep(0.5)  # the held call runs now
            # The next ticks, inside the grace window: the claim holds, nothing is posted again.
            await run_schedules(ctx, SHANGHAI_8AM + timedelta(minutes=1, seconds=5), kinds={"checkin_board"})
            await run_schedules(ctx, SHANGHAI_8AM + timedelta(minutes=2, seconds=5), kinds={"checkin_board"})
        finally:
            await sb.recover()
            await ctx.bot.session.close()
        assert boards(sb, group) == 1


async def test_a_board_refused_for_a_whole_tick_is_posted_once_by_a_later_tick_inside_the_grace_window(db) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb:
        ctx, group = await scheduler_world(sb, db, QUICK)
        try:
            await sb.refuse_connections()
            assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(seconds=5), kinds={"checkin_board"}) == 0
            await sb.recover()
            assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(minutes=1, seconds=5),
                                       kinds={"checkin_board"}) == 1
            assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(minutes=2, seconds=5),
                                       kinds={"checkin_board"}) == 0
        finally:
            await ctx.bot.session.close()
        assert boards(sb, group) == 1


async def test_waiting_for_a_slot_under_the_limits_does_not_spend_the_retry_budget(db) -> None:  # type: ignore[no-untyped-def]
    from bot.limits import TelegramLimits

    fast = TelegramLimits().scaled(0.05)  # a group's "minute" is 3 s: the last posts wait seconds for a slot
    tight = RetryPolicy(call_budget=0.5, call_attempt=0.5, first_backoff=0.05, max_backoff=0.1)
    async with Sandbox(limits=fast) as sb:
        _, group = await group_with_bot(sb)
        bot = create_bot(settings_for(sb), sessionmaker=db, limits=fast, retry=tight)
        try:
            await asyncio.gather(*(bot.send_message(group.id, f"post {i}") for i in range(24)))
        finally:
            await bot.session.close()
        assert sorted(bot_messages(sb, group)) == sorted(f"post {i}" for i in range(24))
