"""The points shop in chat: /shop (items with Redeem buttons), admin item management (/shop add|edit|remove|
codes|list), redeeming by button (an alert, plus the code in private chat), /mycoupons, and staff verification
(/verify CODE, /coupon cancel CODE).

Group replies are scarce: the shop is one message; a redemption is answered privately (an alert, the private
chat) and the shop message's stock counts are refreshed by editing it, at most once every EDIT_INTERVAL seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, display_name, esc, tier_label
from handlers.kit import (
    ALERT_MAX,
    DATE,
    NO,
    NO_VALUE,
    YES,
    RowId,
    UsageError,
    clip,
    fold,
    local_time,
    parse_row_id,
    parse_whole,
)
from handlers.live_posts import LivePost, LivePosts, PostKind, Shown
from handlers.roles import actor_is_admin, require_admin
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint, Keywords
from models import groups, points, shop
from models.db import utcnow
from models.groups import Group
from models.points import DEFAULT_TIER_NAMES, PointsRules
from models.shop import Coupon, ShopItem

router = Blueprint("shop")

COMMANDS = [
    CommandInfo("shop", __("The points shop: redeem coupons with your points (admins: /shop help)"), "member"),
    CommandInfo("mycoupons", __("Your coupons (full codes in private chat)"), "member"),
    CommandInfo("verify", __("Mark a member's coupon as used: /verify CODE"), "admin"),
    CommandInfo("coupon", __("Cancel an unused coupon and refund it: /coupon cancel CODE"), "admin"),
]

KEYWORDS = {"积分商城", "兑换"}
EDIT_INTERVAL = 10.0  # seconds between two edits of one shop message
MAX_LISTED = 30  # items in one shop message (Telegram: 4096 characters, 100 buttons)
GROUP_COUPONS_SHOWN = 5
PRIVATE_COUPONS_SHOWN = 50
MAX_VALID_DAYS = 36_500  # a coupon's expiry must stay a date

STATUS_LABELS = {
    "issued": __("unused"), "used": __("used"), "cancelled": __("cancelled"), "expired": __("expired"),
}

SHOP_POST = PostKind("shop", EDIT_INTERVAL)  # a /shop message is a live post: its stock counts are kept current


class ShopRedeem(CallbackData, prefix="shop"):
    item_id: RowId


@dataclass(frozen=True)
class Place:
    """The group fields a handler needs after calling models (which may roll back and expire the Group row)."""

    group_id: int
    timezone: str
    title: str


# -- rendering -------------------------------------------------------------------------------------------------


def mask_code(code: str) -> str:
    """QB-7KQM-X3PD -> QB-****-X3PD; other codes keep only their last few characters."""
    if code.upper().startswith("QB-") and code.count("-") == 2:
        return "QB-****-" + code.rsplit("-", 1)[1]
    keep = 4 if len(code) >= 10 else 2 if len(code) >= 5 else 0
    return "****" + (code[-keep:] if keep else "")


def status_label(coupon: Coupon) -> str:
    status = coupon.status
    if status == "issued" and coupon.expires_at <= utcnow():
        status = "expired"
    label = STATUS_LABELS.get(status)
    return str(label) if label is not None else status


def item_line(item: ShopItem, rules: PointsRules) -> str:
    if item.stock > 0:
        stock = _("{count} left").format(count=item.stock)
    else:
        stock = _("sold out")
    lines = [
        _("#{id} <b>{name}</b> — {cost} points · {stock}").format(
            id=item.id, name=esc(item.name), cost=item.cost, stock=stock
        )
    ]
    details = []
    if item.per_member_limit is not None:
        details.append(_("limit {limit} per member").format(limit=item.per_member_limit))
    if item.min_tier:
        details.append(_("{tier} and above").format(tier=esc(tier_label(rules, item.min_tier))))
    details.append(_("valid {days} days").format(days=item.valid_days))
    lines.append("    " + " · ".join(details))
    if item.description:
        lines.append("    " + esc(item.description))
    return "\n".join(lines)


def render_shop(items: list[ShopItem], rules: PointsRules) -> tuple[str, InlineKeyboardMarkup | None]:
    """The shop message: one text listing the active items, one Redeem button per item."""
    if not items:
        return _("🛍 The points shop is empty for now."), None
    shown = items[:MAX_LISTED]
    lines = [_("🛍 <b>Points shop</b>"), ""]
    lines += [item_line(item, rules) for item in shown]
    if len(items) > len(shown):
        lines.append(_("… and {count} more.").format(count=len(items) - len(shown)))
    lines += ["", _("Tap a button to redeem. Only you will see your code.")]
    keyboard = InlineKeyboardBuilder()
    for item in shown:
        assert item.id is not None
        if item.stock > 0:
            text = _("🎁 {name} · {cost}").format(name=clip(item.name, 28), cost=item.cost)
        else:
            text = _("{name} · sold out").format(name=clip(item.name, 28))
        keyboard.button(text=text, callback_data=ShopRedeem(item_id=item.id))
    keyboard.adjust(1)
    return "\n".join(lines), keyboard.as_markup()


async def person_name(bot: Bot, chat_id: int, user_id: int | None) -> str:
    """A member's display name, asked from Telegram (the models keep no lookup of names for handlers)."""
    if user_id is None:
        return "?"
    try:
        user = (await bot.get_chat_member(chat_id, user_id)).user
    except TelegramAPIError:
        return f"#{user_id}"
    return display_name(user.first_name, user.username)


