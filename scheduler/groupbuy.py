"""Group buys close at their deadline: every 30 seconds, close what is due and announce each outcome once.

Closing is claimed in the database (UPDATE group_buys SET status=... WHERE status='open'), so two schedulers, a
last unit sold, or an admin's /groupbuy close announce a group buy once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramAPIError
from apscheduler.triggers.interval import IntervalTrigger

from models import groupbuy, points
from models.db import transaction, utcnow

if TYPE_CHECKING:  # runner imports this module: no import back at run time
    from scheduler.runner import JobContext

log = logging.getLogger("qunbot.scheduler.groupbuy")


async def close_due_groupbuys(ctx: JobContext, now: datetime | None = None) -> int:
    """Close every open group buy past its deadline; returns how many this call closed (and announced)."""
    from handlers.groupbuy import announce_closing  # the announcement lives with the post's handler

    now = now or utcnow()
    async with ctx.sessionmaker() as session:
        due = await groupbuy.due_groupbuys(session, now)
    closed = 0
    for groupbuy_id in due:
        async with ctx.sessionmaker() as session:
            closing = await groupbuy.close_groupbuy(session, groupbuy_id, now=now)
            if closing is None:
                continue  # someone else closed it
            closed += 1
            async with transaction(session):
                group = await points.load_group(session, closing.groupbuy.group_id)
            chat_id, zone, locale = group.chat_id, group.timezone, group.locale
            with ctx.i18n.context(), ctx.i18n.use_locale(locale or ctx.i18n.default_locale):
                try:
                    await announce_closing(ctx.bot, chat_id, zone, closing)
                except TelegramAPIError as error:
                    log.warning("group buy %s closed, but not announced: %s", groupbuy_id, error)
    if closed:
        log.info("closed %s group buys", closed)
    return closed


JOBS: list[tuple[Any, IntervalTrigger]] = [(close_due_groupbuys, IntervalTrigger(seconds=30))]
