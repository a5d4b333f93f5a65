"""Captcha timeouts: every EXPIRE_EVERY seconds, open challenges past their deadline fail (each claimed once by a
conditional UPDATE pending -> failed, so two schedulers never remove someone twice); the newcomer is removed
(ban + unban, so they may rejoin later) and the join and captcha messages deleted, or their join request is
declined."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram.exceptions import TelegramAPIError
from apscheduler.triggers.interval import IntervalTrigger

from models import groups, newcomers
from scheduler.runner import Job, JobContext

log = logging.getLogger("qunbot.scheduler.newcomers")

EXPIRE_EVERY = 15  # seconds: a newcomer is removed at most this long after their deadline
CONCURRENCY = 10


async def expire_captchas(ctx: JobContext) -> int:
    """Remove the newcomers whose challenge timed out. Returns how many were handled."""
    from handlers.newcomers import remove_newcomer  # the removal (Telegram calls, texts) lives with the handlers

    async with ctx.sessionmaker() as session:
        expired = await newcomers.expire_checks(session)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def remove(item: newcomers.Expired) -> None:
        async with gate, ctx.sessionmaker() as session:
            group = await groups.get_group(session, item.chat_id)
            if group is None:
                return
            with ctx.i18n.context(), ctx.i18n.use_locale(item.locale or ctx.i18n.default_locale):
                try:
                    await remove_newcomer(ctx.bot, session, group, item, reason="timeout")
                except TelegramAPIError as error:
                    log.warning("newcomer %s in %s not removed: %s", item.user_id, item.chat_id, error)

    await asyncio.gather(*(remove(item) for item in expired))
    if expired:
        log.info("%s captcha timeouts handled", len(expired))
    return len(expired)


JOBS: list[tuple[Job, Any]] = [(expire_captchas, IntervalTrigger(seconds=EXPIRE_EVERY))]