# -- admin input -----------------------------------------------------------------------------------------------


def add_usage(rules: PointsRules) -> str:
    return _(
        "Usage: /shop add name | cost | stock [| limit per member | min tier | valid days]\n"
        "Limit: default 1, - for no limit. Tier: {tiers}, or - for everyone. Days: default 30.\n"
        "Example: /shop add 满100减20 coupon | 200 | 50 | 1 | silver | 14"
    ).format(tiers=", ".join(tier.key for tier in rules.tiers))


def edit_usage() -> str:
    return _(
        "Usage: /shop edit ID field=value ...\n"
        "Fields: name, cost, stock, limit (- for none), tier (- for everyone), days, active (yes/no), desc\n"
        "Example: /shop edit 3 cost=150 stock=20 name=Coffee voucher"
    )


def remove_usage() -> str:
    return _("Usage: /shop remove ID\nExample: /shop remove 3")


def codes_usage() -> str:
    return _(
        "Usage: /shop codes ID, then one code per line in the same message\n"
        "Example:\n/shop codes 3\nABC-001\nABC-002"
    )


def admin_usage(rules: PointsRules) -> str:
    return "\n\n".join(
        [
            _("<b>Managing the shop</b> (admins)"),
            esc(add_usage(rules)),
            esc(edit_usage()),
            esc(remove_usage()),
            esc(codes_usage()),
            _("/shop list — every item, including removed ones"),
            _("/verify CODE — mark a coupon used\n/coupon cancel CODE — cancel an unused coupon, refunding it"),
        ]
    )


def parse_limit(raw: str) -> int | None:
    if raw.strip().lower() in NO_VALUE:
        return None
    return parse_whole(raw, _("The per-member limit"), minimum=1)


def parse_tier(raw: str, rules: PointsRules) -> str | None:
    value = raw.strip()
    if value.lower() in NO_VALUE:
        return None
    for tier in rules.tiers:
        names = {tier.key, tier.name or "", DEFAULT_TIER_NAMES.get(tier.key, ""), tier_label(rules, tier.key)}
        if fold(value) in {fold(name) for name in names if name}:
            return tier.key
    raise UsageError(
        _("“{raw}” is not a tier of this group. Tiers: {tiers}, or - for everyone.").format(
            raw=esc(clip(value, 32)), tiers=", ".join(tier.key for tier in rules.tiers)
        )
    )


def parse_item_id(raw: str) -> int:
    value = parse_row_id(raw)
    if value is None:
        raise UsageError(_("“{raw}” is not an item number (see the #numbers in /shop).").format(raw=esc(clip(raw, 32))))
    return value


