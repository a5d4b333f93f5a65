"""Flash sales (限时秒杀) in chat: the product catalog (/product add|list|edit|remove), sales on the group's clock
(/flashsale new|list|cancel|orders), the sale post with its grab button (抢购), and grabs answered privately.

The group sees ONE post per round. A grab is answered with an alert only the presser sees (their order code),
plus a copy in private chat when they have started the bot; the post's remaining stock is edited in place, at
most once every EDIT_INTERVAL seconds per post, and shows "sold out" and "ended". The scheduler
(scheduler/flashsale.py) posts rounds and notices through `post_round` / `post_notice` and ends rounds.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, esc
from handlers.kit import (
    ALERT_MAX,
    CAPTION_MAX,
    DURATION_FORMS,
    HOUR_MINUTE,
    MONTH_DAY_TIME,
    NO_VALUE,
    RowId,
    UsageError,
    clip,
    current_currency,
    local_time,
    money,
    parse_duration,
    parse_money,
    parse_row_id,
    parse_whole,
)
from handlers.live_posts import LivePost, PostKind, Shown
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, Blueprint, Keywords
from models import flashsale, groups, schedules
from models.db import utcnow
from models.flashsale import FlashProduct, FlashRound, FlashSale
from models.groups import Group

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("qunbot.flashsale")

router = Blueprint("flashsale")

COMMANDS = [
    CommandInfo("flashsale", __("Flash sales: what is on and when (admins: /flashsale help)"), "member"),
    CommandInfo("product", __("The flash-sale catalog: /product add | list | edit | remove"), "admin"),
]

KEYWORDS = {"秒杀", "限时秒杀", "秒殺", "限時秒殺"}
EDIT_INTERVAL = 6.0  # seconds between two edits of one sale post: at most 10 of the group's 20 messages a minute
WEEKDAY_NAMES = {
    "1": __("Mon"), "2": __("Tue"), "3": __("Wed"), "4": __("Thu"), "5": __("Fri"), "6": __("Sat"), "7": __("Sun"),
}  # fmt: skip


class FlashGrab(CallbackData, prefix="fs"):
    round_id: RowId


# -- money and text --------------------------------------------------------------------------------------------

_POINTS = re.compile(r"^(\d{1,9})\s*(?:p|pts|points?|积分|積分)$", re.IGNORECASE)


def price_text(flash_price: int | None, points_price: int | None) -> str:
    parts = []
    if flash_price is not None:
        parts.append(money(flash_price, bare_whole=True))
    if points_price:
        parts.append(_("{points} points").format(points=points_price))
    return " + ".join(parts)


def days_text(sale: FlashSale) -> str:
    if sale.once_on is not None:
        return sale.once_on.isoformat()
    if sale.weekdays == "1234567":
        return _("daily")
    return ",".join(str(WEEKDAY_NAMES[d]) for d in sale.weekdays)


def product_line(product: FlashProduct) -> str:
    line = _("#{id} <b>{name}</b> — {price} (list {list_price}) · {stock} per sale").format(
        id=product.id, name=esc(product.name), price=price_text(product.flash_price, product.points_price),
        list_price=money(product.price, bare_whole=True), stock=product.stock,
    )  # fmt: skip
    extras = []
    if product.per_member_limit is not None:
        extras.append(_("limit {limit} per member over all sales").format(limit=product.per_member_limit))
    if product.photo_file_id:
        extras.append(_("with photo"))
    if not product.active:
        extras.append(_("removed"))
    return line + (" · " + " · ".join(extras) if extras else "")


# -- the sale post ---------------------------------------------------------------------------------------------


def render_round(
    flash_round: FlashRound, zone: str, now: datetime | None = None
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The sale post: price, stock left, when it ends, and the grab button while it is on."""
    now = now or utcnow()
    lines = [
        _("⚡ <b>Flash sale · {name}</b>").format(name=esc(flash_round.name)),
        _("Flash price: <b>{price}</b> (list price {list_price})").format(
            price=price_text(flash_round.flash_price, flash_round.points_price),
            list_price=money(flash_round.price, bare_whole=True),
        ),
    ]
    if flash_round.per_member_limit is not None:
        lines.append(_("Limit: {limit} per member").format(limit=flash_round.per_member_limit))
    sold = flash_round.stock_total - flash_round.stock
    ended = flash_round.status != "live" or flash_round.ends_at <= now
    keyboard = None
    if ended:
        lines.append(_("⏹ This flash sale has ended · {sold} of {total} sold.").format(
            sold=sold, total=flash_round.stock_total))
    elif flash_round.stock <= 0:
        lines.append(_("🔥 Sold out! All {total} were grabbed.").format(total=flash_round.stock_total))
        lines.append(_("Ends at {time}.").format(time=local_time(flash_round.ends_at, zone, HOUR_MINUTE)))
    else:
        lines.append(_("Left: <b>{left}</b> of {total}").format(left=flash_round.stock, total=flash_round.stock_total))
        if flash_round.starts_at > now:
            lines.append(_("Starts at {start}, ends at {end}.").format(
                start=local_time(flash_round.starts_at, zone, HOUR_MINUTE),
                end=local_time(flash_round.ends_at, zone, HOUR_MINUTE)))
        else:
            lines.append(_("Ends at {time}.").format(time=local_time(flash_round.ends_at, zone, HOUR_MINUTE)))
        lines.append(_("First come, first served: tap the button. Only you will see your order code."))
        builder = InlineKeyboardBuilder()
        assert flash_round.id is not None
        builder.button(text=_("⚡ Grab"), callback_data=FlashGrab(round_id=flash_round.id))
        keyboard = builder.as_markup()
    return clip("\n".join(lines), CAPTION_MAX), keyboard


