"""Points: the ledger primitive, rules and caps, tiers, badges, leaderboards, privacy, and a stateful property test
over earn / spend / redeem / cancel / reverse / redelivery on both engines."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import points, roles, shop
from models.checkin import check_in
from models.db import metadata
from models.groups import ChatSeen, UserSeen, set_member_role, upsert_group, upsert_member, upsert_user
from models.points import InsufficientPoints, InvalidRule, PointsBalance, PointsEntry
from models.privacy import erase_everything, export_everything

CHAT_IDS = itertools.count(-1001000000000, -1)
NOON = datetime(2026, 3, 4, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, a Wednesday


async def make_group(session: AsyncSession) -> int:
    chat = ChatSeen(next(CHAT_IDS), "Fans", "supergroup")
    group = await upsert_group(session, chat, default_timezone="Asia/Shanghai")
    assert group.id is not None
    return group.id


async def assert_invariants(session: AsyncSession, group_id: int) -> None:
    """For every member: balance == sum(ledger) >= 0 and lifetime_earned == sum(positive deltas)."""
    sums = dict(
        (
            await session.execute(
                select(PointsEntry.user_id, func.sum(PointsEntry.delta))  # type: ignore[call-overload]
                .where(PointsEntry.group_id == group_id)
                .group_by(PointsEntry.user_id)
            )
        ).all()
    )
    gains = dict(
        (
            await session.execute(
                select(PointsEntry.user_id, func.sum(PointsEntry.delta))  # type: ignore[call-overload]
                .where(PointsEntry.group_id == group_id, PointsEntry.delta > 0)
                .group_by(PointsEntry.user_id)
            )
        ).all()
    )
    balances = (await session.scalars(select(PointsBalance).where(PointsBalance.group_id == group_id))).all()
    seen = set()
    for row in balances:
        seen.add(row.user_id)
        assert row.balance >= 0
        assert row.balance == (sums.get(row.user_id) or 0), row.user_id
        assert row.lifetime_earned == (gains.get(row.user_id) or 0), row.user_id
    assert {user for user in sums if user > 0} <= seen


async def test_award_spend_reverse_and_duplicates(session: AsyncSession) -> None:
    group_id = await make_group(session)
    first = await points.award(session, group_id, 7, 100, "admin_give", "k1", actor_id=1)
    assert (first.applied, first.balance, first.lifetime_earned) == (True, 100, 100)
    again = await points.award(session, group_id, 7, 100, "admin_give", "k1")
    assert (again.applied, again.balance, again.entry_id) == (False, 100, first.entry_id)
    assert not again.tier_up
    with pytest.raises(ValueError):  # keys are global: another member's key is a caller bug, not a duplicate
        await points.award(session, group_id, 8, 100, "admin_give", "k1")

    spent = await points.spend(session, group_id, 7, 30, "redeem", "s1")
    assert (spent.applied, spent.balance, spent.lifetime_earned) == (True, 70, 100)
    with pytest.raises(InsufficientPoints) as error:
        await points.spend(session, group_id, 7, 71, "redeem", "s2")
    assert error.value.balance == 70
    assert await session.scalar(select(PointsEntry).where(PointsEntry.key == "s2")) is None

    reversal = await points.reverse(session, "s1", actor_id=1)
    assert reversal is not None and reversal.applied and reversal.balance == 100 and reversal.delta == 30
    twice = await points.reverse(session, "s1")
    assert twice is not None and not twice.applied and twice.balance == 100
    assert await points.reverse(session, "nope") is None

    await points.spend(session, group_id, 7, 100, "redeem", "s3")
    with pytest.raises(InsufficientPoints):  # the original award is already spent
        await points.reverse(session, "k1")
    view = await points.get_balance(session, group_id, 7)
    assert (view.balance, view.lifetime_earned, view.tier) == (0, 130, "normal")
    entries = await points.history(session, group_id, 7, limit=2)
    assert [entry.key for entry in entries] == ["s3", "reverse:s1"]
    await assert_invariants(session, group_id)


async def test_spend_failure_inside_an_outer_transaction_leaves_nothing(session: AsyncSession) -> None:
    group_id = await make_group(session)
    async with session.begin():
        await points.award(session, group_id, 8, 10, "chat", "a")
        with pytest.raises(InsufficientPoints):
            await points.spend(session, group_id, 8, 11, "redeem", "b")
        await points.spend(session, group_id, 8, 10, "redeem", "c")
    await assert_invariants(session, group_id)
    keys = (await session.scalars(select(PointsEntry.key).where(PointsEntry.group_id == group_id))).all()
    assert sorted(keys) == ["a", "c"]


async def test_admin_give_take_record_actor_and_tier_up_once(session: AsyncSession) -> None:
    group_id = await make_group(session)
    result = await points.give(session, group_id, 9, 499, "welcome", 1, "g1")
    assert not result.tier_up and result.tier_after == "normal"
    result = await points.give(session, group_id, 9, 1, "nice", 1, "g2")
    assert result.tier_up and (result.tier_before, result.tier_after) == ("normal", "silver")
    assert not (await points.give(session, group_id, 9, 1, "nice", 1, "g2")).tier_up
    taken = await points.take(session, group_id, 9, 200, "spam", 2, "t1")
    assert taken.balance == 300 and taken.tier_after == "silver"  # tiers follow lifetime earnings
    with pytest.raises(InsufficientPoints):
        await points.take(session, group_id, 9, 301, "spam", 2, "t2")
    entry = await session.scalar(select(PointsEntry).where(PointsEntry.key == "t1"))
    assert entry is not None and entry.actor_id == 2 and entry.reference == "spam" and entry.kind == "admin_take"


async def test_rules_defaults_and_set_rule(session: AsyncSession) -> None:
    group_id = await make_group(session)
    rules = await points.get_rules(session, group_id)
    assert rules.checkin_base == 10 and rules.checkin_streak_bonus == {3: 5, 7: 20, 30: 100}
    assert [t.threshold for t in rules.tiers] == [0, 500, 2000, 10000] and rules.tier_name("gold") == "金卡"
    rules = await points.set_rule(session, group_id, "checkin_base", "15")
    rules = await points.set_rule(session, group_id, "checkin_streak_bonus", "2:1, 5：10")
    rules = await points.set_rule(session, group_id, "makeup_enabled", "on")
    rules = await points.set_rule(session, group_id, "tiers", "normal:0,vip:100:贵宾")
    again = await points.get_rules(session, group_id)
    assert again == rules
    assert (again.checkin_base, again.checkin_streak_bonus, again.makeup_enabled) == (15, {2: 1, 5: 10}, True)
    assert again.tier_for(150) == "vip" and again.tier_name("vip") == "贵宾"
    for name, raw in [
        ("nope", "1"),
        ("checkin_base", "-1"),
        ("checkin_base", "1.5"),
        ("chat_points", "abc"),
        ("makeup_enabled", "maybe"),
        ("checkin_streak_bonus", "3-5"),
        ("checkin_streak_bonus", "0:5"),
        ("tiers", "normal:10,gold:20"),
        ("tiers", "normal:0,gold:20,silver:10"),
        ("tiers", "normal:0,normal:5"),
    ]:
        with pytest.raises(InvalidRule) as error:
            await points.set_rule(session, group_id, name, raw)
        assert error.value.name == name and error.value.reason
    assert await points.get_rules(session, group_id) == again


async def test_chat_points_for_many_messages_in_one_batch(session: AsyncSession) -> None:
    group_id = await make_group(session)
    await points.set_rule(session, group_id, "chat_daily_cap", "2")
    Msg = points.ChatMessage
    first = await points.award_chat_many(session, group_id, [
        Msg(1, 10, "a", "k1"), Msg(2, 10, "a", "k2"), Msg(1, 10, "b", "k3"), Msg(3, 2, "a", "k4"),
    ], now=NOON)
    assert [r.status for r in first] == ["awarded", "awarded", "cooldown", "too_short"]
    later = NOON + timedelta(seconds=61)
    second = await points.award_chat_many(session, group_id, [
        Msg(1, 10, "b", "k5"), Msg(2, 10, "a", "k6"), Msg(1, 10, "c", "k1"), Msg(4, 10, "x", "k7"),
    ], now=later)
    # member 1 earns again; member 2 repeats their rewarded text; "k1" was paid already; member 4 is new
    assert [r.status for r in second] == ["awarded", "same_text", "duplicate", "awarded"]
    third = await points.award_chat_many(session, group_id, [Msg(1, 10, "d", "k8"), Msg(4, 10, "y", "k9")],
                                         now=later + timedelta(seconds=61))
    assert [r.status for r in third] == ["capped", "awarded"]  # member 1 reached the daily cap of 2
    balances = {u: (await points.get_balance(session, group_id, u)).balance for u in (1, 2, 3, 4)}
    assert balances == {1: 2, 2: 1, 3: 0, 4: 2}
    await assert_invariants(session, group_id)


async def test_the_chat_desk_pays_concurrent_messages_once_per_member(sessionmaker, session: AsyncSession) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session)
    await session.commit()
    desk = points.ChatDesk(sessionmaker)
    many = [desk.award(group_id, points.ChatMessage(u, 10, f"t{u}", f"m{u}"), now=NOON) for u in range(100, 140)]
    same = [desk.award(group_id, points.ChatMessage(7, 10, f"t{i}", f"s{i}"), now=NOON) for i in range(10)]
    results = await asyncio.gather(*many, *same)
    assert all(r.awarded for r in results[:40])
    assert [r.status for r in results[40:]].count("awarded") == 1
    async with sessionmaker() as check:
        entries = await check.scalar(
            select(func.count()).select_from(PointsEntry).where(PointsEntry.group_id == group_id)
        )
        assert entries == 41
        await assert_invariants(check, group_id)


async def test_chat_cooldown_length_fingerprint_and_daily_cap(session: AsyncSession) -> None:
    group_id = await make_group(session)
    await points.set_rule(session, group_id, "chat_daily_cap", "3")
    t = NOON
    assert (await points.award_chat(session, group_id, 5, 4, "a", now=t)).status == "too_short"
    assert (await points.award_chat(session, group_id, 5, 10, "a", now=t)).status == "awarded"
    assert (await points.award_chat(session, group_id, 5, 10, "b", now=t + timedelta(seconds=59))).status == "cooldown"
    assert (await points.award_chat(session, group_id, 5, 10, "a", now=t + timedelta(seconds=61))).status == "same_text"
    assert (await points.award_chat(session, group_id, 5, 10, "b", now=t + timedelta(seconds=62))).status == "awarded"
    redelivered = await points.award_chat(session, group_id, 5, 10, "c", now=t + timedelta(seconds=200), key="m1")
    assert redelivered.awarded
    assert (await points.award_chat(session, group_id, 5, 10, "c", now=t, key="m1")).status == "duplicate"
    assert (await points.award_chat(session, group_id, 5, 10, "d", now=t + timedelta(seconds=300))).status == "capped"
    # 16:00 UTC is 00:00 the next day in Shanghai: a fresh cap.
    tomorrow = datetime(2026, 3, 4, 16, 0, tzinfo=UTC)
    assert (await points.award_chat(session, group_id, 5, 10, "e", now=tomorrow)).awarded
    assert (await points.get_balance(session, group_id, 5)).balance == 4
    await points.set_rule(session, group_id, "chat_points", "0")
    assert (await points.award_chat(session, group_id, 5, 10, "f", now=tomorrow + timedelta(hours=1))).status == (
        "disabled"
    )
    await assert_invariants(session, group_id)


async def test_showcase_and_topic_caps(session: AsyncSession) -> None:
    group_id = await make_group(session)
    statuses = [(await points.award_showcase(session, group_id, 6, key=f"s{i}", now=NOON)).status for i in range(3)]
    assert statuses == ["awarded", "awarded", "capped"]  # 20 + 20 = the cap of 40
    assert (await points.award_showcase(session, group_id, 6, key="s0", now=NOON)).status == "duplicate"
    topics = [(await points.award_topic(session, group_id, 6, key=f"t{i}", now=NOON)).points for i in range(3)]
    assert topics == [5, 5, 0]
    assert (await points.get_balance(session, group_id, 6)).balance == 50
    await assert_invariants(session, group_id)


async def test_badges(session: AsyncSession) -> None:
    group_id = await make_group(session)
    assert await points.grant_badge(session, group_id, 3, "kol")
    assert not await points.grant_badge(session, group_id, 3, "kol")
    assert [b.badge for b in await points.list_badges(session, group_id, 3)] == ["kol"]


async def test_leaderboards_by_local_week_month_and_all(session: AsyncSession) -> None:
    group_id = await make_group(session)
    monday = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # Mon 2026-03-02 00:00 in Shanghai
    await points.award(session, group_id, 1, 50, "chat", "old", now=monday - timedelta(seconds=1))  # last week
    await points.award(session, group_id, 1, 10, "chat", "a", now=monday)
    await points.award(session, group_id, 2, 30, "chat", "b", now=monday + timedelta(days=1))
    await points.award(session, group_id, 3, 30, "chat", "c", now=monday + timedelta(days=2))
    await points.spend(session, group_id, 3, 20, "redeem", "c-spend", now=monday + timedelta(days=2))
    week = await points.leaderboard(session, group_id, "week", now=NOON)
    assert [(r.user_id, r.points, r.place) for r in week] == [(2, 30, 1), (3, 30, 1), (1, 10, 3)]
    month = await points.leaderboard(session, group_id, "month", now=NOON, limit=1)
    assert [(r.user_id, r.points) for r in month] == [(1, 60)]  # Mar 1 in Shanghai is in March
    everything = await points.leaderboard(session, group_id, "all", now=NOON)
    assert [(r.user_id, r.points) for r in everything] == [(1, 60), (2, 30), (3, 30)]
    mine = await points.place_of(session, group_id, 1, "week", now=NOON)
    assert mine is not None and (mine.points, mine.place) == (10, 3)
    assert await points.place_of(session, group_id, 99, "week", now=NOON) is None
    other = await points.place_of(session, group_id, 3, "all", now=NOON)
    assert other is not None and other.place == 2


# -- privacy ---------------------------------------------------------------------------------------------------


async def test_erase_leaves_no_trace_and_sums_add_up(session: AsyncSession) -> None:
    group_id = await make_group(session)
    person, other, admin = 777000111, 777000222, 777000333
    group = await upsert_group(session, ChatSeen(-1009999, "x", "supergroup"), default_timezone="Asia/Shanghai")
    await upsert_user(session, UserSeen(person, "P"))
    await upsert_member(session, group, UserSeen(person, "P"))
    await points.set_rule(session, group_id, "makeup_enabled", "on")
    await check_in(session, group_id, person, now=NOON)
    await check_in(session, group_id, other, now=NOON)
    await points.give(session, group_id, person, 100, "gift", admin, f"give:{person}")
    await points.give(session, group_id, other, 5, "gift", person, "from-person")  # person acted as an admin
    await points.award_chat(session, group_id, person, 10, "f", now=NOON)
    item = await shop.add_item(session, group_id, "Cup", 20, 5)
    assert item.id is not None
    coupon = await shop.redeem(session, group_id, person, item.id, key=f"cb:{person}", now=NOON)
    await shop.redeem(session, group_id, other, item.id, key="cb-other", now=NOON)
    await shop.verify(session, group_id, coupon.code, person, now=NOON)  # person verified their own as staff
    await points.grant_badge(session, group_id, person, "kol")
    exported = await export_everything(session, person)
    assert exported["points"]["ledger"] and exported["checkin"]["checkins"] and exported["shop"]["coupons"]
    assert exported["points"]["badges"] and exported["points"]["balances"]

    async with session.begin():
        totals_before = await session.scalar(
            select(func.sum(PointsEntry.delta)).where(PointsEntry.group_id == group_id)
        )
    await erase_everything(session, person)
    async with session.begin():
        for table in metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, BigInteger | Integer) or column.type.__class__.__name__ == "BigIntKey":
                    hits = await session.scalar(select(func.count()).select_from(table).where(column == person))
                    assert not hits, f"{table.name}.{column.name}"
                elif isinstance(column.type, String):
                    hits = await session.scalar(
                        select(func.count()).select_from(table).where(column.contains(str(person)))
                    )
                    assert not hits, f"{table.name}.{column.name}"
        totals_after = await session.scalar(select(func.sum(PointsEntry.delta)).where(PointsEntry.group_id == group_id))
        assert totals_after == totals_before
    await assert_invariants(session, group_id)
    assert (await points.get_balance(session, group_id, other)).lifetime_earned == 20
    assert [r.user_id for r in await points.leaderboard(session, group_id, "all")] == [other]


# -- the stateful property -------------------------------------------------------------------------------------

MEMBERS = (101, 102, 103)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), st.sampled_from(MEMBERS), st.integers(1, 60)),
        st.tuples(st.just("spend"), st.sampled_from(MEMBERS), st.integers(1, 60)),
        st.tuples(st.just("redeem"), st.sampled_from(MEMBERS), st.integers(0, 1)),
        st.tuples(st.just("cancel"), st.integers(0, 20), st.just(0)),
        st.tuples(st.just("reverse"), st.integers(0, 40), st.just(0)),
        st.tuples(st.just("redeliver"), st.integers(0, 40), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)
INITIAL_STOCK = (3, 100)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
async def test_ledger_invariants_hold_under_any_sequence(session: AsyncSession, operations: list) -> None:
    group_id = await make_group(session)
    items = []
    for cost, stock in zip((40, 15), INITIAL_STOCK, strict=True):
        item = await shop.add_item(session, group_id, f"item {cost}", cost, stock)
        items.append(item.id)
    calls: list[tuple] = []  # (fn, args) of applied ledger operations, for redelivery
    keys: list[str] = []
    codes: list[str] = []
    counter = itertools.count()
    for op, a, b in operations:
        step = f"{group_id}:{next(counter)}"  # keys are global: examples share the database
        try:
            if op == "earn":
                key = f"earn:{step}"
                await points.award(session, group_id, a, b, "chat", key)
                calls.append(("award", (group_id, a, b, "chat", key)))
                keys.append(key)
            elif op == "spend":
                key = f"spend:{step}"
                await points.spend(session, group_id, a, b, "admin_take", key)
                calls.append(("spend", (group_id, a, b, "admin_take", key)))
                keys.append(key)
            elif op == "redeem":
                coupon = await shop.redeem(session, group_id, a, items[b], key=f"r{step}")
                calls.append(("redeem", (group_id, a, items[b], f"r{step}")))
                codes.append(coupon.code)
                keys.append(coupon.ledger_key)
            elif op == "cancel" and codes:
                await shop.cancel_coupon(session, group_id, codes[a % len(codes)], actor_id=1)
            elif op == "reverse" and keys:
                await points.reverse(session, keys[a % len(keys)])
            elif op == "redeliver" and calls:
                name, args = calls[a % len(calls)]
                if name == "award":
                    assert not (await points.award(session, *args)).applied
                elif name == "spend":
                    assert not (await points.spend(session, *args)).applied
                else:
                    before = len(await shop.my_coupons(session, group_id, args[1]))
                    await shop.redeem(session, *args[:3], key=args[3])
                    assert len(await shop.my_coupons(session, group_id, args[1])) == before
        except (InsufficientPoints, shop.OutOfStock, shop.CouponNotCancellable):
            pass
        async with session.begin():
            await assert_invariants(session, group_id)
            for item_id, initial in zip(items, INITIAL_STOCK, strict=True):
                stock = (await shop.get_item(session, group_id, item_id)).stock
                live = await session.scalar(
                    select(func.count())
                    .select_from(shop.Coupon)
                    .where(shop.Coupon.item_id == item_id, shop.Coupon.status != "cancelled")  # type: ignore[arg-type]
                )
                assert stock >= 0 and stock + live == initial


# -- reads the points commands use -----------------------------------------------------------------------------


async def test_balances_in_groups_lists_the_groups_a_person_is_still_in(session: AsyncSession) -> None:
    person = 555000111
    rich = await upsert_group(session, ChatSeen(next(CHAT_IDS), "Rich", "supergroup"), default_timezone="UTC")
    quiet = await upsert_group(session, ChatSeen(next(CHAT_IDS), "Quiet", "supergroup"), default_timezone="UTC")
    left = await upsert_group(session, ChatSeen(next(CHAT_IDS), "Left", "supergroup"), default_timezone="UTC")
    await upsert_user(session, UserSeen(person, "P"))
    for group in (rich, quiet, left):
        await upsert_member(session, group, UserSeen(person, "P"))
        assert group.id is not None
    await points.award(session, rich.id, person, 50, "chat", "b:rich")  # type: ignore[arg-type]
    await points.award(session, left.id, person, 90, "chat", "b:left")  # type: ignore[arg-type]
    await set_member_role(session, left, UserSeen(person, "P"), "left")

    rows = await points.balances_in_groups(session, person)

    assert [(group.title, balance, lifetime) for group, balance, lifetime in rows] == [
        ("Rich", 50, 50), ("Quiet", 0, 0)
    ]


async def test_member_by_username_present_only_leaves_out_who_left(session: AsyncSession) -> None:
    group = await upsert_group(session, ChatSeen(next(CHAT_IDS), "Fans", "supergroup"), default_timezone="UTC")
    assert group.id is not None
    await upsert_user(session, UserSeen(555000222, "Bob", "bob_b"))
    await set_member_role(session, group, UserSeen(555000222, "Bob", "bob_b"), "left")

    assert await roles.member_by_username(session, group.id, "BOB_B") == (555000222, "Bob")
    assert await roles.member_by_username(session, group.id, "bob_b", present_only=True) is None
    assert await roles.member_names(session, iter([555000222, 555000222])) == {555000222: "Bob"}
