"""Flash sales through the real dispatcher: the catalog and schedules by command (admins only, usage help), the
sale post from the scheduler's poster, grabs answered privately (double taps and redelivered updates give one
order), the post edited in place (coalesced) to show stock, "sold out" and "ended", and the orders export."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageCaption,
    EditMessageText,
    SendDocument,
    SendMessage,
    SendPhoto,
)
from aiogram.types import CallbackQuery, Message, PhotoSize, Update, User
from sqlalchemy import func, select

from bot.i18n import create_i18n
from handlers.flashsale import FlashGrab, parse_minutes, parse_money
from handlers.kit import money
from models import flashsale, groups, points, schedules
from models.db import utcnow
from models.flashsale import FlashOrder, FlashProduct, FlashRound
from scheduler.flashsale import end_flash_rounds, post_flash_notice, post_flash_sale
from tests.factories import BOT_USER, texts

I18N = create_i18n("en")


class Flash:
    """A group with an owner (admin) and members, a fast post editor, and helpers to read the database."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en")
        self.bob = world.user("Bob", language_code="en")
        self.amy = world.user("Amy", language_code="en")
        self.chat = world.group("Fans", owner=self.owner)
        self.gid = 0
        self.editor = world.fast_live_posts(every=0.05)
        self.ctx = world.jobs()

    async def start(self) -> Flash:
        await self.world.send(self.chat, self.owner, "hello")
        async with self.world.sessionmaker() as session:
            await groups.set_group_locale(session, self.chat.id, "en")  # posts and edits speak the group's language
            row = await groups.get_group(session, self.chat.id)
            assert row is not None and row.id is not None
            self.gid = row.id
        return self

    async def say(self, user: User, text: str) -> list[str]:
        return texts(await self.world.send(self.chat, user, text))

    async def products(self) -> list[FlashProduct]:
        async with self.world.sessionmaker() as session:
            return await flashsale.list_products(session, self.gid, include_inactive=True)

    async def live_sale(self, spec: str = "面膜 | 99 | 39.9 | 2 | -", minutes: int = 30) -> FlashRound:
        """A product and a sale that began a minute ago, posted by the scheduler's poster."""
        assert (await self.say(self.owner, f"/product add {spec}"))[0].startswith("Added")
        product = (await self.products())[-1]
        zone = ZoneInfo("Asia/Shanghai")
        began = (utcnow() - timedelta(minutes=1)).astimezone(zone)
        said = await self.say(self.owner, f"/flashsale new {product.id} {began:%H:%M} {minutes}m")
        assert said[0].startswith("Flash sale #"), said
        async with self.world.sessionmaker() as session:
            sale = (await flashsale.list_sales(session, self.gid))[-1].sale
        slot = schedules.Slot(0, self.gid, self.chat.id, "flash_sale", sale.id or 0, began.date(),
                              began.replace(second=0, microsecond=0).astimezone(ZoneInfo("UTC")), "Asia/Shanghai",
                              None, minutes)
        message_id = await self.run_poster(post_flash_sale, slot)
        assert message_id is not None
        return await self.round_of(sale.id or 0)

    async def run_poster(self, poster: Any, slot: schedules.Slot) -> int | None:
        """What scheduler.runner.post_slot does around a poster: a session, in the group's locale."""
        i18n = self.ctx.i18n
        async with self.world.sessionmaker() as session:
            with i18n.context(), i18n.use_locale("en"):
                return await poster(self.ctx, session, slot)

    async def round_of(self, sale_id: int) -> FlashRound:
        async with self.world.sessionmaker() as session:
            row = await session.scalar(select(FlashRound).where(FlashRound.sale_id == sale_id))
            assert row is not None
            return row

    def press_update(self, user: User, flash_round: FlashRound, query_id: str | None = None) -> Update:
        message = Message(message_id=flash_round.message_id or 0, date=utcnow(), chat=self.chat, from_user=BOT_USER,
                          text="…")
        query = CallbackQuery(id=query_id or str(next(self.world.update_ids)), from_user=user,
                              chat_instance=str(self.chat.id), message=message,
                              data=FlashGrab(round_id=flash_round.id or 0).pack())
        return Update(update_id=next(self.world.update_ids), callback_query=query)

    async def grab(self, user: User, flash_round: FlashRound) -> list[Any]:
        calls = await self.world.feed(self.press_update(user, flash_round))
        await self.editor.drain()
        return calls

    async def orders(self) -> list[FlashOrder]:
        async with self.world.sessionmaker() as session:
            return list((await session.scalars(select(FlashOrder).order_by(FlashOrder.id))).all())


def alert(calls: list[Any]) -> str:
    answers = [call for call in calls if isinstance(call, AnswerCallbackQuery)]
    assert len(answers) == 1, calls
    assert answers[0].show_alert is True and answers[0].text is not None and len(answers[0].text) <= 200
    return answers[0].text


