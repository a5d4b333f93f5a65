"""Daily check-ins (签到) and streaks, with make-up check-ins (补签) bought with points.

A check-in is unique per (group, member, local day) in the database, the day taken in the group's time zone;
the day's rank comes from a per-(group, day) counter bumped by one atomic upsert; points go through the ledger
with key f"checkin:{group_id}:{user_id}:{day}".
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    UniqueConstraint,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import ReturningInsert, Update
from sqlmodel import Field, SQLModel

from models import points
from models.batching import GroupDesk
from models.clock import local_day
from models.db import BigIntKey, UTCDateTime, dialect_insert, insert, is_postgres, transaction, utcnow
from models.groups import Group


class Checkin(SQLModel, table=True):
    """One member's check-in on one local day. rank 1 = first of the day; None for a make-up check-in."""

    __tablename__ = "checkins"
    __table_args__ = (
        UniqueConstraint("group_id", "user_id", "day"),
        Index("ix_checkins_group_day", "group_id", "day"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    day: date = Field(sa_column=Column(Date, nullable=False))
    points: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    streak: int = Field(default=1, sa_column=Column(Integer, nullable=False, default=1))
    rank: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    made_up: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class CheckinStreak(SQLModel, table=True):
    """A member's streak in a group: `current` consecutive days ending on `last_day`, and the best ever."""

    __tablename__ = "checkin_streaks"

    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    )
    user_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False, index=True))
    current: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    best: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    last_day: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class CheckinDay(SQLModel, table=True):
    """How many ranks a group handed out on a local day (the next check-in's rank is count + 1)."""

    __tablename__ = "checkin_days"

    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    )
    day: date = Field(sa_column=Column(Date, primary_key=True))
    count: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))


# -- errors ----------------------------------------------------------------------------------------------------


class CheckinError(Exception):
    """Base of the check-in refusals."""


class MakeupDisabled(CheckinError):
    """The group does not allow make-up check-ins (rules.makeup_enabled is off)."""


class AlreadyCheckedIn(CheckinError):
    """The day to make up is already checked in (nothing was missed)."""


# -- results ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckinResult:
    """The outcome of check_in. already=True: the member had checked in today; the fields describe that earlier
    check-in and nothing changed (new_badges empty, tier_before == tier_after)."""

    already: bool
    day: date
    points: int
    streak: int
    best_streak: int
    rank: int | None
    base_points: int
    streak_bonus: int
    first_bonus: int
    new_badges: tuple[str, ...]
    tier_before: str
    tier_after: str
    balance: int

    @property
    def tier_up(self) -> bool:
        return not self.already and self.tier_before != self.tier_after


@dataclass(frozen=True, slots=True)
class MakeupResult:
    """A make-up check-in for `day` (yesterday): the streak after relinking, the points it cost."""

    day: date
    streak: int
    best_streak: int
    cost: int
    balance: int
    new_badges: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StreakView:
    current: int  # 0 when the streak is broken (no check-in today or yesterday)
    best: int
    last_day: date | None


# -- helpers ---------------------------------------------------------------------------------------------------


async def _find(session: AsyncSession, group_id: int, user_id: int, day: date) -> Checkin | None:
    return await session.scalar(
        select(Checkin)
        .where(Checkin.group_id == group_id, Checkin.user_id == user_id, Checkin.day == day)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )


async def _locked_streak(session: AsyncSession, group_id: int, user_id: int, now: datetime) -> CheckinStreak:
    await session.execute(
        insert(session, CheckinStreak)
        .values(group_id=group_id, user_id=user_id, current=0, best=0, last_day=None, updated_at=now)
        .on_conflict_do_nothing()
    )
    statement = (
        select(CheckinStreak)
        .where(CheckinStreak.group_id == group_id, CheckinStreak.user_id == user_id)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )
    if is_postgres(session):
        statement = statement.with_for_update()
    streak = await session.scalar(statement)
    assert streak is not None
    return streak


MIN_BADGE = min(points.STREAK_BADGES)


async def _grant_streak_badges(
    session: AsyncSession, group_id: int, user_id: int, streak: int, now: datetime
) -> tuple[str, ...]:
    new = []
    for days, badge in sorted(points.STREAK_BADGES.items()):
        if streak >= days and await points.grant_badge(session, group_id, user_id, badge, now=now):
            new.append(badge)
    return tuple(new)


# -- operations ------------------------------------------------------------------------------------------------


