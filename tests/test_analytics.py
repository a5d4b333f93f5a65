"""Activity facts and KPIs on hand-built histories whose answers are worked out here (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import BigInteger, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import points, privacy, shop
from models.analytics import ActivityDesk, MemberDay, Period, generate_history, group_kpis, record_membership
from models.analytics.facts import HourFact
from models.db import metadata
from models.groups import ChatSeen, Group, UserSeen, upsert_group, upsert_member

CHAT_IDS = itertools.count(-1_000_700_000_001, -1)
MONDAY = date(2026, 10, 5)  # a Monday, well in the past
LATER = datetime(2026, 11, 30, 12, tzinfo=UTC)  # "now" for the tests: every day-30 has come


async def make_group(sessionmaker: async_sessionmaker[AsyncSession], zone: str = "Asia/Shanghai") -> Group:
    async with sessionmaker() as session:
        group = await upsert_group(session, ChatSeen(next(CHAT_IDS), "Fans", "supergroup"), default_timezone=zone)
        await session.commit()
        return group


def at(day: date, hour: int = 12, minute: int = 0, zone_offset: int = 8) -> datetime:
    """A UTC moment for a local time in a UTC+`zone_offset` zone (Asia/Shanghai: 8)."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=zone_offset)


async def test_a_cohort_of_ten_joins_with_three_active_on_day_30_retains_30_percent(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker)
    assert group.id is not None
    desk = ActivityDesk(sessionmaker)
    async with sessionmaker() as session:
        for n in range(10):
            await record_membership(session, group, 500 + n, "join", source="public", at=at(MONDAY))
        await session.commit()
    for n in range(3):  # three of them talk on day 30
        desk.note_message(group.id, group.timezone, 500 + n, at(MONDAY + timedelta(days=30)), "text")
    desk.note_message(group.id, group.timezone, 509, at(MONDAY + timedelta(days=29)), "text")  # day 29: not day 30
    await desk.flush()

    kpis = await group_kpis(sessionmaker, [group.id], Period.custom(MONDAY, MONDAY + timedelta(days=6), group.timezone),
                            now=LATER)

    assert kpis.retention.day30.value == 0.3
    assert kpis.retention.day1.value == 0.0
    [cohort] = kpis.retention.cohorts
    assert (cohort.week_start, cohort.joined, cohort.retained[30]) == (MONDAY, 10, 0.3)
    assert kpis.members.joined.value == 10
    assert kpis.members.joined_by_source["public"].value == 10


async def test_retention_of_a_day_still_to_come_is_undefined(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker)
    assert group.id is not None
    async with sessionmaker() as session:
        await record_membership(session, group, 700, "join", source="added", actor_id=1, at=at(MONDAY))
        await session.commit()
    kpis = await group_kpis(sessionmaker, [group.id], Period.custom(MONDAY, MONDAY, group.timezone),
                            now=at(MONDAY + timedelta(days=3)))
    assert kpis.retention.day1.value == 0.0
    assert kpis.retention.day7.value is None and kpis.retention.day30.value is None


async def test_a_coupon_issued_and_used_gives_a_use_rate_of_100_percent(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker)
    assert group.id is not None
    day = MONDAY
    async with sessionmaker() as session:
        item = await shop.add_item(session, group.id, "Mug", 10, 5)
        await points.award(session, group.id, 42, 50, "admin_give", "give:42", now=at(day, 9))
        coupon = await shop.redeem(session, group.id, 42, item.id, key="buy:1", now=at(day, 10))
        await shop.verify(session, group.id, coupon.code, 1, now=at(day, 11))
        await session.commit()

    kpis = await group_kpis(sessionmaker, [group.id], Period.custom(day, day, group.timezone), now=LATER)

    assert (kpis.commerce.coupons_issued.value, kpis.commerce.coupons_used.value) == (1, 1)
    assert kpis.commerce.coupon_use_rate.value == 1.0
    assert kpis.commerce.coupons_by_item == {"Mug": (1, 1)}
    assert kpis.commerce.coupon_use_rate.previous is None  # nothing issued the day before: undefined
    assert kpis.economy.issued.value == 50 and kpis.economy.spent.value == 10
    assert kpis.economy.issued_by_rule["admin_give"].value == 50


