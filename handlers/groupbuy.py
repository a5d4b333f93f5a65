"""Group buys (拼团): /groupbuy new (admins), join with a quantity or leave by button, the post's counts edited in
place (coalesced), success (成团) announced once, closing at the deadline (scheduler/groupbuy.py), when sold out
or by /groupbuy close, order codes sent privately, and /groupbuy export ID: a CSV of participants for admins.

The CSV goes to the admin's private chat only: it holds order codes, which are secrets, so it never goes into the
group (an admin who has not started the bot is told to).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup, Message, ReplyParameters
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, esc
from handlers.kit import (
    ALERT_MAX,
    DURATION_FORMS,
    Count,
    RowId,
    UsageError,
    clip,
    local_time,
    money,
    parse_duration,
    parse_money,
    parse_row_id,
    parse_whole,
    split_parts,
)
from handlers.live_posts import LivePost, LivePosts, PostKind, group_post
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint, Keywords
from handlers.votes import WINNER_HOURS, WINNER_LIMIT, WINNER_MIN_PEOPLE, WINNER_TOTAL, VoteGroupBuy
from models import groupbuy, groups, votes
from models.db import utcnow
from models.groupbuy import GroupBuy
from models.groups import Group

log = logging.getLogger("qunbot.groupbuy")

router = Blueprint("groupbuy")

COMMANDS = [
    CommandInfo("groupbuy", __("Group buys (拼团): /groupbuy list; admins: /groupbuy new …, export ID"), "member"),
]

KEYWORDS = {"拼团", "团购"}
QUANTITY_BUTTONS = 3  # join buttons ×1, ×2, ×3 (fewer when the per-member limit is lower)
DEFAULT_LIMIT = 5
DEFAULT_DURATION = timedelta(hours=24)
LEAVE = 0  # GroupBuyPress.quantity for the Leave button


class GroupBuyPress(CallbackData, prefix="gb"):
    groupbuy_id: RowId
    quantity: Count  # 0 = leave


# -- rendering -------------------------------------------------------------------------------------------------


def render_groupbuy(row: GroupBuy, zone: str) -> tuple[str, InlineKeyboardMarkup | None]:
    """The group buy's post: prices, people and units, deadline; join/leave buttons while it is open."""
    lines = [_("🛒 <b>Group buy #{id}: {product}</b>").format(id=row.id, product=esc(row.product))]
    if row.price_cents > row.group_price_cents:
        lines.append(_("Group price {price} (was <s>{original}</s>)").format(
            price=money(row.group_price_cents), original=money(row.price_cents)))
    else:
        lines.append(_("Group price {price}").format(price=money(row.group_price_cents)))
    if row.status == "succeeded":
        lines.append(_("✅ Succeeded (成团) with {people} people and {units} units.").format(
            people=row.participants, units=row.sold))
    elif row.status == "failed":
        lines.append(_("❌ Did not succeed: {people} of the {minimum} people needed joined.").format(
            people=row.participants, minimum=row.min_participants))
    else:
        if row.succeeded_at is not None:
            lines.append(_("👥 {people} joined — the group buy succeeds (成团)!").format(people=row.participants))
        else:
            lines.append(_("👥 {people}/{minimum} people joined; it succeeds at {minimum}.").format(
                people=row.participants, minimum=row.min_participants))
        lines.append(_("📦 {sold}/{total} units taken · at most {limit} per member").format(
            sold=row.sold, total=row.total_quantity, limit=row.per_member_limit))
        lines.append(_("⏰ Ends {time}").format(time=local_time(row.deadline, zone)))
        lines.append(_("Tap a quantity to join (tap another to change it). Your order code comes privately."))
        keyboard = InlineKeyboardBuilder()
        assert row.id is not None
        buttons = min(QUANTITY_BUTTONS, row.per_member_limit)
        for quantity in range(1, buttons + 1):
            keyboard.button(text=_("Join ×{quantity}").format(quantity=quantity),
                            callback_data=GroupBuyPress(groupbuy_id=row.id, quantity=quantity))
        keyboard.button(text=_("Leave"), callback_data=GroupBuyPress(groupbuy_id=row.id, quantity=LEAVE))
        keyboard.adjust(buttons, 1)
        return "\n".join(lines), keyboard.as_markup()
    return "\n".join(lines), None


