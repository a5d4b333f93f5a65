"""Bot moderators: members the group's owner appoints (/mod add) who may use the moderation commands without
being Telegram admins. Telegram's own owner and admins are not stored here: handlers/roles.py keeps them in a
per-chat cache refreshed from getChatAdministrators and chat_member updates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, UniqueConstraint, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models.db import BigIntKey, UTCDateTime, insert, transaction, utcnow
from models.groups import GONE_ROLES, Group, Member, User

MAX_MODERATORS = 50  # per group; a longer list is a sign of a mistake, not of a well-run group


class BotModerator(SQLModel, table=True):
    """One member appointed moderator of one group (unique per group and member)."""

    __tablename__ = "bot_moderators"
    __table_args__ = (UniqueConstraint("group_id", "user_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    added_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    added_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class TooManyModerators(Exception):
    """The group already has MAX_MODERATORS bot moderators."""


async def is_bot_moderator(session: AsyncSession, group_id: int, user_id: int) -> bool:
    """True if the owner appointed this member a bot moderator of the group."""
    async with transaction(session):
        found = await session.scalar(
            select(BotModerator.id).where(BotModerator.group_id == group_id, BotModerator.user_id == user_id)  # type: ignore[arg-type]
        )
        return found is not None


async def add_moderator(session: AsyncSession, group_id: int, user_id: int, *, added_by: int | None) -> bool:
    """Appoint a moderator. False if they already were one; raises TooManyModerators past the cap."""
    async with transaction(session):
        moderators = await list_moderators(session, group_id)
        if any(row.user_id == user_id for row in moderators):
            return False
        if len(moderators) >= MAX_MODERATORS:
            raise TooManyModerators()
        result = await session.execute(
            insert(session, BotModerator)
            .values(group_id=group_id, user_id=user_id, added_by=added_by, added_at=utcnow())
            .on_conflict_do_nothing()
        )
        return result.rowcount == 1


async def remove_moderator(session: AsyncSession, group_id: int, user_id: int) -> bool:
    """Dismiss a moderator. False if they were not one."""
    async with transaction(session):
        result = await session.execute(
            delete(BotModerator).where(BotModerator.group_id == group_id, BotModerator.user_id == user_id)  # type: ignore[arg-type]
        )
        return bool(result.rowcount)


async def list_moderators(session: AsyncSession, group_id: int) -> list[BotModerator]:
    async with transaction(session):
        rows = await session.scalars(
            select(BotModerator).where(BotModerator.group_id == group_id).order_by(BotModerator.added_at)  # type: ignore[arg-type]
        )
        return list(rows)


# -- finding people (reads for the commands that name a member) --------------------------------------------


def _name(first_name: str | None, username: str | None) -> str:
    return first_name or (f"@{username}" if username else "?")


async def member_by_username(
    session: AsyncSession, group_id: int, username: str, *, present_only: bool = False
) -> tuple[int, str] | None:
    """(user_id, name) of the member of this group with this @username, if the bot has seen them.
    `present_only`: leave out people who left or were removed (a ban may name them; points may not)."""
    statement = (
        select(User.user_id, User.first_name, User.username)  # type: ignore[call-overload]
        .join(Member, Member.user_id == User.user_id)
        .where(Member.group_id == group_id, func.lower(User.username) == username.lower())
    )
    if present_only:
        statement = statement.where(Member.role.not_in(GONE_ROLES))  # type: ignore[attr-defined]
    async with transaction(session):
        row = (await session.execute(statement.order_by(User.seen_at.desc()).limit(1))).first()
        return (row.user_id, _name(row.first_name, row.username)) if row else None


async def member_names(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, str]:
    """Display names of the people the bot has seen (others are left out)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    async with transaction(session):
        rows = await session.execute(
            select(User.user_id, User.first_name, User.username).where(User.user_id.in_(ids))  # type: ignore[call-overload, attr-defined]
        )
        return {row.user_id: _name(row.first_name, row.username) for row in rows.all()}


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The groups where the person is a bot moderator."""
    async with transaction(session):
        rows = await session.execute(
            select(Group.chat_id, Group.title, BotModerator.added_at)  # type: ignore[call-overload]
            .join(Group, Group.id == BotModerator.group_id)
            .where(BotModerator.user_id == user_id)
        )
        return {
            "moderator_of": [
                {"chat_id": chat_id, "group": title, "since": added_at.isoformat()}
                for chat_id, title, added_at in rows.all()
            ]
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Drop their appointments; appointments they made keep no trace of them."""
    async with transaction(session):
        await session.execute(delete(BotModerator).where(BotModerator.user_id == user_id))  # type: ignore[arg-type]
        await session.execute(
            update(BotModerator).where(BotModerator.added_by == user_id).values(added_by=None)  # type: ignore[arg-type]
        )
