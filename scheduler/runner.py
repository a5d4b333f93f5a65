"""The scheduler: APScheduler 3.x on the bot's event loop. Jobs turn schedule rows into posts; each feature's
periodic jobs are listed in `JOBS`. It runs inside `qunbot run`, or alone as `qunbot scheduler`.

Every post is claimed in the database before it is sent (models.boards.claim_post), so two schedulers on one
database never post twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.utils.i18n import I18n
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import boards, groups, shop
from models.db import utcnow

log = logging.getLogger("qunbot.scheduler")

POST_CONCURRENCY = 50  # posts in flight at once; the flow controller paces them under Telegram's limits


@dataclass(frozen=True)
class JobContext:
    bot: Bot
    sessionmaker: async_sessionmaker[AsyncSession]
    i18n: I18n


Job = Callable[[JobContext], Awaitable[Any]]


async def prune_handled_updates(ctx: JobContext) -> None:
    """Forget handled update ids after two days (Telegram redelivers for at most a day)."""
    async with ctx.sessionmaker() as session:
        removed = await groups.prune_processed_updates(session, timedelta(days=2))
    if removed:
        log.info("pruned %s handled update ids", removed)


async def expire_coupons(ctx: JobContext) -> None:
    """Coupons past their validity become expired (verify refuses them either way; this keeps lists true)."""
    async with ctx.sessionmaker() as session:
        expired = await shop.expire_coupons(session)
    if expired:
        log.info("%s coupons expired", expired)


async def post_checkin_boards(ctx: JobContext, now: datetime | None = None) -> int:
    """Post today's check-in board in every group whose board time has come (within the grace window)."""
    from handlers.checkin import post_board  # the board's text and keyboard live with its button handler

    now = now or utcnow()
    async with ctx.sessionmaker() as session:
        due = await boards.due_boards(session, now)
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def post(board: boards.DueBoard) -> bool:
        async with gate, ctx.sessionmaker() as session:
            with ctx.i18n.context(), ctx.i18n.use_locale(board.locale or ctx.i18n.default_locale):
                try:
                    return await post_board(ctx.bot, session, board.chat_id, board.group_id, board.day) is not None
                except TelegramAPIError as error:
                    log.warning("check-in board for %s not posted: %s", board.chat_id, error)
                    return False

    posted = sum(await asyncio.gather(*(post(board) for board in due)))
    if posted:
        log.info("posted %s check-in boards", posted)
    return posted


# (job, trigger): every periodic job of every feature.
JOBS: list[tuple[Job, Any]] = [
    (prune_handled_updates, IntervalTrigger(hours=1)),
    (expire_coupons, IntervalTrigger(minutes=15)),
    (post_checkin_boards, CronTrigger(second=5)),  # every minute, a few seconds past it
]


def create_scheduler(bot: Bot, sessionmaker: async_sessionmaker[AsyncSession], i18n: I18n) -> AsyncIOScheduler:
    context = JobContext(bot, sessionmaker, i18n)
    scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1,
                                                               "misfire_grace_time": 60})
    for job, trigger in JOBS:
        scheduler.add_job(job, trigger, args=(context,), id=job.__name__, replace_existing=True)
    return scheduler
