"""Points in the group: /me (积分), /rank (排行), admins' /give, /take, /set and /settings, chat points for what
members say (silent, tier-ups announced coalesced), and showcase posts (晒单) with moderator approval. Chat points
and showcases are observers of the group-message pipeline (bot/pipeline.py): they see a message only after
moderation let it stay.

Group replies are scarce, so answers are short replies to the member's own message; presses are answered with
alerts. Nothing a member writes is stored: chat points see only the text's length and a hash of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.types import User as TelegramUser
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n import ngettext
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import (
    GROUP_ANONYMOUS_BOT,
    TELEGRAM_SERVICE_USER,
    CommandInfo,
    display_name,
    esc,
    tier_label,
)
from handlers.kit import TelegramId, current_currency, fold, money
from handlers.live_posts import LivePost, LivePosts, PostKind, Shown
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint, Keywords
from models import checkin, points, roles, shop
from models.clock import local_day
from models.db import utcnow
from models.groups import Group
from models.points import PointsRules

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("qunbot.points")

router = Blueprint("points")

COMMANDS = [
    CommandInfo("me", __("Your points, tier, streak and rank"), "member"),
    CommandInfo("rank", __("Top 10 members: /rank week | month | all"), "member"),
    CommandInfo("give", __("Give points: reply with /give N reason, or /give @user N reason"), "admin"),
    CommandInfo("take", __("Take points: reply with /take N reason, or /take @user N reason"), "admin"),
    CommandInfo("set", __("Change a points rule: /set rule value"), "admin"),
    CommandInfo("settings", __("Show the group's points rules"), "admin"),
]

MAX_ADMIN_AMOUNT = 100_000
REASON_MAX = 64
TOP_N = 10
ANNOUNCE_WINDOW_S = 60.0

# Default tier names by key; a custom name stored in the rules wins and is shown as is.
BADGE_NAMES = {"streak_7": __("7-day streak"), "streak_30": __("30-day streak"), "streak_100": __("100-day streak")}
PERIOD_ALIASES = {
    "week": "week", "w": "week", "周": "week", "本周": "week", "週": "week", "本週": "week",
    "month": "month", "m": "month", "月": "month", "本月": "month",
    "all": "all", "total": "all", "a": "all", "总": "all", "總": "all", "全部": "all",
}
RANK_TITLES = {
    "week": __("🏆 <b>Top 10 this week</b>"),
    "month": __("🏆 <b>Top 10 this month</b>"),
    "all": __("🏆 <b>Top 10 of all time</b>"),
}
RULE_HELP = {
    "checkin_base": __("points for a check-in"),
    "checkin_streak_bonus": __("bonus on reaching a streak, day:bonus pairs"),
    "checkin_first_n": __("how many early birds get the first bonus"),
    "checkin_first_bonus": __("bonus for the first check-ins of the day"),
    "makeup_enabled": __("members may buy a missed check-in (on/off)"),
    "makeup_cost": __("price of a make-up check-in"),
    "chat_points": __("points for a message"),
    "chat_cooldown_s": __("seconds between rewarded messages"),
    "chat_min_length": __("shortest message that earns"),
    "chat_daily_cap": __("most chat points a day"),
    "showcase_points": __("points for a showcase post"),
    "showcase_hashtag": __("hashtag that marks a showcase photo"),
    "showcase_auto_approve": __("award showcases without review (on/off)"),
    "showcase_daily_cap": __("most showcase points a day"),
    "topic_points": __("points for answering the daily topic"),
    "topic_daily_cap": __("most topic points a day"),
    "tiers": __("tiers by lifetime points, key:threshold[:name]"),
}


class SettingsPress(CallbackData, prefix="pset"):
    """A button of the /settings menu: rule name and op ("inc", "dec" or "flip")."""

    rule: str
    op: str


class ShowcaseReview(CallbackData, prefix="showcase"):
    """A moderator's decision on a showcase photo: action "approve" or "reject"; the poster and their message."""

    action: str
    user_id: TelegramId
    message_id: TelegramId


# -- small helpers ---------------------------------------------------------------------------------------------