POST = PostKind("groupbuy", 5.0)  # seconds between two edits of a group buy's post (its counts)


def groupbuy_post(bot: Bot, groupbuy_id: int, group_id: int, zone: str, locale: str | None) -> LivePost:
    """The group buy's post, its counts kept up to date."""

    async def show(session: AsyncSession) -> tuple[int | None, str, InlineKeyboardMarkup | None] | None:
        row = await groupbuy.get_groupbuy(session, groupbuy_id)
        if row.status != "open":
            return None  # announce_closing showed the final state
        return (row.message_id, *render_groupbuy(row, zone))

    async def store(session: AsyncSession, message_id: int) -> None:
        await groupbuy.set_message(session, groupbuy_id, message_id)

    return group_post(bot, ("groupbuy", groupbuy_id), POST, group_id, locale, show, store)


async def post_groupbuy(bot: Bot, session: AsyncSession, chat_id: int, zone: str, row: GroupBuy) -> int:
    """Post a new group buy in its group and remember the message (edited in place from then on)."""
    assert row.id is not None
    text, keyboard = render_groupbuy(row, zone)
    sent = await bot.send_message(chat_id, text, reply_markup=keyboard)
    await groupbuy.set_message(session, row.id, sent.message_id)
    return sent.message_id


def reply_to(row: GroupBuy) -> ReplyParameters | None:
    if row.message_id is None:
        return None
    return ReplyParameters(message_id=row.message_id, allow_sending_without_reply=True)


async def announce_success(bot: Bot, chat_id: int, zone: str, row: GroupBuy) -> None:
    """成团: the minimum was reached (only the one join that reached it calls this)."""
    text = _("🎉 {product} reached {minimum} people: the group buy succeeds (成团)! Joining stays open until "
             "{time} or until sold out.").format(product=esc(row.product), minimum=row.min_participants,
                                                  time=local_time(row.deadline, zone))
    await bot.send_message(chat_id, text, reply_parameters=reply_to(row))


async def announce_closing(bot: Bot, chat_id: int, zone: str, closing: groupbuy.Closing) -> None:
    """Show the final state on the post and announce the outcome (only the closer calls this)."""
    row = closing.groupbuy
    text, _markup = render_groupbuy(row, zone)
    if row.message_id is not None:
        try:
            await bot.edit_message_text(text=text, chat_id=chat_id, message_id=row.message_id, reply_markup=None)
        except TelegramBadRequest as error:
            log.info("group buy %s post not edited: %s", row.id, error)
    if closing.status == "succeeded":
        announcement = _("✅ Group buy #{id} {product} has closed: {people} people, {units} units. "
                         "Participants, keep your order codes.").format(
            id=row.id, product=esc(row.product), people=row.participants, units=row.sold)
    else:
        announcement = _("❌ Group buy #{id} {product} did not succeed: {people} of the {minimum} people needed "
                         "joined. Nobody will be charged.").format(
            id=row.id, product=esc(row.product), people=row.participants, minimum=row.min_participants)
    await bot.send_message(chat_id, announcement, reply_parameters=reply_to(row))


# -- /groupbuy -------------------------------------------------------------------------------------------------


def usage() -> str:
    return _(
        "Usage: /groupbuy new product | original price | group price | people needed | total units "
        "[| limit per member | deadline]\n"
        "Prices like 59 or 39.9; limit default 5; deadline a duration ({forms}) or a local time "
        "YYYY-MM-DD HH:MM, default 24h.\n"
        "Example: /groupbuy new 补水面膜 10片 | 59 | 39.9 | 5 | 100 | 2 | 2d\n"
        "/groupbuy list — open group buys\n"
        "/groupbuy close ID — close now (admins)\n"
        "/groupbuy export ID — the participants as a CSV, sent to you privately (admins)"
    ).format(forms=DURATION_FORMS)


@dataclass
class NewGroupBuy:
    product: str
    price_cents: int
    group_price_cents: int
    min_participants: int
    total_quantity: int
    per_member_limit: int
    deadline: datetime


