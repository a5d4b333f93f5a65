"""Lotteries on the clock: draw those whose end time has come, and pass unclaimed prizes on to the next pick.

Each draw and each expiry is claimed by a conditional UPDATE in the models, so two schedulers on one database
draw once and reroll once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from aiogram.exceptions import TelegramAPIError
from apscheduler.triggers.interval import IntervalTrigger

from handlers.lottery import announce_reroll, publish_draw
from models import lottery
from models.db import utcnow
from scheduler.runner import Job, JobContext

log = logging.getLogger("qunbot.scheduler.lottery")


async def draw_due_lotteries(ctx: JobContext, now: datetime | None = None) -> int:
    """Draw every open lottery whose end time has passed and publish the results. Returns how many were drawn."""
    now = now or utcnow()
    async with ctx.sessionmaker() as session:
        due = await lottery.due_lotteries(session, now=now)
    drawn = 0
    for lottery_id in due:
        async with ctx.sessionmaker() as session:
            result = await lottery.draw_lottery(session, lottery_id, now=now)
            if result is None:
                continue  # another scheduler (or the Nth entry) drew it
            drawn += 1
            place = await lottery.place_of(session, lottery_id)
            with ctx.in_locale(place.locale):
                try:
                    await publish_draw(ctx.bot, session, result, ctx.live_posts)
                except TelegramAPIError as error:
                    log.warning("lottery %s drawn but not published: %s", lottery_id, error)
    if drawn:
        log.info("drew %s lotteries", drawn)
    return drawn


async def reroll_unclaimed_prizes(ctx: JobContext, now: datetime | None = None) -> int:
    """Winners past their claim deadline lose the prize to the next pick; each change is announced."""
    async with ctx.sessionmaker() as session:
        results = await lottery.expire_claims(session, now=now or utcnow())
        for result in results:
            assert result.lottery.id is not None
            place = await lottery.place_of(session, result.lottery.id)
            with ctx.in_locale(place.locale):
                try:
                    await announce_reroll(ctx.bot, session, result, ctx.live_posts, expired=True)
                except TelegramAPIError as error:
                    log.warning("lottery %s reroll not announced: %s", result.lottery.id, error)
    return len(results)


async def run_lotteries(ctx: JobContext, now: datetime | None = None) -> None:
    """Every 30 seconds: draws, then unclaimed prizes."""
    await draw_due_lotteries(ctx, now)
    await reroll_unclaimed_prizes(ctx, now)


JOBS: list[tuple[Job, Any]] = [(run_lotteries, IntervalTrigger(seconds=30))]