def edits_since(world: Any, start: int) -> list[Any]:
    return [c for c in world.session.calls[start:] if isinstance(c, EditMessageText | EditMessageCaption)]


def test_money_and_durations_parse() -> None:
    assert [parse_money(raw) for raw in ("39.9", "99", "¥12.05", "12.5元", "1.234", "abc")] == [
        3990, 9900, 1205, 1250, None, None]
    with I18N.context(), I18N.use_locale("zh_Hans"):  # one way for every price: Babel's, in the group's language
        assert [money(cents, bare_whole=True) for cents in (9900, 3990, 5)] == ["¥99.00", "¥39.90", "¥0.05"]
    assert [parse_minutes(raw) for raw in ("30m", "90", "1h", "1h30m", "半小时", "90s", "x", "")] == [
        30, 90, 60, 90, 30, None, None, None]


async def test_admin_builds_the_catalog_and_members_are_refused(world) -> None:  # type: ignore[no-untyped-def]
    f = await Flash(world).start()
    said = await f.say(f.owner, "/product add 面膜 | 99 | 39.9 | 100 | 1")
    assert said[0].startswith("Added") and "面膜" in said[0] and "¥39.90" in said[0] and "/flashsale new" in said[0]
    said = await f.say(f.owner, "/product add Mug | 20 | 500p | 10")
    assert "500 points" in said[0]
    mask, mug = await f.products()
    assert (mask.price, mask.flash_price, mask.points_price, mask.stock, mask.per_member_limit) == (9900, 3990, None,
                                                                                                     100, 1)
    assert (mug.flash_price, mug.points_price, mug.per_member_limit) == (None, 500, None)

    assert await f.say(f.bob, "/product add Free | 1 | 0 | 100") == ["Only group admins can do that."]
    for bad in ("/product add", "/product add 面膜 | lots | 39.9 | 100", "/product add 面膜 | 99 | cheap | 100",
                "/product add 面膜 | 99 | 39.9 | 0", "/product edit x flash=1", f"/product edit {mask.id} colour=red"):
        said = await f.say(f.owner, bad)
        assert len(said) == 1 and "Usage:" in said[0] and "/product add" in said[0], bad
    assert len(await f.products()) == 2

    said = await f.say(f.owner, f"/product edit {mask.id} flash=29.9 stock=50 name=Big mask")
    assert said[0].startswith("Updated") and "Big mask" in said[0] and "¥29.90" in said[0]
    listed = await f.say(f.bob, "/product list")
    assert "Big mask" in listed[0] and "Mug" in listed[0]
    said = await f.say(f.owner, f"/product remove {mug.id}")
    assert "left the catalog" in said[0]
    assert "No such product" in (await f.say(f.owner, "/product edit 99999 stock=1"))[0]


async def test_schedules_by_command_with_usage_help(world) -> None:  # type: ignore[no-untyped-def]
    f = await Flash(world).start()
    await f.say(f.owner, "/product add 面膜 | 99 | 39.9 | 100")
    product = (await f.products())[0]
    said = await f.say(f.owner, f"/flashsale new {product.id} 10:00 30m 1,3,5 notice=10")
    assert said[0].startswith("Flash sale #") and "10:00 for 30 minutes" in said[0] and "Mon,Wed,Fri" in said[0]
    assert "Announced 10 minutes ahead" in said[0]
    async with world.sessionmaker() as session:
        kinds = {row.kind for row in await schedules.list_schedules(session, f.gid)}
    assert {"flash_sale", "flash_notice"} <= kinds

    for bad in ("/flashsale new", f"/flashsale new {product.id} 25:00 30m", f"/flashsale new {product.id} 10:00 x",
                f"/flashsale new {product.id} 10:00 30m someday", f"/flashsale new {product.id} 10:00 30m notice=x",
                "/flashsale cancel", f"/flashsale new {product.id} 10:00 30m 2020-01-01"):
        said = await f.say(f.owner, bad)
        assert len(said) == 1 and "/flashsale new PRODUCT_ID HH:MM" in said[0], bad
    assert "No such product" in (await f.say(f.owner, "/flashsale new 99999 10:00 30m"))[0]
    assert await f.say(f.bob, f"/flashsale new {product.id} 10:00 30m") == ["Only group admins can do that."]

    listed = (await f.say(f.bob, "/flashsale"))[0]
    assert "面膜" in listed and "¥39.90" in listed and "Mon,Wed,Fri 10:00" in listed and "next" in listed
    assert "面膜" in (await f.say(f.bob, "秒杀"))[0]
    async with world.sessionmaker() as session:
        sale_id = (await flashsale.list_sales(session, f.gid))[0].sale.id
    assert "cancelled" in (await f.say(f.owner, f"/flashsale cancel {sale_id}"))[0]
    assert "No flash sales" in (await f.say(f.bob, "/flashsale list"))[0]
    assert "No such flash sale" in (await f.say(f.owner, f"/flashsale cancel {sale_id}"))[0]


