"""The points shop through the real dispatcher: admins manage items, members redeem by button (alerts, private
codes, stock edits coalesced), /mycoupons masks codes in groups, staff verify and cancel coupons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.methods import AnswerCallbackQuery, DeleteMessage, EditMessageText, SendMessage
from aiogram.types import CallbackQuery, Message, Update, User
from sqlalchemy import func, select

from handlers.shop import ShopRedeem, mask_code
from models import groups, points, shop
from models.db import utcnow
from models.shop import Coupon, ShopItem
from tests.factories import BOT_USER, texts

SHOP_MESSAGE_ID = 500


class Shop:
    """A group with an owner (admin), a member Bob, and helpers to read the database."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en")
        self.bob = world.user("Bob", language_code="en")
        self.chat = world.group("Fans", owner=self.owner)
        self.gid = 0
        self.query_ids = iter(range(9_000_000, 10_000_000))
        world.fast_live_posts(every=0.0)  # the shop message's edits land before a test looks (coalescing: tests of
        # the editor)

    async def start(self) -> Shop:
        await self.world.send(self.chat, self.owner, "hello")
        async with self.world.sessionmaker() as session:
            row = await groups.get_group(session, self.chat.id)
            assert row is not None and row.id is not None
            self.gid = row.id
        return self

    async def add(self, spec: str) -> ShopItem:
        said = texts(await self.world.send(self.chat, self.owner, f"/shop add {spec}"))
        assert said and said[0].startswith("Added to the shop"), said
        items = await self.items(include_inactive=True)
        return items[-1] if len(items) == 1 else max(items, key=lambda item: item.id or 0)

    async def items(self, include_inactive: bool = False) -> list[ShopItem]:
        async with self.world.sessionmaker() as session:
            return await shop.list_items(session, self.gid, include_inactive=include_inactive)

    async def item(self, item_id: int) -> ShopItem:
        async with self.world.sessionmaker() as session:
            return await shop.get_item(session, self.gid, item_id)

    async def fund(self, user: User, amount: int) -> None:
        async with self.world.sessionmaker() as session:
            await points.award(session, self.gid, user.id, amount, "admin_give", f"fund:{user.id}:{amount}")

    async def balance(self, user: User) -> int:
        async with self.world.sessionmaker() as session:
            return (await points.get_balance(session, self.gid, user.id)).balance

    async def coupons(self, user: User) -> list[Coupon]:
        async with self.world.sessionmaker() as session:
            return await shop.my_coupons(session, self.gid, user.id)

    def press_update(self, user: User, item_id: int, *, query_id: str | None = None) -> Update:
        message = Message(message_id=SHOP_MESSAGE_ID, date=datetime.now(UTC), chat=self.chat, from_user=BOT_USER,
                          text="…")
        query = CallbackQuery(id=query_id or str(next(self.query_ids)), from_user=user,
                              chat_instance=str(self.chat.id), message=message,
                              data=ShopRedeem(item_id=item_id).pack())
        return Update(update_id=next(self.world.update_ids), callback_query=query)

    async def press(self, user: User, item_id: int) -> list[Any]:
        """A press and what the bot did for it, the shop message's edit included (it is made in the background)."""
        start = len(self.world.session.calls)
        await self.world.feed(self.press_update(user, item_id))
        await self.world.live_posts.drain()
        return self.world.session.calls[start:]


def alert(calls: list[Any]) -> str:
    answers = [call for call in calls if isinstance(call, AnswerCallbackQuery)]
    assert len(answers) == 1, calls
    assert answers[0].show_alert is True
    assert answers[0].text is not None and len(answers[0].text) <= 200
    return answers[0].text


async def count(world: Any, model: Any) -> int:
    async with world.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# -- admins ----------------------------------------------------------------------------------------------------


