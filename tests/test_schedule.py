"""The scheduler: schedule rows are the truth; every due slot is posted exactly once, even by two schedulers
on one database (SQLite and PostgreSQL); a restart catches up inside the grace window and skips older slots;
inactive groups get nothing; quiet hours hold or skip posts; the check-in board defaults to 08:00."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import SendMessage
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from models import groups, schedules
from models.db import create_engine, create_sessionmaker
from models.groups import ChatSeen
from scheduler import runner
from scheduler.runner import JobContext, Posting, run_schedules
from tests.factories import World

SHANGHAI_8AM = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # Monday 08:00 in Asia/Shanghai


async def new_group(session: Any, chat_id: int, zone: str = "Asia/Shanghai") -> int:
    group = await groups.upsert_group(session, ChatSeen(chat_id, f"G{chat_id}", "supergroup"), default_timezone=zone)
    assert group.id is not None
    return group.id


async def make_group(sessionmaker: Any, chat_id: int, zone: str = "Asia/Shanghai") -> int:
    async with sessionmaker() as session:
        return await new_group(session, chat_id, zone)


def context(world: World) -> JobContext:
    return world.jobs()


def with_posters(world: World, *extra: Posting) -> JobContext:
    """The world's job context, posting also these kinds (the table is the context's: nothing global changes)."""
    return JobContext(world.bot, world.runtime, {**runner.POSTERS, **{p.kind: p for p in extra}})


def sent(*worlds: World) -> list[SendMessage]:
    return [call for world in worlds for call in world.session.calls if isinstance(call, SendMessage)]


async def second_engine(engine: AsyncEngine) -> AsyncEngine:
    """Another engine on the same database, as a second scheduler process would have."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "sqlite":
        return create_engine(url)
    async with engine.connect() as connection:
        search_path = (await connection.execute(text("SHOW search_path"))).scalar()
    other = create_engine(url)

    @event.listens_for(other.sync_engine, "connect")
    def _search_path(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET search_path TO {search_path}")
        cursor.close()

    return other


# -- parsing ---------------------------------------------------------------------------------------------------


def test_days_and_quiet_hours_parse() -> None:
    assert schedules.parse_weekdays("1-5") == "12345"
    assert schedules.parse_weekdays("7,1 3") == "137"
    assert schedules.parse_weekdays("weekend") == "67" and schedules.parse_weekdays("每天") == "1234567"
    for bad in ("8", "5-1", "mon", ""):
        with pytest.raises(schedules.ScheduleError):
            schedules.parse_weekdays(bad)
    assert schedules.parse_quiet_span("23:00-8:00") == ("23:00", "08:00")
    with pytest.raises(schedules.ScheduleError):
        schedules.parse_quiet_span("23:00")
    span = ("23:00", "08:00")
    assert schedules.in_quiet_hours("07:59", span) and schedules.in_quiet_hours("23:00", span)
    assert not schedules.in_quiet_hours("08:00", span) and not schedules.in_quiet_hours("22:59", span)
    assert schedules.quiet_release("07:00", span) == "08:00"  # held until quiet hours end
    assert schedules.quiet_release("23:30", span) is None  # they end the next day: skipped
    assert schedules.quiet_release("12:00", ("12:00", "13:00")) == "13:00"


async def test_set_schedule_validates_and_upserts(session) -> None:  # type: ignore[no-untyped-def]
    gid = await new_group(session, -100)
    with pytest.raises(schedules.ScheduleError):
        await schedules.set_schedule(session, gid, "topic", "24:00")
    with pytest.raises(schedules.ScheduleError):
        await schedules.set_schedule(session, gid, "topic", "08:00", weekdays="09")
    with pytest.raises(schedules.ScheduleError):
        await schedules.set_schedule(session, gid, "Bad Kind", "08:00")
    first = await schedules.set_schedule(session, gid, "topic", "8:05", weekdays="531")
    assert (first.at, first.weekdays, first.enabled) == ("08:05", "135", True)
    first_id = first.id
    again = await schedules.set_schedule(session, gid, "topic", "21:00")
    assert (again.id, again.at, again.weekdays) == (first_id, "21:00", "1234567")
    await schedules.set_schedule(session, gid, "flash_sale", "10:00", ref_id=7, duration_minutes=30)
    assert [(r.kind, r.ref_id) for r in await schedules.list_schedules(session, gid)] == [
        ("flash_sale", 7), ("topic", 0)]
    assert await schedules.disable_schedule(session, gid, "topic") is True
    assert await schedules.disable_schedule(session, gid, "topic") is False
    assert await schedules.delete_schedule(session, gid, "flash_sale", 7) is True
    assert await schedules.delete_schedule(session, gid, "flash_sale", 7) is False


# -- the check-in board: a default without a row ---------------------------------------------------------------


async def test_a_group_without_a_row_gets_the_0800_board_and_off_stops_it(world) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(world.sessionmaker, -1001)
    ctx = context(world)
    assert await run_schedules(ctx, SHANGHAI_8AM - timedelta(minutes=1)) == 0
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(seconds=5)) == 1
    assert "2026-11-23" in sent(world)[-1].text
    async with world.sessionmaker() as session:
        group = await groups.get_group(session, -1001)
        views = await schedules.effective_schedules(session, group)
        assert [(v.kind, v.at, v.default) for v in views] == [("checkin_board", "08:00", True)]
        assert await schedules.disable_schedule(session, gid, "checkin_board") is True
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(days=1, seconds=5)) == 0


