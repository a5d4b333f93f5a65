"""`qunbot demo`: the real bot against the built-in sandbox, a scripted group, a printed transcript.

The sandbox is a loopback Bot API server; the bot is the unmodified `qunbot run` (migrations, long polling
over HTTP, the flow controller, the scheduler) pointed at it through TELEGRAM_API_URL. Each feature adds a
scene below, so a newcomer sees every capability in one transcript.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from bot.runner import run
from bot.sandbox import Sandbox
from bot.scenes import Cast, Scene, settle
from bot.scenes.flashsale import scene_flashsale
from bot.scenes.invites import scene_invites
from bot.scenes.lottery import scene_lottery
from bot.scenes.moderation import scene_moderation
from bot.scenes.money import scene_money
from bot.scenes.newcomers import scene_newcomers
from bot.scenes.stats import scene_stats
from bot.scenes.topics import scene_topics
from bot.scenes.votes import scene_votes
from bot.settings import Settings

log = logging.getLogger("qunbot.demo")


async def scene_setup(cast: Cast) -> None:
    """The owner adds the bot, which asks for admin rights, then makes it an admin; members join."""
    sb = cast.sb
    await sb.add_bot(cast.group, by=cast.owner, admin=False)
    await settle(sb)
    await sb.promote(cast.group, "bot", by=cast.owner)
    await settle(sb)
    for person in (cast.alice, cast.bob, cast.mei):
        await sb.join(cast.group, person)
    await settle(sb)


async def scene_help(cast: Cast) -> None:
    """Private /start, and /help in the group: members see member commands, admins see more."""
    sb = cast.sb
    await sb.send(sb.private_chat(cast.alice), cast.alice, "/start")
    await settle(sb)
    await sb.send(cast.group, cast.bob, "/help")
    await settle(sb)


async def scene_group_settings(cast: Cast) -> None:
    """Admins set the time zone (validated) and language; a member who tries is refused."""
    sb = cast.sb
    await sb.send(cast.group, cast.bob, "/timezone Europe/London")
    await settle(sb)
    await sb.send(cast.group, cast.owner, "/timezone Mars/Base")
    await settle(sb)
    await sb.send(cast.group, cast.owner, "/timezone Asia/Shanghai")
    await settle(sb)


async def scene_privacy(cast: Cast) -> None:
    """A member exports their data and erases it."""
    sb = cast.sb
    private = sb.private_chat(cast.bob)
    await sb.send(private, cast.bob, "/start")
    await settle(sb)
    await sb.send(private, cast.bob, "/mydata")
    await settle(sb)
    await sb.send(private, cast.bob, "/forgetme")
    await settle(sb)
    prompt = sb.last_message(private)
    assert prompt is not None and sb.buttons(prompt), "the /forgetme confirmation did not arrive"
    confirm = sb.buttons(prompt)[0][1]
    assert confirm is not None
    await sb.press(cast.bob, prompt, confirm)
    await settle(sb)


async def scene_checkin(cast: Cast) -> None:
    """Keyword check-ins share one board; a press on the board is answered privately."""
    sb = cast.sb
    await sb.send(cast.group, cast.alice, "签到")
    await settle(sb)
    board = sb.last_message(cast.group)
    assert board is not None and sb.buttons(board), "the check-in board did not arrive"
    await sb.press(cast.bob, board, sb.buttons(board)[0][1] or "")
    await sb.send(cast.group, cast.mei, "打卡")
    await settle(sb)


async def scene_points(cast: Cast) -> None:
    """An admin gives points; members see their standing and the leaderboard."""
    sb = cast.sb
    await sb.send(cast.group, cast.owner, "/give @alice 500 新群福利")
    await settle(sb)
    await sb.send(cast.group, cast.alice, "积分")
    await settle(sb)
    await sb.send(cast.group, cast.bob, "/rank")
    await settle(sb)


async def scene_shop(cast: Cast) -> None:
    """The points shop: an item with stock, a redemption answered privately, staff verifying the coupon once."""
    sb = cast.sb
    await sb.send(cast.group, cast.owner, "/shop add 满100减20优惠券 | 100 | 10 | 1 | - | 30")
    await settle(sb)
    await sb.send(cast.group, cast.alice, "积分商城")
    await settle(sb)
    shop = sb.last_message(cast.group)
    assert shop is not None and sb.buttons(shop), "the shop did not arrive"
    answer = await sb.press(cast.alice, shop, sb.buttons(shop)[0][1] or "")
    await settle(sb)
    code = re.search(r"QB-[A-Z0-9]{4}-[A-Z0-9]{4}", answer.text or "")
    if code:
        await sb.send(cast.group, cast.owner, f"/verify {code.group(0)}")
        await settle(sb)
        await sb.send(cast.group, cast.owner, f"/verify {code.group(0)}")
        await settle(sb)


# (title, scene, group): a scene with a group title plays in a new group of the brand's (see Cast.new_group).
SCENES: list[tuple[str, Scene, str | None]] = [
    ("The bot joins a group", scene_setup, None),
    ("Help", scene_help, None),
    ("Group settings", scene_group_settings, None),
    ("Daily check-in", scene_checkin, None),
    ("Points, tiers and the leaderboard", scene_points, None),
    ("The points shop and coupons", scene_shop, None),
    ("Newcomers: captcha, welcome and anti-raid", scene_newcomers, "Bloom VIP 群"),
    ("Invite rewards", scene_invites, "Bloom 邀请有礼群"),
    ("Voting on the next pick, then the group buy", scene_votes, "Bloom 团购群"),
    ("The scheduler and daily topics", scene_topics, "Bloom 话题群"),
    ("A provably fair lottery", scene_lottery, "Bloom 福利群"),
    ("A flash sale (限时秒杀)", scene_flashsale, "Bloom 秒杀群"),
    ("Moderation: diversion removed, warnings, /mute, /modlog", scene_moderation, "Bloom 交流群"),
    ("A Taiwan group: 繁體中文 and NT$ (/currency)", scene_money, "Bloom 台灣團購群"),
    ("Privacy: /mydata and /forgetme", scene_privacy, None),
    ("The numbers: /stats charts, export and the weekly report", scene_stats, "Bloom 数据群"),
]


async def run_demo(settings: Settings, *, database_url: str = "", quiet: bool = False) -> int:
    """Play every scene; print the transcript. Returns the process exit status."""
    started = time.monotonic()
    if settings.log_level != "DEBUG":  # the transcript is the output; logs only for trouble
        logging.getLogger().setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="qunbot-demo-") as folder:
        url = database_url or f"sqlite+aiosqlite:///{Path(folder) / 'demo.db'}"
        async with Sandbox(bot_username="qunbot") as sb:
            demo_settings = settings.model_copy(
                update={
                    "bot_token": SecretStr(sb.token),
                    "telegram_api_url": sb.base_url,
                    "database_url": url,
                    "webhook_url": "",
                }
            )
            stop = asyncio.Event()
            bot_task = asyncio.create_task(run(demo_settings, stop=stop, polling_timeout=1))
            try:
                await sb.wait_for("deleteWebhook", timeout=30, since=0)  # the bot is up; polling follows
                cast = Cast(sb, demo_settings)
                shown = len(sb.transcript)
                for title, scene, group in SCENES:
                    try:
                        if group is not None:
                            await cast.new_group(group)
                        await scene(cast)
                    finally:  # a failing scene still shows what happened
                        if not quiet:
                            print(f"\n── {title} " + "─" * max(0, 60 - len(title)))
                            for entry in sb.transcript[shown:]:
                                print(entry.render())
                        shown = len(sb.transcript)
                    if bot_task.done():
                        break
            finally:
                stop.set()
                await asyncio.wait_for(bot_task, timeout=30)
            errors = [call for call in sb.calls if not call.ok and call.error_code != 429]
            print(
                f"\nqunbot demo: {len(SCENES)} scenes, {len(sb.calls)} Bot API calls, "
                f"{sb.stats.rate_limited_total} rate-limited, "
                f"{len(errors)} errors, {time.monotonic() - started:.1f} s"
            )
            for call in errors:
                print(f"  error: {call.method} -> {call.error_code} {call.description}", file=sys.stderr)
            return 0 if not errors else 1