def parse_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name or len(name) > 128:
        raise UsageError(_("The name must be 1 to 128 characters."))
    return name


@dataclass
class NewItem:
    name: str
    cost: int
    stock: int
    per_member_limit: int | None = 1
    min_tier: str | None = None
    valid_days: int = 30


def parse_add(args: str, rules: PointsRules) -> NewItem:
    """`name | cost | stock [| limit | tier | days]`; without pipes, `name cost stock` (the last two numbers)."""
    if "|" in args:
        parts = [part.strip() for part in args.split("|")]
    else:
        parts = args.rsplit(maxsplit=2)
    if not 3 <= len(parts) <= 6:
        raise UsageError(_("Give at least a name, a cost and a stock."))
    item = NewItem(
        name=parse_name(parts[0]),
        cost=parse_whole(parts[1], _("The cost")),
        stock=parse_whole(parts[2], _("The stock")),
    )
    if len(parts) > 3 and parts[3]:
        item.per_member_limit = parse_limit(parts[3])
    if len(parts) > 4:
        item.min_tier = parse_tier(parts[4], rules)
    if len(parts) > 5 and parts[5]:
        item.valid_days = parse_whole(parts[5], _("The number of valid days"), minimum=1, maximum=MAX_VALID_DAYS)
    return item


EDIT_FIELDS = {
    "name": "name", "cost": "cost", "stock": "stock", "limit": "per_member_limit", "tier": "min_tier",
    "days": "valid_days", "active": "active", "desc": "description", "description": "description",
}
FIELD_PATTERN = re.compile(r"(?:^|\s)([A-Za-z_]+)\s*=")


def parse_edit(args: str, rules: PointsRules) -> tuple[int, dict[str, Any]]:
    """`ID field=value ...`; a value runs until the next `field=` (so names may contain spaces)."""
    head, _sep, rest = args.strip().partition(" ")
    if not head:
        raise UsageError(_("Say which item to change."))
    item_id = parse_item_id(head)
    matches = list(FIELD_PATTERN.finditer(rest))
    if not matches or rest[: matches[0].start()].strip():
        raise UsageError(_("Give one or more field=value pairs."))
    fields: dict[str, Any] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(rest)
        key, raw = match[1].lower(), rest[match.end() : end].strip()
        if key not in EDIT_FIELDS:
            raise UsageError(_("I don't know the field “{field}”.").format(field=esc(clip(key, 32))))
        if key == "name":
            value: Any = parse_name(raw)
        elif key == "cost":
            value = parse_whole(raw, _("The cost"))
        elif key == "stock":
            value = parse_whole(raw, _("The stock"))
        elif key == "limit":
            value = parse_limit(raw)
        elif key == "tier":
            value = parse_tier(raw, rules)
        elif key == "days":
            value = parse_whole(raw, _("The number of valid days"), minimum=1, maximum=MAX_VALID_DAYS)
        elif key == "active":
            if raw.lower() not in YES | NO:
                raise UsageError(_("active must be yes or no."))
            value = raw.lower() in YES
        else:
            if len(raw) > 512:
                raise UsageError(_("The description must be at most 512 characters."))
            value = raw
        fields[EDIT_FIELDS[key]] = value
    return item_id, fields


# -- /shop -----------------------------------------------------------------------------------------------------


@router.message(Command("shop"), IN_PRIVATE)
async def shop_in_private(message: Message) -> None:
    await message.answer(_("The shop belongs to a group: send /shop in your group to see its items."))


@router.message(Command("shop"), IN_GROUP)
async def shop_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group) -> None:
    args = (command.args or "").strip()
    words = args.split(maxsplit=1)
    sub = words[0].lower() if words else ""
    rest = words[1] if len(words) > 1 else ""
    if not args:
        await show_shop(message, session, group)
    elif sub in ("add", "edit", "remove", "delete", "codes", "list", "help"):
        await shop_admin(message, sub, rest, bot, session, group)
    elif await actor_is_admin(bot, message):
        rules = await points.get_rules(session, group_id(group))
        await message.reply(admin_usage(rules))
    else:
        await show_shop(message, session, group)


