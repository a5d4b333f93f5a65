"""The points feature's scheduled work: pinned leaderboards, edited in place every few minutes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from handlers.points import refresh_pinned_board
from models import points
from scheduler.runner import POST_CONCURRENCY, JobContext

log = logging.getLogger("qunbot.scheduler")

PINNED_REFRESH_MINUTES = 5  # a pinned board is edited at most this often (and only when it changed)


async def refresh_pinned_boards(ctx: JobContext) -> int:
    """Bring every pinned leaderboard up to date. Returns how many were edited."""
    async with ctx.sessionmaker() as session:
        boards = await points.pinned_boards(session)
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def refresh(board: points.PinnedBoard) -> bool:
        async with gate:  # the live-post editor logs any failure with its post
            return await refresh_pinned_board(ctx.bot, ctx.live_posts, board)

    return sum(await asyncio.gather(*(refresh(board) for board in boards)))


JOBS: list[tuple[Any, Any]] = [(refresh_pinned_boards, IntervalTrigger(minutes=PINNED_REFRESH_MINUTES))]