async def test_admin_adds_items_members_are_refused_and_bad_input_gets_usage(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    item = await s.add("Coffee voucher | 100 | 5 | 2 | silver | 14")
    assert (item.name, item.cost, item.stock, item.per_member_limit, item.min_tier, item.valid_days, item.active) == (
        "Coffee voucher", 100, 5, 2, "silver", 14, True
    )
    chinese = await s.add("满100减20 优惠券 | 200 | 3")
    assert (chinese.name, chinese.cost, chinese.stock, chinese.per_member_limit, chinese.valid_days) == (
        "满100减20 优惠券", 200, 3, 1, 30
    )
    spaced = await s.add("拿铁 咖啡券 50 7")  # without pipes: the last two numbers are cost and stock
    assert (spaced.name, spaced.cost, spaced.stock) == ("拿铁 咖啡券", 50, 7)
    unlimited = await s.add("Sticker | 0 | 9 | - | - | 7")
    assert (unlimited.per_member_limit, unlimited.min_tier, unlimited.valid_days) == (None, None, 7)

    said = texts(await world.send(s.chat, s.bob, "/shop add Free stuff | 1 | 100"))
    assert said == ["Only group admins can do that."]
    assert len(await s.items()) == 4

    for bad in ("/shop add", "/shop add Coffee | lots | 5", "/shop add Coffee | 10", "/shop add Coffee | 10 | 5 | 0",
                "/shop add Coffee | 10 | 5 | 1 | platinum"):
        said = texts(await world.send(s.chat, s.owner, bad))
        assert len(said) == 1 and "Usage: /shop add name | cost | stock" in said[0] and "Example:" in said[0], bad
    assert "platinum" in said[0] and "normal, silver, gold, diamond" in said[0]
    assert len(await s.items()) == 4


async def test_admin_edits_removes_and_loads_codes(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    item = await s.add("Coffee | 100 | 5")
    command = f"/shop edit {item.id} cost=150 name=Big iced latte limit=- tier=gold"
    said = texts(await world.send(s.chat, s.owner, command))
    assert said[0].startswith("Updated:") and "Big iced latte" in said[0]
    edited = await s.item(item.id)
    assert (edited.name, edited.cost, edited.per_member_limit, edited.min_tier) == ("Big iced latte", 150, None, "gold")

    for bad in (f"/shop edit {item.id} colour=red", f"/shop edit {item.id} cost=-3", "/shop edit x cost=1",
                f"/shop edit {item.id}"):
        said = texts(await world.send(s.chat, s.owner, bad))
        assert "Usage: /shop edit ID field=value" in said[0], bad
    said = texts(await world.send(s.chat, s.owner, "/shop edit 99999 cost=1"))
    assert "no such item" in said[0]
    assert texts(await world.send(s.chat, s.bob, f"/shop edit {item.id} cost=1")) == ["Only group admins can do that."]

    calls = await world.send(s.chat, s.owner, f"/shop codes {item.id}\nABC-001\nABC-002\nABC-002\n")
    assert any(isinstance(call, DeleteMessage) for call in calls)  # the codes are secrets
    assert "Added 2 of 2 codes" in texts(calls)[0] and "stock is now 7" in texts(calls)[0]
    assert (await s.item(item.id)).stock == 7
    said = texts(await world.send(s.chat, s.owner, "/shop codes"))
    assert "Usage: /shop codes ID" in said[0]

    said = texts(await world.send(s.chat, s.owner, f"/shop remove {item.id}"))
    assert "left the shop" in said[0]
    assert not (await s.item(item.id)).active and await s.items() == []
    said = texts(await world.send(s.chat, s.owner, "/shop list"))
    assert "Big iced latte" in said[0] and "(removed)" in said[0]
    said = texts(await world.send(s.chat, s.owner, "/shop help"))
    assert "/shop add" in said[0] and "/verify CODE" in said[0]


# -- members ---------------------------------------------------------------------------------------------------


async def test_shop_posts_one_message_with_a_button_per_item(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    assert "empty" in texts(await world.send(s.chat, s.bob, "/shop"))[0]
    coffee = await s.add("Coffee voucher | 100 | 5")
    tea = await s.add("Tea | 30 | 0")
    for command in ("/shop", "积分商城", "兑换"):
        calls = await world.send(s.chat, s.bob, command)
        sent = [call for call in calls if isinstance(call, SendMessage)]
        assert len(sent) == 1, command
        assert "Coffee voucher" in sent[0].text and "5 left" in sent[0].text and "sold out" in sent[0].text
        buttons = [button for row in sent[0].reply_markup.inline_keyboard for button in row]
        assert [button.callback_data for button in buttons] == [f"shop:{tea.id}", f"shop:{coffee.id}"]
    said = texts(await world.send(world.private(s.bob), s.bob, "/shop"))
    assert "in your group" in said[0]


async def test_redeem_by_button_issues_one_coupon(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    item = await s.add("Coffee voucher | 100 | 5 | 2")
    await world.send(world.private(s.bob), s.bob, "/start")  # Bob can receive private messages
    await s.fund(s.bob, 300)

    update = s.press_update(s.bob, item.id)
    start = len(world.session.calls)
    calls = await world.feed(update)
    await world.live_posts.drain()  # the shop message's stock is edited in the background
    coupons = await s.coupons(s.bob)
    assert len(coupons) == 1 and coupons[0].status == "issued" and coupons[0].cost == 100
    text = alert(calls)
    assert coupons[0].code in text and "Cost: 100 points" in text and "balance: 200" in text
    assert await s.balance(s.bob) == 200 and (await s.item(item.id)).stock == 4
    private = [call for call in calls if isinstance(call, SendMessage)]
    assert len(private) == 1 and private[0].chat_id == s.bob.id and coupons[0].code in private[0].text
    assert "Valid until" in private[0].text
    edits = [call for call in world.session.calls[start:] if isinstance(call, EditMessageText)]
    assert len(edits) == 1 and edits[0].message_id == SHOP_MESSAGE_ID and "4 left" in edits[0].text
    assert not [call for call in calls if isinstance(call, SendMessage) and call.chat_id == s.chat.id]

    # The same update redelivered: nothing happens at all.
    assert await world.feed(update) == []
    # The same callback query in a new update (a retry at another layer): the same coupon, nothing spent.
    again = await world.feed(s.press_update(s.bob, item.id, query_id=update.callback_query.id))
    await world.live_posts.drain()
    assert coupons[0].code in alert(again)
    assert len(await s.coupons(s.bob)) == 1 and await s.balance(s.bob) == 200 and (await s.item(item.id)).stock == 4

    # A second tap (new query id) is a second purchase, within the limit of 2; the shop message shows it.
    second = await s.press(s.bob, item.id)
    assert "balance: 100" in alert(second)
    assert ["3 left" in call.text for call in second if isinstance(call, EditMessageText)] == [True]
    assert len(await s.coupons(s.bob)) == 2 and (await s.item(item.id)).stock == 3

    third = await s.press(s.bob, item.id)
    assert "Limit reached: each member may hold 2" in alert(third)
    assert not [call for call in third if isinstance(call, EditMessageText)]  # nothing changed: no edit
    assert len(await s.coupons(s.bob)) == 2 and await s.balance(s.bob) == 100


async def test_refusals_are_alerts_and_change_nothing(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    coffee = await s.add("Coffee voucher | 100 | 5")
    gone = await s.add("Tea | 10 | 0")
    vip = await s.add("VIP gift | 10 | 5 | 1 | gold")
    removed = await s.add("Old thing | 10 | 5")
    await world.send(s.chat, s.owner, f"/shop remove {removed.id}")
    await s.fund(s.bob, 50)

    calls = await s.press(s.bob, coffee.id)
    assert "you have 50, this costs 100" in alert(calls)
    assert not [call for call in calls if isinstance(call, SendMessage)]
    assert "out of stock" in alert(await s.press(s.bob, gone.id))
    text = alert(await s.press(s.bob, vip.id))
    assert "Gold members and above" in text and "your tier is Member" in text
    assert "no longer in the shop" in alert(await s.press(s.bob, removed.id))
    assert await s.coupons(s.bob) == [] and await s.balance(s.bob) == 50
    assert (await s.item(coffee.id)).stock == 5 and (await s.item(vip.id)).stock == 5
    assert await count(world, Coupon) == 0


async def test_code_is_not_sent_privately_to_someone_who_never_started_the_bot(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    item = await s.add("Coffee voucher | 10 | 5")
    await s.fund(s.bob, 10)
    calls = await s.press(s.bob, item.id)
    assert "Start a private chat with me" in alert(calls)
    assert not [call for call in calls if isinstance(call, SendMessage)]


# -- coupons ---------------------------------------------------------------------------------------------------


async def test_mycoupons_masks_codes_in_the_group_and_shows_them_in_private(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    item = await s.add("Coffee voucher | 10 | 5")
    await s.fund(s.bob, 100)
    assert "no coupons" in texts(await world.send(s.chat, s.bob, "/mycoupons"))[0]
    await s.press(s.bob, item.id)
    code = (await s.coupons(s.bob))[0].code

    said = texts(await world.send(s.chat, s.bob, "/mycoupons"))
    assert len(said) == 1
    assert code not in said[0] and mask_code(code) in said[0] and "****" in said[0]
    assert "Coffee voucher" in said[0] and "unused" in said[0] and "private chat" in said[0]

    said = texts(await world.send(world.private(s.bob), s.bob, "/mycoupons"))
    assert code in said[0] and "Fans" in said[0] and "Coffee voucher" in said[0]


def test_mask_code() -> None:
    assert mask_code("QB-7KQM-X3PD") == "QB-****-X3PD"
    assert mask_code("MERCHANT-000123") == "****0123"
    assert mask_code("ABC") == "****"


async def test_verify_marks_a_coupon_used_once(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    item = await s.add("Coffee voucher | 10 | 5 | -")
    await s.fund(s.bob, 100)
    await s.press(s.bob, item.id)
    code = (await s.coupons(s.bob))[0].code

    assert texts(await world.send(s.chat, s.bob, f"/verify {code}")) == ["Only group admins can do that."]
    said = texts(await world.send(s.chat, s.owner, f"/verify {code.lower()}"))
    assert said[0].startswith("✅ Verified: Coffee voucher") and "Member:" in said[0] and "Issued:" in said[0]
    coupon = (await s.coupons(s.bob))[0]
    assert coupon.status == "used" and coupon.used_by == s.owner.id
    said = texts(await world.send(s.chat, s.owner, f"/verify {code}"))
    assert "Already used at" in said[0] and " by " in said[0]
    assert "No coupon QB-NOPE-NOPE" in texts(await world.send(s.chat, s.owner, "/verify QB-NOPE-NOPE"))[0]
    assert "Usage: /verify CODE" in texts(await world.send(s.chat, s.owner, "/verify"))[0]

    async with world.sessionmaker() as session:  # a coupon bought 40 days ago (valid 30 days)
        old = await shop.redeem(session, s.gid, s.bob.id, item.id, key="old", now=utcnow() - timedelta(days=40))
    said = texts(await world.send(s.chat, s.owner, f"/verify {old.code}"))
    assert "expired" in said[0]


async def test_cancel_refunds_points_and_stock(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    item = await s.add("Coffee voucher | 40 | 5 | 2")
    await s.fund(s.bob, 100)
    await s.press(s.bob, item.id)
    await s.press(s.bob, item.id)
    first, second = (await s.coupons(s.bob))[::-1]
    assert await s.balance(s.bob) == 20 and (await s.item(item.id)).stock == 3

    assert texts(await world.send(s.chat, s.bob, f"/coupon cancel {first.code}")) == ["Only group admins can do that."]
    said = texts(await world.send(s.chat, s.owner, f"/coupon cancel {first.code}"))
    assert "Cancelled" in said[0] and "40 points refunded" in said[0] and "stock is back to 4" in said[0]
    assert await s.balance(s.bob) == 60 and (await s.item(item.id)).stock == 4
    statuses = {coupon.code: coupon.status for coupon in await s.coupons(s.bob)}
    assert statuses == {first.code: "cancelled", second.code: "issued"}

    said = texts(await world.send(s.chat, s.owner, f"/coupon cancel {first.code}"))
    assert "only unused coupons can be cancelled" in said[0]
    await world.send(s.chat, s.owner, f"/verify {second.code}")
    said = texts(await world.send(s.chat, s.owner, f"/coupon cancel {second.code}"))
    assert "is used; only unused coupons" in said[0]
    assert "No coupon QB-NOPE-NOPE" in texts(await world.send(s.chat, s.owner, "/coupon cancel QB-NOPE-NOPE"))[0]
    assert "Usage: /coupon cancel CODE" in texts(await world.send(s.chat, s.owner, "/coupon"))[0]
    assert await s.balance(s.bob) == 60 and (await s.item(item.id)).stock == 4


async def test_help_lists_shop_commands(world) -> None:  # type: ignore[no-untyped-def]
    s = await Shop(world).start()
    member_help = texts(await world.send(s.chat, s.bob, "/help"))[0]
    assert "/shop" in member_help and "/mycoupons" in member_help and "/verify" not in member_help
    admin_help = texts(await world.send(s.chat, s.owner, "/help"))[0]
    assert "/verify" in admin_help and "/coupon" in admin_help