async def post_round(bot: Bot, session: AsyncSession, chat_id: int, flash_round: FlashRound, zone: str) -> int:
    """Send the round's post (with the product photo, if any) and record its message id. Telegram errors are
    raised (the scheduler then gives the slot back, and the round is posted on the next try)."""
    assert flash_round.id is not None
    text, keyboard = render_round(flash_round, zone)
    if flash_round.photo_file_id:
        message = await bot.send_photo(chat_id, flash_round.photo_file_id, caption=text, reply_markup=keyboard)
    else:
        message = await bot.send_message(chat_id, text, reply_markup=keyboard)
    await flashsale.set_round_message(session, flash_round.id, message.message_id)
    return message.message_id


async def post_notice(bot: Bot, chat_id: int, product: FlashProduct, sale: FlashSale, starts_at: datetime,
                      zone: str) -> int:
    """The announcement N minutes before a round."""
    text = "\n".join([
        _("⏰ <b>Flash sale in {minutes} minutes!</b>").format(minutes=sale.notice_minutes),
        _("{name} at {time}: <b>{price}</b> (list price {list_price}), only {stock}.").format(
            name=esc(product.name), time=local_time(starts_at, zone, HOUR_MINUTE),
            price=price_text(product.flash_price, product.points_price),
            list_price=money(product.price, bare_whole=True),
            stock=product.stock,
        ),
    ])  # fmt: skip
    message = await bot.send_message(chat_id, text)
    return message.message_id


POST = PostKind("flash_sale", EDIT_INTERVAL)


def round_post(bot: Bot, round_id: int, group_id: int, zone: str, locale: str | None) -> LivePost:
    """The round's post (text, or a photo's caption), its stock kept up to date. Posted again if it was deleted
    (or the group moved) while the round is live."""

    async def render(session: AsyncSession) -> Shown | None:
        chat_id = await groups.chat_id_of(session, group_id)  # it may have moved (a supergroup now)
        try:
            flash_round = await flashsale.get_round(session, round_id)
        except flashsale.RoundNotFound:
            return None
        if chat_id is None or flash_round.message_id is None:
            return None  # not posted yet: the scheduler posts it
        text, keyboard = render_round(flash_round, zone)
        return Shown(chat_id, flash_round.message_id, text, keyboard, caption=bool(flash_round.photo_file_id))

    async def repost(session: AsyncSession, shown: Shown, replacing: int | None) -> int | None:
        flash_round = await flashsale.get_round(session, round_id)
        if flash_round.status != "live":
            return None  # an ended sale's post is not worth a new message
        return await post_round(bot, session, shown.chat_id, flash_round, zone)

    return LivePost(("flash_sale", round_id), POST, render, locale=locale, repost=repost)


