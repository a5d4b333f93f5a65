"""The scheduler: APScheduler 3.x on the bot's event loop. Jobs turn schedule rows into posts; features add
their jobs through `JOBS`. It runs inside `qunbot run`, or alone as `qunbot scheduler`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiogram import Bot
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import groups

log = logging.getLogger("qunbot.scheduler")

Job = Callable[[Bot, async_sessionmaker[AsyncSession]], Awaitable[Any]]


async def prune_handled_updates(bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Forget handled update ids after two days (Telegram redelivers for at most a day)."""
    async with sessionmaker() as session:
        removed = await groups.prune_processed_updates(session, timedelta(days=2))
    if removed:
        log.info("pruned %s handled update ids", removed)


# (job, trigger): every periodic job of every feature.
JOBS: list[tuple[Job, IntervalTrigger]] = [
    (prune_handled_updates, IntervalTrigger(hours=1)),
]


def create_scheduler(bot: Bot, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    for job, trigger in JOBS:
        scheduler.add_job(job, trigger, args=(bot, sessionmaker), id=job.__name__, replace_existing=True)
    return scheduler
