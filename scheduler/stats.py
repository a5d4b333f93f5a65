"""The weekly report: every Monday from 09:00 group time, each admin who asked for it (/stats weekly on) gets, in
private, the last whole week's charts and summary with the three changes that moved most.

The job runs every hour. A report is claimed per (group, admin, week) in the database before it is sent
(models.stats.claim_weekly_report), so it goes out once however many schedulers or ticks see it; a Monday that
started while the bot was down is caught up later that day. Whether each person is still an admin is asked of
Telegram when the report is due; someone who is not is skipped and nothing is claimed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError
from apscheduler.triggers.cron import CronTrigger

from handlers.stats import send_report
from models import groups
from models import stats as stats_model
from models.analytics import Period, group_kpis
from models.db import utcnow
from models.groups import Group
from scheduler.runner import JobContext

log = logging.getLogger("qunbot.scheduler")

WEEKLY_WEEKDAY = 0  # Monday
WEEKLY_HOUR = 9  # local time of the group


def report_due(group: Group, now: datetime) -> bool:
    """Monday, 09:00 or later, in the group's time zone."""
    local = now.astimezone(ZoneInfo(group.timezone))
    return local.weekday() == WEEKLY_WEEKDAY and local.hour >= WEEKLY_HOUR


async def send_weekly_reports(ctx: JobContext, now: datetime | None = None) -> int:
    """Send every weekly report that is due and not yet sent. Returns how many went out."""
    now = now or utcnow()
    async with ctx.sessionmaker() as session:
        candidates = [group for group in await stats_model.groups_with_weekly_reports(session)
                      if report_due(group, now)]
    sent = 0
    for group in candidates:
        try:
            sent += await _send_group_reports(ctx, group, now)
        except Exception:  # one group's trouble must not stop the others' reports
            log.exception("weekly reports of chat %s failed", group.chat_id)
    if sent:
        log.info("sent %s weekly reports", sent)
    return sent


async def _send_group_reports(ctx: JobContext, group: Group, now: datetime) -> int:
    assert group.id is not None
    admins = await ctx.runtime.admins.get(ctx.bot, group.chat_id)
    if admins is None:
        return 0
    period = Period.last_week(group.timezone, now)
    kpis: Any = None
    sent = 0
    for user_id in stats_model.weekly_subscribers(group):
        if user_id not in admins.admin_ids:
            continue
        async with ctx.sessionmaker() as session:
            if not await groups.can_write_privately(session, user_id):
                continue
            if not await stats_model.claim_weekly_report(session, group.id, user_id, period.start):
                continue  # sent already (or being sent by another scheduler)
        if kpis is None:
            kpis = await group_kpis(ctx.sessionmaker, [group.id], period, now=now)
        try:
            with ctx.in_locale(group.locale):  # the group's language, as in /stats there
                await send_report(ctx.bot, user_id, kpis, group.title or str(group.chat_id), weekly=True)
        except TelegramForbiddenError as error:
            log.info("weekly report for %s not delivered (blocked): %s", user_id, error)
            continue  # keep the claim: they blocked the bot, a retry would not help
        except TelegramAPIError as error:
            log.warning("weekly report for %s not delivered: %s", user_id, error)
            async with ctx.sessionmaker() as session:
                await stats_model.release_weekly_report(session, group.id, user_id, period.start)
            continue
        sent += 1
    return sent


JOBS: list[tuple[Any, Any]] = [(send_weekly_reports, CronTrigger(minute=2))]
