"""Lotteries (抽奖) in chat: /lottery new (admins), entry by button or by replying to the post with a keyword
(评论抽免单), requirements and entry costs, a provably fair draw (the seed's SHA-256 shown first, the seed and
the frozen entrant list published with the result), prizes handed over or claimed by button, rerolls,
/lottery to list, cancel (refunds) and draw now.

Group replies are scarce: a lottery is one post, edited in place (entrant counts coalesced, at most once every
EDIT_INTERVAL seconds), plus one result message with the entrant list attached. Presses and refusals are
answered privately (alerts; a private message for keyword entries when the member has started the bot).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, esc, tier_label
from handlers.kit import (
    CAPTION_MAX,
    DURATION_FORMS,
    INT32_MAX,
    NO,
    YES,
    RowId,
    UsageError,
    fold,
    local_time,
    parse_duration,
    parse_row_id,
    parse_whole,
)
from handlers.live_posts import LivePost, LivePosts, PostKind, Shown
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint
from models import groups, lottery, points, shop
from models.db import utcnow
from models.groups import Group
from models.lottery import Lottery, LotterySpec, WinnerView

log = logging.getLogger("qunbot.lottery")

router = Blueprint("lottery")

COMMANDS = [
    CommandInfo("lottery", __("Lotteries: running and recent draws (admins: /lottery new …)"), "member"),
]

EDIT_INTERVAL = 10.0  # seconds between two edits of one lottery post
NAMES_IN_CAPTION = 10
OPTION = re.compile(r"(?:^|\s)(winners|end|max|keyword|tier|hours|checkin|streak|cost|claim)\s*=", re.IGNORECASE)
# a number of points (checked by parse_whole, so "-1 points" or "10^30 points" is a usage error, not a text prize)
POINTS_PRIZE = re.compile(r"^([-+]?[\d²³¹][\d²³¹,]*)\s*(points?|pts|积分|積分)$", re.IGNORECASE)
COUPON_PRIZE = re.compile(r"^(?:coupon|优惠券|優惠券)\s*#?(\d{1,12})$", re.IGNORECASE)
COUPON_WORD = re.compile(r"^(?:coupon|优惠券|優惠券)(?:\s|#|$)", re.IGNORECASE)


class LotteryEnter(CallbackData, prefix="lot"):
    lottery_id: RowId


class LotteryClaim(CallbackData, prefix="lotc"):
    lottery_id: RowId


# -- rendering -------------------------------------------------------------------------------------------------


def prize_label(lot: Lottery) -> str:
    if lot.prize_kind == "points":
        return _("{points} points").format(points=lot.prize_points)
    if lot.prize_kind == "coupon":
        return _("coupon: {name}").format(name=esc(lot.prize_text))
    return esc(lot.prize_text)


def mention(user_id: int, name: str) -> str:
    if user_id <= 0:
        return esc(name)
    return f'<a href="tg://user?id={user_id}">{esc(name)}</a>'


def requirement_lines(lot: Lottery, rules: points.PointsRules) -> list[str]:
    parts = []
    if lot.min_tier:
        parts.append(_("{tier} and above").format(tier=esc(tier_label(rules, lot.min_tier))))
    if lot.min_member_hours:
        parts.append(_("in the group for {hours} h").format(hours=lot.min_member_hours))
    if lot.require_checkin:
        parts.append(_("checked in today"))
    if lot.min_streak:
        parts.append(_("check-in streak of {days} days").format(days=lot.min_streak))
    lines = [_("Requirements: {list}").format(list=" · ".join(parts))] if parts else []
    if lot.entry_cost:
        lines.append(_("Entry costs {cost} points (refunded if the lottery is cancelled).").format(cost=lot.entry_cost))
    return lines


WINNER_STATUS = {
    "delivered": __("delivered"), "pending": __("to claim by {deadline}"), "claimed": __("claimed"),
    "expired": __("did not claim"), "rerolled": __("replaced"),
    "undelivered": __("coupon out of stock: admins will help"),
}  # fmt: skip


def winner_line(view: WinnerView, zone: str) -> str:
    status = str(WINNER_STATUS.get(view.status, view.status))
    if view.status == "pending" and view.claim_deadline is not None:
        status = status.format(deadline=local_time(view.claim_deadline, zone))
    return _("{pick}. {name} — {status}").format(pick=view.pick, name=mention(view.user_id, view.name), status=status)


def verify_command(lot: Lottery) -> str:
    return (f"qunbot verify-lottery --seed {lot.seed} --entrants lottery-{lot.id}-entrants.txt "
            f"--winners {lot.winners} --commitment {lot.commitment}")


def render_post(lot: Lottery, winners: list[WinnerView], place: lottery.LotteryPlace
                ) -> tuple[str, InlineKeyboardMarkup | None]:
    """The lottery's one group post, for its current state (open, drawn or cancelled)."""
    assert lot.id is not None
    zone, rules = place.timezone, place.rules
    if lot.status == "cancelled":
        text = _("❌ <b>Lottery #{id} cancelled</b>: {prize}").format(id=lot.id, prize=prize_label(lot))
        if lot.entry_cost:
            text += "\n" + _("Entry points were refunded.")
        return text, None
    if lot.status == "drawn":
        lines = [_("🎉 <b>Lottery #{id} drawn</b>: {prize}").format(id=lot.id, prize=prize_label(lot))]
        if not winners:
            lines.append(_("Nobody entered, so there is no winner."))
        else:
            lines.append(_("Winners:"))
            lines += [winner_line(view, zone) for view in winners]
        lines += [
            _("Entrants: <b>{count}</b>").format(count=lot.entrant_count),
            _("Entrant list SHA-256: <code>{hash}</code>").format(hash=lot.list_hash),
            _("Seed: <code>{seed}</code>").format(seed=lot.seed),
            _("Seed commitment (shown before the draw): <code>{commitment}</code>").format(commitment=lot.commitment),
            _("Anyone can recompute the draw: <code>{command}</code>").format(command=esc(verify_command(lot))),
        ]
        keyboard = None
        if any(view.status == "pending" for view in winners):
            builder = InlineKeyboardBuilder()
            builder.button(text=_("🎁 Claim prize"), callback_data=LotteryClaim(lottery_id=lot.id))
            keyboard = builder.as_markup()
        return "\n".join(lines), keyboard
    lines = [
        _("🎁 <b>Lottery #{id}</b>: {prize}").format(id=lot.id, prize=prize_label(lot)),
        _("Winners: {count}").format(count=lot.winners),
    ]
    if lot.entry_mode == "keyword":
        lines.append(_("How to enter: reply to this post with “{keyword}”").format(keyword=esc(lot.keyword or "")))
    else:
        lines.append(_("How to enter: press the button below"))
    if lot.ends_at is not None and lot.max_entrants is not None:
        lines.append(_("Draw: at {time} ({zone}), or as soon as {count} people have entered").format(
            time=local_time(lot.ends_at, zone), zone=esc(zone), count=lot.max_entrants))
    elif lot.ends_at is not None:
        lines.append(_("Draw: at {time} ({zone})").format(time=local_time(lot.ends_at, zone), zone=esc(zone)))
    else:
        lines.append(_("Draw: as soon as {count} people have entered").format(count=lot.max_entrants))
    lines += requirement_lines(lot, rules)
    lines += [
        _("Entrants: <b>{count}</b>").format(count=lot.entrant_count),
        _("🔒 Fair draw: SHA-256 of the secret seed: <code>{commitment}</code> (the seed is revealed with the "
          "result)").format(commitment=lot.commitment),
    ]
    keyboard = None
    if lot.entry_mode == "button":
        builder = InlineKeyboardBuilder()
        builder.button(text=_("🎲 Enter"), callback_data=LotteryEnter(lottery_id=lot.id))
        keyboard = builder.as_markup()
    return "\n".join(lines), keyboard