def next_tier(rules: PointsRules, lifetime: int) -> tuple[str, int] | None:
    """(key, points still needed) of the next tier above `lifetime`, None at the top."""
    for tier in rules.tiers:
        if tier.threshold > lifetime:
            return tier.key, tier.threshold - lifetime
    return None


def badge_label(badge: str) -> str:
    name = BADGE_NAMES.get(badge)
    return str(name) if name is not None else badge


DEFAULT_HASHTAG = PointsRules.model_fields["showcase_hashtag"].default


def rule_value(rules: PointsRules, name: str) -> str:
    """A rule's value in the syntax /set accepts, so an admin can copy it."""
    value = getattr(rules, name)
    if isinstance(value, bool):
        return "on" if value else "off"
    if name == "checkin_streak_bonus":
        return ",".join(f"{day}:{bonus}" for day, bonus in value.items()) or "none"
    if name == "tiers":
        return ",".join(
            f"{tier.key}:{tier.threshold}" + (f":{tier.name}" if tier.name else "") for tier in value
        )
    if name == "showcase_hashtag" and value == DEFAULT_HASHTAG:
        return _("#晒单")  # the default, in the reader's script (#曬單): both match, folded (is_showcase)
    return str(value)


def fingerprint(text: str) -> tuple[int, str]:
    """Length and sha256 of the normalized text (lowercase, whitespace collapsed). The text itself is dropped."""
    normalized = " ".join(text.lower().split())
    return len(normalized), hashlib.sha256(normalized.encode()).hexdigest()


def is_person(user: TelegramUser | None) -> bool:
    return user is not None and not user.is_bot and user.id not in (TELEGRAM_SERVICE_USER, GROUP_ANONYMOUS_BOT)


def actor_id_of(message: Message) -> int:
    if message.sender_chat is not None:
        return message.sender_chat.id
    return message.from_user.id if message.from_user else 0


# -- tier-up announcements, coalesced --------------------------------------------------------------------------


@dataclass
class _Pending:
    header: str  # rendered when the first line is queued: flushing may run outside any update's i18n context
    lines: dict[int, str]
    timer: asyncio.Task[None] | None = None


