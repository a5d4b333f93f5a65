"""Votes close at their deadline: every 30 seconds, close what is due and announce each winner once.

Closing is claimed in the database (UPDATE votes SET status='closed' WHERE status='open'), so two schedulers, or a
scheduler and an admin's /vote close, announce a vote once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from handlers.votes import announce_closing
from models import votes
from models.db import utcnow
from scheduler.runner import JobContext, close_due


async def close_due_votes(ctx: JobContext, now: datetime | None = None) -> int:
    """Close every open vote past its deadline; returns how many this call closed (and announced)."""
    now = now or utcnow()
    async with ctx.sessionmaker() as session:
        due = await votes.due_votes(session, now)
    return await close_due(
        ctx, "votes", due,
        close=lambda session, vote_id: votes.close_vote(session, vote_id, now=now),
        group_id_of=lambda result: result.vote.group_id,
        announce=lambda session, group, result: announce_closing(ctx.bot, session, group.chat_id, group.timezone,
                                                                 result),
    )


JOBS: list[tuple[Any, IntervalTrigger]] = [(close_due_votes, IntervalTrigger(seconds=30))]