# -- grabbing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    code: str
    price: int | None
    points: int


class SoldOutRounds:
    """Rounds this process has seen sold out (the Runtime's `sold_out`), with who holds an order. Sold out is
    final (stock never comes back), so the rush of presses after it is answered from memory, without touching the
    database."""

    LIMIT = 2_000  # rounds remembered

    def __init__(self) -> None:
        self.rounds: dict[int, tuple[datetime, dict[int, Held]]] = {}

    def answer(self, round_id: int, user_id: int, now: datetime) -> Held | str | None:
        """The member's order, "ended" or "sold_out" for a known sold-out round; None if not known."""
        known = self.rounds.get(round_id)
        if known is None:
            return None
        ends_at, holders = known
        held = holders.get(user_id)
        if held is not None:
            return held
        return "ended" if now >= ends_at else "sold_out"

    async def learn(self, session: AsyncSession, round_id: int) -> None:
        flash_round = await flashsale.get_round(session, round_id)
        if flash_round.stock > 0 and flash_round.status == "live":
            return
        orders = await flashsale.round_orders(session, round_id)
        if len(self.rounds) >= self.LIMIT:
            self.rounds.pop(next(iter(self.rounds)))
        ends_at = flash_round.ended_at or flash_round.ends_at
        self.rounds[round_id] = (ends_at, {o.user_id: Held(o.code, o.price, o.points) for o in orders})

    def forget(self, round_id: int) -> None:
        self.rounds.pop(round_id, None)


def sold_out_text() -> str:
    return _("Sorry, sold out! Watch for the next flash sale.")


def ended_text() -> str:
    return _("This flash sale has ended.")


async def answer_already(query: CallbackQuery, held: Held) -> None:
    await query.answer(clip(_("You already have this one: order {code} ({price}). One per member.").format(
        code=held.code, price=price_text(held.price, held.points)), ALERT_MAX), show_alert=True)


@dataclass(frozen=True)
class Place:
    """The group fields a handler needs after calling models (a refusal rolls back and expires the Group)."""

    group_id: int
    chat_id: int
    timezone: str
    title: str
    locale: str


@router.callback_query(FlashGrab.filter(), IN_GROUP)
async def grab_press(query: CallbackQuery, callback_data: FlashGrab, bot: Bot, session: AsyncSession, group: Group,
                     i18n: I18n, runtime: Runtime) -> None:
    assert group.id is not None
    place = Place(group.id, group.chat_id, group.timezone, group.title, group.locale or i18n.default_locale)
    round_id, user_id = callback_data.round_id, query.from_user.id
    sold_out = runtime.sold_out
    known = sold_out.answer(round_id, user_id, utcnow())
    if isinstance(known, Held):
        await answer_already(query, known)
        return
    if known is not None:
        await query.answer(sold_out_text() if known == "sold_out" else ended_text(), show_alert=True)
        return
    try:
        result = await flashsale.grab(session, place.group_id, round_id, user_id)
    except flashsale.SoldOut:
        await query.answer(sold_out_text(), show_alert=True)
        await sold_out.learn(session, round_id)
        return
    except flashsale.RoundEnded:
        await query.answer(ended_text(), show_alert=True)
        return
    except flashsale.NotStarted:
        await query.answer(_("Not yet! The sale has not started."), show_alert=True)
        return
    except flashsale.LimitReached as error:
        await query.answer(_("Limit reached: each member may buy {limit} of this product.").format(limit=error.limit),
                           show_alert=True)
        return
    except flashsale.InsufficientPoints as error:
        await query.answer(_("Not enough points: this costs {cost}, you have {balance}. Nothing was taken.").format(
            cost=error.needed, balance=error.balance), show_alert=True)
        return
    except flashsale.RoundNotFound:
        await query.answer(_("This flash sale is no longer available."), show_alert=True)
        return
    order = result.order
    pay = price_text(order.price, order.points)
    if result.already:
        await answer_already(query, Held(order.code, order.price, order.points))
        return
    private = await groups.can_write_privately(session, user_id)
    hint = _("A copy is in our private chat.") if private else _("Start a private chat with me to keep it.")
    await query.answer(clip(_("✅ Got it! Order {code}\nTo pay: {price}\nShow this code to the shop. {hint}").format(
        code=order.code, price=pay, hint=hint), ALERT_MAX), show_alert=True)
    runtime.live_posts.request(bot, round_post(bot, round_id, place.group_id, place.timezone, place.locale))
    if result.stock_left == 0:
        await sold_out.learn(session, round_id)
    if private:
        text = _("⚡ Your flash-sale order in {group}\nOrder code: <code>{code}</code>\nTo pay: {price}\n"
                 "The shop will contact you; show this code to collect.").format(
            group=esc(place.title or "?"), code=esc(order.code), price=pay)
        try:
            await bot.send_message(user_id, text)
        except (TelegramForbiddenError, TelegramBadRequest):
            pass  # they blocked the bot: the alert already showed the code


