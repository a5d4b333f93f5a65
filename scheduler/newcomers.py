"""Captcha timeouts: every EXPIRE_EVERY seconds, open challenges past their deadline fail (each claimed once by a
conditional UPDATE pending -> failed, so two schedulers never remove someone twice); the newcomer is removed
(ban + unban, so they may rejoin later) and the join and captcha messages deleted, or their join request is
declined. As often, raids that ended by themselves are settled: the newcomers they held get a challenge in one
post (or are released when captcha is off)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from aiogram.exceptions import TelegramAPIError
from apscheduler.triggers.interval import IntervalTrigger

from handlers.newcomers import raid_over, remove_newcomer
from models import groups, newcomers
from scheduler.runner import Job, JobContext

log = logging.getLogger("qunbot.scheduler.newcomers")

EXPIRE_EVERY = 15  # seconds: a newcomer is removed at most this long after their deadline
CONCURRENCY = 10


async def expire_captchas(ctx: JobContext) -> int:
    """Remove the newcomers whose challenge timed out. Returns how many were handled."""
    async with ctx.sessionmaker() as session:
        expired = await newcomers.expire_checks(session)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def remove(item: newcomers.Expired) -> None:
        async with gate, ctx.sessionmaker() as session:
            group = await groups.get_group(session, item.chat_id)
            if group is None:
                return
            with ctx.in_locale(item.locale):
                try:
                    await remove_newcomer(ctx.bot, session, group, item, reason="timeout")
                except TelegramAPIError as error:
                    log.warning("newcomer %s in %s not removed: %s", item.user_id, item.chat_id, error)

    await asyncio.gather(*(remove(item) for item in expired))
    if expired:
        log.info("%s captcha timeouts handled", len(expired))
    return len(expired)


async def settle_raids(ctx: JobContext, *, now: datetime | None = None) -> int:
    """Raids that ended by themselves: the newcomers they held get a challenge, or are released when captcha is
    off (each group once: models.newcomers.settle_ended_raids). Returns how many groups were settled."""
    async with ctx.sessionmaker() as session:
        settled = await newcomers.settle_ended_raids(session, now=now)
        for over in settled:
            with ctx.in_locale(over.locale):
                try:
                    await raid_over(ctx.bot, session, over)
                except TelegramAPIError as error:
                    log.warning("end of the raid in %s not announced: %s", over.chat_id, error)
    return len(settled)


JOBS: list[tuple[Job, Any]] = [
    (expire_captchas, IntervalTrigger(seconds=EXPIRE_EVERY)),
    (settle_raids, IntervalTrigger(seconds=EXPIRE_EVERY)),
]
