"""Moderation's periodic job: erase the evidence (offending messages' text) whose retention has passed."""

from __future__ import annotations

import logging
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from models import moderation
from scheduler.runner import Job, JobContext

log = logging.getLogger("qunbot.scheduler")


async def erase_old_evidence(ctx: JobContext) -> int:
    """Blank the audit log's evidence older than each group's evidence_days."""
    async with ctx.sessionmaker() as session:
        erased = await moderation.erase_expired_evidence(session)
    if erased:
        log.info("erased the evidence of %s moderation actions", erased)
    return erased


JOBS: list[tuple[Job, Any]] = [(erase_old_evidence, IntervalTrigger(hours=1))]