async def test_a_board_time_kept_by_older_versions_is_honoured(world) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(world.sessionmaker, -1002)
    async with world.sessionmaker() as session:
        group = await session.get(groups.Group, gid)
        group.settings = {"checkin": {"board_time": "09:30"}}
        await session.commit()
    ctx = context(world)
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(seconds=5)) == 0
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(hours=1, minutes=30, seconds=5)) == 1


async def test_weekdays_and_one_off_dates(world) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(world.sessionmaker, -1003)
    async with world.sessionmaker() as session:
        await schedules.set_schedule(session, gid, "checkin_board", "08:00", weekdays="67")  # weekends only
    ctx = context(world)
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(seconds=5)) == 0  # a Monday
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(days=5, seconds=5)) == 1  # Saturday
    async with world.sessionmaker() as session:
        await schedules.set_schedule(session, gid, "checkin_board", "08:00", once_on=date(2026, 11, 25))
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(days=1, seconds=5)) == 0
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(days=2, seconds=5)) == 1


# -- exactly once, by two schedulers ---------------------------------------------------------------------------


async def test_two_schedulers_post_every_slot_exactly_once(engine, settings) -> None:  # type: ignore[no-untyped-def]
    other = await second_engine(engine)
    first = World(settings, create_sessionmaker(engine))
    second = World(settings, create_sessionmaker(other))
    try:
        zones = ["Asia/Shanghai", "Asia/Taipei", "Europe/London", "America/New_York"]
        expected: set[tuple[int, str, str]] = set()
        moments: set[datetime] = set()
        for n in range(8):
            zone, topic_at = zones[n % len(zones)], ["08:00", "08:01", "20:00"][n % 3]
            gid = await make_group(first.sessionmaker, -2000 - n, zone)
            async with first.sessionmaker() as session:
                await schedules.set_schedule(session, gid, "topic", topic_at)  # plus the default 08:00 board
            for day in (date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)):
                for kind, at in (("checkin_board", "08:00"), ("topic", topic_at)):
                    expected.add((gid, f"{kind}:0", day.isoformat()))
                    slot = schedules.local_moment(day, at, ZoneInfo(zone))
                    moments.update({slot + timedelta(seconds=5), slot + timedelta(seconds=65)})
        for n, moment in enumerate(sorted(moments)):  # both schedulers tick at once, twice per slot
            # Each moment one of them starts first. (On SQLite the one that starts first may claim every slot of
            # the moment: the other waits in SQLite's busy handler, which polls, while the first's next
            # transaction gets the free lock at once.)
            pair = (first, second) if n % 2 == 0 else (second, first)
            await asyncio.gather(*(run_schedules(context(world), moment) for world in pair))
        async with first.sessionmaker() as session:
            claims = (await session.execute(text("SELECT group_id, kind, slot, message_id FROM posts"))).all()
        scheduled = [row for row in claims if ":" in row.kind]
        assert {(row.group_id, row.kind, row.slot) for row in scheduled} == expected
        assert all(row.message_id is not None for row in scheduled)
        assert len(sent(first, second)) == len(expected)  # each slot posted once, by one of the two
        assert sent(first) and sent(second)
    finally:
        await first.close()
        await second.close()
        await other.dispose()