# -- /product --------------------------------------------------------------------------------------------------


def product_usage() -> str:
    return _(
        "Usage:\n/product add name | list price | flash price | stock [| limit per member]\n"
        "Flash price: 39.9, or 500p for points, or 39.9+500p. Stock: offered in each sale. Limit: how many of "
        "this product one member may buy over all sales (- for one per sale).\n"
        "Send it as a photo caption (or reply to a photo) to add a picture.\n"
        "Example: /product add 面膜 | 99 | 39.9 | 100 | 1\n"
        "/product list — the catalog\n"
        "/product edit ID field=value … — fields: name, price, flash, points, stock, limit, photo (- removes)\n"
        "/product remove ID — take it out (its sales are cancelled)"
    )


def parse_flash_price(raw: str) -> tuple[int | None, int | None]:
    """'39.9' -> (3990, None); '500p' -> (None, 500); '39.9+500p' -> (3990, 500)."""
    flash = prize = None
    for part in raw.replace("＋", "+").split("+"):
        part = part.strip()
        if (match := _POINTS.match(part)) is not None and prize is None:
            prize = int(match.group(1))
        elif (cents := parse_money(part)) is not None and flash is None:
            flash = cents
        else:
            raise UsageError(_("“{value}” is not a price: use 39.9, 500p or 39.9+500p.").format(
                value=esc(clip(raw.strip(), 32))))
    return flash, prize


def parse_limit(raw: str) -> int | None:
    return None if raw.strip().lower() in NO_VALUE else parse_whole(raw, _("The limit"), minimum=1)


def photo_of(message: Message) -> str | None:
    """The largest size of a photo sent with the command, or of the photo it replies to."""
    for candidate in (message, message.reply_to_message):
        if candidate is not None and candidate.photo:
            return candidate.photo[-1].file_id
    return None


def parse_id(raw: str) -> int:
    value = parse_row_id(raw)
    if value is None:
        raise UsageError(_("“{value}” is not an id number.").format(value=esc(clip(raw, 32))))
    return value


@router.message(Command("product"), IN_GROUP)
async def product_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                          group: Group) -> None:
    sub, _sep, rest = (command.args or "").strip().partition(" ")
    sub = sub.lower()
    if sub in ("", "help"):
        await message.reply(esc(product_usage()))
        return
    if sub == "list":
        await product_list(message, session, group)
        return
    if not await require_admin(bot, message):
        return
    assert group.id is not None
    gid = group.id
    try:
        if sub == "add":
            await product_add(message, rest, session, gid)
        elif sub == "edit":
            await product_edit(message, rest, session, gid)
        elif sub in ("remove", "delete"):
            product, sales = await flashsale.remove_product(session, gid, parse_id(rest or "x"))
            text = _("#{id} {name} left the catalog.").format(id=product.id, name=esc(product.name))
            if sales:
                text += " " + _("Cancelled sales: {ids}.").format(ids=", ".join(f"#{s}" for s in sales))
            await message.reply(text)
        else:
            await message.reply(esc(product_usage()))
    except UsageError as error:
        await message.reply(f"{error}\n\n{esc(product_usage())}")
    except flashsale.InvalidProduct:
        await message.reply(esc(product_usage()))
    except flashsale.ProductNotFound:
        await message.reply(_("No such product in this group. /product list shows the catalog."))


