"""What /stats keeps: which admins asked for the weekly report of a group, and the claim that sends each report
once.

Opt-ins live in `Group.settings["stats"]["weekly"]` (a list of user ids). A weekly report is claimed per
(group, admin, week) in the `posts` table's unique key (models.boards.claim_post) before it is sent, so two
schedulers, or a scheduler ticking again, never send it twice. Whether the person is still an admin is asked
of Telegram when the report goes out, not stored here.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import boards
from models.boards import Post
from models.db import transaction, utcnow
from models.groups import GONE_ROLES, Group, Member
from models.points import load_group

WEEKLY_KIND = "stats_weekly"  # the claim's kind in the posts table
MAX_GROUPS = 50  # groups /stats in private considers for one person (the most recently seen first)


def weekly_subscribers(group: Group) -> list[int]:
    """The user ids who asked for this group's weekly report."""
    stats = (group.settings or {}).get("stats") or {}
    return [int(user_id) for user_id in stats.get("weekly", [])]


async def set_weekly_report(session: AsyncSession, group_id: int, user_id: int, on: bool) -> bool:
    """Opt a person in or out of a group's weekly report. True if that changed anything."""
    async with transaction(session):
        group = await load_group(session, group_id, for_update=True)
        subscribers = weekly_subscribers(group)
        if (user_id in subscribers) == on:
            return False
        subscribers = sorted({*subscribers, user_id}) if on else [uid for uid in subscribers if uid != user_id]
        settings = dict(group.settings or {})
        settings["stats"] = {**(settings.get("stats") or {}), "weekly": subscribers}
        group.settings = settings
        group.updated_at = utcnow()
        return True


async def groups_with_weekly_reports(session: AsyncSession) -> list[Group]:
    """Active groups where at least one person asked for the weekly report."""
    async with transaction(session):
        rows = (await session.scalars(select(Group).where(Group.active.is_(True)))).all()  # type: ignore[attr-defined]
    return [group for group in rows if weekly_subscribers(group)]


def week_slot(week_start: date, user_id: int) -> str:
    return f"{week_start:%Y%m%d}:{user_id}"


async def claim_weekly_report(session: AsyncSession, group_id: int, user_id: int, week_start: date) -> bool:
    """True for exactly one caller per (group, admin, week)."""
    return await boards.claim_post(session, group_id, WEEKLY_KIND, week_slot(week_start, user_id))


async def release_weekly_report(session: AsyncSession, group_id: int, user_id: int, week_start: date) -> None:
    """Give the claim back when Telegram refused for a passing reason, so a later tick may send it."""
    await boards.release_post(session, group_id, WEEKLY_KIND, week_slot(week_start, user_id))


async def groups_of_member(session: AsyncSession, user_id: int, limit: int = MAX_GROUPS) -> list[Group]:
    """Active groups the person is (still) a member of, most recently seen first: the candidates for the groups
    they administer (the caller asks Telegram which of them they administer now)."""
    async with transaction(session):
        rows = await session.scalars(
            select(Group)
            .join(Member, Member.group_id == Group.id)  # type: ignore[arg-type]
            .where(Member.user_id == user_id, Member.role.not_in(GONE_ROLES), Group.active.is_(True))  # type: ignore[attr-defined]
            .order_by(Member.last_seen_at.desc())  # type: ignore[attr-defined]
            .limit(limit)
        )
        return list(rows.all())


# -- privacy ---------------------------------------------------------------------------------------------------


async def _groups_sending_to(session: AsyncSession, user_id: int) -> list[Group]:
    rows = (await session.scalars(select(Group))).all()
    return [group for group in rows if user_id in weekly_subscribers(group)]


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The groups whose weekly report the person asked for."""
    async with transaction(session):
        chosen = await _groups_sending_to(session, user_id)
    return {"weekly_reports": [{"chat_id": group.chat_id, "group": group.title} for group in chosen]}


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Stop the person's weekly reports and forget which were sent (the claims name them)."""
    async with transaction(session):
        for group in await _groups_sending_to(session, user_id):
            assert group.id is not None
            await set_weekly_report(session, group.id, user_id, False)
        await session.execute(
            delete(Post).where(Post.kind == WEEKLY_KIND, Post.slot.like(f"%:{user_id}"))  # type: ignore[arg-type, attr-defined]
        )