async def check_in(session: AsyncSession, group_id: int, user_id: int, *, now: datetime | None = None) -> CheckinResult:
    """Check the member in for today (the group's local day). Exactly once per day, however many concurrent
    calls: the others return already=True with the earlier result.

    Points = checkin_base + checkin_streak_bonus[streak] (when the new streak reaches a bonus day) +
    checkin_first_bonus (when rank <= checkin_first_n), credited through the ledger. The streak continues from
    yesterday, else restarts at 1. Streak badges (7, 30, 100 days) are granted on reaching them.
    """
    return (await check_in_many(session, group_id, [user_id], now=now))[0]


async def check_in_many(
    session: AsyncSession, group_id: int, user_ids: Sequence[int], *, now: datetime | None = None,
    group: Group | None = None,
) -> list[CheckinResult]:
    """`check_in` for many members of one group at once, in one transaction and a fixed number of statements
    (a burst of presses on the board). One result per given id, in order; an id given twice is checked in once
    and its second result says already=True. Ranks follow the order of `user_ids`.

    `group`: the group's row as the caller read it moments ago (its rules and time zone), else it is loaded."""
    now = now or utcnow()
    async with transaction(session):
        if group is None or group.id != group_id:
            group = await points.load_group(session, group_id)
        rules = points.rules_of(group)
        day = local_day(now, group.timezone)
        wanted = list(dict.fromkeys(user_ids))
        # Statements below run one compiled statement for many rows (executemany), cached across batches.
        inserted = await session.execute(
            _checkin_insert(is_postgres(session)),
            [dict(group_id=group_id, user_id=u, day=day, points=0, streak=0, rank=None, made_up=False,
                  created_at=now) for u in wanted],
        )
        fresh_ids = set(inserted.scalars())
        fresh = [u for u in wanted if u in fresh_ids]
        results = await _record_fresh(session, group_id, rules, day, fresh, now) if fresh else {}
        earlier = await _earlier_results(session, group_id, rules, day, [u for u in wanted if u not in fresh_ids])
        answered: set[int] = set()
        out = []
        for u in user_ids:
            result = results.get(u) if u not in answered else None
            out.append(result if result is not None else earlier.get(u) or _as_already(results[u]))
            answered.add(u)
        return out


class CheckinDesk(GroupDesk[int, CheckinResult]):
    """Check-ins through one desk per process: presses that arrive together are recorded together
    (`check_in_many`, one transaction), so a burst on the board does not queue one transaction per press."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessionmaker, check_in_many)

    async def check_in(
        self, group_id: int, user_id: int, *, now: datetime | None = None, group: Group | None = None
    ) -> CheckinResult:
        """`group`: the group's row as the arrival read it (saves loading it again), if the caller has it."""
        return await self.submit(group_id, user_id, now=now, group=group)


def _as_already(result: CheckinResult) -> CheckinResult:
    return CheckinResult(True, result.day, result.points, result.streak, result.best_streak, result.rank, 0, 0, 0,
                         (), result.tier_after, result.tier_after, result.balance)


async def _record_fresh(
    session: AsyncSession, group_id: int, rules: points.PointsRules, day: date, fresh: list[int], now: datetime
) -> dict[int, CheckinResult]:
    """Ranks, streaks, points and badges for members whose check-in rows this transaction has just inserted."""
    last_rank = await session.scalar(
        _day_counter(is_postgres(session)), {"group_id": group_id, "day": day, "count": len(fresh)}
    )
    assert last_rank is not None
    rank = {u: last_rank - len(fresh) + 1 + i for i, u in enumerate(fresh)}

    ordered = sorted(fresh)  # one lock order for every batch: no deadlocks on PostgreSQL
    continued = await session.execute(
        _streak_upsert(is_postgres(session)),
        [dict(group_id=group_id, user_id=u, current=1, best=1, last_day=day, updated_at=now) for u in ordered],
    )
    streak, best = {}, {}
    for user_id, current, best_now in continued:
        streak[user_id], best[user_id] = current, best_now
    parts = {}
    for u in fresh:
        parts[u] = (
            rules.checkin_base,
            rules.checkin_streak_bonus.get(streak[u], 0),
            rules.checkin_first_bonus if rank[u] <= rules.checkin_first_n else 0,
        )
    awards = [
        points.Award(u, sum(parts[u]), f"checkin:{group_id}:{u}:{day.isoformat()}", f"streak:{streak[u]}")
        for u in ordered if sum(parts[u]) > 0
    ]
    ledger = await points.award_many(session, group_id, awards, "checkin", now=now, rules=rules)
    unpaid = [u for u in fresh if u not in ledger]
    balances = {u: await points.get_balance(session, group_id, u) for u in unpaid}

    await session.execute(
        _checkin_figures(),
        [{"g": group_id, "member": u, "d": day, "total": sum(parts[u]), "now_streak": streak[u], "now_rank": rank[u]}
         for u in ordered],
    )
    results = {}
    for u in fresh:
        badges = await _grant_streak_badges(session, group_id, u, streak[u], now) if streak[u] >= MIN_BADGE else ()
        if u in ledger:
            paid = ledger[u]
            tier_before, tier_after, balance = paid.tier_before or "", paid.tier_after or "", paid.balance
        else:
            tier_before = tier_after = balances[u].tier
            balance = balances[u].balance
        results[u] = CheckinResult(False, day, sum(parts[u]), streak[u], best[u], rank[u], *parts[u], badges,
                                   tier_before, tier_after, balance)
    return results