async def product_add(message: Message, rest: str, session: AsyncSession, gid: int) -> None:
    parts = [part.strip() for part in rest.replace("｜", "|").split("|")]
    if len(parts) not in (4, 5) or not parts[0]:
        raise UsageError(_("Give name, list price, flash price and stock, separated by |."))
    name = parts[0].strip()
    if not 0 < len(name) <= 128:
        raise UsageError(_("The name must be 1 to 128 characters."))
    price = parse_money(parts[1])
    if price is None:
        raise UsageError(_("“{value}” is not a price.").format(value=esc(clip(parts[1], 32))))
    flash, prize = parse_flash_price(parts[2])
    stock = parse_whole(parts[3], _("The stock"), minimum=1)
    limit = parse_limit(parts[4]) if len(parts) == 5 else None
    product = await flashsale.add_product(session, gid, name, price, stock, flash_price=flash, points_price=prize,
                                          per_member_limit=limit, photo_file_id=photo_of(message))
    await message.reply(_("Added:\n{line}\n\nSchedule it: /flashsale new {id} 10:00 30m daily notice=10").format(
        line=product_line(product), id=product.id))


_FIELD = re.compile(r"(\w+)\s*=\s*(.*?)(?=\s+\w+\s*=|$)", re.DOTALL)


async def product_edit(message: Message, rest: str, session: AsyncSession, gid: int) -> None:
    head, _sep, tail = rest.strip().partition(" ")
    product_id = parse_id(head or "x")
    fields: dict[str, Any] = {}
    for key, raw in _FIELD.findall(tail):
        key, raw = key.lower(), raw.strip()
        if key == "name" and raw:
            if len(raw) > 128:
                raise UsageError(_("The name must be 1 to 128 characters."))
            fields["name"] = raw
        elif key == "price" and (cents := parse_money(raw)) is not None:
            fields["price"] = cents
        elif key == "flash":
            fields["flash_price"] = None if raw.lower() in NO_VALUE else parse_money(raw)
            if raw.lower() not in NO_VALUE and fields["flash_price"] is None:
                raise UsageError(_("“{value}” is not a price.").format(value=esc(clip(raw, 32))))
        elif key == "points":
            fields["points_price"] = None if raw.lower() in NO_VALUE else parse_whole(raw, _("Points"), minimum=1)
        elif key == "stock":
            fields["stock"] = parse_whole(raw, _("The stock"), minimum=1)
        elif key == "limit":
            fields["per_member_limit"] = parse_limit(raw)
        elif key == "photo" and raw.lower() in NO_VALUE:
            fields["photo_file_id"] = None
        else:
            raise UsageError(_("Unknown field or value: {field}.").format(field=esc(clip(f"{key}={raw}", 40))))
    if (photo := photo_of(message)) is not None:
        fields["photo_file_id"] = photo
    if not fields:
        raise UsageError(_("Say what to change, e.g. /product edit 3 flash=29.9 stock=50"))
    product = await flashsale.edit_product(session, gid, product_id, **fields)
    await message.reply(_("Updated (sales already running keep their price and stock):\n{line}").format(
        line=product_line(product)))