async def test_grab_double_taps_and_redelivered_updates_give_one_order(world) -> None:  # type: ignore[no-untyped-def]
    f = await Flash(world).start()
    await world.send(world.private(f.bob), f.bob, "/start")  # Bob can receive private messages
    start = len(world.session.calls)
    flash_round = await f.live_sale("面膜 | 99 | 39.9 | 2 | -")
    posts = [c for c in world.session.calls[start:] if isinstance(c, SendMessage) and c.reply_markup is not None]
    assert len(posts) == 1 and "Flash sale · 面膜" in posts[0].text and "Left: <b>2</b> of 2" in posts[0].text
    assert posts[0].reply_markup.inline_keyboard[0][0].text == "⚡ Grab"

    update = f.press_update(f.bob, flash_round)
    calls = await world.feed(update)
    await f.editor.drain()
    orders = await f.orders()
    assert len(orders) == 1 and orders[0].user_id == f.bob.id and orders[0].price == 3990
    text = alert(calls)
    assert orders[0].code in text and "¥39.90" in text and "private chat" in text
    private = [c for c in calls if isinstance(c, SendMessage)]
    assert len(private) == 1 and private[0].chat_id == f.bob.id and orders[0].code in private[0].text
    assert not [c for c in calls if isinstance(c, SendMessage) and c.chat_id == f.chat.id]

    # The same update again: dropped. The same press in a new update, and a double tap: the same order.
    assert await world.feed(update) == []
    again = await world.feed(f.press_update(f.bob, flash_round, query_id=update.callback_query.id))
    assert "You already have this one" in alert(again) and orders[0].code in alert(again)
    assert "You already have this one" in alert(await f.grab(f.bob, flash_round))
    assert len(await f.orders()) == 1

    start = len(world.session.calls)
    assert "Got it" in alert(await f.grab(f.amy, flash_round))
    edits = edits_since(world, start)
    assert edits and "Sold out" in edits[-1].text and edits[-1].reply_markup is None
    assert "sold out" in alert(await f.grab(f.owner, flash_round))
    assert len(await f.orders()) == 2
    assert (await f.round_of(flash_round.sale_id)).stock == 0


async def test_edits_are_coalesced_and_the_round_ends_once(world) -> None:  # type: ignore[no-untyped-def]
    f = await Flash(world).start()
    f.editor.intervals["flash_sale"] = 60.0  # one edit a minute: a burst of grabs is one edit now, one later
    # began in the minute before this one: 3 minutes leave 1 to 2 (with 2, a run late in a minute found it over)
    flash_round = await f.live_sale("Tea | 10 | 5 | 50", minutes=3)
    start = len(world.session.calls)
    for index in range(5):
        await world.feed(f.press_update(world.user(f"M{index}"), flash_round))
    for _ in range(100):  # the first edit goes out at once (in the background): wait for it, however busy the machine
        if edits_since(world, start):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    edits = edits_since(world, start)
    assert len(edits) == 1 and f.editor.pending == 1  # the next edit waits for the interval
    await f.editor.close(flush=False)

    start = len(world.session.calls)
    assert await end_flash_rounds(f.ctx, now=utcnow() + timedelta(minutes=5)) >= 1
    edits = edits_since(world, start)
    assert len(edits) == 1 and "has ended · 5 of 50 sold" in edits[0].text and edits[0].reply_markup is None
    assert await end_flash_rounds(f.ctx, now=utcnow() + timedelta(minutes=6)) == 0
    assert "has ended" in alert(await f.grab(f.bob, flash_round))


async def test_points_price_insufficient_points_changes_nothing(world) -> None:  # type: ignore[no-untyped-def]
    f = await Flash(world).start()
    flash_round = await f.live_sale("Mug | 20 | 300p | 5")
    async with world.sessionmaker() as session:
        await points.award(session, f.gid, f.amy.id, 500, "admin_give", "seed:amy")
        await points.award(session, f.gid, f.bob.id, 100, "admin_give", "seed:bob")
    text = alert(await f.grab(f.bob, flash_round))
    assert "Not enough points: this costs 300, you have 100" in text
    assert "300 points" in alert(await f.grab(f.amy, flash_round))
    async with world.sessionmaker() as session:
        assert (await points.get_balance(session, f.gid, f.bob.id)).balance == 100
        assert (await points.get_balance(session, f.gid, f.amy.id)).balance == 200
    assert [o.user_id for o in await f.orders()] == [f.amy.id]