async def current_post(session: AsyncSession, lottery_id: int) -> tuple[str, InlineKeyboardMarkup | None,
                                                                          lottery.LotteryPlace]:
    place = await lottery.place_of(session, lottery_id)
    lot = await lottery.get_lottery(session, place.group_id, lottery_id)
    winners = await lottery.winners_of(session, lottery_id) if lot.status == "drawn" else []
    text, keyboard = render_post(lot, winners, place)
    return text, keyboard, place


POST = PostKind("lottery", EDIT_INTERVAL)


def lottery_post(bot: Bot, lottery_id: int, locale: str | None = None) -> LivePost:
    """The lottery's post, its entrants (and after the draw, its result) kept up to date; posted again if it was
    deleted (or the group moved) while the lottery is open."""

    async def render(session: AsyncSession) -> Shown | None:
        try:
            text, keyboard, place = await current_post(session, lottery_id)
        except lottery.LotteryNotFound:
            return None
        if place.message_id is None:
            return None  # not posted yet: its creator posts it
        return Shown(place.chat_id, place.message_id, text, keyboard)

    async def repost(session: AsyncSession, shown: Shown, replacing: int | None) -> int | None:
        place = await lottery.place_of(session, lottery_id)
        if (await lottery.get_lottery(session, place.group_id, lottery_id)).status != "open":
            return None  # a finished lottery's post is not worth a new message
        message = await bot.send_message(shown.chat_id, shown.text, reply_markup=shown.markup)
        await lottery.set_post_message(session, lottery_id, message.message_id)
        return message.message_id

    return LivePost(("lottery", lottery_id), POST, render, locale=locale, repost=repost)