@router.message(IN_GROUP, Keywords(KEYWORDS))
async def shop_keyword(message: Message, session: AsyncSession, group: Group) -> None:
    await show_shop(message, session, group)


def group_id(group: Group) -> int:
    assert group.id is not None
    return group.id


async def show_shop(message: Message, session: AsyncSession, group: Group) -> None:
    items = await shop.list_items(session, group_id(group))
    rules = await points.get_rules(session, group_id(group))
    text, keyboard = render_shop(items, rules)
    await message.answer(text, reply_markup=keyboard)


async def shop_admin(message: Message, sub: str, rest: str, bot: Bot, session: AsyncSession, group: Group) -> None:
    if not await require_admin(bot, message):
        return
    rules = await points.get_rules(session, group_id(group))
    usage = {"add": add_usage(rules), "edit": edit_usage(), "remove": remove_usage(), "delete": remove_usage(),
             "codes": codes_usage()}.get(sub)
    try:
        if sub == "add":
            await shop_add(message, rest, session, group, rules)
        elif sub == "edit":
            await shop_edit(message, rest, session, group, rules)
        elif sub in ("remove", "delete"):
            await shop_remove(message, rest, session, group)
        elif sub == "codes":
            await shop_codes(message, rest, bot, session, group)
        elif sub == "list":
            await shop_list_all(message, session, group, rules)
        else:
            await message.reply(admin_usage(rules))
    except UsageError as error:
        await message.reply(f"{error}\n\n{esc(usage or '')}".strip())
    except shop.ItemNotFound:
        await message.reply(_("There is no such item in this group's shop. /shop list shows every item."))
    except shop.InvalidItem:
        await message.reply(esc(usage or admin_usage(rules)))


async def shop_add(message: Message, rest: str, session: AsyncSession, group: Group, rules: PointsRules) -> None:
    if not rest.strip():
        raise UsageError(_("Describe the item to add."))
    new = parse_add(rest.strip(), rules)
    item = await shop.add_item(
        session, group_id(group), new.name, new.cost, new.stock,
        per_member_limit=new.per_member_limit, min_tier=new.min_tier, valid_days=new.valid_days,
    )  # fmt: skip
    await message.reply(
        _("Added to the shop:\n{line}\n\nChange it with /shop edit {id} …, add codes with /shop codes {id}.").format(
            line=item_line(item, rules), id=item.id
        )
    )


async def shop_edit(message: Message, rest: str, session: AsyncSession, group: Group, rules: PointsRules) -> None:
    item_id, fields = parse_edit(rest, rules)
    item = await shop.edit_item(session, item_id, group_id(group), **fields)
    state = ""
    if not item.active:
        state = "\n" + _("(not in the shop: /shop edit {id} active=yes puts it back)").format(id=item.id)
    await message.reply(_("Updated:\n{line}").format(line=item_line(item, rules)) + state)


async def shop_remove(message: Message, rest: str, session: AsyncSession, group: Group) -> None:
    if not rest.strip():
        raise UsageError(_("Say which item to remove."))
    item = await shop.remove_item(session, parse_item_id(rest.strip().split()[0]), group_id(group))
    await message.reply(
        _("#{id} {name} left the shop. Coupons already issued stay valid.").format(id=item.id, name=esc(item.name))
    )


async def shop_codes(message: Message, rest: str, bot: Bot, session: AsyncSession, group: Group) -> None:
    head, *lines = rest.strip().split("\n")
    words = head.split()
    if not words:
        raise UsageError(_("Say which item the codes are for."))
    item_id = parse_item_id(words[0])
    codes = [code.strip() for code in [*words[1:], *lines] if code.strip()]
    if not codes:
        raise UsageError(_("Put the codes on the lines after the command, one per line."))
    if any(len(code) > 64 for code in codes):
        raise UsageError(_("Codes are at most 64 characters."))
    added = await shop.add_codes(session, group_id(group), item_id, codes)
    item = await shop.get_item(session, group_id(group), item_id)
    deleted = False
    try:  # the codes are secrets: take them out of the group
        deleted = bool(await bot.delete_message(message.chat.id, message.message_id))
    except TelegramAPIError:
        pass
    text = _("Added {added} of {total} codes to #{id} {name}; stock is now {stock}.").format(
        added=added, total=len(set(codes)), id=item.id, name=esc(item.name), stock=item.stock
    )
    if added < len(set(codes)):
        text += "\n" + _("The others were already known.")
    if deleted:
        text += "\n" + _("I deleted your message so the codes stay secret.")
    else:
        text += "\n" + _("Please delete your message: the codes are secret.")
    await message.answer(text)


