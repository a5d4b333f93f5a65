"""Daily check-ins (签到打卡): /checkin and keywords in groups, the daily check-in board with its button, the
streak calendar and make-up check-ins (补签).

A group gets ONE check-in message a day — the board. Presses are answered privately (an alert); command and
keyword check-ins show up on the board, which is edited in place at most every BOARD_EDIT_INTERVAL seconds,
so a 10,000-member morning rush costs the group a handful of edits, not 10,000 replies.
"""

from __future__ import annotations

import calendar
import functools
import logging
from datetime import date
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, esc, tier_label
from handlers.kit import fold
from handlers.live_posts import BUSY, Busy, LivePost, LivePosts, PostKind, Shown
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, Blueprint
from models import boards, checkin, groups, points, schedules
from models.clock import local_day
from models.db import utcnow
from models.groups import Group

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("qunbot.checkin")

router = Blueprint("checkin")
router.filter("message", IN_GROUP)

COMMANDS = [
    CommandInfo("checkin", __("Check in for today (also: 签到, 打卡); /checkin info shows your month"), "member"),
]

BOARD_KIND = boards.CHECKIN_BOARD
BOARD_EDIT_INTERVAL = 10.0  # seconds between edits of one board: at most 6 of the group's 20 messages a minute
BADGE_NAMES = {
    "streak_7": __("7-day streak"),
    "streak_30": __("30-day streak"),
    "streak_100": __("100-day streak"),
}


class CheckinPress(CallbackData, prefix="ci"):
    pass


def board_keyboard() -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    keyboard.button(text=_("✅ Check in"), callback_data=CheckinPress())
    return keyboard.as_markup()


def render_board(snapshot: boards.BoardSnapshot) -> str:
    lines = [
        _("📅 <b>Check-in board · {day}</b>").format(day=snapshot.day.isoformat()),
        _("Checked in today: <b>{count}</b>").format(count=snapshot.count),
    ]
    if snapshot.latest:
        lines.append(_("Latest:"))
        for line in snapshot.latest:
            lines.append(
                _("• {name} +{points} · {streak}-day streak").format(
                    name=esc(line.name), points=line.points, streak=line.streak
                )
            )
    lines.append(_("Press the button, or send 签到 / /checkin. Streaks earn bonuses."))
    return "\n".join(lines)


def render_result(result: checkin.CheckinResult, rules: points.PointsRules) -> str:
    if result.already:
        return _("You already checked in today (#{rank}, {streak}-day streak). Balance: {balance}.").format(
            rank=result.rank or "—", streak=result.streak, balance=result.balance
        )
    lines = [
        _("✅ Checked in: +{points} points").format(points=result.points),
        _("{streak}-day streak · #{rank} today · balance {balance}").format(
            streak=result.streak, rank=result.rank, balance=result.balance
        ),
    ]
    if result.streak_bonus:
        lines.append(_("Streak bonus: +{bonus}").format(bonus=result.streak_bonus))
    if result.first_bonus:
        lines.append(_("Early bird bonus: +{bonus}").format(bonus=result.first_bonus))
    for badge in result.new_badges:
        lines.append(_("🏅 New badge: {badge}").format(badge=str(BADGE_NAMES.get(badge, badge))))
    if result.tier_up:
        lines.append(_("🎉 You reached {tier}!").format(tier=tier_label(rules, result.tier_after)))
    return "\n".join(lines)


BOARD = PostKind(BOARD_KIND, BOARD_EDIT_INTERVAL)


def board_post(bot: Bot, group: Group, day: date, locale: str | None) -> LivePost:
    """Today's board as a live post: shows the day's check-ins; posted by the first change if the scheduler has
    not posted it (or again if it was deleted, or the group moved to a supergroup)."""
    assert group.id is not None
    group_id, slot = group.id, day.isoformat()

    async def render(session: AsyncSession) -> Shown | Busy | None:
        chat_id = await groups.chat_id_of(session, group_id)  # it may have moved (a supergroup now)
        if chat_id is None:
            return None
        post = await boards.get_post(session, group_id, BOARD_KIND, slot)
        if post is not None and post.message_id is None:
            return BUSY  # being posted right now (the scheduler): edited once it is up
        snapshot = await boards.board_snapshot(session, group_id, day)
        return Shown(chat_id, post.message_id if post else None, render_board(snapshot), board_keyboard())

    async def repost(session: AsyncSession, shown: Shown, replacing: int | None) -> int | Busy | None:
        if replacing is None:
            message_id = await post_board(bot, session, shown.chat_id, group_id, day)
            return BUSY if message_id is None else message_id  # None: the scheduler claimed it first
        message = await bot.send_message(shown.chat_id, shown.text, reply_markup=shown.markup)
        await boards.set_post_message(session, group_id, BOARD_KIND, slot, message.message_id)
        return message.message_id

    return LivePost(("checkin_board", group_id, slot), BOARD, render, locale=locale, repost=repost)


