"""Group buys (models): one entry per member, quantity changes, leaving, success claimed once, closing at the
deadline or when sold out, never more sold than the total under concurrency, prices, privacy.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.kit import parse_money
from models import groupbuy
from models.groupbuy import MAX_PRICE_CENTS, GroupBuyEntry, format_cents
from models.groups import ChatSeen, UserSeen, upsert_group, upsert_user

CHAT_IDS = itertools.count(-1005000000000, -1)
NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


async def make_group(session: AsyncSession) -> int:
    group = await upsert_group(session, ChatSeen(next(CHAT_IDS), "Fans", "supergroup"), default_timezone="UTC")
    assert group.id is not None
    return group.id


async def make_groupbuy(session: AsyncSession, gid: int, *, minimum: int = 2, total: int = 10, limit: int = 3,
                        vote_id: int | None = None) -> int:
    row, created = await groupbuy.create_groupbuy(
        session, gid, "补水面膜", price_cents=5900, group_price_cents=3990, min_participants=minimum,
        total_quantity=total, per_member_limit=limit, deadline=NOW + timedelta(days=1), created_by=7,
        vote_id=vote_id, now=NOW,
    )  # fmt: skip
    assert created and row.id is not None
    return row.id


async def entries(session: AsyncSession, groupbuy_id: int) -> int:
    return int(await session.scalar(
        select(func.count()).select_from(GroupBuyEntry).where(GroupBuyEntry.groupbuy_id == groupbuy_id)) or 0)


def test_prices_are_decimal_strings_stored_as_cents() -> None:
    assert [parse_money(text) for text in ("39.9", "¥39.90", "129元", "0.05", "1,299", "12")] == [
        3990, 3990, 12900, 5, 129900, 1200]
    assert [parse_money(text) for text in ("39.999", "abc", "-3", "", "1e5")] == [None] * 5
    assert parse_money("10000000", max_cents=MAX_PRICE_CENTS) == MAX_PRICE_CENTS
    assert parse_money("10000000.01", max_cents=MAX_PRICE_CENTS) is None
    assert (format_cents(3990), format_cents(5), format_cents(129900)) == ("39.90", "0.05", "1299.00")


async def test_join_change_leave_and_success_announced_once(session: AsyncSession) -> None:
    gid = await make_group(session)
    gb = await make_groupbuy(session, gid, minimum=2)
    first = await groupbuy.join(session, gid, gb, 1, 2, now=NOW)
    assert first.status == "joined" and not first.reached and first.closing is None
    assert re.fullmatch(r"GB-[A-Z2-9]{4}-[A-Z2-9]{4}", first.entry.order_code)
    again = await groupbuy.join(session, gid, gb, 1, 2, now=NOW)
    assert again.status == "same" and again.entry.order_code == first.entry.order_code
    changed = await groupbuy.join(session, gid, gb, 1, 3, now=NOW)
    assert changed.status == "changed" and changed.groupbuy.sold == 3 and changed.groupbuy.participants == 1
    second = await groupbuy.join(session, gid, gb, 2, 1, now=NOW)
    assert second.reached and second.groupbuy.participants == 2 and second.groupbuy.succeeded_at == NOW
    assert second.entry.order_code != first.entry.order_code

    row = await groupbuy.leave(session, gid, gb, 2, now=NOW)
    assert (row.sold, row.participants) == (3, 1)
    with pytest.raises(groupbuy.NotJoined):
        await groupbuy.leave(session, gid, gb, 2, now=NOW)
    back = await groupbuy.join(session, gid, gb, 2, 1, now=NOW)
    assert back.status == "joined" and not back.reached  # success is announced once only
    assert await entries(session, gb) == 2

    with pytest.raises(groupbuy.OverLimit):
        await groupbuy.join(session, gid, gb, 3, 4, now=NOW)
    with pytest.raises(groupbuy.GroupBuyNotFound):
        await groupbuy.join(session, await make_group(session), gb, 3, 1, now=NOW)


async def test_sold_out_closes_once_and_refuses_more(session: AsyncSession) -> None:
    gid = await make_group(session)
    gb = await make_groupbuy(session, gid, minimum=2, total=4)
    await groupbuy.join(session, gid, gb, 1, 3, now=NOW)
    with pytest.raises(groupbuy.NotEnoughLeft) as refused:
        await groupbuy.join(session, gid, gb, 2, 2, now=NOW)
    assert refused.value.left == 1
    last = await groupbuy.join(session, gid, gb, 2, 1, now=NOW)
    assert last.reached and last.closing is not None and last.closing.status == "succeeded"
    assert last.closing.groupbuy.sold == 4 and last.closing.groupbuy.closed_at == NOW
    with pytest.raises(groupbuy.GroupBuyClosed):
        await groupbuy.join(session, gid, gb, 3, 1, now=NOW)
    with pytest.raises(groupbuy.GroupBuyClosed):
        await groupbuy.leave(session, gid, gb, 1, now=NOW)
    assert await groupbuy.close_groupbuy(session, gb, now=NOW) is None


async def test_deadline_closes_and_fails_without_the_minimum(session: AsyncSession) -> None:
    gid = await make_group(session)
    gb = await make_groupbuy(session, gid, minimum=3)
    await groupbuy.join(session, gid, gb, 1, 1, now=NOW)
    late = NOW + timedelta(days=1)
    with pytest.raises(groupbuy.GroupBuyClosed):
        await groupbuy.join(session, gid, gb, 2, 1, now=late)
    assert await groupbuy.due_groupbuys(session, late) == [gb]
    assert await groupbuy.due_groupbuys(session, NOW) == []
    closing = await groupbuy.close_groupbuy(session, gb, now=late)
    assert closing is not None and closing.status == "failed" and closing.groupbuy.participants == 1
    assert await groupbuy.close_groupbuy(session, gb, now=late) is None
    assert await groupbuy.due_groupbuys(session, late) == []


async def test_one_groupbuy_per_vote_and_invalid_input(session: AsyncSession) -> None:
    gid = await make_group(session)
    first = await make_groupbuy(session, gid, vote_id=99)
    row, created = await groupbuy.create_groupbuy(
        session, gid, "other", price_cents=1, group_price_cents=1, min_participants=1, total_quantity=1,
        per_member_limit=1, deadline=NOW + timedelta(hours=1), vote_id=99, now=NOW,
    )  # fmt: skip
    assert (row.id, created) == (first, False)
    for bad in (dict(min_participants=0), dict(total_quantity=0), dict(per_member_limit=11),
                dict(min_participants=11), dict(deadline=NOW)):
        arguments = dict(price_cents=100, group_price_cents=90, min_participants=2, total_quantity=10,
                         per_member_limit=2, deadline=NOW + timedelta(hours=1))
        arguments.update(bad)  # type: ignore[arg-type]
        with pytest.raises(groupbuy.InvalidGroupBuy):
            await groupbuy.create_groupbuy(session, gid, "x", now=NOW, **arguments)  # type: ignore[arg-type]


async def test_concurrent_joins_never_exceed_the_total(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        gid = await make_group(session)
        gb = await make_groupbuy(session, gid, minimum=3, total=10, limit=3)

    async def tap(user_id: int, quantity: int) -> str:
        async with sessionmaker() as session:
            try:
                result = await groupbuy.join(session, gid, gb, user_id, quantity, now=NOW)
            except groupbuy.GroupBuyError as error:
                return type(error).__name__
            return result.status + ("+reached" if result.reached else "") + ("+closed" if result.closing else "")

    # Twelve members ask for 2 each (24 units of 10), each pressing twice.
    outcomes = await asyncio.gather(*(tap(user_id, 2) for user_id in range(1, 13) for _ in range(2)))
    async with sessionmaker() as session:
        row = await groupbuy.get_groupbuy(session, gb)
        people = await groupbuy.participants(session, gb)
    assert row.sold == 10 and row.participants == 5 and row.status == "succeeded"
    assert sum(person.quantity for person in people) == 10 and len(people) == 5
    assert len({person.order_code for person in people}) == 5
    joined = [outcome for outcome in outcomes if outcome.startswith("joined")]
    assert len(joined) == 5
    assert sum("+reached" in outcome for outcome in outcomes) == 1
    assert sum("+closed" in outcome for outcome in outcomes) == 1


async def test_participants_export_and_erase(session: AsyncSession) -> None:
    gid = await make_group(session)
    gb = await make_groupbuy(session, gid)
    await upsert_user(session, UserSeen(5, "美玲", "meiling"))
    await groupbuy.join(session, gid, gb, 5, 2, now=NOW)
    await groupbuy.join(session, gid, gb, 6, 1, now=NOW + timedelta(minutes=1))
    people = await groupbuy.participants(session, gb)
    assert [(p.user_id, p.first_name, p.username, p.quantity) for p in people] == [
        (5, "美玲", "meiling", 2), (6, "", None, 1)]
    exported = await groupbuy.export_user_data(session, 5)
    assert exported["entries"][0]["product"] == "补水面膜" and exported["entries"][0]["quantity"] == 2
    await groupbuy.erase_user_data(session, 5, pseudonym=-(2**62))
    assert (await groupbuy.export_user_data(session, 5))["entries"] == []
    assert (await groupbuy.get_groupbuy(session, gb)).sold == 3  # the order stays, under the pseudonym