async def shop_list_all(message: Message, session: AsyncSession, group: Group, rules: PointsRules) -> None:
    items = await shop.list_items(session, group_id(group), include_inactive=True)
    if not items:
        await message.reply(_("No items yet. Add one with /shop add."))
        return
    lines = [_("<b>Every item</b>")]
    for item in items[:MAX_LISTED * 2]:
        line = item_line(item, rules)
        if not item.active:
            line += "\n    " + _("(removed)")
        lines.append(line)
    await message.reply("\n".join(lines))


# -- redeeming -------------------------------------------------------------------------------------------------


@router.callback_query(ShopRedeem.filter(), IN_GROUP)
async def redeem(
    query: CallbackQuery, callback_data: ShopRedeem, bot: Bot, session: AsyncSession, group: Group,
    live_posts: LivePosts,
) -> None:
    user_id = query.from_user.id
    # Read the group's fields now: a refusal rolls the session back, which expires every loaded row.
    place = Place(group_id(group), group.timezone, group.title)
    gid = place.group_id
    item_id = callback_data.item_id
    try:
        coupon = await shop.redeem(session, gid, user_id, item_id, key=query.id)
    except shop.InsufficientPoints as error:
        await query.answer(
            _("Not enough points: you have {balance}, this costs {cost}.").format(
                balance=error.balance, cost=error.needed
            ),
            show_alert=True,
        )
        return
    except shop.OutOfStock:
        name = await item_name(session, gid, item_id)
        await query.answer(clip(_("Sorry, {item} is out of stock.").format(item=name), ALERT_MAX), show_alert=True)
        refresh_shop_message(query, bot, gid, live_posts)
        return
    except shop.TierTooLow as error:
        rules = await points.get_rules(session, gid)
        await query.answer(
            _("This item is for {required} members and above; your tier is {tier}.").format(
                required=tier_label(rules, error.required), tier=tier_label(rules, error.tier)
            ),
            show_alert=True,
        )
        return
    except shop.LimitReached as error:
        await query.answer(
            _("Limit reached: each member may hold {limit} of this item, and you have them all.").format(
                limit=error.limit
            ),
            show_alert=True,
        )
        return
    except shop.ItemNotFound:
        await query.answer(_("This item is no longer in the shop."), show_alert=True)
        return

    name = await item_name(session, gid, item_id)
    balance = (await points.get_balance(session, gid, user_id)).balance
    private = await groups.can_write_privately(session, user_id)
    alert = _("✅ {item}\nCode: {code}\nCost: {cost} points · balance: {balance}\nValid until {date}").format(
        item=clip(name, 40), code=coupon.code, cost=coupon.cost, balance=balance,
        date=local_time(coupon.expires_at, place.timezone, DATE),
    )  # fmt: skip
    hint = _("A copy is in our private chat.") if private else _("Start a private chat with me to keep your codes.")
    await query.answer(clip(alert + "\n" + hint, ALERT_MAX), show_alert=True)
    if private:
        await send_code_privately(bot, user_id, coupon, name, place)
    refresh_shop_message(query, bot, gid, live_posts)


async def item_name(session: AsyncSession, gid: int, item_id: int) -> str:
    try:
        return (await shop.get_item(session, gid, item_id)).name
    except shop.ItemNotFound:
        return f"#{item_id}"