async def post_board(bot: Bot, session: AsyncSession, chat_id: int, group_id: int, day: date) -> int | None:
    """Claim and post today's board in one group; None if someone else already claimed it."""
    slot = day.isoformat()
    if not await boards.claim_post(session, group_id, BOARD_KIND, slot):
        return None
    snapshot = await boards.board_snapshot(session, group_id, day)
    try:
        message = await bot.send_message(chat_id, render_board(snapshot), reply_markup=board_keyboard())
    except TelegramAPIError:
        await boards.release_post(session, group_id, BOARD_KIND, slot)
        raise
    await boards.set_post_message(session, group_id, BOARD_KIND, slot, message.message_id)
    return message.message_id


def show_on_board(bot: Bot, group: Group, day: date, live_posts: LivePosts, i18n: I18n) -> None:
    """Make the day's board reflect a new check-in (posted if the day has none yet; edits coalesced)."""
    live_posts.request(bot, board_post(bot, group, day, group.locale or i18n.default_locale))


def is_checkin_keyword(message: Message, group: Group | None = None) -> bool:
    """A message that is exactly one of the group's check-in keywords (default 签到, 打卡, "check in")."""
    if group is None or not message.text or len(message.text) > 20:
        return False
    return fold(message.text) in _folded(boards.board_settings(group).keywords)


@functools.lru_cache(maxsize=1024)
def _folded(keywords: tuple[str, ...]) -> frozenset[str]:
    """A group's check-in keywords as compared, in both scripts (every group message meets this filter)."""
    return frozenset(fold(keyword) for keyword in keywords)


@router.message(Command("checkin"))
async def checkin_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                          group: Group, runtime: Runtime) -> None:
    args = (command.args or "").split()
    sub = fold(args[0]) if args else ""
    if not args:
        await do_checkin(message, bot, session, group, runtime)
    elif sub in ("info", "calendar", "日历"):
        await show_calendar(message, session, group)
    elif sub in ("makeup", "补签"):
        await make_up(message, session, group)
    elif sub == "board":
        await configure_board(message, bot, session, group, args[1:])
    elif sub == "keywords":
        await configure_keywords(message, bot, session, group, " ".join(args[1:]))
    else:
        await message.reply(usage())


def usage() -> str:
    return _(
        "Usage:\n/checkin — check in for today (or send 签到)\n/checkin info — your streak and this month\n"
        "/checkin makeup — make up yesterday's check-in with points (if the group allows it)\n"
        "Admins: /checkin board HH:MM | off — when the daily board is posted\n"
        "/checkin keywords 签到, 打卡 — the words that check in"
    )


@router.message(is_checkin_keyword)
async def checkin_keyword(message: Message, bot: Bot, session: AsyncSession, group: Group, runtime: Runtime) -> None:
    await do_checkin(message, bot, session, group, runtime)


async def do_checkin(message: Message, bot: Bot, session: AsyncSession, group: Group, runtime: Runtime) -> None:
    if message.from_user is None or message.sender_chat is not None:
        return  # channels and anonymous admins have no points
    assert group.id is not None
    now = utcnow()
    result = await checkin.check_in(session, group.id, message.from_user.id, now=now)
    if result.already:
        # the board does not change: the member still hears that it counted (their streak), in one reply
        await message.reply(render_result(result, points.rules_of(group)))
        return
    runtime.activity.note(group.id, message.from_user.id, result.day, "checkins")
    show_on_board(bot, group, local_day(now, group.timezone), runtime.live_posts, runtime.i18n)


