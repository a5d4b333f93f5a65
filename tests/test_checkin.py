"""Check-ins: local days whatever the server zone, streaks, bonuses, make-ups, tiers, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import checkin, points
from models.checkin import AlreadyCheckedIn, Checkin, MakeupDisabled, check_in, make_up
from models.groups import ChatSeen, upsert_group
from models.points import InsufficientPoints, PointsEntry

CHAT_IDS = itertools.count(-1002000000000, -1)


async def make_group(session: AsyncSession) -> int:
    chat = ChatSeen(next(CHAT_IDS), "Fans", "supergroup")
    group = await upsert_group(session, chat, default_timezone="Asia/Shanghai")
    assert group.id is not None
    return group.id


def shanghai(day: date, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    """That local Shanghai time (UTC+8, no DST) as an aware UTC datetime."""
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC) - timedelta(hours=8)


D0 = date(2026, 5, 10)


@pytest.fixture
def server_zone() -> Iterator[None]:
    """Run with the process in a zone far from Shanghai, to prove days do not come from the server clock."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


async def test_local_midnight_splits_days_whatever_the_server_zone(session: AsyncSession, server_zone: None) -> None:
    group_id = await make_group(session)
    late = await check_in(session, group_id, 1, now=shanghai(D0, 23, 59, 59))
    early = await check_in(session, group_id, 1, now=shanghai(D0 + timedelta(days=1), 0, 0, 0))
    assert (late.day, early.day) == (D0, D0 + timedelta(days=1))
    assert not late.already and not early.already and early.streak == 2
    again = await check_in(session, group_id, 1, now=shanghai(D0 + timedelta(days=1), 23, 0))
    assert again.already and again.points == early.points and again.rank == 1 and again.new_badges == ()
    assert await checkin.month_calendar(session, group_id, 1, 2026, 5) == {10, 11}
    assert await checkin.today_count(session, group_id, now=shanghai(D0)) == 1


async def test_streaks_bonuses_first_n_and_badges(session: AsyncSession) -> None:
    group_id = await make_group(session)
    await points.set_rule(session, group_id, "checkin_first_n", "1")
    results = [await check_in(session, group_id, 1, now=shanghai(D0 + timedelta(days=i))) for i in range(7)]
    assert [r.streak for r in results] == [1, 2, 3, 4, 5, 6, 7]
    assert [r.streak_bonus for r in results] == [0, 0, 5, 0, 0, 0, 20]
    assert all(r.first_bonus == 5 and r.rank == 1 for r in results)
    assert results[0].points == 15 and results[2].points == 20 and results[6].points == 35
    assert results[6].new_badges == ("streak_7",)
    assert [b.badge for b in await points.list_badges(session, group_id, 1)] == ["streak_7"]
    second = await check_in(session, group_id, 2, now=shanghai(D0))
    assert (second.rank, second.first_bonus, second.points) == (2, 0, 10)
    # A gap breaks the streak; the best streak is kept.
    after_gap = await check_in(session, group_id, 1, now=shanghai(D0 + timedelta(days=9)))
    assert (after_gap.streak, after_gap.best_streak) == (1, 7)
    view = await checkin.get_streak(session, group_id, 1, now=shanghai(D0 + timedelta(days=11)))
    assert (view.current, view.best) == (0, 7)
    total = sum(r.points for r in results) + after_gap.points
    assert (await points.get_balance(session, group_id, 1)).balance == total


async def test_tier_up_reported_once(session: AsyncSession) -> None:
    group_id = await make_group(session)
    await points.award(session, group_id, 1, 490, "admin_give", "seed")
    first = await check_in(session, group_id, 1, now=shanghai(D0))
    assert first.tier_up and (first.tier_before, first.tier_after) == ("normal", "silver")
    assert not (await check_in(session, group_id, 1, now=shanghai(D0))).tier_up
    assert not (await check_in(session, group_id, 1, now=shanghai(D0 + timedelta(days=1)))).tier_up


async def test_make_up_relinks_the_streak_and_costs_points(session: AsyncSession) -> None:
    group_id = await make_group(session)
    with pytest.raises(MakeupDisabled):
        await make_up(session, group_id, 1, now=shanghai(D0))
    await points.set_rule(session, group_id, "makeup_enabled", "on")
    for i in (0, 1):  # days 0 and 1, then day 2 missed
        await check_in(session, group_id, 1, now=shanghai(D0 + timedelta(days=i)))
    today = await check_in(session, group_id, 1, now=shanghai(D0 + timedelta(days=3)))
    assert today.streak == 1
    with pytest.raises(InsufficientPoints):
        await points.spend(session, group_id, 1, 1000, "redeem", "x")
    balance = (await points.get_balance(session, group_id, 1)).balance
    result = await make_up(session, group_id, 1, now=shanghai(D0 + timedelta(days=3), 20))
    assert (result.day, result.streak, result.cost, result.balance) == (D0 + timedelta(days=2), 4, 30, balance - 30)
    assert await checkin.month_calendar(session, group_id, 1, 2026, 5) == {10, 11, 12, 13}
    with pytest.raises(AlreadyCheckedIn):
        await make_up(session, group_id, 1, now=shanghai(D0 + timedelta(days=3), 21))
    tomorrow = await check_in(session, group_id, 1, now=shanghai(D0 + timedelta(days=4)))
    assert tomorrow.streak == 5


async def test_make_up_without_points_writes_nothing(session: AsyncSession) -> None:
    group_id = await make_group(session)
    await points.set_rule(session, group_id, "makeup_enabled", "on")
    await points.set_rule(session, group_id, "checkin_base", "0")
    await points.set_rule(session, group_id, "checkin_first_bonus", "0")
    await check_in(session, group_id, 1, now=shanghai(D0))
    with pytest.raises(InsufficientPoints):
        await make_up(session, group_id, 1, now=shanghai(D0 + timedelta(days=2)))
    assert await checkin.month_calendar(session, group_id, 1, 2026, 5) == {10}
    assert (await checkin.get_streak(session, group_id, 1, now=shanghai(D0))).current == 1


async def test_fifty_concurrent_duplicate_check_ins(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        group_id = await make_group(session)
    now = shanghai(D0)

    async def one() -> checkin.CheckinResult:
        async with sessionmaker() as session:
            return await check_in(session, group_id, 5, now=now)

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert sum(not r.already for r in results) == 1
    assert {(r.points, r.streak, r.rank) for r in results} == {(15, 1, 1)}
    async with sessionmaker() as session, session.begin():
        rows = await session.scalar(select(func.count()).select_from(Checkin).where(Checkin.group_id == group_id))
        entries = await session.scalar(
            select(func.count()).select_from(PointsEntry).where(PointsEntry.group_id == group_id)
        )
        assert (rows, entries) == (1, 1)
    async with sessionmaker() as session:
        assert (await points.get_balance(session, group_id, 5)).balance == 15


async def test_concurrent_members_get_distinct_ranks(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        group_id = await make_group(session)

    async def one(user_id: int) -> checkin.CheckinResult:
        async with sessionmaker() as session:
            return await check_in(session, group_id, user_id, now=shanghai(D0))

    results = await asyncio.gather(*(one(user_id) for user_id in range(1, 11)))
    assert sorted(r.rank for r in results) == list(range(1, 11))  # type: ignore[type-var]
    assert sum(r.first_bonus > 0 for r in results) == 3
    async with sessionmaker() as session:
        assert await checkin.today_count(session, group_id, now=shanghai(D0)) == 10
