"""Invite rewards' job: every minute, vest the invitations whose newcomers have qualified (models.invites.vest_due)
and tell each inviter privately, in the group's language."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from aiogram.exceptions import TelegramAPIError
from apscheduler.triggers.cron import CronTrigger

from handlers.invites import tell_inviter_vested
from models import invites
from models.invites import Vested
from scheduler.runner import JobContext

log = logging.getLogger("qunbot.scheduler.invites")


async def vest_invitations(ctx: JobContext, now: datetime | None = None) -> list[Vested]:
    """Vest every due invitation (rewards and milestone bonuses through the ledger, once each) and notify."""
    async with ctx.sessionmaker() as session:
        vested = await invites.vest_due(session, now=now, captcha=invites.captcha_checker())
        for done in vested:
            with ctx.in_locale(done.locale):
                try:
                    await tell_inviter_vested(ctx.bot, session, done)
                except TelegramAPIError as error:
                    log.warning("could not tell inviter %s: %s", done.inviter_id, error)
    if vested:
        log.info("%s invitations vested", len(vested))
    return vested


JOBS: list[tuple[Any, Any]] = [
    (vest_invitations, CronTrigger(second=35)),  # every minute
]