async def test_shanghai_counts_a_2359_and_a_0001_message_on_two_days(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker, "Asia/Shanghai")
    assert group.id is not None
    desk = ActivityDesk(sessionmaker)
    desk.note_message(group.id, group.timezone, 7, datetime(2026, 10, 5, 15, 59, tzinfo=UTC), "text")  # 23:59 local
    desk.note_message(group.id, group.timezone, 7, datetime(2026, 10, 5, 16, 1, tzinfo=UTC), "photo")  # 00:01 next day
    await desk.flush()

    two_days = Period.custom(MONDAY, MONDAY + timedelta(days=1), "Asia/Shanghai")
    kpis = await group_kpis(sessionmaker, [group.id], two_days, now=LATER)

    assert kpis.activity.daily == [(MONDAY, 1, 1), (MONDAY + timedelta(days=1), 1, 1)]
    assert kpis.activity.heatmap[0][23] == 1 and kpis.activity.heatmap[1][0] == 1  # Monday 23h, Tuesday 0h
    assert kpis.activity.dau.value == 1.0 and kpis.activity.actives.value == 1
    assert {k: f.value for k, f in kpis.activity.messages_by_kind.items() if f.value} == {"text": 1, "photo": 1}
    # the same two messages in UTC fall on one day
    utc = await group_kpis(sessionmaker, [group.id], Period.custom(MONDAY, MONDAY, "UTC"), now=LATER)
    assert utc.activity.dau.value == 1.0


async def test_facts_add_up_across_flushes_and_count_a_speaker_once_an_hour(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker)
    assert group.id is not None
    desk = ActivityDesk(sessionmaker)
    moment = at(MONDAY, 20)
    desk.note_message(group.id, group.timezone, 1, moment, "text", reply=True, language="en")
    await desk.flush()
    desk.note_message(group.id, group.timezone, 1, moment + timedelta(minutes=5), "sticker")
    desk.note_message(group.id, group.timezone, 2, moment + timedelta(minutes=6), "text")
    desk.note(group.id, 1, MONDAY, "checkins")
    await desk.flush()
    async with sessionmaker() as session:
        row = await session.get(MemberDay, (group.id, MONDAY, 1))
        hour = await session.get(HourFact, (group.id, MONDAY, 20))
    assert row is not None and (row.text, row.sticker, row.replies, row.checkins, row.language) == (1, 1, 1, 1, "en")
    assert hour is not None and (hour.messages, hour.speakers) == (3, 2)
    kpis = await group_kpis(sessionmaker, [group.id], Period.custom(MONDAY, MONDAY, group.timezone), now=LATER)
    assert kpis.engagement.checkins.value == 1 and kpis.engagement.checkin_rate.value == 0.5  # 1 of 2 active
    assert [p.user_id for p in kpis.activity.top_posters] == [1, 2]
    assert kpis.members.languages["en"].value == 1


async def test_the_previous_period_is_beside_each_figure(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker)
    assert group.id is not None
    desk = ActivityDesk(sessionmaker)
    for user in (1, 2, 3):  # three speak in September
        desk.note_message(group.id, group.timezone, user, at(date(2026, 9, 10)), "text")
    desk.note_message(group.id, group.timezone, 1, at(date(2026, 10, 10)), "text")  # one in October
    await desk.flush()
    kpis = await group_kpis(sessionmaker, [group.id], Period.of_month(2026, 10, group.timezone), now=LATER)
    assert kpis.previous == Period.of_month(2026, 9, group.timezone)
    assert (kpis.activity.speakers.value, kpis.activity.speakers.previous) == (1, 3)
    assert kpis.activity.speakers.change == -2


async def test_an_owners_groups_count_a_person_once(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    one, two = await make_group(sessionmaker), await make_group(sessionmaker)
    assert one.id is not None and two.id is not None
    desk = ActivityDesk(sessionmaker)
    desk.note_message(one.id, one.timezone, 5, at(MONDAY), "text")
    desk.note_message(two.id, two.timezone, 5, at(MONDAY), "text")
    desk.note_message(two.id, two.timezone, 6, at(MONDAY), "text")
    await desk.flush()
    kpis = await group_kpis(sessionmaker, [one.id, two.id], Period.custom(MONDAY, MONDAY, one.timezone), now=LATER)
    assert kpis.activity.actives.value == 2  # person 5 is in both groups: counted once
    assert kpis.activity.messages.value == 3  # messages add up


async def test_forgetme_leaves_the_kpi_totals_unchanged_and_the_id_nowhere(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker)
    assert group.id is not None
    person = 123_456_789
    desk = ActivityDesk(sessionmaker)
    async with sessionmaker() as session:
        await upsert_member(session, group, UserSeen(person, "Zoe", "zoe", "en"))
        await record_membership(session, group, person, "join", source="member_link", actor_id=77, at=at(MONDAY))
        item = await shop.add_item(session, group.id, "Mug", 10, 5)
        await points.award(session, group.id, person, 50, "admin_give", "give:p", now=at(MONDAY, 9))
        coupon = await shop.redeem(session, group.id, person, item.id, key="buy:p", now=at(MONDAY, 10))
        await shop.verify(session, group.id, coupon.code, 1, now=at(MONDAY, 11))
        await session.commit()
    for offset in (0, 1, 7):
        desk.note_message(group.id, group.timezone, person, at(MONDAY + timedelta(days=offset)), "text", language="en")
    desk.note_message(group.id, group.timezone, 99, at(MONDAY), "photo")
    await desk.flush()
    period = Period.custom(MONDAY, MONDAY + timedelta(days=13), group.timezone)
    before = await group_kpis(sessionmaker, [group.id], period, now=LATER)

    async with sessionmaker() as session:
        await privacy.erase_everything(session, person)
        await session.commit()
    after = await group_kpis(sessionmaker, [group.id], period, now=LATER)

    # every total stays; only the "now" snapshots of members' states (tiers, streaks) lose the erased balance
    def totals(rows: list[tuple[str, str, object, object]]) -> list[tuple[str, str, object, object]]:
        return [row for row in rows if not row[1].startswith(("tiers[", "streaks["))]

    assert totals(after.rows()) == totals(before.rows())
    assert before.economy.tiers and not after.economy.tiers
    assert before.activity.actives.value == 2 and before.retention.day7.value == 1.0
    assert sorted(p.messages for p in after.activity.top_posters) == [1, 3]
    assert person not in {p.user_id for p in after.activity.top_posters}
    async with sessionmaker() as session:
        for table in metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, BigInteger) or column.name.endswith("user_id"):
                    found = await session.scalar(select(func.count()).select_from(table).where(column == person))
                    assert not found, f"{table.name}.{column.name} still holds the person's id"