def parse_price(raw: str, what: str) -> int:
    cents = parse_money(raw, max_cents=groupbuy.MAX_PRICE_CENTS)
    if cents is None or cents > groupbuy.MAX_PRICE_CENTS:
        raise UsageError(_("{what} must be a price like 39.9, not “{raw}”.").format(
            what=what, raw=esc(clip(raw.strip(), 20))))
    return cents


def parse_deadline(raw: str, zone: str, now: datetime) -> datetime:
    seconds = parse_duration(raw)
    if seconds is not None:
        deadline = now + timedelta(seconds=seconds)
    else:
        try:
            local = datetime.strptime(" ".join(raw.split()), "%Y-%m-%d %H:%M")
            deadline = local.replace(tzinfo=ZoneInfo(zone))
        except (ValueError, KeyError, LookupError):
            raise UsageError(_("“{raw}” is not a deadline: use 30m, 12h, 2d or YYYY-MM-DD HH:MM.").format(
                raw=esc(clip(raw.strip(), 20)))) from None
    if not groupbuy.MIN_DURATION <= deadline - now <= groupbuy.MAX_DURATION:
        raise UsageError(_("The deadline must be between 1 minute and 60 days from now."))
    return deadline


def parse_new_groupbuy(args: str, zone: str, now: datetime) -> NewGroupBuy:
    parts = split_parts(args)
    if not 5 <= len(parts) <= 7 or not parts[0]:
        raise UsageError(_("Give a product, two prices, the people needed and the total units."))
    product = " ".join(parts[0].split())
    if len(product) > groupbuy.PRODUCT_MAX:
        raise UsageError(_("The product name is at most {limit} characters.").format(limit=groupbuy.PRODUCT_MAX))
    price = parse_price(parts[1], _("The original price"))
    group_price = parse_price(parts[2], _("The group price"))
    total = parse_whole(parts[4], _("The total units"), minimum=1, maximum=groupbuy.MAX_QUANTITY)
    minimum = parse_whole(parts[3], _("The people needed"), minimum=1, maximum=total)
    limit = min(DEFAULT_LIMIT, total)
    if len(parts) > 5 and parts[5]:
        limit = parse_whole(parts[5], _("The limit per member"), minimum=1, maximum=total)
    deadline = now + DEFAULT_DURATION
    if len(parts) > 6 and parts[6]:
        deadline = parse_deadline(parts[6], zone, now)
    return NewGroupBuy(product, price, group_price, minimum, total, limit, deadline)


def group_id(group: Group) -> int:
    assert group.id is not None
    return group.id


@router.message(Command("groupbuy"), IN_PRIVATE)
async def groupbuy_in_private(message: Message) -> None:
    await message.answer(_("Group buys belong to a group: send /groupbuy in your group."))


@router.message(IN_GROUP, Keywords(KEYWORDS))
async def groupbuy_keyword(message: Message, session: AsyncSession, group: Group) -> None:
    await list_groupbuys(message, session, group)


@router.message(Command("groupbuy"), IN_GROUP)
async def groupbuy_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                           group: Group) -> None:
    args = (command.args or "").strip()
    sub, _sep, rest = args.partition(" ")
    sub = sub.lower()
    gid, zone, chat_id = group_id(group), group.timezone, group.chat_id
    if sub == "list":
        await list_groupbuys(message, session, group)
        return
    if sub not in ("new", "close", "export"):
        await message.reply(esc(usage()))
        return
    if not await require_admin(bot, message):
        return
    actor = message.from_user.id if message.from_user is not None and message.sender_chat is None else None
    if sub == "new":
        now = utcnow()
        try:
            new = parse_new_groupbuy(rest, zone, now)
        except UsageError as error:
            await message.reply(f"{error}\n\n{esc(usage())}")
            return
        row, _created = await groupbuy.create_groupbuy(
            session, gid, new.product, price_cents=new.price_cents, group_price_cents=new.group_price_cents,
            min_participants=new.min_participants, total_quantity=new.total_quantity,
            per_member_limit=new.per_member_limit, deadline=new.deadline, created_by=actor, now=now,
        )  # fmt: skip
        await post_groupbuy(bot, session, chat_id, zone, row)
        return
    groupbuy_id = parse_row_id(rest.split()[0]) if rest.split() else None
    if groupbuy_id is None:
        await message.reply(esc(usage()))
        return
    try:
        row = await groupbuy.get_groupbuy(session, groupbuy_id, gid)
    except groupbuy.GroupBuyNotFound:
        await message.reply(_("There is no group buy #{id} in this group.").format(id=groupbuy_id))
        return
    if sub == "close":
        closing = await groupbuy.close_groupbuy(session, groupbuy_id, group_id=gid, closed_by=actor)
        if closing is None:
            await message.reply(_("Group buy #{id} is already closed.").format(id=groupbuy_id))
            return
        await announce_closing(bot, chat_id, zone, closing)
    else:
        await export(message, bot, session, row, zone)