async def edit_post_now(bot: Bot, live_posts: LivePosts, lottery_id: int) -> None:
    """Bring the lottery's post up to date at once (state changes: drawn, cancelled, rerolled)."""
    await live_posts.refresh_now(bot, lottery_post(bot, lottery_id))


# -- publishing a draw (also used by the scheduler) ------------------------------------------------------------


def result_caption(result: lottery.DrawResult) -> str:
    lot = result.lottery
    assert lot.id is not None
    shown = [view for view in result.winners][:NAMES_IN_CAPTION]
    names = ", ".join(mention(view.user_id, view.name) for view in shown)
    if len(result.winners) > len(shown):
        names += " " + _("and {count} more").format(count=len(result.winners) - len(shown))
    lines = [_("🎉 Lottery #{id} ({prize}): congratulations {names}!").format(
        id=lot.id, prize=prize_label(lot), names=names)]
    if lot.prize_kind == "text":
        lines.append(_("Winners: press “Claim prize” on the lottery post within {hours} h.").format(
            hours=lot.claim_hours))
    elif lot.prize_kind == "coupon":
        lines.append(_("Your coupon is in /mycoupons."))
    lines.append(_("Seed: <code>{seed}</code>\nThe attached file is the entrant list that was hashed.").format(
        seed=lot.seed))
    caption = "\n".join(lines)
    return caption if len(caption) <= CAPTION_MAX else caption[: CAPTION_MAX - 1] + "…"


async def publish_draw(bot: Bot, session: AsyncSession, result: lottery.DrawResult, live_posts: LivePosts) -> None:
    """Show a finished draw: the post edited to the result (seed revealed), and one message replying to it
    with the winners and the frozen entrant list attached (the exact bytes whose SHA-256 is published)."""
    lot = result.lottery
    assert lot.id is not None
    await edit_post_now(bot, live_posts, lot.id)
    place = await lottery.place_of(session, lot.id)
    if not result.winners:
        return
    document = BufferedInputFile(result.list_text.encode("utf-8"), filename=f"lottery-{lot.id}-entrants.txt")
    try:
        await bot.send_document(place.chat_id, document, caption=result_caption(result),
                                reply_to_message_id=place.message_id, allow_sending_without_reply=True)
    except TelegramAPIError as error:
        log.warning("lottery %s result not sent: %s", lot.id, error)


async def draw_and_publish(bot: Bot, session: AsyncSession, lottery_id: int, live_posts: LivePosts, *,
                           force: bool = False) -> bool:
    """Draw if due (once, whoever calls first) and publish. False if there was nothing to draw."""
    result = await lottery.draw_lottery(session, lottery_id, force=force)
    if result is None:
        return False
    await publish_draw(bot, session, result, live_posts)
    return True


