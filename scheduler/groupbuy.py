"""Group buys close at their deadline: every 30 seconds, close what is due and announce each outcome once.

Closing is claimed in the database (UPDATE group_buys SET status=... WHERE status='open'), so two schedulers, a
last unit sold, or an admin's /groupbuy close announce a group buy once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from handlers.groupbuy import announce_closing
from models import groupbuy
from models.db import utcnow
from scheduler.runner import JobContext, close_due


async def close_due_groupbuys(ctx: JobContext, now: datetime | None = None) -> int:
    """Close every open group buy past its deadline; returns how many this call closed (and announced)."""
    now = now or utcnow()
    async with ctx.sessionmaker() as session:
        due = await groupbuy.due_groupbuys(session, now)
    return await close_due(
        ctx, "group buys", due,
        close=lambda session, groupbuy_id: groupbuy.close_groupbuy(session, groupbuy_id, now=now),
        group_id_of=lambda closing: closing.groupbuy.group_id,
        announce=lambda session, group, closing: announce_closing(ctx.bot, group.chat_id, group.timezone, closing),
    )


JOBS: list[tuple[Any, IntervalTrigger]] = [(close_due_groupbuys, IntervalTrigger(seconds=30))]