async def test_mydata_includes_the_persons_own_facts(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker)
    assert group.id is not None
    desk = ActivityDesk(sessionmaker)
    desk.note_message(group.id, group.timezone, 31, at(MONDAY), "voice")
    desk.note_message(group.id, group.timezone, 32, at(MONDAY), "text")
    await desk.flush()
    async with sessionmaker() as session:
        data = await privacy.export_everything(session, 31)
    [day] = data["analytics"]["activity_days"]
    assert (day["user_id"], day["voice"], day["day"]) == (31, 1, MONDAY.isoformat())


async def test_facts_older_than_the_retention_are_pruned(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker)
    assert group.id is not None
    desk = ActivityDesk(sessionmaker, retention_days=30)
    desk.note_message(group.id, group.timezone, 1, at(MONDAY), "text")
    await desk.flush()
    desk.note_message(group.id, group.timezone, 1, at(MONDAY + timedelta(days=31)), "text")
    await desk.flush()
    async with sessionmaker() as session:
        days = (await session.scalars(select(MemberDay.day))).all()  # type: ignore[call-overload]
    assert days == [MONDAY + timedelta(days=31)]


async def test_generated_history_gives_every_section_figures(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(sessionmaker)
    assert group.id is not None
    end = date(2026, 11, 29)
    await generate_history(sessionmaker, group.id, days=30, members=60, seed=3, end=end)
    kpis = await group_kpis(sessionmaker, [group.id], Period.custom(end - timedelta(days=6), end, group.timezone),
                            now=LATER)
    assert kpis.members.total.value and kpis.activity.messages.value and kpis.activity.dau.value
    assert sum(map(sum, kpis.activity.heatmap)) == kpis.activity.messages.value
    assert kpis.members.joined.value == sum(f.value or 0 for f in kpis.members.joined_by_source.values())
    assert kpis.retention.cohorts and kpis.moderation.deleted.value is not None


def test_periods_and_their_previous_periods() -> None:
    zone = "Asia/Shanghai"
    now = datetime(2026, 12, 4, 17, tzinfo=UTC)  # Saturday 01:00 in Shanghai
    assert Period.today(zone, now).start == date(2026, 12, 5)
    week = Period.week(zone, now)
    assert (week.start, week.end) == (date(2026, 11, 30), date(2026, 12, 5))
    assert (week.previous().start, week.previous().end) == (date(2026, 11, 23), date(2026, 11, 28))
    month = Period.month(zone, now)
    assert (month.previous().start, month.previous().end) == (date(2026, 11, 1), date(2026, 11, 5))
    march = Period.parse("2026-03", zone)
    assert (march.previous().start, march.previous().end) == (date(2026, 2, 1), date(2026, 2, 28))
    assert march.label() == "2026-03"
    custom = Period.parse("2026-01-10..2026-01-19", zone)
    assert (custom.previous().start, custom.previous().end) == (date(2025, 12, 31), date(2026, 1, 9))
    last = Period.last_week(zone, now)
    assert (last.start, last.end) == (date(2026, 11, 23), date(2026, 11, 29))
    for bad in ("yesterday", "2026-13", "2026-01-10..2026-01-01"):
        try:
            Period.parse(bad, zone)
        except ValueError:
            continue
        raise AssertionError(bad)