async def announce_reroll(bot: Bot, session: AsyncSession, result: lottery.RerollResult, live_posts: LivePosts, *,
                          expired: bool) -> None:
    """One short message replying to the post, and the post brought up to date."""
    lot = result.lottery
    assert lot.id is not None
    await edit_post_now(bot, live_posts, lot.id)
    place = await lottery.place_of(session, lot.id)
    old = mention(result.replaced.user_id, result.replaced.name)
    if expired:
        head = _("🔁 Lottery #{id}: {name} did not claim in time.").format(id=lot.id, name=old)
    else:
        head = _("🔁 Lottery #{id}: an admin replaced {name}.").format(id=lot.id, name=old)
    if result.new is None:
        tail = _("Every entrant has already been picked, so there is no new winner.")
    else:
        tail = _("The next pick of the same draw (#{pick}) wins: {name}!").format(
            pick=result.new.pick, name=mention(result.new.user_id, result.new.name))
    try:
        await bot.send_message(place.chat_id, head + "\n" + tail, reply_to_message_id=place.message_id,
                               allow_sending_without_reply=True)
    except TelegramAPIError as error:
        log.warning("lottery %s reroll not announced: %s", lot.id, error)


# -- /lottery new: parsing -------------------------------------------------------------------------------------


def usage() -> str:
    return _(
        "Usage:\n/lottery — running and recent lotteries\n"
        "Admins:\n/lottery new PRIZE [winners=N] [end=…] [max=N] [keyword=…] [tier=…] [hours=N] [checkin=yes] "
        "[streak=N] [cost=N] [claim=H]\n"
        "  PRIZE: any text, “100 points”, or “coupon #3” (an item of /shop)\n"
        "  end: a duration ({forms}), 20:00 or 2026-12-01 20:00 (group time); max: draw when N people have "
        "entered (default: end=24h)\n"
        "  keyword: enter by replying to the post with this word (default: a button)\n"
        "  tier / hours / checkin / streak: who may enter; cost: entry points; claim: hours to claim (default 24)\n"
        "  Example: /lottery new 免单一份 winners=1 end=20:00 keyword=评论抽免单\n"
        "/lottery draw ID — draw now\n/lottery cancel ID — cancel and refund entry points\n"
        "/lottery reroll ID N — replace winner number N with the next pick"
    ).format(forms=DURATION_FORMS)


def parse_end(raw: str, zone: str, now: datetime) -> datetime:
    """30m / 2h / 1d, HH:MM (the next one, group time), or YYYY-MM-DD HH:MM (group time)."""
    value = " ".join(raw.split())
    tz = ZoneInfo(zone)
    seconds = parse_duration(value)
    if seconds is not None:
        return now + timedelta(seconds=seconds)
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", value):
            hour, minute = map(int, value.split(":"))
            local = now.astimezone(tz)
            moment = datetime.combine(local.date(), clock(hour, minute), tzinfo=tz)
            return moment if moment > now else moment + timedelta(days=1)
        moment = datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=tz)
    except ValueError:
        raise UsageError(_("“{raw}” is not an end time. Use a duration ({forms}), 20:00 or 2026-12-01 20:00.").format(
            raw=esc(value[:32]), forms=DURATION_FORMS)) from None
    if moment <= now:
        raise UsageError(_("The end time {time} has already passed.").format(time=esc(value)))
    return moment


def parse_tier(raw: str, rules: points.PointsRules) -> str:
    value = fold(raw)
    for tier in rules.tiers:
        names = {tier.key, tier.name or "", points.DEFAULT_TIER_NAMES.get(tier.key, ""), tier_label(rules, tier.key)}
        if value in {fold(name) for name in names if name}:
            return tier.key
    raise UsageError(_("“{raw}” is not a tier of this group. Tiers: {tiers}.").format(
        raw=esc(raw.strip()[:32]), tiers=", ".join(tier.key for tier in rules.tiers)))


