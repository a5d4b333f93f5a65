"""The scheduler: APScheduler 3.x on the bot's event loop. It runs inside `qunbot run`, or alone as
`qunbot scheduler`. Each feature's periodic jobs are listed in `JOBS`.

Scheduled posts: the `schedules` rows (models.schedules) are the truth. Every minute `run_schedules` reads
them and finds the slots that are due (by each group's clock, within the grace window, after quiet hours);
for each it claims (group, f"{kind}:{ref_id}", local day) in the `posts` table BEFORE calling the kind's
poster, so only the claimer posts, even with two schedulers on one database. A slot missed by less than the
grace window (10 minutes) is still posted after a restart; older ones are skipped. Feature modules declare a
poster per kind in their `POSTERS` list, gathered at the end of this file like their `JOBS`; a JobContext carries
the table it posts with (tests hand it their own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.utils.i18n import I18n
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.retry import DeliveryUnknown
from handlers.checkin import post_board
from handlers.kit import use_currency
from handlers.live_posts import LivePosts
from models import boards, groups, shop
from models.db import transaction, utcnow
from models.points import load_group
from models.schedules import DEFAULT_GRACE, Slot, due_slots

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("qunbot.scheduler")

POST_CONCURRENCY = 50  # posts in flight at once; the flow controller paces them under Telegram's limits
# How long one tick waits for its posts (the cron fires every minute). Posts still in flight go on in the
# background, already claimed, so a hanging Telegram makes them late, never doubled, and never skips a tick.
TICK_BUDGET = 45.0


@dataclass(frozen=True)
class JobContext:
    """What every job receives: the Bot it speaks through, the process's Runtime (database, translations, the
    in-memory parts), and the posters it posts scheduled slots with (default: every feature's)."""

    bot: Bot
    runtime: Runtime
    posters: Mapping[str, Posting] = field(default_factory=lambda: POSTERS)
    late_posts: set[asyncio.Future[bool]] = field(default_factory=set, compare=False)  # outlived their tick

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return self.runtime.sessionmaker

    @property
    def i18n(self) -> I18n:
        return self.runtime.i18n

    @property
    def live_posts(self) -> LivePosts:
        return self.runtime.live_posts

    @contextmanager
    def in_locale(self, locale: str | None, currency: str | None = None) -> Iterator[None]:
        """gettext in a group's language (its /lang, else the default) for what a job says there, and its prices
        in its currency (handlers.kit.money)."""
        with self.i18n.context(), self.i18n.use_locale(locale or self.i18n.default_locale), use_currency(currency):
            yield


Job = Callable[[JobContext], Awaitable[Any]]


async def prune_handled_updates(ctx: JobContext) -> None:
    """Forget handled update ids after two days (Telegram redelivers for at most a day)."""
    async with ctx.sessionmaker() as session:
        removed = await groups.prune_processed_updates(session, timedelta(days=2))
    if removed:
        log.info("pruned %s handled update ids", removed)


async def expire_coupons(ctx: JobContext) -> None:
    """Coupons past their validity become expired (verify refuses them either way; this keeps lists true)."""
    async with ctx.sessionmaker() as session:
        expired = await shop.expire_coupons(session)
    if expired:
        log.info("%s coupons expired", expired)


# -- scheduled posts -------------------------------------------------------------------------------------------

# Posts one slot and returns the message id (None: nothing to post). Runs inside the group's locale.
Poster = Callable[[JobContext, AsyncSession, Slot], Awaitable[int | None]]


@dataclass(frozen=True)
class Posting:
    """How the scheduler posts one kind of slot. quiet_hours=False: post even inside quiet hours (for posts whose
    time is a promise to members, e.g. a flash sale's start)."""

    kind: str
    poster: Poster
    quiet_hours: bool = True


async def post_slot(ctx: JobContext, slot: Slot) -> bool:
    """Claim the slot and, if this process won the claim, post it. True if a message went out."""
    posting = ctx.posters.get(slot.kind)
    if posting is None:
        return False
    async with ctx.sessionmaker() as session:
        if not await boards.claim_post(session, slot.group_id, slot.claim_kind, slot.claim_slot):
            return False  # another scheduler (or an earlier tick) has it
        try:
            with ctx.in_locale(slot.locale, slot.currency):
                message_id = await posting.poster(ctx, session, slot)
        except DeliveryUnknown as error:
            # The send may have reached the group (Telegram hung): keep the claim, so it is not posted twice.
            log.warning("%s for chat %s may not have been posted (kept as posted): %s", slot.kind, slot.chat_id, error)
            return False
        except TelegramAPIError as error:
            # Telegram refused: give the slot back so a later tick inside the grace window may try again.
            await session.rollback()
            await boards.release_post(session, slot.group_id, slot.claim_kind, slot.claim_slot)
            log.warning("%s for chat %s not posted: %s", slot.kind, slot.chat_id, error)
            return False
        except Exception:
            # A bug, not Telegram: keep the claim so a half-done post is not repeated every minute.
            log.exception("%s for chat %s failed", slot.kind, slot.chat_id)
            return False
        if message_id is None:
            return False
        await boards.set_post_message(session, slot.group_id, slot.claim_kind, slot.claim_slot, message_id)
        return True


async def run_schedules(
    ctx: JobContext,
    now: datetime | None = None,
    *,
    kinds: set[str] | None = None,
    grace: timedelta = DEFAULT_GRACE,
    tick_budget: float = TICK_BUDGET,
) -> int:
    """Post every due slot (of `kinds`, default every registered kind). Returns how many posts went out within
    `tick_budget` seconds (the rest finish in the background). At most POST_CONCURRENCY posts are in flight; the
    flow controller paces them under Telegram's limits."""
    now = now or utcnow()
    wanted = set(ctx.posters) if kinds is None else set(kinds) & set(ctx.posters)
    if not wanted:
        return 0
    quiet_exempt = {kind for kind, posting in ctx.posters.items() if not posting.quiet_hours}
    async with ctx.sessionmaker() as session:
        slots = await due_slots(session, now, grace=grace, kinds=wanted, quiet_exempt=quiet_exempt)
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def post(slot: Slot) -> bool:
        async with gate:
            return await post_slot(ctx, slot)

    tasks = {asyncio.ensure_future(post(slot)) for slot in slots}
    if not tasks:
        return 0
    done, late = await asyncio.wait(tasks, timeout=tick_budget)
    for task in late:  # kept referenced until they finish
        ctx.late_posts.add(task)
        task.add_done_callback(ctx.late_posts.discard)
    if late:
        log.warning("%s scheduled posts still in flight after %.0f s; they go on in the background", len(late),
                    tick_budget)
    posted = sum(task.result() for task in done if not task.cancelled() and task.exception() is None)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("a scheduled post failed", exc_info=task.exception())
    if posted:
        log.info("posted %s scheduled posts", posted)
    return posted


async def post_checkin_board(ctx: JobContext, session: AsyncSession, slot: Slot) -> int | None:
    """The check-in board's poster. None if the board of that day is already up (a member checked in first)."""
    return await post_board(ctx.bot, session, slot.chat_id, slot.group_id, slot.local_day)


async def post_checkin_boards(ctx: JobContext, now: datetime | None = None) -> int:
    """Post the due check-in boards only (the other kinds wait for their own tick)."""
    return await run_schedules(ctx, now, kinds={"checkin_board"})


async def close_due(
    ctx: JobContext,
    what: str,
    due: list[int],
    close: Callable[[AsyncSession, int], Awaitable[Any]],
    group_id_of: Callable[[Any], int],
    announce: Callable[[AsyncSession, Any, Any], Awaitable[None]],
) -> int:
    """Close each of `due` (ids of votes, group buys, ...) and announce it in its group's language.

    `close(session, id)` claims the closing in the database and returns what to announce, or None when someone else
    closed it first; `announce(session, group, closed)` posts it. Returns how many this call closed."""
    closed = 0
    for item_id in due:
        async with ctx.sessionmaker() as session:
            result = await close(session, item_id)
            if result is None:
                continue  # another scheduler (or an admin) closed it
            closed += 1
            async with transaction(session):
                group = await load_group(session, group_id_of(result))
            with ctx.in_locale(group.locale, group.currency):
                try:
                    await announce(session, group, result)
                except TelegramAPIError as error:
                    log.warning("%s %s closed, but not announced: %s", what, item_id, error)
    if closed:
        log.info("closed %s %s", closed, what)
    return closed


# -- every feature's scheduled work ----------------------------------------------------------------------------
# Feature modules import JobContext, Slot and Posting from this module, so they are imported HERE, after
# those exist (never at the top of this file). scheduler/__init__.py imports this module first, so importing a
# feature module directly also works.
from scheduler import (  # noqa: E402
    flashsale,
    groupbuy,
    invites,
    lottery,
    moderation,
    newcomers,
    points,
    stats,
    topics,
    votes,
)

# (job, trigger): every periodic job of every feature.
JOBS: list[tuple[Job, Any]] = [
    (prune_handled_updates, IntervalTrigger(hours=1)),
    (expire_coupons, IntervalTrigger(minutes=15)),
    (run_schedules, CronTrigger(second=5)),  # every minute, a few seconds past it: every scheduled post
    *topics.JOBS,
    *votes.JOBS,
    *groupbuy.JOBS,
    *invites.JOBS,
    *newcomers.JOBS,
    *lottery.JOBS,
    *moderation.JOBS,
    *flashsale.JOBS,
    *points.JOBS,
    *stats.JOBS,
]


# Every kind of scheduled post, by kind (a table declared once, like JOBS; a JobContext posts with it).
POSTERS: dict[str, Posting] = {
    posting.kind: posting
    for posting in (Posting("checkin_board", post_checkin_board), *topics.POSTERS, *flashsale.POSTERS)
}


def create_scheduler(bot: Bot, runtime: Runtime) -> AsyncIOScheduler:
    context = JobContext(bot, runtime)
    scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1,
                                                               "misfire_grace_time": 60})
    for job, trigger in JOBS:
        scheduler.add_job(job, trigger, args=(context,), id=job.__name__, replace_existing=True)
    runtime.metrics.watch_scheduler(scheduler)  # lag, missed runs and errors at /metrics
    return scheduler