async def send_code_privately(bot: Bot, user_id: int, coupon: Coupon, name: str, place: Place) -> None:
    text = _(
        "🎁 Your coupon from {group}\n<b>{item}</b>\nCode: <code>{code}</code>\nValid until {date}\n"
        "Show this code to the staff to use it. /mycoupons lists all your coupons."
    ).format(
        group=esc(place.title or "?"), item=esc(name), code=esc(coupon.code),
        date=local_time(coupon.expires_at, place.timezone),
    )  # fmt: skip
    try:
        await bot.send_message(user_id, text)
    except (TelegramForbiddenError, TelegramBadRequest):
        pass  # they blocked the bot (or never really started it): the alert already showed the code


def refresh_shop_message(query: CallbackQuery, bot: Bot, gid: int, live_posts: LivePosts) -> None:
    """Show current stock on the pressed shop message (edits coalesced: at most one every EDIT_INTERVAL s)."""
    message = query.message
    if message is None:
        return
    chat_id, message_id = message.chat.id, message.message_id

    async def render(session: AsyncSession) -> Shown:
        items = await shop.list_items(session, gid)
        rules = await points.get_rules(session, gid)
        text, keyboard = render_shop(items, rules)
        return Shown(chat_id, message_id, text, keyboard)

    live_posts.request(bot, LivePost(("shop", chat_id, message_id), SHOP_POST, render))


# -- coupons ---------------------------------------------------------------------------------------------------


@router.message(Command("mycoupons"), IN_GROUP)
async def my_coupons_in_group(message: Message, session: AsyncSession, group: Group) -> None:
    assert message.from_user is not None
    gid, zone = group_id(group), group.timezone
    coupons = await shop.my_coupons(session, gid, message.from_user.id)
    name = esc(display_name(message.from_user.first_name, message.from_user.username))
    if not coupons:
        await message.reply(_("{name}, you have no coupons in this group yet. See /shop.").format(name=name))
        return
    now = utcnow()
    usable = [c for c in coupons if c.status == "issued" and c.expires_at > now]
    names = await item_names(session, coupons)
    lines = [
        _("{name}, you have {usable} unused of {total} coupons here:").format(
            name=name, usable=len(usable), total=len(coupons)
        )
    ]
    shown = (usable or coupons)[:GROUP_COUPONS_SHOWN]
    for coupon in shown:
        lines.append(
            "• " + _("{item} — {code} — {status}, until {date}").format(
                item=esc(clip(names.get((coupon.group_id, coupon.item_id), "?"), 40)), code=esc(mask_code(coupon.code)),
                status=status_label(coupon), date=local_time(coupon.expires_at, zone, DATE),
            )
        )  # fmt: skip
    lines.append(_("Codes are secret: send /mycoupons to me in a private chat for the full codes."))
    await message.reply("\n".join(lines))


@router.message(Command("mycoupons"), IN_PRIVATE)
async def my_coupons_in_private(message: Message, session: AsyncSession) -> None:
    assert message.from_user is not None
    coupons = await shop.my_coupons(session, None, message.from_user.id)
    if not coupons:
        await message.answer(_("You have no coupons yet. Redeem some with /shop in your group."))
        return
    names = await item_names(session, coupons)
    group_rows: dict[int, Group | None] = {}
    lines = [_("<b>Your coupons</b>")]
    current_group: int | None = None
    for coupon in coupons[:PRIVATE_COUPONS_SHOWN]:
        if coupon.group_id not in group_rows:
            try:
                group_rows[coupon.group_id] = await points.load_group(session, coupon.group_id)
            except points.GroupNotFound:
                group_rows[coupon.group_id] = None
        row = group_rows[coupon.group_id]
        zone = row.timezone if row is not None else "UTC"
        if coupon.group_id != current_group:
            current_group = coupon.group_id
            title = row.title if row is not None and row.title else "?"
            lines += ["", f"<b>{esc(title)}</b>"]
        lines.append(
            "• " + _("{item} — <code>{code}</code> — {status}, until {date}").format(
                item=esc(names.get((coupon.group_id, coupon.item_id), "?")), code=esc(coupon.code),
                status=status_label(coupon), date=local_time(coupon.expires_at, zone),
            )
        )  # fmt: skip
    if len(coupons) > PRIVATE_COUPONS_SHOWN:
        lines.append(_("… and {count} older ones.").format(count=len(coupons) - PRIVATE_COUPONS_SHOWN))
    await message.answer("\n".join(lines))


