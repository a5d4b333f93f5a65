"""The points shop: redeem, verify, expire, cancel, pre-made codes, refusals, and concurrent buyers."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import points, shop
from models.groups import ChatSeen, upsert_group
from models.points import InsufficientPoints, PointsBalance
from models.shop import Coupon, ItemNotFound, LimitReached, OutOfStock, TierTooLow

CHAT_IDS = itertools.count(-1003000000000, -1)
NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


async def make_group(session: AsyncSession) -> int:
    chat = ChatSeen(next(CHAT_IDS), "Fans", "supergroup")
    group = await upsert_group(session, chat, default_timezone="Asia/Shanghai")
    assert group.id is not None
    return group.id


async def test_redeem_verify_twice_and_redelivery(session: AsyncSession) -> None:
    group_id = await make_group(session)
    item = await shop.add_item(session, group_id, "Mug", 50, 2, valid_days=7)
    assert item.id is not None
    await points.award(session, group_id, 1, 120, "admin_give", "seed")
    coupon = await shop.redeem(session, group_id, 1, item.id, key="cb1", now=NOW)
    assert re.fullmatch(r"QB-[A-Z2-9]{4}-[A-Z2-9]{4}", coupon.code)
    assert coupon.status == "issued" and coupon.expires_at == NOW + timedelta(days=7)
    assert (await shop.redeem(session, group_id, 1, item.id, key="cb1", now=NOW)).id == coupon.id
    assert (await points.get_balance(session, group_id, 1)).balance == 70
    assert (await shop.get_item(session, group_id, item.id)).stock == 1

    first = await shop.verify(session, group_id, coupon.code.lower(), 900, now=NOW + timedelta(hours=1))
    assert first.ok and first.coupon is not None and first.coupon.status == "used"
    second = await shop.verify(session, group_id, coupon.code, 901, now=NOW + timedelta(hours=2))
    assert second.status == "already_used" and second.used_by == 900
    assert second.used_at == NOW + timedelta(hours=1)
    assert (await shop.verify(session, group_id, "QB-NOPE-NOPE", 900, now=NOW)).status == "not_found"
    with pytest.raises(shop.CouponNotCancellable):
        await shop.cancel_coupon(session, group_id, coupon.code, 900)
    assert [c.id for c in await shop.my_coupons(session, group_id, 1)] == [coupon.id]
    assert await shop.my_coupons(session, None, 1, statuses=("issued",)) == []


async def test_expired_and_cancel_refunds_points_and_stock(session: AsyncSession) -> None:
    group_id = await make_group(session)
    item = await shop.add_item(session, group_id, "Cap", 30, 5, valid_days=1)
    assert item.id is not None
    await points.award(session, group_id, 1, 100, "admin_give", "seed")
    old = await shop.redeem(session, group_id, 1, item.id, key="a", now=NOW)
    expired = await shop.verify(session, group_id, old.code, 900, now=NOW + timedelta(days=1))
    assert expired.status == "expired" and expired.coupon is not None and expired.coupon.status == "expired"
    assert (await shop.verify(session, group_id, old.code, 900, now=NOW + timedelta(days=1))).status == "expired"

    item_id = item.id
    fresh = await shop.redeem(session, group_id, 1, item_id, key="b", now=NOW)
    fresh_code = fresh.code  # rows returned earlier expire when a later call on the session rolls back
    assert (await points.get_balance(session, group_id, 1)).balance == 40
    cancelled = await shop.cancel_coupon(session, group_id, fresh.code, actor_id=900, now=NOW)
    assert cancelled.status == "cancelled" and cancelled.cancelled_by == 900
    assert (await points.get_balance(session, group_id, 1)).balance == 70
    assert (await shop.get_item(session, group_id, item.id)).stock == 4
    with pytest.raises(shop.CouponNotCancellable):
        await shop.cancel_coupon(session, group_id, fresh_code, actor_id=900)
    with pytest.raises(shop.CouponNotFound):
        await shop.cancel_coupon(session, group_id, "QB-AAAA-AAAA", actor_id=900)
    assert (await shop.verify(session, group_id, fresh_code, 900, now=NOW)).status == "cancelled"
    third = await shop.redeem(session, group_id, 1, item_id, key="c", now=NOW + timedelta(days=3))
    assert await shop.expire_coupons(session, now=NOW + timedelta(days=5)) == 1
    assert (await shop.verify(session, group_id, third.code, 900, now=NOW)).status == "expired"


async def test_premade_codes_handed_out_once_each(session: AsyncSession) -> None:
    group_id = await make_group(session)
    item = await shop.add_item(session, group_id, "Voucher", 10, 0)
    assert item.id is not None
    assert await shop.add_codes(session, group_id, item.id, ["AAA-1", "AAA-2", "AAA-1", " "]) == 2
    assert await shop.add_codes(session, group_id, item.id, ["AAA-2"]) == 0
    assert (await shop.get_item(session, group_id, item.id)).stock == 2
    await points.award(session, group_id, 1, 100, "admin_give", "seed")
    codes = {(await shop.redeem(session, group_id, 1, item.id, key=f"k{i}", now=NOW)).code for i in range(2)}
    assert codes == {"AAA-1", "AAA-2"}
    assert await shop.free_codes(session, item.id) == 0
    with pytest.raises(OutOfStock):
        await shop.redeem(session, group_id, 1, item.id, key="k3", now=NOW)
    assert (await points.get_balance(session, group_id, 1)).balance == 80
    assert (await shop.verify(session, group_id, "AAA-1", 900, now=NOW)).ok


async def test_refusals_leave_balance_unchanged(session: AsyncSession) -> None:
    group_id = await make_group(session)
    gold = await shop.add_item(session, group_id, "Gold gift", 10, 5, min_tier="gold")
    limited = await shop.add_item(session, group_id, "One each", 10, 5, per_member_limit=1)
    dear = await shop.add_item(session, group_id, "Dear", 1000, 5)
    gold_id, limited_id, dear_id = gold.id, limited.id, dear.id
    assert gold_id and limited_id and dear_id
    await points.award(session, group_id, 1, 600, "admin_give", "seed")
    with pytest.raises(TierTooLow) as error:
        await shop.redeem(session, group_id, 1, gold_id, key="g", now=NOW)
    assert (error.value.tier, error.value.required) == ("silver", "gold")
    await shop.redeem(session, group_id, 1, limited_id, key="l1", now=NOW)
    with pytest.raises(LimitReached):
        await shop.redeem(session, group_id, 1, limited_id, key="l2", now=NOW)
    with pytest.raises(InsufficientPoints):
        await shop.redeem(session, group_id, 1, dear_id, key="d", now=NOW)
    await shop.remove_item(session, dear_id, group_id)
    with pytest.raises(ItemNotFound):
        await shop.redeem(session, group_id, 1, dear_id, key="d2", now=NOW)
    assert (await points.get_balance(session, group_id, 1)).balance == 590
    assert [i.id for i in await shop.list_items(session, group_id)] == [gold_id, limited_id]
    edited = await shop.edit_item(session, gold_id, group_id, min_tier=None, cost=5)
    assert edited.cost == 5
    assert (await shop.redeem(session, group_id, 1, gold_id, key="g2", now=NOW)).cost == 5
    with pytest.raises(shop.InvalidItem):
        await shop.edit_item(session, gold_id, group_id, stock=-1)
    with pytest.raises(shop.InvalidItem):
        await shop.edit_item(session, gold_id, group_id, colour="red")


async def _redeem_concurrently(
    sessionmaker: async_sessionmaker[AsyncSession], group_id: int, buyers: list[int], item_id: int
) -> list[Coupon | Exception]:
    async def one(index: int, user_id: int) -> Coupon | Exception:
        async with sessionmaker() as session:
            try:
                return await shop.redeem(session, group_id, user_id, item_id, key=f"c{index}", now=NOW)
            except (InsufficientPoints, OutOfStock) as error:
                return error

    return await asyncio.gather(*(one(index, user_id) for index, user_id in enumerate(buyers)))


async def test_twenty_concurrent_redemptions_balance_covers_five(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        group_id = await make_group(session)
        item = await shop.add_item(session, group_id, "Sticker", 20, 100)
        await points.award(session, group_id, 1, 110, "admin_give", "seed")
    assert item.id is not None
    results = await _redeem_concurrently(sessionmaker, group_id, [1] * 20, item.id)
    assert sum(isinstance(r, Coupon) for r in results) == 5
    assert all(isinstance(r, Coupon | InsufficientPoints) for r in results)
    async with sessionmaker() as session, session.begin():
        balance = await session.scalar(select(PointsBalance.balance).where(PointsBalance.user_id == 1))
        assert balance == 10
        assert (await shop.get_item(session, group_id, item.id)).stock == 95


async def test_stock_three_ten_buyers(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        group_id = await make_group(session)
        item = await shop.add_item(session, group_id, "Flash", 10, 3)
        for user_id in range(1, 11):
            await points.award(session, group_id, user_id, 10, "admin_give", f"seed{user_id}")
    assert item.id is not None
    results = await _redeem_concurrently(sessionmaker, group_id, list(range(1, 11)), item.id)
    assert sum(isinstance(r, Coupon) for r in results) == 3
    assert sum(isinstance(r, OutOfStock) for r in results) == 7
    async with sessionmaker() as session, session.begin():
        assert (await shop.get_item(session, group_id, item.id)).stock == 0
        spent = await session.scalar(
            select(func.count())
            .select_from(PointsBalance)
            .where(PointsBalance.group_id == group_id, PointsBalance.balance == 0)
        )
        assert spent == 3
