"""Posts the bot keeps up to date in a group (the daily check-in board, and later sales and votes).

A post is claimed once per (group, kind, slot) by a unique key before it is sent, so two schedulers, or a
scheduler and a member's keyword, never post it twice. The claimer records the message id so that later
changes edit that one message in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, String, UniqueConstraint, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models.checkin import Checkin
from models.db import BigIntKey, UTCDateTime, insert, transaction, utcnow
from models.groups import Group, User

CHECKIN_BOARD = "checkin_board"  # the kind of the daily check-in board's posts
DEFAULT_BOARD_TIME = "08:00"
DEFAULT_KEYWORDS = ("签到", "打卡", "check in")
_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class Post(SQLModel, table=True):
    """A claimed post: kind ("checkin_board", ...) for a slot (e.g. the local date) in one group."""

    __tablename__ = "posts"
    __table_args__ = (UniqueConstraint("group_id", "kind", "slot"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    slot: str = Field(sa_column=Column(String(32), nullable=False))
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    claimed_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


async def claim_post(session: AsyncSession, group_id: int, kind: str, slot: str) -> bool:
    """True for exactly one caller per (group, kind, slot)."""
    async with transaction(session):
        result = await session.execute(
            insert(session, Post)
            .values(group_id=group_id, kind=kind, slot=slot, claimed_at=utcnow())
            .on_conflict_do_nothing()
        )
        return result.rowcount == 1


async def release_post(session: AsyncSession, group_id: int, kind: str, slot: str) -> None:
    """Give a claim back when sending failed, so a later attempt may post."""
    async with transaction(session):
        await session.execute(
            delete(Post).where(Post.group_id == group_id, Post.kind == kind, Post.slot == slot)  # type: ignore[arg-type]
        )


async def set_post_message(session: AsyncSession, group_id: int, kind: str, slot: str, message_id: int) -> None:
    async with transaction(session):
        await session.execute(
            update(Post)
            .where(Post.group_id == group_id, Post.kind == kind, Post.slot == slot)  # type: ignore[arg-type]
            .values(message_id=message_id)
        )


async def get_post(session: AsyncSession, group_id: int, kind: str, slot: str) -> Post | None:
    async with transaction(session):
        return await session.scalar(
            select(Post).where(Post.group_id == group_id, Post.kind == kind, Post.slot == slot)  # type: ignore[arg-type]
        )


async def forget_post_messages(session: AsyncSession, chat_id: int, kind: str) -> int:
    """After a group moved to a supergroup (now `chat_id`), its posts' message ids name messages of the old chat:
    forget the posted ones of `kind`, so the next change posts them in the new chat. Claims still being posted
    (no message id yet) stay. Returns how many were forgotten."""
    async with transaction(session):
        group_id = await session.scalar(select(Group.id).where(Group.chat_id == chat_id))  # type: ignore[arg-type]
        if group_id is None:
            return 0
        result = await session.execute(
            delete(Post).where(Post.group_id == group_id, Post.kind == kind,  # type: ignore[arg-type]
                               Post.message_id.is_not(None))  # type: ignore[union-attr]
        )
        return int(result.rowcount or 0)


# -- the check-in board's settings and contents ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardSettings:
    # "HH:MM" in the group's zone for a group with no "checkin_board" schedule row (models.schedules): the
    # 08:00 default, or what older versions stored here; None = off. /checkin board now writes schedule rows.
    time: str | None
    keywords: tuple[str, ...]


def board_settings(group: Group) -> BoardSettings:
    raw: dict[str, Any] = (group.settings or {}).get("checkin", {})
    keywords = tuple(raw.get("keywords", DEFAULT_KEYWORDS))
    return BoardSettings(raw.get("board_time", DEFAULT_BOARD_TIME), keywords)


def parse_hh_mm(text: str) -> str | None:
    """'8:00' -> '08:00'; None if not a time of day."""
    match = _HH_MM.match(text.strip())
    return f"{int(match.group(1)):02d}:{match.group(2)}" if match else None


async def set_board_settings(
    session: AsyncSession, group_id: int, *, keywords: list[str] | None = None
) -> BoardSettings:
    """Change the check-in keywords. (The board's time is a schedule row: models.schedules.set_schedule.)"""
    async with transaction(session):
        group = await session.get(Group, group_id, with_for_update=True)
        assert group is not None
        settings = dict(group.settings or {})
        checkin = dict(settings.get("checkin", {}))
        if keywords is not None:
            checkin["keywords"] = keywords
        settings["checkin"] = checkin
        group.settings = settings
        return board_settings(group)


@dataclass(frozen=True, slots=True)
class BoardLine:
    name: str
    points: int
    streak: int
    rank: int | None


@dataclass(frozen=True, slots=True)
class BoardSnapshot:
    day: date
    count: int
    latest: list[BoardLine]


async def board_snapshot(session: AsyncSession, group_id: int, day: date, *, latest: int = 5) -> BoardSnapshot:
    """Today's count and the latest check-ins (newest first), with display names."""
    async with transaction(session):
        rows = (
            await session.execute(
                select(Checkin.points, Checkin.streak, Checkin.rank, User.first_name, User.username)
                .join(User, User.user_id == Checkin.user_id, isouter=True)  # type: ignore[arg-type]
                .where(Checkin.group_id == group_id, Checkin.day == day)  # type: ignore[arg-type]
                .order_by(Checkin.id.desc())  # type: ignore[union-attr]
            )
        ).all()
        lines = [
            BoardLine(first_name or (f"@{username}" if username else "—"), pts, streak, rank)
            for pts, streak, rank, first_name, username in rows[:latest]
        ]
        return BoardSnapshot(day, len(rows), lines)