async def test_photo_products_post_a_photo_and_edit_its_caption(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    f = await Flash(world).start()
    recording = world.session.make_request

    async def with_photos(bot: Any, method: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109 (aiogram's API)
        if isinstance(method, SendPhoto):  # the recording session only fakes text messages
            world.session.calls.append(method)
            return Message(message_id=4242, date=utcnow(), chat=f.chat, from_user=BOT_USER, caption=method.caption)
        return await recording(bot, method, timeout)

    monkeypatch.setattr(world.session, "make_request", with_photos)
    photo = [PhotoSize(file_id="small", file_unique_id="s", width=90, height=90),
             PhotoSize(file_id="big", file_unique_id="b", width=900, height=900)]
    await world.send(f.chat, f.owner, "/product add Lipstick | 199 | 99 | 1", photo=photo)
    assert (await f.products())[0].photo_file_id == "big"
    start = len(world.session.calls)
    product = (await f.products())[0]
    began = (utcnow() - timedelta(minutes=1)).astimezone(ZoneInfo("Asia/Shanghai"))
    await f.say(f.owner, f"/flashsale new {product.id} {began:%H:%M} 30m")
    async with world.sessionmaker() as session:
        sale = (await flashsale.list_sales(session, f.gid))[0].sale
    slot = schedules.Slot(0, f.gid, f.chat.id, "flash_sale", sale.id or 0, began.date(), utcnow(), "Asia/Shanghai",
                          None, 30)
    assert await f.run_poster(post_flash_sale, slot) == 4242
    photos = [c for c in world.session.calls[start:] if isinstance(c, SendPhoto)]
    assert len(photos) == 1 and photos[0].photo == "big" and "Lipstick" in photos[0].caption
    flash_round = await f.round_of(sale.id or 0)
    start = len(world.session.calls)
    await f.grab(f.bob, flash_round)
    captions = [c for c in world.session.calls[start:] if isinstance(c, EditMessageCaption)]
    assert captions and "Sold out" in captions[-1].caption


async def test_notice_announces_a_coming_sale(world) -> None:  # type: ignore[no-untyped-def]
    f = await Flash(world).start()
    await f.say(f.owner, "/product add Tea | 10 | 5 | 50")
    product = (await f.products())[0]
    soon = (utcnow() + timedelta(minutes=20)).astimezone(ZoneInfo("Asia/Shanghai"))
    await f.say(f.owner, f"/flashsale new {product.id} {soon:%H:%M} 30m {soon:%Y-%m-%d} notice=10")
    async with world.sessionmaker() as session:
        sale = (await flashsale.list_sales(session, f.gid))[0].sale
        notice = await schedules.get_schedule(session, f.gid, "flash_notice", sale.id or 0)
    assert notice is not None
    notice_day = flashsale.notice_timing(sale.at, sale.weekdays, sale.once_on, 10)[2]
    slot = schedules.Slot(0, f.gid, f.chat.id, "flash_notice", sale.id or 0, notice_day, utcnow(), "Asia/Shanghai",
                          None, None)
    start = len(world.session.calls)
    assert await f.run_poster(post_flash_notice, slot) is not None
    sent = texts(world.session.calls[start:])
    assert len(sent) == 1 and "Flash sale in 10 minutes" in sent[0] and f"{soon:%H:%M}" in sent[0]


async def test_orders_export_is_a_csv_in_private_chat(world) -> None:  # type: ignore[no-untyped-def]
    f = await Flash(world).start()
    flash_round = await f.live_sale("面膜 | 99 | 39.9 | 5")
    await f.grab(f.bob, flash_round)
    await f.grab(f.amy, flash_round)
    said = await f.say(f.owner, f"/flashsale orders {flash_round.sale_id}")
    assert "start a private chat with me first" in said[0]
    await world.send(world.private(f.owner), f.owner, "/start")
    calls = await world.send(f.chat, f.owner, f"/flashsale orders {flash_round.sale_id}")
    documents = [c for c in calls if isinstance(c, SendDocument)]
    assert len(documents) == 1 and documents[0].chat_id == f.owner.id and "2 orders" in documents[0].caption
    rows = list(csv.reader(io.StringIO(documents[0].document.data.decode("utf-8-sig"))))
    assert rows[0][0] == "order_code" and rows[0][7:9] == ["price", "currency"] and len(rows) == 3
    assert {row[4] for row in rows[1:]} == {str(f.bob.id), str(f.amy.id)} and rows[1][7:9] == ["39.90", "CNY"]
    assert "Sent you 2 orders" in texts(calls)[-1]
    assert await f.say(f.bob, f"/flashsale orders {flash_round.sale_id}") == ["Only group admins can do that."]
    async with world.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(FlashOrder)) == 2