async def product_list(message: Message, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    products = await flashsale.list_products(session, group.id)
    if not products:
        await message.reply(_("The flash-sale catalog is empty. Admins add products with /product add."))
        return
    await message.reply("\n".join([_("<b>Flash-sale catalog</b>"), *(product_line(p) for p in products[:40])]))


# -- /flashsale ------------------------------------------------------------------------------------------------


def flashsale_usage() -> str:
    return _(
        "Usage:\n/flashsale list — the sales and when they run\n"
        "Admins:\n/flashsale new PRODUCT_ID HH:MM DURATION [daily | 1,3,5 | weekdays | YYYY-MM-DD] [notice=MINUTES]\n"
        "Example: /flashsale new 3 10:00 30m daily notice=10 — every day at 10:00 for 30 minutes, announced at 09:50\n"
        "Duration: {forms}. Days: ISO weekdays 1 (Mon) to 7 (Sun), or one date.\n"
        "/flashsale cancel ID — stop a sale (a running one ends now)\n"
        "/flashsale orders ID [YYYY-MM-DD] — the orders as a CSV file, in private chat"
    ).format(forms=DURATION_FORMS)


def parse_minutes(raw: str) -> int | None:
    """Whole minutes in a duration (the house grammar: 30m, 1h30m, 90 …); None if it is not one."""
    seconds = parse_duration(raw)
    return seconds // 60 if seconds is not None and seconds % 60 == 0 else None


@dataclass(frozen=True)
class NewSale:
    product_id: int
    at: str
    duration: int
    weekdays: str
    once_on: date | None
    notice: int | None


def parse_new_sale(rest: str) -> NewSale:
    words = rest.split()
    if len(words) < 3:
        raise UsageError(_("Give the product id, the time and the duration."))
    product_id = parse_id(words[0])
    at = flashsale.parse_hh_mm(words[1])
    if at is None:
        raise UsageError(_("“{value}” is not a time: use HH:MM.").format(value=esc(clip(words[1], 16))))
    duration = parse_minutes(words[2])
    if not duration or duration > flashsale.MAX_DURATION_MINUTES:
        raise UsageError(_("“{value}” is not a duration in whole minutes up to a day: use {forms}.").format(
            value=esc(clip(words[2], 16)), forms=DURATION_FORMS))
    weekdays, once_on, notice = "1234567", None, None
    for word in words[3:]:
        lower = word.lower()
        if lower.startswith(("notice=", "提前=")):
            notice = parse_minutes(lower.split("=", 1)[1])
            if not notice or notice > flashsale.MAX_NOTICE_MINUTES:
                raise UsageError(_("notice= takes minutes, e.g. notice=10."))
        elif re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", word):
            try:
                once_on = date(*map(int, word.split("-")))
            except ValueError:
                raise UsageError(_("“{value}” is not a date.").format(value=esc(word))) from None
        else:
            try:
                weekdays = schedules.parse_weekdays(word)
            except schedules.ScheduleError:
                raise UsageError(_("“{value}” is not a day: use daily, 1,3,5 or YYYY-MM-DD.").format(
                    value=esc(clip(word, 16)))) from None
    return NewSale(product_id, at, duration, weekdays, once_on, notice)


@router.message(Keywords(KEYWORDS), IN_GROUP)
async def flashsale_keyword(message: Message, session: AsyncSession, group: Group) -> None:
    await sale_list(message, session, group)


@router.message(Command("flashsale"), IN_GROUP)
async def flashsale_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                            group: Group, runtime: Runtime) -> None:
    sub, _sep, rest = (command.args or "").strip().partition(" ")
    sub = sub.lower()
    if sub in ("", "list"):
        await sale_list(message, session, group)
        return
    if sub == "help" or sub not in ("new", "cancel", "orders"):
        await message.reply(esc(flashsale_usage()))
        return
    if not await require_admin(bot, message):
        return
    assert group.id is not None
    gid, zone = group.id, group.timezone
    try:
        if sub == "new":
            new = parse_new_sale(rest)
            sale = await flashsale.create_sale(
                session, gid, new.product_id, new.at, new.duration, weekdays=new.weekdays, once_on=new.once_on,
                notice_minutes=new.notice, created_by=message.from_user.id if message.from_user else None,
            )  # fmt: skip
            await message.reply(sale_created_text(sale, zone))
        elif sub == "cancel":
            sale_id = parse_id(rest or "x")
            _cancelled, ended = await flashsale.cancel_sale(session, gid, sale_id)
            for flash_round in ended:
                runtime.sold_out.forget(flash_round.id or 0)
                await runtime.live_posts.refresh_now(bot, round_post(bot, flash_round.id or 0, gid, zone, group.locale))
            await message.reply(_("Flash sale #{id} is cancelled.").format(id=sale_id))
        else:
            await send_orders(message, rest, bot, session, gid, zone)
    except UsageError as error:
        await message.reply(f"{error}\n\n{esc(flashsale_usage())}")
    except flashsale.InvalidSchedule as error:
        await message.reply(_("That schedule does not work: {reason}.").format(reason=esc(str(error))) + "\n\n"
                            + esc(flashsale_usage()))
    except flashsale.ProductNotFound:
        await message.reply(_("No such product in this group. /product list shows the catalog."))
    except flashsale.SaleNotFound:
        await message.reply(_("No such flash sale in this group. /flashsale list shows them."))


