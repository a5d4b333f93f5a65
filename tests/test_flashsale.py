"""Flash sales in the models: catalog, schedules mirrored for the scheduler, rounds with their own stock, grabs
that never oversell and never make two orders for one member, points prices, ending once, export, privacy."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import flashsale, points, schedules
from models.flashsale import FlashOrder, FlashRound
from models.groups import ChatSeen, upsert_group

CHAT_IDS = itertools.count(-1004000000000, -1)
# 2026-06-01 is a Monday; 10:00 in Asia/Shanghai is 02:00 UTC.
DAY = date(2026, 6, 1)
START = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


async def make_group(session: AsyncSession) -> int:
    chat = ChatSeen(next(CHAT_IDS), "Fans", "supergroup")
    group = await upsert_group(session, chat, default_timezone="Asia/Shanghai")
    assert group.id is not None
    return group.id


async def live_round(
    session: AsyncSession, group_id: int, *, stock: int = 3, limit: int | None = None, points_price: int | None = None
) -> FlashRound:
    product = await flashsale.add_product(
        session, group_id, "面膜", 9900, stock, flash_price=3990 if points_price is None else None,
        points_price=points_price, per_member_limit=limit,
    )  # fmt: skip
    assert product.id is not None
    sale = await flashsale.create_sale(session, group_id, product.id, "10:00", 30, now=START - timedelta(days=1))
    assert sale.id is not None
    flash_round = await flashsale.open_round(session, sale.id, DAY, now=START)
    assert flash_round is not None and flash_round.id is not None
    return flash_round


async def orders(session: AsyncSession, round_id: int) -> list[FlashOrder]:
    return list((await session.scalars(select(FlashOrder).where(FlashOrder.round_id == round_id))).all())


async def test_catalog_validates_and_edits_keep_a_flash_price(session: AsyncSession) -> None:
    group_id = await make_group(session)
    product = await flashsale.add_product(session, group_id, " 面膜 ", 9900, 100, flash_price=3990, per_member_limit=1)
    assert (product.name, product.price, product.flash_price, product.stock, product.active) == ("面膜", 9900, 3990,
                                                                                                   100, True)
    assert product.id is not None
    pid = product.id  # a refusal rolls back, which expires loaded rows
    with pytest.raises(flashsale.InvalidProduct):
        await flashsale.add_product(session, group_id, "x", 100, 1)  # neither a flash nor a points price
    with pytest.raises(flashsale.InvalidProduct):
        await flashsale.add_product(session, group_id, "x", -1, 1, flash_price=1)
    with pytest.raises(flashsale.InvalidProduct):
        await flashsale.edit_product(session, group_id, pid, flash_price=None)
    edited = await flashsale.edit_product(session, group_id, pid, points_price=500, flash_price=None, stock=5)
    assert (edited.flash_price, edited.points_price, edited.stock) == (None, 500, 5)
    with pytest.raises(flashsale.InvalidProduct):
        await flashsale.edit_product(session, group_id, pid, colour="red")
    with pytest.raises(flashsale.ProductNotFound):
        await flashsale.get_product(session, group_id + 1, pid)
    assert [p.id for p in await flashsale.list_products(session, group_id)] == [pid]


async def test_sale_writes_schedules_with_a_notice_the_day_before_and_cancel_removes_them(
    session: AsyncSession,
) -> None:
    group_id = await make_group(session)
    product = await flashsale.add_product(session, group_id, "Tea", 1000, 10, flash_price=500)
    assert product.id is not None
    sale = await flashsale.create_sale(session, group_id, product.id, "0:05", 20, weekdays="135", notice_minutes=10,
                                       created_by=7, now=START)
    assert sale.id is not None and sale.at == "00:05"
    rows = {row.kind: row for row in await schedules.list_schedules(session, group_id)}
    assert (rows["flash_sale"].at, rows["flash_sale"].weekdays, rows["flash_sale"].ref_id) == ("00:05", "135", sale.id)
    assert rows["flash_sale"].duration_minutes == 20
    # Ten minutes before 00:05 on Mon/Wed/Fri is 23:55 on Sun/Tue/Thu.
    assert (rows["flash_notice"].at, rows["flash_notice"].weekdays) == ("23:55", "247")
    assert flashsale.sale_day_of_notice(date(2026, 5, 31), "00:05", 10) == date(2026, 6, 1)
    once = await flashsale.create_sale(session, group_id, product.id, "10:00", 30, once_on=date(2026, 6, 3),
                                       notice_minutes=15, now=START)
    notice = await schedules.get_schedule(session, group_id, "flash_notice", once.id or 0)
    assert notice is not None and (notice.at, notice.once_on) == ("09:45", date(2026, 6, 3))
    product_id, sale_id = product.id, sale.id  # refusals below roll back, which expires loaded rows

    for bad in (dict(at="25:00", duration_minutes=30), dict(at="10:00", duration_minutes=0),
                dict(at="10:00", duration_minutes=30, weekdays="8"), dict(at="10:00", duration_minutes=30,
                                                                          once_on=date(2026, 5, 1))):
        with pytest.raises(flashsale.InvalidSchedule):
            await flashsale.create_sale(session, group_id, product_id, now=START, **bad)  # type: ignore[arg-type]

    cancelled, ended = await flashsale.cancel_sale(session, group_id, sale_id)
    assert not cancelled.active and ended == []
    kinds = {(row.kind, row.ref_id) for row in await schedules.list_schedules(session, group_id)}
    assert ("flash_sale", sale_id) not in kinds and ("flash_notice", sale_id) not in kinds
    with pytest.raises(flashsale.SaleNotFound):
        await flashsale.cancel_sale(session, group_id, sale_id)


async def test_round_copies_stock_once_and_the_product_keeps_its_own(session: AsyncSession) -> None:
    group_id = await make_group(session)
    flash_round = await live_round(session, group_id, stock=3)
    assert (flash_round.stock, flash_round.stock_total, flash_round.name, flash_round.flash_price) == (3, 3, "面膜",
                                                                                                       3990)
    assert flash_round.starts_at == START and flash_round.ends_at == START + timedelta(minutes=30)
    await flashsale.set_round_message(session, flash_round.id or 0, 77)
    assert await flashsale.open_round(session, flash_round.sale_id, DAY, now=START) is None  # posted already
    await flashsale.grab(session, group_id, flash_round.id or 0, 1, now=START)
    product = await flashsale.get_product(session, group_id, flash_round.product_id)
    assert product.stock == 3  # each round has its own copy


async def test_grab_gives_one_order_per_member_and_stops_at_zero(session: AsyncSession) -> None:
    group_id = await make_group(session)
    flash_round = await live_round(session, group_id, stock=2)
    round_id = flash_round.id or 0
    first = await flashsale.grab(session, group_id, round_id, 1, now=START + timedelta(seconds=1))
    assert not first.already and first.stock_left == 1
    assert re.fullmatch(r"FS-[A-Z2-9]{4}-[A-Z2-9]{4}", first.order.code)
    assert (first.order.price, first.order.points) == (3990, 0)
    again = await flashsale.grab(session, group_id, round_id, 1, now=START + timedelta(seconds=2))
    assert again.already and again.order.code == first.order.code
    second = await flashsale.grab(session, group_id, round_id, 2, now=START + timedelta(seconds=3))
    assert second.stock_left == 0
    with pytest.raises(flashsale.SoldOut):
        await flashsale.grab(session, group_id, round_id, 3, now=START + timedelta(seconds=4))
    # Someone who has an order still gets it back after the sell-out.
    assert (await flashsale.grab(session, group_id, round_id, 2, now=START + timedelta(seconds=5))).already
    assert len(await orders(session, round_id)) == 2
    assert (await flashsale.get_round(session, round_id)).stock == 0


async def test_grab_refuses_before_start_after_end_and_in_another_group(session: AsyncSession) -> None:
    group_id = await make_group(session)
    flash_round = await live_round(session, group_id)
    round_id = flash_round.id or 0
    with pytest.raises(flashsale.NotStarted):
        await flashsale.grab(session, group_id, round_id, 1, now=START - timedelta(minutes=1))
    with pytest.raises(flashsale.RoundEnded):
        await flashsale.grab(session, group_id, round_id, 1, now=START + timedelta(minutes=30))
    with pytest.raises(flashsale.RoundNotFound):
        await flashsale.grab(session, group_id + 1, round_id, 1, now=START)
    assert await orders(session, round_id) == []
    assert (await flashsale.get_round(session, round_id)).stock == 3


async def test_points_price_is_spent_with_the_order_or_nothing_happens(session: AsyncSession) -> None:
    group_id = await make_group(session)
    flash_round = await live_round(session, group_id, stock=5, points_price=300)
    round_id = flash_round.id or 0
    await points.award(session, group_id, 1, 500, "admin_give", "seed:1")
    await points.award(session, group_id, 2, 100, "admin_give", "seed:2")
    result = await flashsale.grab(session, group_id, round_id, 1, now=START)
    assert (result.order.points, result.order.price, result.order.ledger_key) == (300, None, f"flash:{round_id}:1")
    assert (await points.get_balance(session, group_id, 1)).balance == 200
    assert (await flashsale.grab(session, group_id, round_id, 1, now=START)).already
    assert (await points.get_balance(session, group_id, 1)).balance == 200
    with pytest.raises(flashsale.InsufficientPoints):
        await flashsale.grab(session, group_id, round_id, 2, now=START)
    assert (await points.get_balance(session, group_id, 2)).balance == 100
    assert [o.user_id for o in await orders(session, round_id)] == [1]
    assert (await flashsale.get_round(session, round_id)).stock == 4


async def test_per_member_limit_counts_orders_over_all_rounds_of_the_product(session: AsyncSession) -> None:
    group_id = await make_group(session)
    flash_round = await live_round(session, group_id, stock=5, limit=1)
    await flashsale.grab(session, group_id, flash_round.id or 0, 1, now=START)
    tomorrow = await flashsale.open_round(session, flash_round.sale_id, DAY + timedelta(days=1), now=START)
    assert tomorrow is not None and tomorrow.id is not None
    tomorrow_id, later = tomorrow.id, START + timedelta(days=1)
    with pytest.raises(flashsale.LimitReached):
        await flashsale.grab(session, group_id, tomorrow_id, 1, now=later)
    assert (await flashsale.get_round(session, tomorrow_id)).stock == 5
    assert not (await flashsale.grab(session, group_id, tomorrow_id, 2, now=later)).already


async def test_rounds_end_exactly_once(session: AsyncSession) -> None:
    group_id = await make_group(session)
    flash_round = await live_round(session, group_id)
    assert await flashsale.end_due_rounds(session, now=START + timedelta(minutes=29)) == []
    ended = await flashsale.end_due_rounds(session, now=START + timedelta(minutes=30))
    assert [r.id for r in ended] == [flash_round.id] and ended[0].status == "ended"
    assert await flashsale.end_due_rounds(session, now=START + timedelta(minutes=31)) == []
    with pytest.raises(flashsale.RoundEnded):
        await flashsale.grab(session, group_id, flash_round.id or 0, 1, now=START + timedelta(minutes=1))


async def test_cancel_ends_the_live_round(session: AsyncSession) -> None:
    group_id = await make_group(session)
    flash_round = await live_round(session, group_id)
    _, ended = await flashsale.cancel_sale(session, group_id, flash_round.sale_id, now=START + timedelta(minutes=5))
    assert [r.id for r in ended] == [flash_round.id]
    assert await flashsale.open_round(session, flash_round.sale_id, DAY + timedelta(days=1), now=START) is None


async def test_concurrent_grabs_never_oversell_or_double(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    if engine.dialect.name == "postgresql":
        # conftest sets each new connection's search_path inside its first transaction; a refused grab rolls
        # that back. Commit it at once, so pooled connections reused below keep the test's schema.
        event.listen(engine.sync_engine, "connect", lambda dbapi_connection, _record: dbapi_connection.commit())
    async with sessionmaker() as session:
        group_id = await make_group(session)
        round_id = (await live_round(session, group_id, stock=10)).id or 0

    async def press(user_id: int) -> str:
        async with sessionmaker() as session:
            try:
                result = await flashsale.grab(session, group_id, round_id, user_id, now=START + timedelta(seconds=1))
            except flashsale.SoldOut:
                return "sold out"
            return "already" if result.already else "ordered"

    # 30 members, each pressing twice at once.
    results = await asyncio.gather(*(press(1 + i % 30) for i in range(60)))
    assert results.count("ordered") == 10
    async with sessionmaker() as session:
        rows = await orders(session, round_id)
        assert len(rows) == len({o.user_id for o in rows}) == 10
        assert (await flashsale.get_round(session, round_id)).stock == 0
        count = await session.scalar(select(func.count()).select_from(FlashOrder))
        assert count == 10


async def test_export_orders_and_privacy(session: AsyncSession) -> None:
    group_id = await make_group(session)
    flash_round = await live_round(session, group_id, stock=5, points_price=10)
    round_id = flash_round.id or 0
    await points.award(session, group_id, 5, 50, "admin_give", "seed:5")
    await flashsale.grab(session, group_id, round_id, 5, now=START)
    rows = await flashsale.export_orders(session, group_id, flash_round.sale_id)
    assert [(r.user_id, r.day, r.points) for r in rows] == [(5, DAY, 10)]
    assert await flashsale.export_orders(session, group_id, flash_round.sale_id, date(2026, 1, 1)) == []

    exported = await flashsale.export_user_data(session, 5)
    assert exported["orders"][0]["code"] == rows[0].code
    await flashsale.erase_user_data(session, 5, pseudonym=-99)
    order = (await orders(session, round_id))[0]
    assert order.user_id == -99 and order.ledger_key == f"erased:{order.id}"
    assert (await flashsale.export_user_data(session, 5))["orders"] == []