@functools.cache
def _streak_upsert(postgres: bool) -> ReturningInsert[Any]:
    """Today's check-in continues the member's streak from yesterday, else starts it at 1 (a first check-in
    creates the row); the best streak follows. Returns user_id, current, best. Built once per dialect (the day
    comes with each row as last_day; yesterday is computed from it in SQL)."""
    streaks = CheckinStreak.__table__.c  # type: ignore[attr-defined]
    statement = dialect_insert(postgres, CheckinStreak)
    today = statement.excluded.last_day
    yesterday = today - literal_column("1") if postgres else func.date(today, "-1 day")
    current = case((streaks.last_day == yesterday, streaks.current + 1), else_=1)
    return statement.on_conflict_do_update(
        index_elements=["group_id", "user_id"],
        set_={"current": current, "best": case((current > streaks.best, current), else_=streaks.best),
              "last_day": today, "updated_at": statement.excluded.updated_at},
    ).returning(streaks.user_id, streaks.current, streaks.best)


@functools.cache
def _day_counter(postgres: bool) -> ReturningInsert[Any]:
    """Adds :count check-ins to the day's counter and returns the new total (the last new rank)."""
    counter = CheckinDay.__table__.c  # type: ignore[attr-defined]
    statement = dialect_insert(postgres, CheckinDay).values(
        group_id=bindparam("group_id"), day=bindparam("day"), count=bindparam("count")
    )
    return statement.on_conflict_do_update(
        index_elements=["group_id", "day"], set_={"count": counter.count + statement.excluded.count}
    ).returning(counter.count)


@functools.cache
def _checkin_insert(postgres: bool) -> ReturningInsert[Any]:
    """Today's check-in rows (figures filled in by _checkin_figures); returns the members who were not in yet."""
    return dialect_insert(postgres, Checkin).on_conflict_do_nothing().returning(Checkin.user_id)  # type: ignore[arg-type]


@functools.cache
def _checkin_figures() -> Update:
    rows = Checkin.__table__.c  # type: ignore[attr-defined]
    return (
        update(Checkin.__table__)  # type: ignore[arg-type]
        .where(rows.group_id == bindparam("g"), rows.user_id == bindparam("member"), rows.day == bindparam("d"))
        .values(points=bindparam("total"), streak=bindparam("now_streak"), rank=bindparam("now_rank"))
    )


async def _earlier_results(
    session: AsyncSession, group_id: int, rules: points.PointsRules, day: date, members: list[int]
) -> dict[int, CheckinResult]:
    """already=True results for members who had checked in today before this call."""
    if not members:
        return {}
    rows = (await session.execute(
        select(Checkin.user_id, Checkin.points, Checkin.streak, Checkin.rank, CheckinStreak.best,  # type: ignore[call-overload]
               points.PointsBalance.balance, points.PointsBalance.lifetime_earned)
        .outerjoin(CheckinStreak, (CheckinStreak.group_id == Checkin.group_id)
                   & (CheckinStreak.user_id == Checkin.user_id))
        .outerjoin(points.PointsBalance, (points.PointsBalance.group_id == Checkin.group_id)
                   & (points.PointsBalance.user_id == Checkin.user_id))
        .where(Checkin.group_id == group_id, Checkin.day == day, Checkin.user_id.in_(members))  # type: ignore[attr-defined]
    )).all()
    results = {}
    for user_id, earned, streak, rank, best, balance, lifetime in rows:
        tier = rules.tier_for(lifetime or 0)
        results[user_id] = CheckinResult(True, day, earned, streak, best or streak, rank, 0, 0, 0, (), tier, tier,
                                         balance or 0)
    return results