def sale_created_text(sale: FlashSale, zone: str) -> str:
    text = _("Flash sale #{id} is scheduled: {days} at {time} for {minutes} minutes.").format(
        id=sale.id, days=days_text(sale), time=sale.at, minutes=sale.duration_minutes)
    upcoming = flashsale.next_start(sale, zone, utcnow())
    if upcoming is not None:
        text += "\n" + _("Next: {when} ({zone}).").format(when=local_time(upcoming, zone, MONTH_DAY_TIME), zone=zone)
    if sale.notice_minutes:
        text += "\n" + _("Announced {minutes} minutes ahead.").format(minutes=sale.notice_minutes)
    return text


async def sale_list(message: Message, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    zone = group.timezone
    lines_of_sales = await flashsale.list_sales(session, group.id)
    if not lines_of_sales:
        await message.reply(_("No flash sales scheduled. Admins: /flashsale help"))
        return
    now = utcnow()
    lines = [_("⚡ <b>Flash sales</b>")]
    for line in lines_of_sales[:30]:
        sale, product = line.sale, line.product
        head = _("#{id} {name} · {price} · {days} {time}, {minutes} min").format(
            id=sale.id, name=esc(product.name), price=price_text(product.flash_price, product.points_price),
            days=days_text(sale), time=sale.at, minutes=sale.duration_minutes,
        )  # fmt: skip
        if line.live is not None and line.live.starts_at <= now:
            state = _("on now: {left} left").format(left=line.live.stock)
        elif (upcoming := flashsale.next_start(sale, zone, now)) is not None:
            state = _("next {when}").format(when=local_time(upcoming, zone, MONTH_DAY_TIME))
        else:
            state = _("over")
        lines.append(f"{head} · {state}")
    await message.reply("\n".join(lines))


async def send_orders(message: Message, rest: str, bot: Bot, session: AsyncSession, gid: int, zone: str) -> None:
    words = rest.split()
    if not words:
        raise UsageError(_("Say which sale: /flashsale orders ID"))
    sale_id = parse_id(words[0])
    day = None
    if len(words) > 1:
        try:
            day = date.fromisoformat(words[1])
        except ValueError:
            raise UsageError(_("“{value}” is not a date.").format(value=esc(clip(words[1], 16)))) from None
    rows = await flashsale.export_orders(session, gid, sale_id, day)
    admin_id = message.from_user.id if message.from_user else 0
    if not await groups.can_write_privately(session, admin_id):
        await message.reply(_("Orders hold members' codes: start a private chat with me first, then ask again."))
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["order_code", "day", "round_id", "product", "user_id", "name", "username", "price", "currency",
                     "points",
                     "ordered_at"])
    for row in rows:
        writer.writerow([row.code, row.day.isoformat(), row.round_id, row.product, row.user_id, row.first_name or "",
                         row.username or "", f"{row.price / 100:.2f}" if row.price is not None else "",
                         current_currency() if row.price is not None else "",
                         row.points, row.created_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")])
    name = f"flashsale-{sale_id}" + (f"-{day.isoformat()}" if day else "") + ".csv"
    data = buffer.getvalue().encode("utf-8-sig")  # with a BOM, so spreadsheet apps read the Chinese names
    try:
        await bot.send_document(admin_id, BufferedInputFile(data, filename=name),
                                caption=_("Flash sale #{id}: {count} orders.").format(id=sale_id, count=len(rows)))
    except (TelegramForbiddenError, TelegramBadRequest):
        await message.reply(_("Orders hold members' codes: start a private chat with me first, then ask again."))
        return
    await message.reply(_("Sent you {count} orders of flash sale #{id} in private chat.").format(
        count=len(rows), id=sale_id))
