"""Where members stand: leaderboards by week, month and all time (ties share a place), the leaderboards pinned in
groups, and badges. Tiers are part of the rules (`PointsRules.tier_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Column, ForeignKey, String, UniqueConstraint, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models.clock import local_day
from models.db import BigIntKey, UTCDateTime, insert, long_running, transaction, utcnow
from models.groups import Group
from models.points.ledger import PointsBalance, PointsEntry
from models.points.rules import load_group

# -- leaderboards ----------------------------------------------------------------------------------------------



Period = Literal["week", "month", "all"]


@dataclass(frozen=True, slots=True)
class RankRow:
    user_id: int
    points: int
    place: int  # 1 + the number of members with more points (ties share a place)


def period_start(period: Period, zone: str, now: datetime) -> datetime | None:
    """The UTC moment the local week (Monday 00:00) or month (1st 00:00) began in `zone`; None for "all"."""
    if period == "all":
        return None
    today = local_day(now, zone)
    if period == "week":
        first = today - timedelta(days=today.weekday())
    elif period == "month":
        first = today.replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return datetime.combine(first, time(0), tzinfo=ZoneInfo(zone))


def _scores(group_id: int, period: Period, start: datetime | None) -> Any:
    """(user_id, points) per member for the period, as a subquery. Erased people (pseudonyms < 0) are left out."""
    if period == "all":
        balances = PointsBalance.__table__.c  # type: ignore[attr-defined]
        return (
            select(balances.user_id.label("user_id"), balances.lifetime_earned.label("points"))
            .where(balances.group_id == group_id, balances.lifetime_earned > 0, balances.user_id > 0)
            .subquery()
        )
    ledger = PointsEntry.__table__.c  # type: ignore[attr-defined]
    return (
        select(ledger.user_id.label("user_id"), func.sum(ledger.delta).label("points"))
        .where(ledger.group_id == group_id, ledger.created_at >= start, ledger.delta > 0, ledger.user_id > 0)
        .group_by(ledger.user_id)
        .subquery()
    )


@long_running
async def leaderboard(
    session: AsyncSession, group_id: int, period: Period, *, now: datetime | None = None, limit: int = 10
) -> list[RankRow]:
    """The top `limit` members: points earned (positive deltas) since the local week/month began, or
    lifetime_earned for "all". Ordered by points, then user_id; ties share a place."""
    async with transaction(session):
        group = await load_group(session, group_id)
        scores = _scores(group_id, period, period_start(period, group.timezone, now or utcnow()))
        rows = (
            await session.execute(
                select(scores.c.user_id, scores.c.points)
                .order_by(scores.c.points.desc(), scores.c.user_id)
                .limit(limit)
            )
        ).all()
        out: list[RankRow] = []
        for index, (user_id, points) in enumerate(rows):
            place = out[-1].place if out and out[-1].points == points else index + 1
            out.append(RankRow(int(user_id), int(points), place))
        return out


@long_running
async def place_of(
    session: AsyncSession, group_id: int, user_id: int, period: Period, *, now: datetime | None = None
) -> RankRow | None:
    """The member's row on the `period` board (place = 1 + members with more points), None without points."""
    async with transaction(session):
        group = await load_group(session, group_id)
        scores = _scores(group_id, period, period_start(period, group.timezone, now or utcnow()))
        mine = await session.scalar(select(scores.c.points).where(scores.c.user_id == user_id))
        if not mine:
            return None
        above = await session.scalar(select(func.count()).select_from(scores).where(scores.c.points > literal(mine)))
        return RankRow(user_id, int(mine), int(above or 0) + 1)



# -- pinned leaderboards --------------------------------------------------------------------------------------



@dataclass(frozen=True, slots=True)
class PinnedBoard:
    """A leaderboard message pinned in a group, refreshed in place by the scheduler."""

    group_id: int
    chat_id: int
    locale: str | None
    period: str
    message_id: int


async def set_pinned_board(session: AsyncSession, group_id: int, period: str | None, message_id: int | None) -> None:
    """Remember the group's pinned leaderboard (period None: there is none any more)."""
    async with transaction(session):
        group = await load_group(session, group_id, for_update=True)
        settings = dict(group.settings or {})
        if period is None or message_id is None:
            settings.pop("leaderboard", None)
        else:
            settings["leaderboard"] = {"period": period, "message_id": message_id}
        group.settings = settings
        group.updated_at = utcnow()


async def pinned_boards(session: AsyncSession) -> list[PinnedBoard]:
    """Every active group's pinned leaderboard."""
    async with transaction(session):
        rows = await session.execute(
            select(Group.id, Group.chat_id, Group.locale, Group.settings).where(Group.active.is_(True))  # type: ignore[attr-defined]
        )
        boards = []
        for group_id, chat_id, locale, settings in rows:
            pinned = (settings or {}).get("leaderboard")
            if isinstance(pinned, dict) and pinned.get("period") in ("week", "month", "all"):
                boards.append(PinnedBoard(group_id, chat_id, locale, pinned["period"], int(pinned["message_id"])))
        return boards



# -- badges ----------------------------------------------------------------------------------------------------



class Badge(SQLModel, table=True):
    """A badge a member holds in a group (streak_7, streak_30, streak_100, or any later feature's)."""

    __tablename__ = "badges"
    __table_args__ = (UniqueConstraint("group_id", "user_id", "badge"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    badge: str = Field(sa_column=Column(String(32), nullable=False))
    awarded_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))



STREAK_BADGES = {7: "streak_7", 30: "streak_30", 100: "streak_100"}


async def grant_badge(
    session: AsyncSession, group_id: int, user_id: int, badge: str, *, now: datetime | None = None
) -> bool:
    """Give the member `badge` in the group. True if it is new, False if they already had it."""
    if not badge or len(badge) > 32:
        raise ValueError("a badge name of 1..32 characters is required")
    async with transaction(session):
        result = await session.execute(
            insert(session, Badge)
            .values(group_id=group_id, user_id=user_id, badge=badge, awarded_at=now or utcnow())
            .on_conflict_do_nothing()
        )
        return result.rowcount == 1


async def list_badges(session: AsyncSession, group_id: int, user_id: int) -> list[Badge]:
    """The member's badges in the group, oldest first."""
    async with transaction(session):
        result = await session.scalars(
            select(Badge)
            .where(Badge.group_id == group_id, Badge.user_id == user_id)  # type: ignore[arg-type]
            .order_by(Badge.awarded_at, Badge.id)  # type: ignore[arg-type]
        )
        return list(result.all())
