"""Votes close at their deadline: every 30 seconds, close what is due and announce each winner once.

Closing is claimed in the database (UPDATE votes SET status='closed' WHERE status='open'), so two schedulers, or a
scheduler and an admin's /vote close, announce a vote once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramAPIError
from apscheduler.triggers.interval import IntervalTrigger

from models import points, votes
from models.db import transaction, utcnow

if TYPE_CHECKING:  # runner imports this module: no import back at run time
    from scheduler.runner import JobContext

log = logging.getLogger("qunbot.scheduler.votes")


async def close_due_votes(ctx: JobContext, now: datetime | None = None) -> int:
    """Close every open vote past its deadline; returns how many this call closed (and announced)."""
    from handlers.votes import announce_closing  # the announcement's text and button live with its handler

    now = now or utcnow()
    async with ctx.sessionmaker() as session:
        due = await votes.due_votes(session, now)
    closed = 0
    for vote_id in due:
        async with ctx.sessionmaker() as session:
            result = await votes.close_vote(session, vote_id, now=now)
            if result is None:
                continue  # someone else closed it
            closed += 1
            async with transaction(session):
                group = await points.load_group(session, result.vote.group_id)
            chat_id, zone, locale = group.chat_id, group.timezone, group.locale
            with ctx.i18n.context(), ctx.i18n.use_locale(locale or ctx.i18n.default_locale):
                try:
                    await announce_closing(ctx.bot, session, chat_id, zone, result)
                except TelegramAPIError as error:
                    log.warning("vote %s closed, but not announced: %s", vote_id, error)
    if closed:
        log.info("closed %s votes", closed)
    return closed


JOBS: list[tuple[Any, IntervalTrigger]] = [(close_due_votes, IntervalTrigger(seconds=30))]