async def test_two_schedulers_same_minute_many_groups(engine, settings) -> None:  # type: ignore[no-untyped-def]
    other = await second_engine(engine)
    try:
        first = World(settings, create_sessionmaker(engine))
        second = World(settings, create_sessionmaker(other))
        for n in range(20):
            await make_group(first.sessionmaker, -3000 - n)
        moment = SHANGHAI_8AM + timedelta(seconds=5)
        counts = await asyncio.gather(run_schedules(context(first), moment), run_schedules(context(second), moment))
        assert sum(counts) == 20
        chats = [int(c.chat_id) for c in sent(first, second)]
        assert sorted(chats) == sorted(-3000 - n for n in range(20))
        await first.close()
        await second.close()
    finally:
        await other.dispose()


# -- restarts and the grace window -----------------------------------------------------------------------------


async def test_restart_inside_the_grace_window_catches_up_outside_skips(world, settings) -> None:  # type: ignore[no-untyped-def]
    inside = await make_group(world.sessionmaker, -4001)
    outside = await make_group(world.sessionmaker, -4002)
    async with world.sessionmaker() as session:
        await schedules.set_schedule(session, inside, "checkin_board", "08:05")
        await schedules.set_schedule(session, outside, "checkin_board", "07:55")
    # The scheduler was down from 07:50 to 08:09; a fresh one starts at 08:09 (a new process: new bot, new context).
    restarted = World(settings, world.sessionmaker)
    moment = SHANGHAI_8AM + timedelta(minutes=9, seconds=5)
    assert await run_schedules(context(restarted), moment) == 1  # 08:05 is 4 minutes late: posted
    assert [int(c.chat_id) for c in sent(restarted)] == [-4001]  # 07:55 is 14 minutes late: skipped
    assert await run_schedules(context(restarted), moment + timedelta(minutes=1)) == 0
    # The next day both post on time again.
    assert await run_schedules(context(restarted), SHANGHAI_8AM + timedelta(days=1, minutes=-5, seconds=5)) == 1
    assert await run_schedules(context(restarted), SHANGHAI_8AM + timedelta(days=1, minutes=5, seconds=5)) == 1
    await restarted.close()
    assert outside != inside


async def test_a_late_evening_slot_is_caught_up_after_midnight(world) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(world.sessionmaker, -4101)
    async with world.sessionmaker() as session:
        await schedules.set_schedule(session, gid, "checkin_board", "23:58")
    # 00:03 local on the 24th: the 23rd's 23:58 slot is 5 minutes late.
    assert await run_schedules(context(world), datetime(2026, 11, 23, 16, 3, tzinfo=UTC)) == 1
    assert "2026-11-23" in sent(world)[-1].text


# -- who gets nothing ------------------------------------------------------------------------------------------


async def test_inactive_groups_get_nothing(world) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(world.sessionmaker, -5001)
    async with world.sessionmaker() as session:
        await schedules.set_schedule(session, gid, "topic", "08:00")
        await groups.set_group_active(session, -5001, False)
    assert await run_schedules(context(world), SHANGHAI_8AM + timedelta(seconds=5)) == 0
    assert sent(world) == []


