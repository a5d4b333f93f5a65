"""Flash sales on the group's clock: the "flash_sale" poster opens the day's round (its own stock, copied from
the product) and posts it with the grab button; "flash_notice" announces it N minutes ahead; `end_flash_rounds`
marks rounds whose time is over as ended, exactly once, and edits their posts to say so."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.flashsale import post_notice, post_round, round_post
from models import flashsale
from models.db import utcnow
from models.groups import Group
from scheduler.runner import POST_CONCURRENCY, Job, JobContext, Posting, Slot

log = logging.getLogger("qunbot.scheduler.flashsale")


async def post_flash_sale(ctx: JobContext, session: AsyncSession, slot: Slot) -> int | None:
    """The "flash_sale" poster (slot.ref_id is the sale's id): open the round of slot.local_day and post it.
    None when there is nothing to post (sale or product gone, round already posted or already over)."""
    flash_round = await flashsale.open_round(session, slot.ref_id, slot.local_day)
    if flash_round is None:
        return None
    return await post_round(ctx.bot, session, slot.chat_id, flash_round, slot.timezone)


async def post_flash_notice(ctx: JobContext, session: AsyncSession, slot: Slot) -> int | None:
    """The "flash_notice" poster: announce the coming round, unless the sale is gone or has already begun
    (quiet hours may have held the notice past the start)."""
    try:
        sale = await flashsale.get_sale(session, slot.group_id, slot.ref_id)
        product = await flashsale.get_product(session, slot.group_id, sale.product_id)
    except (flashsale.SaleNotFound, flashsale.ProductNotFound):
        return None
    if not sale.active or not product.active or not sale.notice_minutes:
        return None
    day = flashsale.sale_day_of_notice(slot.local_day, sale.at, sale.notice_minutes)
    starts_at = flashsale.local_start(day, sale.at, slot.timezone)
    if starts_at <= utcnow():
        return None
    return await post_notice(ctx.bot, slot.chat_id, product, sale, starts_at, slot.timezone)


async def end_flash_rounds(ctx: JobContext, now: datetime | None = None) -> int:
    """End every round whose time is over (once: a conditional UPDATE) and edit its post to "ended"."""
    async with ctx.sessionmaker() as session:
        ended = await flashsale.end_due_rounds(session, now=now)
        places = {}
        for group_id in {r.group_id for r in ended}:
            group = await session.get(Group, group_id)
            if group is not None:
                places[group_id] = (group.chat_id, group.timezone, group.locale, group.currency)
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def show(flash_round: flashsale.FlashRound) -> None:
        place = places.get(flash_round.group_id)
        if place is None or flash_round.message_id is None:
            return
        _chat_id, zone, locale, currency = place
        post = replace(round_post(ctx.bot, flash_round.id or 0, flash_round.group_id, zone, locale), currency=currency)
        async with gate:  # the live-post editor logs any failure with its post
            await ctx.live_posts.refresh_now(ctx.bot, post)

    await asyncio.gather(*(show(r) for r in ended))
    if ended:
        log.info("ended %s flash-sale rounds", len(ended))
    return len(ended)


# A sale's start is a promise to members: it posts even inside quiet hours. Its notice respects them.
POSTERS = [
    Posting(flashsale.SALE_KIND, post_flash_sale, quiet_hours=False),
    Posting(flashsale.NOTICE_KIND, post_flash_notice),
]

JOBS: list[tuple[Job, Any]] = [
    (end_flash_rounds, CronTrigger(second=2)),  # rounds end on the minute: shown "ended" within seconds
]
