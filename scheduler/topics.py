"""Daily topics on the group's clock: the "topic" schedule kind posts the pool's next topic; old topic posts
are forgotten after a few days (replies to them no longer earn)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.topics import post_topic
from models import topics
from models.db import utcnow
from scheduler.runner import Job, JobContext, Posting, Slot

log = logging.getLogger("qunbot.scheduler.topics")

KEEP_POSTS = timedelta(days=7)


async def post_daily_topic(ctx: JobContext, session: AsyncSession, slot: Slot) -> int | None:
    """The "topic" poster: the next topic of the group's pool (the starter pack if the pool is empty)."""
    locale = slot.locale or ctx.i18n.default_locale
    return await post_topic(ctx.bot, session, slot.group_id, slot.chat_id, locale, slot.local_day)


async def prune_topic_posts(ctx: JobContext) -> None:
    async with ctx.sessionmaker() as session:
        removed = await topics.prune_posts(session, utcnow() - KEEP_POSTS)
    if removed:
        log.info("forgot %s old topic posts", removed)


POSTERS = [Posting("topic", post_daily_topic)]

JOBS: list[tuple[Job, Any]] = [(prune_topic_posts, IntervalTrigger(hours=6))]