async def item_names(session: AsyncSession, coupons: Iterable[Coupon]) -> dict[tuple[int, int], str]:
    names: dict[tuple[int, int], str] = {}
    for coupon in coupons:
        key = (coupon.group_id, coupon.item_id)
        if key not in names:
            names[key] = await item_name(session, coupon.group_id, coupon.item_id)
    return names


# -- staff -----------------------------------------------------------------------------------------------------


@router.message(Command("verify", "coupon"), IN_PRIVATE)
async def staff_in_private(message: Message) -> None:
    await message.answer(_("Send this in the group the coupon belongs to (admins only)."))


def verify_usage() -> str:
    return _("Usage: /verify CODE\nExample: /verify QB-7KQM-X3PD")


def cancel_usage() -> str:
    return _("Usage: /coupon cancel CODE\nExample: /coupon cancel QB-7KQM-X3PD")


@router.message(Command("verify"), IN_GROUP)
async def verify(message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group) -> None:
    if not await require_admin(bot, message):
        return
    code = (command.args or "").strip()
    if not code or len(code) > 64:
        await message.reply(esc(verify_usage()))
        return
    staff_id = message.from_user.id if message.from_user else 0
    zone = group.timezone
    result = await shop.verify(session, group_id(group), code, staff_id)
    coupon = result.coupon
    if result.status == "not_found" or coupon is None:
        await message.reply(_("❓ No coupon {code} in this group.").format(code=esc(code)))
        return
    name = esc(await item_name(session, coupon.group_id, coupon.item_id))
    if result.status == "used_now":
        member = esc(await person_name(bot, message.chat.id, coupon.user_id))
        await message.reply(
            _("✅ Verified: {item}\nMember: {member}\nIssued: {issued}").format(
                item=name, member=member, issued=local_time(coupon.issued_at, zone)
            )
        )
    elif result.status == "already_used":
        staff = esc(await person_name(bot, message.chat.id, result.used_by))
        await message.reply(
            _("⚠️ Already used at {time} by {staff} ({item}).").format(
                time=local_time(result.used_at, zone), staff=staff, item=name
            )
        )
    elif result.status == "expired":
        await message.reply(
            _("⌛ This coupon ({item}) expired on {date}.").format(
                item=name, date=local_time(coupon.expires_at, zone)
            )
        )
    else:
        await message.reply(_("🚫 This coupon ({item}) was cancelled.").format(item=name))


@router.message(Command("coupon"), IN_GROUP)
async def coupon_command(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group
) -> None:
    if not await require_admin(bot, message):
        return
    words = (command.args or "").split()
    if len(words) != 2 or words[0].lower() != "cancel" or len(words[1]) > 64:
        await message.reply(esc(cancel_usage()))
        return
    code = words[1]
    actor = message.from_user.id if message.from_user else 0
    try:
        coupon = await shop.cancel_coupon(session, group_id(group), code, actor)
    except shop.CouponNotFound:
        await message.reply(_("❓ No coupon {code} in this group.").format(code=esc(code)))
        return
    except shop.CouponNotCancellable as error:
        status = STATUS_LABELS.get(error.status)
        await message.reply(
            _("This coupon is {status}; only unused coupons can be cancelled.").format(
                status=str(status) if status is not None else esc(error.status)
            )
        )
        return
    item = await shop.get_item(session, coupon.group_id, coupon.item_id)
    member = esc(await person_name(bot, message.chat.id, coupon.user_id))
    await message.reply(
        _("Cancelled {code} ({item}) of {member}: {cost} points refunded; stock is back to {stock}.").format(
            code=esc(coupon.code), item=esc(item.name), member=member, cost=coupon.cost, stock=item.stock
        )
    )