async def export(message: Message, bot: Bot, session: AsyncSession, row: GroupBuy, zone: str) -> None:
    assert row.id is not None
    people = await groupbuy.participants(session, row.id)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([_("No."), _("User ID"), _("Name"), _("Username"), _("Quantity"), _("Order code"),
                     _("Joined at")])
    for number, person in enumerate(people, start=1):
        writer.writerow([number, person.user_id, person.first_name, person.username or "", person.quantity,
                         person.order_code, local_time(person.joined_at, zone)])
    # UTF-8 with a byte-order mark, so spreadsheet programs show Chinese names correctly.
    document = BufferedInputFile(buffer.getvalue().encode("utf-8-sig"), filename=f"groupbuy-{row.id}.csv")
    caption = _("Group buy #{id} {product}: {people} participants, {units} units ({status}).").format(
        id=row.id, product=esc(row.product), people=row.participants, units=row.sold, status=status_label(row))
    if message.from_user is None or message.sender_chat is not None:
        await message.reply(_("Anonymous admins cannot get the list privately: send the command as yourself."))
        return
    try:
        await bot.send_document(message.from_user.id, document, caption=caption)
    except (TelegramForbiddenError, TelegramBadRequest):
        await message.reply(_("I can't write to you privately: start a private chat with me, then try again. "
                              "(The list holds order codes, so it is never posted in the group.)"))
        return
    await message.reply(_("I sent you the list of group buy #{id} privately.").format(id=row.id))


def status_label(row: GroupBuy) -> str:
    return {"open": _("open"), "succeeded": _("succeeded"), "failed": _("failed")}.get(row.status, row.status)


async def list_groupbuys(message: Message, session: AsyncSession, group: Group) -> None:
    gid, zone = group_id(group), group.timezone
    rows = await groupbuy.open_groupbuys(session, gid)
    if not rows:
        await message.reply(_("No group buy is open. Admins start one with /groupbuy new (see /groupbuy help)."))
        return
    lines = [_("<b>Open group buys</b>")]
    for row in rows[:20]:
        lines.append(_("#{id} {product} {price} — {people}/{minimum} people, {sold}/{total} units, ends {time}").format(
            id=row.id, product=esc(row.product), price=money(row.group_price_cents), people=row.participants,
            minimum=row.min_participants, sold=row.sold, total=row.total_quantity,
            time=local_time(row.deadline, zone)))
    lines.append(_("Join with the buttons on each group buy's post."))
    await message.reply("\n".join(lines))


# -- presses ---------------------------------------------------------------------------------------------------


@router.callback_query(GroupBuyPress.filter(), IN_GROUP)
async def press(query: CallbackQuery, callback_data: GroupBuyPress, bot: Bot, session: AsyncSession, group: Group,
                live_posts: LivePosts, i18n: I18n) -> None:
    gid, zone, chat_id, title = group_id(group), group.timezone, group.chat_id, group.title
    user_id, groupbuy_id = query.from_user.id, callback_data.groupbuy_id
    result: groupbuy.JoinResult | None = None
    try:
        if callback_data.quantity == LEAVE:
            await groupbuy.leave(session, gid, groupbuy_id, user_id)
            await query.answer(_("You left the group buy. Your order code is void."), show_alert=True)
        else:
            result = await groupbuy.join(session, gid, groupbuy_id, user_id, callback_data.quantity)
    except (groupbuy.GroupBuyClosed, groupbuy.GroupBuyNotFound):
        await query.answer(_("This group buy has ended."), show_alert=True)
        return
    except groupbuy.NotJoined:
        await query.answer(_("You have not joined this group buy."), show_alert=True)
        return
    except groupbuy.OverLimit as error:
        await query.answer(_("At most {limit} per member.").format(limit=error.limit), show_alert=True)
        return
    except groupbuy.NotEnoughLeft as error:
        await query.answer(_("Only {left} left: choose a smaller quantity.").format(left=error.left),
                           show_alert=True)
        return
    if result is not None:
        await answer_join(query, bot, session, result, title, zone)
        if result.status == "same":
            return
    live_posts.request(bot, groupbuy_post(bot, groupbuy_id, gid, zone, i18n.current_locale))
    if result is not None and result.reached:
        await announce_success(bot, chat_id, zone, result.groupbuy)
    if result is not None and result.closing is not None:
        await announce_closing(bot, chat_id, zone, result.closing)