def parse_new(args: str, zone: str, rules: points.PointsRules, now: datetime) -> LotterySpec:
    """`PRIZE [key=value ...]`; a value runs until the next `key=` (so prizes and keywords may have spaces)."""
    matches = list(OPTION.finditer(args))
    prize = (args[: matches[0].start()] if matches else args).strip()
    if not prize:
        raise UsageError(_("Say what the prize is."))
    spec = LotterySpec()
    if match := POINTS_PRIZE.match(prize):
        spec.prize_kind = "points"
        spec.prize_points = parse_whole(match[1], _("The points prize"), minimum=1, maximum=1_000_000)
    elif match := COUPON_PRIZE.match(prize):
        spec.prize_kind, spec.prize_item_id = "coupon", int(match[1])
    elif COUPON_WORD.match(prize):
        raise UsageError(_("A coupon prize names an item of /shop by its number, e.g. coupon #3."))
    elif len(prize) > lottery.PRIZE_MAX:
        raise UsageError(_("The prize must be at most {most} characters.").format(most=lottery.PRIZE_MAX))
    else:
        spec.prize_text = prize
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(args)
        key, raw = match[1].lower(), args[match.end(): end].strip()
        if key == "winners":
            spec.winners = parse_whole(raw, _("winners"), minimum=1, maximum=lottery.MAX_WINNERS)
        elif key == "end":
            spec.ends_at = parse_end(raw, zone, now)
        elif key == "max":
            spec.max_entrants = parse_whole(raw, _("max"), minimum=1, maximum=10_000_000)
        elif key == "keyword":
            if not 0 < len(raw) <= lottery.KEYWORD_MAX:
                raise UsageError(_("The keyword must be 1 to {most} characters.").format(most=lottery.KEYWORD_MAX))
            spec.entry_mode, spec.keyword = "keyword", raw
        elif key == "tier":
            spec.min_tier = parse_tier(raw, rules)
        elif key == "hours":
            spec.min_member_hours = parse_whole(raw, _("hours"), minimum=1, maximum=24 * 3650)
        elif key == "checkin":
            if raw.lower() not in YES | NO:
                raise UsageError(_("checkin must be yes or no."))
            spec.require_checkin = raw.lower() in YES
        elif key == "streak":
            spec.min_streak = parse_whole(raw, _("streak"), minimum=1, maximum=3650)
        elif key == "cost":
            spec.entry_cost = parse_whole(raw, _("cost"), minimum=0, maximum=1_000_000)
        elif key == "claim":
            spec.claim_hours = parse_whole(raw, _("claim"), minimum=1, maximum=24 * 90)
    if spec.ends_at is None and spec.max_entrants is None:
        spec.ends_at = now + timedelta(hours=24)
    if spec.max_entrants is not None and spec.max_entrants < spec.winners:
        raise UsageError(_("max must be at least the number of winners."))
    return spec


# -- /lottery --------------------------------------------------------------------------------------------------


@router.message(Command("lottery"), IN_PRIVATE)
async def lottery_in_private(message: Message) -> None:
    await message.answer(_("Lotteries belong to a group: send /lottery in your group."))


@router.message(Command("lottery"), IN_GROUP)
async def lottery_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group,
                          live_posts: LivePosts) -> None:
    words = (command.args or "").strip().split(maxsplit=1)
    sub = words[0].lower() if words else ""
    rest = words[1] if len(words) > 1 else ""
    if not sub:
        await list_lotteries(message, session, group)
    elif sub == "new":
        await new_lottery(message, rest, bot, session, group)
    elif sub in ("cancel", "draw", "reroll"):
        await admin_action(message, sub, rest, bot, session, group, live_posts)
    else:
        await message.reply(usage())