async def test_a_telegram_error_gives_the_slot_back(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(world.sessionmaker, -5002)
    calls: list[int] = []

    async def flaky(ctx: JobContext, session: Any, slot: schedules.Slot) -> int | None:
        calls.append(slot.group_id)
        if len(calls) == 1:
            raise TelegramBadRequest(SendMessage(chat_id=slot.chat_id, text="x"), "Bad Request: try later")
        return 77

    async with world.sessionmaker() as session:
        await schedules.set_schedule(session, gid, "probe", "08:00")
    moment = SHANGHAI_8AM + timedelta(seconds=5)
    world_ctx = with_posters(world, Posting("probe", flaky))
    assert await run_schedules(world_ctx, moment, kinds={"probe"}) == 0
    assert await run_schedules(world_ctx, moment + timedelta(minutes=1), kinds={"probe"}) == 1
    assert await run_schedules(world_ctx, moment + timedelta(minutes=2), kinds={"probe"}) == 0
    assert calls == [gid, gid]


async def test_unregistered_kinds_are_left_alone(world) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(world.sessionmaker, -5003)
    async with world.sessionmaker() as session:
        await schedules.set_schedule(session, gid, "somebody_elses", "08:00")
        await schedules.disable_schedule(session, gid, "checkin_board")
    assert await run_schedules(context(world), SHANGHAI_8AM + timedelta(seconds=5)) == 0


# -- quiet hours -----------------------------------------------------------------------------------------------


async def test_quiet_hours_hold_a_post_until_they_end_or_skip_it(world) -> None:  # type: ignore[no-untyped-def]
    held = await make_group(world.sessionmaker, -6001)
    skipped = await make_group(world.sessionmaker, -6002)
    async with world.sessionmaker() as session:
        for gid in (held, skipped):
            await schedules.set_quiet_hours(session, gid, ("23:00", "08:30"))
        await schedules.set_schedule(session, held, "checkin_board", "07:00")
        await schedules.set_schedule(session, skipped, "checkin_board", "23:30")
    ctx = context(world)
    seven = SHANGHAI_8AM - timedelta(hours=1)
    assert await run_schedules(ctx, seven + timedelta(seconds=5)) == 0  # 07:00 is quiet: held
    assert await run_schedules(ctx, seven + timedelta(minutes=90, seconds=5)) == 1  # 08:30: out it goes
    assert [int(c.chat_id) for c in sent(world)] == [-6001]
    for minutes in (0, 1, 5):  # 23:30 would wait until tomorrow: skipped
        assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(hours=15, minutes=30 + minutes)) == 0
    async with world.sessionmaker() as session:
        await schedules.set_quiet_hours(session, skipped, None)
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(days=1, hours=15, minutes=30, seconds=5)) == 1


async def test_exempt_kinds_post_inside_quiet_hours(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(world.sessionmaker, -6003)

    async def sale(ctx: JobContext, session: Any, slot: schedules.Slot) -> int | None:
        message = await ctx.bot.send_message(slot.chat_id, "⚡ sale")
        return message.message_id

    async with world.sessionmaker() as session:
        await schedules.set_quiet_hours(session, gid, ("23:00", "08:00"))
        await schedules.set_schedule(session, gid, "midnight_sale", "23:59", duration_minutes=30)
    ctx = with_posters(world, Posting("midnight_sale", sale, quiet_hours=False))
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(hours=15, minutes=59, seconds=5),
                               kinds={"midnight_sale"}) == 1


# -- pacing ----------------------------------------------------------------------------------------------------


async def test_posts_in_flight_stay_bounded(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    in_flight = most = 0
    full = asyncio.Event()

    async def slow(ctx: JobContext, session: Any, slot: schedules.Slot) -> int | None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == 3:
            full.set()
        with contextlib.suppress(TimeoutError):  # the first three wait for each other; the rest pass through
            await asyncio.wait_for(full.wait(), 5)
        in_flight -= 1
        return 1

    monkeypatch.setattr(runner, "POST_CONCURRENCY", 3)
    for n in range(10):
        gid = await make_group(world.sessionmaker, -7000 - n)
        async with world.sessionmaker() as session:
            await schedules.set_schedule(session, gid, "probe", "08:00")
    ctx = with_posters(world, Posting("probe", slow))
    assert await run_schedules(ctx, SHANGHAI_8AM + timedelta(seconds=5), kinds={"probe"}) == 10
    assert most == 3


def test_the_minute_job_is_scheduled() -> None:
    assert any(job is run_schedules for job, _trigger in runner.JOBS)
    assert {"checkin_board", "topic"} <= set(runner.POSTERS)