@router.callback_query(CheckinPress.filter(), IN_GROUP)
async def checkin_press(query: CallbackQuery, bot: Bot, group: Group, runtime: Runtime) -> None:
    assert group.id is not None
    now = utcnow()
    result = await runtime.checkins.check_in(group.id, query.from_user.id, now=now, group=group)
    rules = points.rules_of(group)
    await query.answer(render_result(result, rules), show_alert=True)
    if not result.already:
        runtime.activity.note(group.id, query.from_user.id, result.day, "checkins")
        show_on_board(bot, group, result.day, runtime.live_posts, runtime.i18n)


async def show_calendar(message: Message, session: AsyncSession, group: Group) -> None:
    if message.from_user is None:
        return
    assert group.id is not None
    today = local_day(utcnow(), group.timezone)
    days = await checkin.month_calendar(session, group.id, message.from_user.id, today.year, today.month)
    streak = await checkin.get_streak(session, group.id, message.from_user.id)
    weeks = []
    for week in calendar.Calendar(firstweekday=0).monthdayscalendar(today.year, today.month):
        cells = []
        for day in week:
            if day == 0:
                cells.append("  ")
            elif day in days:
                cells.append("✅")
            elif day > today.day:
                cells.append("··")
            else:
                cells.append(f"{day:02d}")
        weeks.append(" ".join(cells))
    head = _("{name}: {month} — {count} check-ins, streak {streak} (best {best}), today: {today}").format(
        name=esc(message.from_user.first_name),
        month=f"{today.year}-{today.month:02d}",
        count=len(days),
        streak=streak.current,
        best=streak.best,
        today=_("done") if today.day in days else _("not yet"),
    )
    await message.reply(head + "\n<code>" + "\n".join(weeks) + "</code>")


async def make_up(message: Message, session: AsyncSession, group: Group) -> None:
    if message.from_user is None:
        return
    assert group.id is not None
    try:
        result = await checkin.make_up(session, group.id, message.from_user.id)
    except checkin.MakeupDisabled:
        await message.reply(_("Make-up check-ins are off in this group."))
        return
    except checkin.AlreadyCheckedIn:
        await message.reply(_("You did not miss yesterday: nothing to make up."))
        return
    except points.InsufficientPoints as error:
        await message.reply(
            _("A make-up check-in costs {cost} points; you have {balance}.").format(
                cost=points.rules_of(group).makeup_cost, balance=getattr(error, "balance", "?")
            )
        )
        return
    await message.reply(
        _("Yesterday is checked in (−{cost} points). Streak: {streak} days. Balance: {balance}.").format(
            cost=result.cost, streak=result.streak, balance=result.balance
        )
    )


async def configure_board(message: Message, bot: Bot, session: AsyncSession, group: Group, args: list[str]) -> None:
    if not await require_admin(bot, message):
        return
    assert group.id is not None
    if len(args) != 1:
        await message.reply(usage())
        return
    if fold(args[0]) in ("off", "关", "关闭"):
        await schedules.disable_schedule(session, group.id, BOARD_KIND)
        await message.reply(_("The daily check-in board is off. Members can still check in with 签到."))
        return
    when = boards.parse_hh_mm(fold(args[0]))
    if when is None:
        await message.reply(_("“{value}” is not a time. Use HH:MM, e.g. /checkin board 08:00").format(
            value=esc(args[0][:16])))
        return
    current = await schedules.get_schedule(session, group.id, BOARD_KIND)  # keeps days set with /schedule
    await schedules.set_schedule(session, group.id, BOARD_KIND, when,
                                 weekdays=current.weekdays if current else schedules.ALL_DAYS)
    await message.reply(_("The check-in board will be posted every day at {time} ({zone}).").format(
        time=when, zone=esc(group.timezone)))


async def configure_keywords(message: Message, bot: Bot, session: AsyncSession, group: Group, raw: str) -> None:
    if not await require_admin(bot, message):
        return
    assert group.id is not None
    words = [word.strip() for word in raw.replace("，", ",").split(",") if word.strip()]
    if not words or any(len(word) > 20 for word in words) or len(words) > 10:
        await message.reply(_("Usage: /checkin keywords 签到, 打卡 (1 to 10 words, each at most 20 characters)"))
        return
    await boards.set_board_settings(session, group.id, keywords=words)
    await message.reply(_("Check-in keywords: {words}").format(words=esc(", ".join(words))))