async def answer_join(query: CallbackQuery, bot: Bot, session: AsyncSession, result: groupbuy.JoinResult,
                      title: str, zone: str) -> None:
    entry, row = result.entry, result.groupbuy
    product = clip(row.product, 40)
    if result.status == "joined":
        text = _("✅ You joined: {quantity} × {product}\nOrder code: {code}").format(
            quantity=entry.quantity, product=product, code=entry.order_code)
    elif result.status == "changed":
        text = _("🔁 Now {quantity} × {product}\nOrder code: {code}").format(
            quantity=entry.quantity, product=product, code=entry.order_code)
    else:
        text = _("You are already in with {quantity} × {product}.\nOrder code: {code}").format(
            quantity=entry.quantity, product=product, code=entry.order_code)
    private = await groups.can_write_privately(session, entry.user_id)
    if result.status != "same":
        hint = _("A copy is in our private chat.") if private else _("Start a private chat with me to keep it.")
        text += "\n" + hint
    await query.answer(clip(text, ALERT_MAX), show_alert=True)
    if private and result.status != "same":
        message = _(
            "🛒 Your group buy order in {group}\n<b>{product}</b>: {quantity} × {price}\n"
            "Order code: <code>{code}</code>\nGroup buy #{id} ends {time}."
        ).format(group=esc(title or "?"), product=esc(row.product), quantity=entry.quantity,
                 price=money(row.group_price_cents), code=esc(entry.order_code), id=row.id,
                 time=local_time(row.deadline, zone))
        try:
            await bot.send_message(entry.user_id, message)
        except TelegramAPIError:
            pass  # they blocked the bot: the alert already showed the code


# -- a vote's winner becomes a group buy (the button lives on the vote's post) ---------------------------------


@router.callback_query(VoteGroupBuy.filter(), IN_GROUP)
async def open_groupbuy_for_winner(query: CallbackQuery, callback_data: VoteGroupBuy, bot: Bot,
                                   session: AsyncSession, group: Group) -> None:
    if not await require_admin(bot, query):
        return
    gid, zone, chat_id = group_id(group), group.timezone, group.chat_id
    try:
        vote = await votes.get_vote(session, callback_data.vote_id, gid)
    except votes.VoteNotFound:
        await query.answer(_("This vote is gone."), show_alert=True)
        return
    winner = next((o for o in await votes.get_options(session, callback_data.vote_id)
                   if o.id == vote.winner_option_id), None)
    if vote.status != "closed" or winner is None:
        await query.answer(_("This vote has no winner."), show_alert=True)
        return
    now = utcnow()
    row, created = await groupbuy.create_groupbuy(
        session, gid, winner.name, price_cents=winner.price_cents, group_price_cents=winner.price_cents,
        min_participants=WINNER_MIN_PEOPLE, total_quantity=WINNER_TOTAL, per_member_limit=WINNER_LIMIT,
        deadline=now + timedelta(hours=WINNER_HOURS), created_by=query.from_user.id, vote_id=vote.id, now=now,
    )  # fmt: skip
    if not created:
        await query.answer(_("Group buy #{id} for this vote is already open.").format(id=row.id), show_alert=True)
        return
    await query.answer(_("Group buy #{id} is open for {name}.").format(id=row.id, name=clip(winner.name, 40)))
    await post_groupbuy(bot, session, chat_id, zone, row)