async def list_lotteries(message: Message, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    found = await lottery.list_lotteries(session, group.id)
    if not found:
        await message.reply(_("No lotteries yet. Admins start one with /lottery new (see /lottery help)."))
        return
    lines = [_("🎁 <b>Lotteries</b>")]
    for lot in found:
        if lot.status == "open":
            state = _("open · {count} entrants").format(count=lot.entrant_count)
            if lot.ends_at is not None:
                state += " · " + _("draw {time}").format(time=local_time(lot.ends_at, group.timezone))
        elif lot.status == "drawn":
            state = _("drawn · {count} entrants").format(count=lot.entrant_count)
        else:
            state = _("cancelled")
        lines.append(_("#{id} {prize} — {state}").format(id=lot.id, prize=prize_label(lot), state=state))
    await message.reply("\n".join(lines))


async def new_lottery(message: Message, args: str, bot: Bot, session: AsyncSession, group: Group) -> None:
    if not await require_admin(bot, message):
        return
    assert group.id is not None
    group_id, zone, now = group.id, group.timezone, utcnow()
    actor = message.from_user.id if message.from_user and message.sender_chat is None else 0
    rules = await points.get_rules(session, group_id)
    try:
        spec = parse_new(args, zone, rules, now)
        lot = await lottery.create_lottery(session, group_id, actor, spec, now=now)
    except UsageError as error:
        await message.reply(str(error) + "\n\n" + esc(usage()))
        return
    except shop.ItemNotFound:
        await message.reply(_("There is no active item #{id} in /shop to give as a prize.").format(
            id=spec.prize_item_id))
        return
    except lottery.InvalidLottery as error:
        await message.reply(_("Cannot start the lottery ({field}: {reason}).").format(
            field=esc(error.field), reason=esc(error.reason)) + "\n\n" + esc(usage()))
        return
    assert lot.id is not None
    text, keyboard, place = await current_post(session, lot.id)
    sent = await message.answer(text, reply_markup=keyboard)
    await lottery.set_post_message(session, lot.id, sent.message_id)


async def admin_action(message: Message, sub: str, rest: str, bot: Bot, session: AsyncSession, group: Group,
                       live_posts: LivePosts) -> None:
    if not await require_admin(bot, message):
        return
    assert group.id is not None
    group_id = group.id
    args = rest.split()
    lottery_id = parse_row_id(args[0]) if args else None
    pick = parse_row_id(args[1]) if len(args) > 1 else None
    if pick is not None and pick > INT32_MAX:  # winner numbers are an Integer column
        pick = None
    if lottery_id is None or (sub == "reroll" and pick is None) or len(args) > (2 if sub == "reroll" else 1):
        await message.reply(usage())
        return
    actor = message.from_user.id if message.from_user and message.sender_chat is None else None
    try:
        lot = await lottery.get_lottery(session, group_id, lottery_id)
        if sub == "cancel":
            _lot, refunded = await lottery.cancel_lottery(session, group_id, lottery_id, actor or 0)
            await edit_post_now(bot, live_posts, lottery_id)
            await message.reply(_("Lottery #{id} is cancelled; {count} entry payments refunded.").format(
                id=lottery_id, count=refunded))
        elif sub == "draw":
            if lot.status != "open" or not await draw_and_publish(bot, session, lottery_id, live_posts, force=True):
                await message.reply(_("Lottery #{id} is not open.").format(id=lottery_id))
        else:
            assert pick is not None
            result = await lottery.reroll(session, group_id, lottery_id, pick, actor_id=actor)
            await announce_reroll(bot, session, result, live_posts, expired=False)
    except lottery.LotteryNotFound:
        await message.reply(_("There is no lottery #{id} in this group.").format(id=lottery_id))
    except lottery.LotteryClosed:
        await message.reply(_("Lottery #{id} is not open.").format(id=lottery_id))
    except lottery.RerollRefused as error:
        reasons = {
            "not_drawn": _("Lottery #{id} has not been drawn yet."),
            "not_found": _("Lottery #{id} has no winner number {pick}."),
            "done": _("Winner number {pick} of lottery #{id} was already replaced."),
            "spent": _("Winner number {pick} has already spent the prize points, so it cannot be taken back."),
            "coupon_used": _("Winner number {pick} has already used the coupon."),
        }
        text = reasons.get(error.reason, _("That cannot be rerolled."))
        await message.reply(text.format(id=lottery_id, pick=pick))


# -- entering --------------------------------------------------------------------------------------------------


def refusal(error: Exception, rules: points.PointsRules, cost: int) -> str:
    """Why a member cannot enter, in one short sentence (an alert holds 200 characters)."""
    if isinstance(error, lottery.NotEligible):
        if error.reason == "tier":
            return _("This lottery is for {tier} and above; you are {have}.").format(
                tier=tier_label(rules, str(error.required)), have=tier_label(rules, str(error.have)))
        if error.reason == "member_hours":
            return _("Members who have been in the group for {hours} h can enter; you: {have} h.").format(
                hours=error.required, have=error.have)
        if error.reason == "checkin":
            return _("Check in today first (send 签到), then enter.")
        return _("You need a check-in streak of {days} days; yours is {have}.").format(
            days=error.required, have=error.have)
    if isinstance(error, points.InsufficientPoints):
        return _("Entering costs {cost} points; you have {balance}.").format(cost=cost, balance=error.balance)
    return _("This lottery is closed.")


async def enter(bot: Bot, session: AsyncSession, lottery_id: int, user_id: int, live_posts: LivePosts,
                i18n: I18n) -> tuple[str, bool]:
    """Enter the member; (what to tell them, whether it worked). Draws at once when this entry fills it."""
    place = await lottery.place_of(session, lottery_id)
    lot = await lottery.get_lottery(session, place.group_id, lottery_id)
    cost = lot.entry_cost
    try:
        result = await lottery.enter_lottery(session, lottery_id, user_id)
    except (lottery.NotEligible, lottery.LotteryClosed, points.InsufficientPoints) as error:
        return refusal(error, place.rules, cost), False
    if not result.entered:
        return _("You have already entered lottery #{id}. Good luck!").format(id=lottery_id), True
    if result.full:
        await draw_and_publish(bot, session, lottery_id, live_posts)
    else:
        live_posts.request(bot, lottery_post(bot, lottery_id, i18n.current_locale))
    text = _("✅ You are in lottery #{id}! Entrants: {count}.").format(id=lottery_id, count=result.count)
    if result.cost:
        text += " " + _("−{cost} points.").format(cost=result.cost)
    return text, True


@router.callback_query(LotteryEnter.filter(), IN_GROUP)
async def enter_press(query: CallbackQuery, callback_data: LotteryEnter, bot: Bot, session: AsyncSession,
                      group: Group | None, live_posts: LivePosts, i18n: I18n) -> None:
    if group is None or group.id is None:
        await query.answer()
        return
    try:
        await lottery.get_lottery(session, group.id, callback_data.lottery_id)
    except lottery.LotteryNotFound:
        await query.answer(_("This lottery is closed."), show_alert=True)
        return
    text, _ok = await enter(bot, session, callback_data.lottery_id, query.from_user.id, live_posts,
                            i18n)
    await query.answer(text, show_alert=True)


def keyword_reply(message: Message, bot: Bot, group: Group | None = None) -> bool:
    """A text reply to one of the bot's own posts in a group (a candidate keyword entry; the keyword is checked
    against the lottery found for that post)."""
    replied = message.reply_to_message
    return (
        group is not None and bool(message.text) and replied is not None and replied.from_user is not None
        and replied.from_user.id == bot.id and message.from_user is not None and not message.from_user.is_bot
        and message.sender_chat is None
    )


@router.message(IN_GROUP, keyword_reply)
async def keyword_entry(message: Message, bot: Bot, session: AsyncSession, group: Group, live_posts: LivePosts,
                        i18n: I18n) -> None:
    """Enter by replying to a keyword lottery's post with its keyword. Reached through the group-message pipeline
    (bot/pipeline.py), after moderation let the message stay; always lets it go on to the later observers (topic
    replies, showcase, chat points)."""
    assert group.id is not None and message.reply_to_message is not None and message.from_user is not None
    lot = await lottery.lottery_by_post(session, group.id, message.reply_to_message.message_id)
    text = fold(message.text or "")
    if lot is not None and lot.id is not None and lot.entry_mode == "keyword" and lot.keyword \
            and fold(lot.keyword) in text:
        answer, ok = await enter(bot, session, lot.id, message.from_user.id, live_posts, i18n)
        if not ok and await groups.can_write_privately(session, message.from_user.id):
            try:
                await bot.send_message(message.from_user.id, answer)
            except TelegramAPIError as error:
                log.info("could not tell %s why: %s", message.from_user.id, error)
    raise SkipHandler()


# -- claiming --------------------------------------------------------------------------------------------------


@router.callback_query(LotteryClaim.filter(), IN_GROUP)
async def claim_press(query: CallbackQuery, callback_data: LotteryClaim, bot: Bot, session: AsyncSession,
                      group: Group | None, live_posts: LivePosts, i18n: I18n) -> None:
    if group is None or group.id is None:
        await query.answer()
        return
    try:
        await lottery.get_lottery(session, group.id, callback_data.lottery_id)
    except lottery.LotteryNotFound:
        await query.answer()
        return
    status = await lottery.claim_prize(session, callback_data.lottery_id, query.from_user.id)
    texts = {
        "claimed": _("🎉 Claimed! An admin will contact you about your prize."),
        "already": _("You have already claimed your prize."),
        "not_winner": _("Only this lottery's winners can claim."),
        "expired": _("The claim deadline has passed."),
        "automatic": _("Your prize was delivered automatically (see /me or /mycoupons)."),
    }
    await query.answer(texts[status], show_alert=True)
    if status == "claimed":
        live_posts.request(bot, lottery_post(bot, callback_data.lottery_id, i18n.current_locale))