class TierAnnouncer:
    """At most one tier-up announcement per group per `window` seconds; everyone who tiered up meanwhile is
    listed in the next one. One per process: the Runtime's `tiers`."""

    def __init__(self, window: float = ANNOUNCE_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._last_sent: dict[int, float] = {}
        self._pending: dict[int, _Pending] = {}

    async def announce(self, bot: Bot, chat_id: int, user_id: int, name: str, tier: str) -> None:
        pending = self._pending.setdefault(chat_id, _Pending(_("🎉 <b>Tier up!</b>"), {}))
        pending.lines[user_id] = _("{name} is now {tier}!").format(name=esc(name), tier=esc(tier))
        if pending.timer is not None:
            return  # the coming announcement will include them
        now = self.clock()
        self._forget_old(now)
        last = self._last_sent.get(chat_id)
        if last is None or now - last >= self.window:
            await self.flush(bot, chat_id)
        else:
            pending.timer = asyncio.create_task(self._later(bot, chat_id, last + self.window - now))

    async def _later(self, bot: Bot, chat_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        pending = self._pending.get(chat_id)
        if pending is not None:
            pending.timer = None
        await self.flush(bot, chat_id)

    async def flush(self, bot: Bot, chat_id: int) -> None:
        """Send the group's pending announcement now (if any)."""
        pending = self._pending.pop(chat_id, None)
        if pending is None or not pending.lines:
            return
        if pending.timer is not None and pending.timer is not asyncio.current_task():
            pending.timer.cancel()
        self._last_sent[chat_id] = self.clock()
        text = "\n".join([pending.header, *pending.lines.values()])
        try:
            await bot.send_message(chat_id, text)
        except TelegramAPIError as error:
            log.warning("tier-up announcement in %s failed: %s", chat_id, error)

    def close(self) -> None:
        """Drop pending announcements and their timers (shutdown, tests)."""
        for pending in self._pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
        self._pending.clear()

    def _forget_old(self, now: float) -> None:
        if len(self._last_sent) > 1000:
            for chat_id, sent in list(self._last_sent.items()):
                if now - sent >= self.window:
                    del self._last_sent[chat_id]


async def announce_tier_up(
    tiers: TierAnnouncer, bot: Bot, group: Group, user_id: int, name: str, ledger: points.LedgerResult | None
) -> None:
    if ledger is None or not ledger.tier_up or ledger.tier_after is None:
        return
    rules = points.rules_of(group)
    await tiers.announce(bot, group.chat_id, user_id, name, tier_label(rules, ledger.tier_after))


# -- /me -------------------------------------------------------------------------------------------------------


@router.message(Command("me"), IN_GROUP)
@router.message(Keywords({"积分"}), IN_GROUP)
async def me_in_group(message: Message, session: AsyncSession, group: Group | None) -> None:
    user = message.from_user
    if group is None or group.id is None or message.sender_chat is not None or not is_person(user):
        await message.reply(_("Only members have points. Send /me from your own account."))
        return
    assert user is not None
    balance = await points.get_balance(session, group.id, user.id)
    rules = points.rules_of(group)
    streak = await checkin.get_streak(session, group.id, user.id)
    checked_today = streak.last_day == local_day(utcnow(), group.timezone)
    week = await points.place_of(session, group.id, user.id, "week")
    badges = await points.list_badges(session, group.id, user.id)
    now = utcnow()
    coupons = [c for c in await shop.my_coupons(session, group.id, user.id, statuses=("issued",)) if c.expires_at > now]

    name = display_name(user.first_name, user.username)
    lines = [
        f"<b>{esc(name)}</b> · {esc(tier_label(rules, balance.tier))}",
        _("💰 Points: {balance} · lifetime {lifetime}").format(
            balance=balance.balance, lifetime=balance.lifetime_earned
        ),
    ]
    upcoming = next_tier(rules, balance.lifetime_earned)
    if upcoming is not None:
        lines[-1] += " · " + _("{needed} more to {tier}").format(
            needed=upcoming[1], tier=esc(tier_label(rules, upcoming[0]))
        )
    if checked_today:
        lines.append(
            ngettext("🔥 Streak: {days} day · checked in today ✅", "🔥 Streak: {days} days · checked in today ✅",
                     streak.current).format(days=streak.current)
        )
    else:
        lines.append(
            ngettext("🔥 Streak: {days} day · not checked in today — /checkin",
                     "🔥 Streak: {days} days · not checked in today — /checkin", streak.current).format(
                days=streak.current
            )
        )
    if week is not None:
        lines.append(
            ngettext("🏆 This week: #{place} with {points} point", "🏆 This week: #{place} with {points} points",
                     week.points).format(place=week.place, points=week.points)
        )
    else:
        lines.append(_("🏆 This week: no points yet"))
    if badges:
        lines.append(_("🎖 Badges: {badges}").format(badges=esc(", ".join(badge_label(b.badge) for b in badges))))
    lines.append(_("🎟 Unused coupons: {count}").format(count=len(coupons)))
    await message.reply("\n".join(lines))


@router.message(Command("me"), IN_PRIVATE)
async def me_in_private(message: Message, session: AsyncSession) -> None:
    assert message.from_user is not None
    rows = await points.balances_in_groups(session, message.from_user.id)
    if not rows:
        await message.answer(
            _("You have no points yet. Check in, chat and share purchases in your groups to earn some.")
        )
        return
    lines = [_("<b>Your points</b>")]
    for group, balance, lifetime in rows:
        rules = points.rules_of(group)
        tier = tier_label(rules, rules.tier_for(lifetime))
        lines.append(
            _("{group}: {balance} points · {tier}").format(
                group=esc(group.title or "?"), balance=balance, tier=esc(tier)
            )
        )
    await message.answer("\n".join(lines))


# -- /rank -----------------------------------------------------------------------------------------------------


@router.message(Command("rank"), IN_GROUP)
@router.message(Keywords({"排行", "排行榜"}), IN_GROUP)
async def rank(
    message: Message, bot: Bot, session: AsyncSession, group: Group | None, command: CommandObject | None = None
) -> None:
    if group is None or group.id is None:
        return
    words = fold((command.args if command else None) or "week").split()  # 本週, 總, ｗｅｅｋ
    if words and words[0] in ("pin", "unpin"):
        await pin_board(message, bot, session, group.id, words)
        return
    period = PERIOD_ALIASES.get(words[0] if len(words) == 1 else "")
    if period is None:
        await message.reply(_("Usage: /rank week | month | all (default: week)\n"
                              "Admins: /rank pin [week | month | all] keeps a pinned leaderboard up to date; "
                              "/rank unpin stops it."))
        return
    user = message.from_user
    viewer = user.id if message.sender_chat is None and is_person(user) and user is not None else None
    await message.reply(await render_leaderboard(session, group.id, period, viewer=viewer))


async def render_leaderboard(session: AsyncSession, group_id: int, period: str, *, viewer: int | None = None) -> str:
    """The top 10 of `period`, with the viewer's own place when one is given (in the current locale)."""
    top = await points.leaderboard(session, group_id, period, limit=TOP_N)  # type: ignore[arg-type]
    mine = await points.place_of(session, group_id, viewer, period) if viewer is not None else None  # type: ignore[arg-type]
    names = await roles.member_names(session, [row.user_id for row in top])
    lines = [str(RANK_TITLES[period])]
    if not top:
        lines.append(_("No points yet — check in, chat and share your purchases to get on the board!"))
    for row in top:
        lines.append(
            _("{place}. {name} — {points}").format(
                place=row.place, name=esc(names.get(row.user_id, _("someone"))), points=row.points
            )
        )
    if mine is not None:
        lines += ["", ngettext("You: #{place} with {points} point", "You: #{place} with {points} points",
                               mine.points).format(place=mine.place, points=mine.points)]
    elif viewer is not None and top:
        lines += ["", _("You are not on the board yet.")]
    return "\n".join(lines)


async def pin_board(message: Message, bot: Bot, session: AsyncSession, group_id: int, words: list[str]) -> None:
    """/rank pin [period]: post the leaderboard and pin it (refreshed in place every few minutes);
    /rank unpin: unpin it and stop refreshing."""
    if not await require_admin(bot, message):
        return
    if words[0] == "unpin":
        pinned = next((b for b in await points.pinned_boards(session) if b.group_id == group_id), None)
        await points.set_pinned_board(session, group_id, None, None)
        if pinned is not None:
            with contextlib.suppress(TelegramAPIError):
                await bot.unpin_chat_message(message.chat.id, message_id=pinned.message_id)
        await message.reply(_("The pinned leaderboard is no longer updated."))
        return
    period = PERIOD_ALIASES.get(words[1] if len(words) > 1 else "week")
    if period is None or len(words) > 2:
        await message.reply(_("Usage: /rank pin [week | month | all]"))
        return
    posted = await message.answer(await render_leaderboard(session, group_id, period))
    await points.set_pinned_board(session, group_id, period, posted.message_id)
    try:
        await bot.pin_chat_message(message.chat.id, posted.message_id, disable_notification=True)
    except TelegramAPIError:
        await message.reply(_("I could not pin the leaderboard: please give me the “Pin messages” admin right. "
                              "It will still be kept up to date."))


PINNED_BOARD = PostKind("pinned_leaderboard", 0.0)  # the scheduler paces it (every few minutes)


async def refresh_pinned_board(bot: Bot, live_posts: LivePosts, board: points.PinnedBoard) -> bool:
    """Edit a pinned leaderboard in place (the scheduler calls this every few minutes). True if it changed.
    Deleted by someone: it is no longer kept up to date."""

    async def render(session: AsyncSession) -> Shown:
        text = await render_leaderboard(session, board.group_id, board.period)
        return Shown(board.chat_id, board.message_id, text)

    async def forget(session: AsyncSession) -> None:
        await points.set_pinned_board(session, board.group_id, None, None)

    post = LivePost(("pinned_leaderboard", board.group_id), PINNED_BOARD, render, locale=board.locale, forget=forget)
    return await live_posts.refresh_now(bot, post)


@router.message(Command("rank"), IN_PRIVATE)
async def rank_in_private(message: Message) -> None:
    await message.answer(_("Send /rank in a group to see its leaderboard. /me here shows your points everywhere."))


# -- /give and /take -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    user_id: int
    name: str


def _after_entity(text: str, offset: int, length: int) -> str:
    """The text after an entity (offsets count UTF-16 code units)."""
    return text.encode("utf-16-le")[(offset + length) * 2 :].decode("utf-16-le")


async def _parse_admin_change(
    message: Message, command: CommandObject, session: AsyncSession, group: Group
) -> tuple[Target, int, str | None] | str:
    """(target, amount, reason) from `/give @user N reason`, a text mention, or a reply; else an error text."""
    assert group.id is not None
    usage = _("Usage: reply to a member's message with {command} N [reason], or {command} @username N [reason]. "
              "N is a whole number from 1 to {most}.").format(command="/" + command.command, most=MAX_ADMIN_AMOUNT)
    args = (command.args or "").strip()
    text = message.text or ""
    target: Target | None = None
    mention = next((e for e in message.entities or [] if e.type == "text_mention" and e.user is not None), None)
    if mention is not None and mention.user is not None:
        if not is_person(mention.user):
            return _("Bots and channels don't collect points.")
        target = Target(mention.user.id, display_name(mention.user.first_name, mention.user.username))
        args = _after_entity(text, mention.offset, mention.length).strip()
    elif args.startswith("@"):
        username, _sep, args = args.partition(" ")
        found = await roles.member_by_username(session, group.id, username[1:], present_only=True)
        if found is None:
            return _(
                "I don't know {username} in this group yet. Reply to their message with {command} N instead."
            ).format(username=esc(username[:40]), command="/" + command.command)
        target = Target(*found)
        args = args.strip()
    elif message.reply_to_message is not None:
        replied = message.reply_to_message
        if replied.sender_chat is not None or not is_person(replied.from_user):
            return _("Bots and channels don't collect points.")
        assert replied.from_user is not None
        target = Target(replied.from_user.id, display_name(replied.from_user.first_name, replied.from_user.username))
    if target is None:
        return usage
    amount_text, _sep, reason = args.partition(" ")
    if not re.fullmatch(r"\d{1,6}", amount_text) or not 1 <= int(amount_text) <= MAX_ADMIN_AMOUNT:
        return usage
    reason = " ".join(reason.split())
    if len(reason) > REASON_MAX:
        return _("The reason is at most {most} characters.").format(most=REASON_MAX)
    return target, int(amount_text), reason or None


@router.message(Command("give", "take"), IN_GROUP)
async def give_or_take(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group | None,
) -> None:
    if group is None or group.id is None or not await require_admin(bot, message):
        return
    parsed = await _parse_admin_change(message, command, session, group)
    if isinstance(parsed, str):
        await message.reply(parsed)
        return
    target, amount, reason = parsed
    giving = command.command.lower() == "give"
    key = f"{'give' if giving else 'take'}:{message.chat.id}:{message.message_id}"
    actor = actor_id_of(message)
    if giving:
        result = await points.give(session, group.id, target.user_id, amount, reason, actor, key)
        text = ngettext("✅ {name} received {amount} point. Balance: {balance}.",
                        "✅ {name} received {amount} points. Balance: {balance}.", amount)
    else:
        try:
            result = await points.take(session, group.id, target.user_id, amount, reason, actor, key)
        except points.InsufficientPoints as error:
            await message.reply(
                _("{name} has only {balance} points, so {amount} cannot be taken.").format(
                    name=esc(target.name), balance=error.balance, amount=amount
                )
            )
            return
        text = ngettext("✅ {amount} point taken from {name}. Balance: {balance}.",
                        "✅ {amount} points taken from {name}. Balance: {balance}.", amount)
    lines = [text.format(name=esc(target.name), amount=amount, balance=result.balance)]
    if reason:
        lines.append(_("Reason: {reason}").format(reason=esc(reason)))
    if result.tier_up and result.tier_after:
        lines.append(_("{name} is now {tier}!").format(
            name=esc(target.name), tier=esc(tier_label(points.rules_of(group), result.tier_after))
        ))
    await message.reply("\n".join(lines))


# -- /set and /settings ----------------------------------------------------------------------------------------


def _settings_usage() -> str:
    return _("Change one with /set &lt;rule&gt; &lt;value&gt;, e.g. /set checkin_base 15. Flags take on/off; "
             "checkin_streak_bonus takes day:bonus pairs (3:5,7:20); tiers take key:threshold[:name] "
             "(normal:0,silver:500,gold:2000).")


def _rule_names() -> str:
    return ", ".join(points.RULE_NAMES)


@router.message(Command("set"), IN_GROUP)
async def set_rule(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group | None
) -> None:
    if group is None or group.id is None or not await require_admin(bot, message):
        return
    name, _sep, value = (command.args or "").strip().partition(" ")
    name = name.lower().replace("-", "_")
    value = value.strip()
    if not name:
        await message.reply(_settings_usage() + "\n" + _("Rules: {rules}").format(rules=_rule_names()))
        return
    if name not in points.RULE_NAMES:
        await message.reply(
            _("There is no rule “{rule}”. Rules: {rules}").format(rule=esc(name[:40]), rules=_rule_names())
        )
        return
    if not value:
        rules = points.rules_of(group)
        await message.reply(
            _("{rule} is {value} — {help}.\nUsage: /set {rule} &lt;value&gt;").format(
                rule=name, value=esc(rule_value(rules, name)), help=esc(RULE_HELP.get(name, ""))
            )
        )
        return
    try:
        rules = await points.set_rule(session, group.id, name, value)
    except points.InvalidRule as error:
        await message.reply(
            _("Cannot set {rule}: {reason}").format(rule=esc(error.name[:40]), reason=esc(error.reason))
        )
        return
    await message.reply(_("✅ {rule} is now {value}.").format(rule=name, value=esc(rule_value(rules, name))))


@router.message(Command("settings"), IN_GROUP)
async def show_settings(message: Message, bot: Bot, session: AsyncSession, group: Group | None) -> None:
    if group is None or group.id is None or not await require_admin(bot, message):
        return
    rules = await points.get_rules(session, group.id)
    await message.reply(settings_text(rules), reply_markup=settings_menu(rules))


def settings_text(rules: PointsRules) -> str:
    lines = [_("<b>Points rules</b>")]
    for name in points.RULE_NAMES:
        help_text = RULE_HELP.get(name)
        line = f"<code>{name}</code> = {esc(rule_value(rules, name))}"
        lines.append(line + (" — " + esc(help_text) if help_text else ""))
    lines += ["", _("Buttons change numbers and switches at once; the rest takes /set."), _settings_usage()]
    lines += ["", _("Prices are shown in {currency}, e.g. {example}; change with /currency CODE.").format(
        currency=current_currency(), example=money(128000))]
    return "\n".join(lines)


def settings_menu(rules: PointsRules) -> InlineKeyboardMarkup:
    """− / ＋ for every number, a switch for every on/off rule (the streak table, tiers and hashtag take /set)."""
    keyboard = InlineKeyboardBuilder()
    for name in points.RULE_NAMES:
        value = getattr(rules, name)
        if isinstance(value, bool):
            keyboard.row(InlineKeyboardButton(
                text=f"{name}: {'✅' if value else '⬜'}", callback_data=SettingsPress(rule=name, op="flip").pack()
            ))
        elif isinstance(value, int):
            keyboard.row(
                InlineKeyboardButton(text="−", callback_data=SettingsPress(rule=name, op="dec").pack()),
                InlineKeyboardButton(text=f"{name}: {value}", callback_data=SettingsPress(rule=name, op="show").pack()),
                InlineKeyboardButton(text="＋", callback_data=SettingsPress(rule=name, op="inc").pack()),
            )
    return keyboard.as_markup()


def _step(value: int) -> int:
    """Steps that grow with the number: 1 below 10, 5 below 100, 10 below 1,000, then 100."""
    return 1 if value < 10 else 5 if value < 100 else 10 if value < 1000 else 100


@router.callback_query(SettingsPress.filter(), IN_GROUP)
async def press_setting(
    query: CallbackQuery, callback_data: SettingsPress, bot: Bot, session: AsyncSession, group: Group | None
) -> None:
    if group is None or group.id is None or not await require_admin(bot, query):
        return
    rules = await points.get_rules(session, group.id)
    name, op = callback_data.rule, callback_data.op
    value = getattr(rules, name, None) if name in points.RULE_NAMES else None
    if op == "show" or value is None:
        help_text = RULE_HELP.get(name)
        await query.answer(str(help_text) if help_text else name)
        return
    if isinstance(value, bool) and op == "flip":
        raw = "off" if value else "on"
    elif isinstance(value, int) and op in ("inc", "dec"):
        raw = str(max(0, value + _step(value) if op == "inc" else value - _step(max(value - 1, 0))))
    else:
        await query.answer()
        return
    try:
        rules = await points.set_rule(session, group.id, name, raw)
    except points.InvalidRule as error:
        await query.answer(_("Not changed: {reason}").format(reason=error.reason), show_alert=True)
        return
    await query.answer(_("{rule} = {value}").format(rule=name, value=rule_value(rules, name)))
    if isinstance(query.message, Message):
        try:
            await query.message.edit_text(settings_text(rules), reply_markup=settings_menu(rules))
        except TelegramBadRequest as error:
            if "not modified" not in str(error):
                log.warning("settings menu not edited: %s", error)


# -- showcase (晒单) --------------------------------------------------------------------------------------------


def is_showcase(message: Message, group: Group | None = None) -> bool:
    """A photo from a person whose caption carries the group's showcase hashtag."""
    if group is None or not message.photo or not message.caption:
        return False
    if message.sender_chat is not None or not is_person(message.from_user):
        return False
    hashtag, caption = points.rules_of(group).showcase_hashtag, message.caption
    if hashtag.lower() in caption.lower():
        return True
    return fold(hashtag) in fold(caption)  # #曬單 and ＃曬單 are #晒单


def _showcase_key(chat_id: int, message_id: int) -> str:
    return f"showcase:{chat_id}:{message_id}"


async def showcase(message: Message, bot: Bot, session: AsyncSession, group: Group, tiers: TierAnnouncer) -> None:
    """A showcase post (is_showcase): paid at once, or put to the moderators. An observer of the group-message
    pipeline (bot/pipeline.py): it sees only a message that moderation let stay, and its reply is the message's
    answer (the pipeline ends there; a showcase earns no chat points too)."""
    assert group.id is not None and message.from_user is not None
    user = message.from_user
    name = display_name(user.first_name, user.username)
    rules = points.rules_of(group)
    if rules.showcase_points <= 0:
        return
    if rules.showcase_auto_approve:
        result = await points.award_showcase(
            session, group.id, user.id, key=_showcase_key(message.chat.id, message.message_id)
        )
        if result.status == "awarded":
            await message.reply(_("📸 Thanks for sharing! +{points} points.").format(points=result.points))
            await announce_tier_up(tiers, bot, group, user.id, name, result.ledger)
        elif result.status == "capped":
            await message.reply(_("📸 Thanks for sharing! You have reached today's showcase points limit."))
        return
    keyboard = InlineKeyboardBuilder()
    keyboard.button(
        text=_("✅ Approve"),
        callback_data=ShowcaseReview(action="approve", user_id=user.id, message_id=message.message_id),
    )
    keyboard.button(
        text=_("❌ Reject"),
        callback_data=ShowcaseReview(action="reject", user_id=user.id, message_id=message.message_id),
    )
    await message.reply(
        _("📸 Showcase by {name}. Moderators: approve to award {points} points.").format(
            name=esc(name), points=rules.showcase_points
        ),
        reply_markup=keyboard.as_markup(),
    )


@router.callback_query(ShowcaseReview.filter(), IN_GROUP)
async def review_showcase(
    query: CallbackQuery, callback_data: ShowcaseReview, bot: Bot, session: AsyncSession, group: Group | None,
    runtime: Runtime,
) -> None:
    if query.message is None or group is None or group.id is None:
        await query.answer()
        return
    if callback_data.action not in ("approve", "reject"):
        await query.answer()
        return
    if not await require_admin(bot, query):
        return
    chat_id = query.message.chat.id
    moderator = esc(display_name(query.from_user.first_name, query.from_user.username))
    verdict = await points.decide_showcase(
        session, group.id, callback_data.message_id, callback_data.user_id, approve=callback_data.action == "approve",
        moderator_id=query.from_user.id, key=_showcase_key(chat_id, callback_data.message_id),
    )
    if not verdict.decided:
        await query.answer(_("This showcase has already been decided."), show_alert=True)
        return
    poster_name = (await roles.member_names(session, [callback_data.user_id])).get(callback_data.user_id, _("someone"))
    poster = esc(poster_name)
    awarded: points.LedgerResult | None = None
    result = verdict.earned
    if result is None:
        outcome = _("📸 Showcase by {name}: rejected by {moderator}.").format(name=poster, moderator=moderator)
        answer = _("Rejected.")
    else:
        if result.status == "awarded":
            awarded = result.ledger
            outcome = _("📸 Showcase by {name}: approved by {moderator}, +{points} points.").format(
                name=poster, moderator=moderator, points=result.points
            )
        elif result.status == "duplicate":  # paid before under the same key: nothing more to decide
            await query.answer(_("This showcase has already been decided."), show_alert=True)
            return
        elif result.status == "capped":
            outcome = _("📸 Showcase by {name}: approved by {moderator}; today's showcase points limit is "
                        "reached, so no points.").format(name=poster, moderator=moderator)
        else:
            outcome = _("📸 Showcase by {name}: approved by {moderator}; showcase points are off.").format(
                name=poster, moderator=moderator
            )
        answer = _("Approved.")
    await query.answer(answer)
    if isinstance(query.message, Message):
        try:
            await query.message.edit_text(outcome, reply_markup=None)
        except TelegramAPIError as error:
            log.warning("could not edit the showcase review in %s: %s", chat_id, error)
    if awarded is not None:
        await announce_tier_up(runtime.tiers, bot, group, callback_data.user_id, poster_name, awarded)


# -- chat points: the group-message pipeline's last earning observer, silent ------------------------------------


async def chat_points(message: Message, bot: Bot, group: Group, runtime: Runtime) -> None:
    """Points for taking part in the conversation. The pipeline (bot/pipeline.py) calls this only for a message
    that moderation let stay, after the other observers; members resting in `runtime.chat_quiet` cost no database
    work, and the rest go to the database in bursts through `runtime.chat_points` (a ChatDesk)."""
    user = message.from_user
    text = message.text or message.caption
    eligible = (
        group.id is not None
        and text
        and not text.startswith("/")
        and message.sticker is None
        and message.sender_chat is None
        and message.forward_origin is None
        and message.via_bot is None
        and not message.is_automatic_forward
        and is_person(user)
    )
    if eligible:
        assert group.id is not None and user is not None and text is not None
        quiet = runtime.chat_quiet
        if quiet.resting(group.id, user.id):
            return  # cannot earn now: no database work for this message
        rules = points.rules_of(group)
        length, digest = fingerprint(text)
        if length < rules.chat_min_length:
            return
        result = await runtime.chat_points.award(
            group.id, points.ChatMessage(user.id, length, digest, f"chat:{message.chat.id}:{message.message_id}"),
            group=group,
        )
        if result.awarded:
            quiet.rest(group.id, user.id, rules.chat_cooldown_s)
            await announce_tier_up(
                runtime.tiers, bot, group, user.id, display_name(user.first_name, user.username), result.ledger
            )
        elif result.status == "capped":
            quiet.rest(group.id, user.id, seconds_to_local_midnight(group.timezone))


class ChatQuiet:
    """Members who cannot earn chat points for a while (cooldown after an award, or today's cap reached), known in
    this process (the Runtime's `chat_quiet`): their messages skip the database. Safe with several processes: the
    database stays the judge whenever this process has not seen the reason itself."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self.until: OrderedDict[tuple[int, int], float] = OrderedDict()

    def rest(self, group_id: int, user_id: int, seconds: float) -> None:
        self.until[(group_id, user_id)] = time.monotonic() + seconds
        self.until.move_to_end((group_id, user_id))
        while len(self.until) > self.size:
            self.until.popitem(last=False)

    def resting(self, group_id: int, user_id: int) -> bool:
        until = self.until.get((group_id, user_id))
        return until is not None and time.monotonic() < until


def seconds_to_local_midnight(zone: str) -> float:
    now = datetime.now(ZoneInfo(zone))
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)
    return (tomorrow - now).total_seconds()