async def make_up(session: AsyncSession, group_id: int, user_id: int, *, now: datetime | None = None) -> MakeupResult:
    """补签: check the member in for yesterday (local day), paying rules.makeup_cost points through the ledger
    (key f"makeup:{group_id}:{user_id}:{yesterday}"), and relink the streak across it (today's check-in, if any,
    continues it). The made-up day earns no points; streak badges reached by relinking are granted.

    Raises MakeupDisabled, AlreadyCheckedIn (yesterday is not missing) or points.InsufficientPoints; nothing is
    written then.
    """
    now = now or utcnow()
    async with transaction(session), session.begin_nested():
        group = await points.load_group(session, group_id)
        rules = points.rules_of(group)
        if not rules.makeup_enabled:
            raise MakeupDisabled(group_id)
        today = local_day(now, group.timezone)
        yesterday = today - timedelta(days=1)
        streak_row = await _locked_streak(session, group_id, user_id, now)
        inserted = await session.scalar(
            insert(session, Checkin)
            .values(
                group_id=group_id,
                user_id=user_id,
                day=yesterday,
                points=0,
                streak=0,
                rank=None,
                made_up=True,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(Checkin.id)  # type: ignore[arg-type]
        )
        if inserted is None:
            raise AlreadyCheckedIn(yesterday)
        before = await _find(session, group_id, user_id, yesterday - timedelta(days=1))
        made_up = await _find(session, group_id, user_id, yesterday)
        assert made_up is not None
        made_up.streak = (before.streak if before else 0) + 1
        streak_row.current, streak_row.last_day = made_up.streak, yesterday
        today_row = await _find(session, group_id, user_id, today)
        if today_row is not None:
            today_row.streak = made_up.streak + 1
            streak_row.current, streak_row.last_day = today_row.streak, today
        streak_row.best = max(streak_row.best, streak_row.current)
        streak_row.updated_at = now
        cost = rules.makeup_cost
        if cost > 0:
            ledger = await points.spend(
                session,
                group_id,
                user_id,
                cost,
                "makeup",
                f"makeup:{group_id}:{user_id}:{yesterday.isoformat()}",
                now=now,
            )
            balance = ledger.balance
        else:
            balance = (await points.get_balance(session, group_id, user_id)).balance
        badges = await _grant_streak_badges(session, group_id, user_id, streak_row.current, now)
        await session.flush()
        return MakeupResult(yesterday, streak_row.current, streak_row.best, cost, balance, badges)


async def get_streak(session: AsyncSession, group_id: int, user_id: int, *, now: datetime | None = None) -> StreakView:
    """The member's streak as of now: current is 0 once a day has been missed."""
    async with transaction(session):
        group = await points.load_group(session, group_id)
        row = await session.scalar(
            select(CheckinStreak).where(CheckinStreak.group_id == group_id, CheckinStreak.user_id == user_id)  # type: ignore[arg-type]
        )
        if row is None:
            return StreakView(0, 0, None)
        today = local_day(now or utcnow(), group.timezone)
        alive = row.last_day is not None and row.last_day >= today - timedelta(days=1)
        return StreakView(row.current if alive else 0, row.best, row.last_day)


async def month_calendar(session: AsyncSession, group_id: int, user_id: int, year: int, month: int) -> set[int]:
    """The days of `month` (1..31) on which the member is checked in (made-up days included)."""
    first = date(year, month, 1)
    last = date(year, month, calendar.monthrange(year, month)[1])
    async with transaction(session):
        days = await session.scalars(
            select(Checkin.day).where(  # type: ignore[call-overload]
                Checkin.group_id == group_id, Checkin.user_id == user_id, Checkin.day >= first, Checkin.day <= last
            )
        )
        return {day.day for day in days.all()}


async def today_count(session: AsyncSession, group_id: int, *, now: datetime | None = None) -> int:
    """How many members have checked in today (the group's local day)."""
    async with transaction(session):
        group = await points.load_group(session, group_id)
        day = local_day(now or utcnow(), group.timezone)
        count = await session.scalar(
            select(func.count()).select_from(Checkin).where(Checkin.group_id == group_id, Checkin.day == day)  # type: ignore[arg-type]
        )
        return int(count or 0)


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's check-ins and streaks."""
    async with transaction(session):
        checkins = await session.scalars(select(Checkin).where(Checkin.user_id == user_id).order_by(Checkin.day))  # type: ignore[arg-type]
        streaks = await session.scalars(select(CheckinStreak).where(CheckinStreak.user_id == user_id))  # type: ignore[arg-type]
        return {
            "checkins": [points.row_dict(row) for row in checkins.all()],
            "streaks": [points.row_dict(row) for row in streaks.all()],
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Delete the person's check-ins and streaks (nothing here is shared; the day counters hold no person)."""
    async with transaction(session):
        await session.execute(delete(Checkin).where(Checkin.user_id == user_id))  # type: ignore[arg-type]
        await session.execute(delete(CheckinStreak).where(CheckinStreak.user_id == user_id))  # type: ignore[arg-type]
