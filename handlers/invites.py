"""Invite rewards in chat: /invite (a member's personal link, created once and reused), joins attributed from the
link in the chat_member update, newcomers' messages counted, /invites (your invitations and the leaderboard;
admins: top inviters with void rates, settings), private notes to inviters, and a warning to admins when joins
cannot be seen.

Telegram facts relied on (Bot API docs, looked up): createChatInviteLink needs the bot to be an administrator with
can_invite_users; its `name` is 0-32 characters; ChatMemberUpdated.invite_link is "the chat invite link which was
used by the user to join the chat; for joining by invite link events only", and a link the bot created is shown
in full (links of other admins have their second part replaced with "…"). chat_member updates reach only bots that
are administrators and list "chat_member" in allowed_updates (bot/runner.py passes the dispatcher's used update
types, which include it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject
from aiogram.types import ChatMemberUpdated, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, display_name, esc
from handlers.points import is_person
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint, Service
from models import groups, invites, roles
from models.db import utcnow
from models.groups import Group
from models.invites import Invitation, InviterStats, InviteRules, Vested

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("qunbot.invites")

router = Blueprint("invites")

COMMANDS = [
    CommandInfo("invite", __("Your personal invite link: earn points for friends who join and stay"), "member"),
    CommandInfo("invites", __("Your invitations and the invite leaderboard (admins: /invites help)"), "member"),
]

PRESENT = ("member", "administrator", "creator")
PENDING_CACHE_S = 60.0  # how stale the listener's list of pending newcomers may get (other workers' joins)
JOINS_BEFORE_WARNING = 3  # service "joined" messages without any chat_member update before admins are warned
LISTED = 10
TOP_N = 10
COUNTED_CONTENT = {
    "text", "photo", "video", "animation", "sticker", "voice", "video_note", "audio", "document", "poll", "dice",
    "location", "contact", "venue", "story",
}  # fmt: skip

RULE_HELP = {
    "reward": __("points for an invitation that counts"),
    "hold_hours": __("hours a newcomer must stay before it counts"),
    "min_messages": __("messages a newcomer must send before it counts"),
    "clawback_days": __("days after counting in which leaving takes the reward back"),
    "milestones": __("bonus on reaching a number of counted invitations, invites:bonus pairs"),
}
VOID_REASONS = {
    "self": __("your own link"),
    "bot": __("a bot"),
    "rejoin": __("was a member before"),
    "left": __("left before it counted"),
    "captcha": __("failed the captcha"),
    "expired": __("never became active"),
}


# -- per-process state (the Runtime's `invites`) ---------------------------------------------------------------


class InviteWatch:
    """What the listeners remember in this process: who has a pending invitation in each group (refreshed from
    the database every PENDING_CACHE_S, so most messages cost no database work), and whether the group's joins
    arrive as chat_member updates at all. One per process: the Runtime's `invites`."""

    def __init__(self, ttl: float = PENDING_CACHE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._pending: dict[int, tuple[float, set[int]]] = {}
        self._service_joins: dict[int, int] = {}
        self._updates_seen: set[int] = set()
        self._warned: set[int] = set()

    async def is_pending(self, session: AsyncSession, group_id: int, user_id: int) -> bool:
        now = self.clock()
        entry = self._pending.get(group_id)
        if entry is None or now - entry[0] > self.ttl:
            if len(self._pending) > 20_000:
                self._pending.clear()
            entry = (now, await invites.pending_invitees(session, group_id))
            self._pending[group_id] = entry
        return user_id in entry[1]

    def add(self, group_id: int, user_id: int) -> None:
        entry = self._pending.get(group_id)
        if entry is not None:
            entry[1].add(user_id)

    def discard(self, group_id: int, user_id: int) -> None:
        entry = self._pending.get(group_id)
        if entry is not None:
            entry[1].discard(user_id)

    def saw_member_update(self, chat_id: int) -> None:
        self._updates_seen.add(chat_id)
        self._service_joins.pop(chat_id, None)

    def updates_seen(self, chat_id: int) -> bool:
        return chat_id in self._updates_seen

    def saw_service_join(self, chat_id: int) -> bool:
        """Count a "joined" service message; True exactly once when admins should be warned that chat_member
        updates are not arriving."""
        if chat_id in self._updates_seen or chat_id in self._warned:
            return False
        count = self._service_joins[chat_id] = self._service_joins.get(chat_id, 0) + 1
        if count >= JOINS_BEFORE_WARNING:
            self._warned.add(chat_id)
            return True
        return False


# -- small helpers ---------------------------------------------------------------------------------------------


def present(member: object) -> bool:
    status = getattr(member, "status", "")
    return status in PRESENT or (status == "restricted" and bool(getattr(member, "is_member", False)))


def rule_value(rules: InviteRules, name: str) -> str:
    value = getattr(rules, name)
    if name == "milestones":
        return ",".join(f"{count}:{bonus}" for count, bonus in value.items()) or "none"
    return str(value)


def conditions(rules: InviteRules) -> str:
    return _("It counts once your friend has stayed {hours} h and sent at least {messages} message(s): "
             "+{reward} points for you.").format(hours=rules.hold_hours, messages=rules.min_messages,
                                                 reward=rules.reward)


async def write_privately(bot: Bot, session: AsyncSession, user_id: int, text: str) -> bool:
    """Send `text` to the person's private chat if they started the bot. True if it was delivered."""
    if not await groups.can_write_privately(session, user_id):
        return False
    try:
        await bot.send_message(user_id, text)
    except (TelegramForbiddenError, TelegramBadRequest):
        return False
    return True


async def invite_right_problem(bot: Bot, chat_id: int) -> str | None:
    """What the group's admins must fix so the bot can make invite links and see joins (asked now), or None."""
    try:
        me = await bot.get_chat_member(chat_id, bot.id)
    except TelegramAPIError as error:
        log.warning("could not read the bot's rights in %s: %s", chat_id, error)
        return None
    if me.status != "administrator":
        return _("Admins: make me an administrator of this group with the right “Invite users via link”. "
                 "Telegram gives invite links and join updates only to admin bots.")
    if not getattr(me, "can_invite_users", False):
        return _("Admins: give me the administrator right “Invite users via link” so I can create invite links.")
    return None


# -- joins and departures --------------------------------------------------------------------------------------


@router.chat_member(IN_GROUP)
async def member_changed(
    update: ChatMemberUpdated, bot: Bot, session: AsyncSession, group: Group | None, runtime: Runtime
) -> None:
    """Attribute a join to the link it used; void or claw back the invitation of someone who leaves. Never the
    end of the line: later listeners (captcha, moderation) see the same update."""
    watch = runtime.invites
    watch.saw_member_update(update.chat.id)
    if group is None or group.id is None:
        raise SkipHandler()
    try:
        await attribute_change(update, bot, session, group, watch)
    except Exception:  # a passive listener: log, and let the update go on to membership and the others
        log.exception("invites: chat_member update in %s not handled", update.chat.id)
    raise SkipHandler()


async def attribute_change(
    update: ChatMemberUpdated, bot: Bot, session: AsyncSession, group: Group, watch: InviteWatch
) -> None:
    assert group.id is not None
    who = update.new_chat_member.user
    was, now_in = present(update.old_chat_member), present(update.new_chat_member)
    if not was and now_in:
        link = update.invite_link.invite_link if update.invite_link is not None else None
        outcome = await invites.record_join(session, group.id, who.id, link, invitee_is_bot=who.is_bot)
        if outcome.status == "pending" and outcome.invitation is not None:
            watch.add(group.id, who.id)
            await tell_inviter_joined(bot, session, group, outcome.invitation, display_name(who.first_name,
                                                                                             who.username))
    elif was and not now_in and not who.is_bot:
        left = await invites.record_leave(session, group.id, who.id)
        watch.discard(group.id, who.id)
        if left.status == "reversed" and left.invitation is not None:
            await tell_inviter_reversed(bot, session, group, left.invitation, left.taken,
                                        display_name(who.first_name, who.username))


async def tell_inviter_joined(bot: Bot, session: AsyncSession, group: Group, invitation: Invitation, name: str) -> None:
    rules = invites.rules_of(group)
    text = _("🎉 {name} joined {group} through your invite link.").format(name=esc(name), group=esc(group.title))
    await write_privately(bot, session, invitation.inviter_id, text + "\n" + conditions(rules))


async def tell_inviter_reversed(
    bot: Bot, session: AsyncSession, group: Group, invitation: Invitation, taken: int, name: str
) -> None:
    text = _("↩️ {name} left {group} soon after joining through your link, so the invite reward was taken back "
             "(−{points} points).").format(name=esc(name), group=esc(group.title), points=taken)
    await write_privately(bot, session, invitation.inviter_id, text)


async def tell_inviter_vested(bot: Bot, session: AsyncSession, vested: Vested) -> None:
    """A private note to the inviter that an invitation counted (the scheduler calls this in the group's locale)."""
    name = (await roles.member_names(session, [vested.invitee_id])).get(vested.invitee_id, _("your friend"))
    lines = [_("✅ Your invitation of {name} to {group} counts now: +{points} points.").format(
        name=esc(name), group=esc(vested.group_title), points=vested.reward
    )]
    for milestone, bonus in vested.bonuses:
        lines.append(_("🏅 {count} invitations! Bonus: +{points} points.").format(count=milestone, points=bonus))
    await write_privately(bot, session, vested.inviter_id, "\n".join(lines))


# -- /invite ---------------------------------------------------------------------------------------------------


@router.message(Command("invite"), IN_PRIVATE)
async def invite_in_private(message: Message) -> None:
    await message.answer(_("Invite links belong to a group: send /invite in your group to get yours."))


@router.message(Command("invite"), IN_GROUP)
async def invite(message: Message, bot: Bot, session: AsyncSession, group: Group | None) -> None:
    user = message.from_user
    if group is None or group.id is None or message.sender_chat is not None or not is_person(user):
        await message.reply(_("Send /invite from your own account to get your invite link."))
        return
    assert user is not None
    link = await invites.link_of(session, group.id, user.id)
    if link is None:
        problem = await invite_right_problem(bot, message.chat.id)
        if problem is not None:
            await message.reply(_("I can't create invite links here yet.") + "\n" + problem)
            return
        try:
            created = await bot.create_chat_invite_link(message.chat.id, name=invites.link_name(user.id))
        except TelegramBadRequest as error:
            log.warning("createChatInviteLink in %s failed: %s", message.chat.id, error)
            await message.reply(
                _("I can't create invite links here yet.") + "\n"
                + _("Admins: give me the administrator right “Invite users via link” so I can create invite links.")
            )
            return
        link = await invites.save_link(session, group.id, user.id, created.invite_link)
    rules = invites.rules_of(group)
    text = "\n".join([
        _("🔗 Your personal invite link for {group}:").format(group=esc(group.title)),
        esc(link),
        conditions(rules),
        _("/invites shows your invitations."),
    ])  # fmt: skip
    if await write_privately(bot, session, user.id, text):
        return  # private: the group is spared a message
    await message.reply(text + "\n" + _("Start a private chat with me to get such answers privately."))


# -- /invites --------------------------------------------------------------------------------------------------


def usage() -> str:
    return "\n".join([
        _("<b>Invite rewards</b>"),
        _("/invite — your personal invite link"),
        _("/invites — your invitations and the leaderboard"),
        _("Admins:"),
        _("/invites top — top inviters with their void rate"),
        _("/invites settings — the rules and what I need"),
        _("/invites set &lt;rule&gt; &lt;value&gt; — change a rule, e.g. /invites set reward 100"),
    ])  # fmt: skip


def status_line(invitation: Invitation, name: str, rules: InviteRules, now: datetime) -> str:
    if invitation.status == "pending":
        hours_left = max(0, rules.hold_hours - int((now - invitation.joined_at).total_seconds() // 3600))
        return _("⏳ {name} — pending: {hours} h to go, {sent}/{needed} messages").format(
            name=esc(name), hours=hours_left, sent=min(invitation.messages, rules.min_messages),
            needed=rules.min_messages,
        )  # fmt: skip
    if invitation.status == "vested":
        return _("✅ {name} — rewarded +{points}").format(name=esc(name), points=invitation.reward)
    if invitation.status == "reversed":
        return _("↩️ {name} — left soon after: −{points}").format(name=esc(name), points=invitation.clawed_back)
    reason = VOID_REASONS.get(invitation.reason or "")
    return _("✖️ {name} — void: {reason}").format(name=esc(name), reason=str(reason) if reason else "?")


@router.message(Command("invites"), IN_PRIVATE)
async def invites_in_private(message: Message) -> None:
    await message.answer(_("Send /invites in your group to see your invitations there."))


@router.message(Command("invites"), IN_GROUP)
async def invites_command(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group | None,
    runtime: Runtime,
) -> None:
    if group is None or group.id is None:
        return
    words = (command.args or "").split(maxsplit=1)
    sub = words[0].lower() if words else ""
    rest = words[1].strip() if len(words) > 1 else ""
    if not sub:
        await show_mine(message, session, group)
    elif sub in ("top", "admin", "report"):
        if await require_admin(bot, message):
            await show_top(message, session, group)
    elif sub in ("settings", "rules"):
        if await require_admin(bot, message):
            await show_settings(message, bot, session, group, runtime.invites)
    elif sub == "set":
        if await require_admin(bot, message):
            await set_rule(message, session, group, rest)
    else:
        await message.reply(usage())


async def show_mine(message: Message, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    user = message.from_user
    if message.sender_chat is not None or not is_person(user):
        await message.reply(_("Send /invites from your own account to see your invitations."))
        return
    assert user is not None
    rules = invites.rules_of(group)
    stats = await invites.inviter_stats(session, group.id, user.id)
    mine = await invites.my_invitations(session, group.id, user.id, limit=LISTED)
    top = await invites.leaderboard(session, group.id, limit=5)
    names = await roles.member_names(session, [row.inviter_id for row in top] + [row.invitee_id for row in mine])
    lines = [
        _("<b>Your invitations</b>: {pending} pending · {vested} rewarded · {void} void").format(
            pending=stats.pending, vested=stats.vested, void=stats.void + stats.reversed
        ),
        _("Points earned from invitations: {points}").format(points=stats.points),
    ]
    now = utcnow()
    for invitation in mine:
        lines.append(status_line(invitation, names.get(invitation.invitee_id, _("someone")), rules, now))
    if not mine:
        lines.append(_("No invitations yet: send /invite to get your link."))
    lines += ["", _("🏆 <b>Top inviters</b>")]
    for row in top:
        lines.append(_("{place}. {name} — {count}").format(
            place=row.place, name=esc(names.get(row.inviter_id, _("someone"))), count=row.vested
        ))
    if not top:
        lines.append(_("Nobody yet — be the first!"))
    await message.reply("\n".join(lines))


def void_rate(stats: InviterStats) -> str:
    rate = stats.void_rate
    return "–" if rate is None else f"{rate:.0%}"


async def show_top(message: Message, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    rows = await invites.top_inviters(session, group.id, limit=TOP_N)
    if not rows:
        await message.reply(_("No invitations in this group yet."))
        return
    names = await roles.member_names(session, [row.inviter_id for row in rows])
    lines = [_("<b>Top inviters</b> (rewarded / pending / void · void rate)")]
    for index, row in enumerate(rows, start=1):
        line = _("{index}. {name}: {vested} / {pending} / {void} · {rate}").format(
            index=index, name=esc(names.get(row.inviter_id, _("someone"))), vested=row.vested,
            pending=row.pending, void=row.void + row.reversed, rate=void_rate(row),
        )  # fmt: skip
        if row.debt:
            line += " · " + _("unrecovered {points}").format(points=row.debt)
        lines.append(line)
    lines.append(_("A high void rate means newcomers who leave early or were members before: check for fake invites."))
    await message.reply("\n".join(lines))


async def show_settings(
    message: Message, bot: Bot, session: AsyncSession, group: Group, watch: InviteWatch
) -> None:
    assert group.id is not None
    rules = await invites.get_rules(session, group.id)
    lines = [_("<b>Invite rules</b>")]
    for name in invites.RULE_NAMES:
        lines.append(f"<code>{name}</code> = {esc(rule_value(rules, name))} — {esc(str(RULE_HELP[name]))}")
    lines += ["", _("Change one with /invites set &lt;rule&gt; &lt;value&gt;, e.g. /invites set hold_hours 48; "
                    "milestones take invites:bonus pairs (5:50,10:150) or none.")]
    problem = await invite_right_problem(bot, message.chat.id)
    lines.append("")
    lines.append(problem or _("✅ I can create invite links here."))
    if watch.updates_seen(message.chat.id):
        lines.append(_("✅ Join updates arrive, so joins are counted."))
    else:
        lines.append(_("ℹ️ No join update has arrived since I started. If members joined meanwhile, check that I am "
                       "an admin and that the bot runs with chat_member in allowed_updates (qunbot run does)."))
    await message.reply("\n".join(lines))


async def set_rule(message: Message, session: AsyncSession, group: Group, args: str) -> None:
    assert group.id is not None
    name, _sep, value = args.partition(" ")
    name, value = name.lower().replace("-", "_"), value.strip()
    rule_names = ", ".join(invites.RULE_NAMES)
    if not name or name not in invites.RULE_NAMES or not value:
        await message.reply(
            _("Usage: /invites set &lt;rule&gt; &lt;value&gt;, e.g. /invites set reward 100\nRules: {rules}").format(
                rules=rule_names
            )
        )
        return
    try:
        rules = await invites.set_rule(session, group.id, name, value)
    except invites.InvalidRule as error:
        await message.reply(
            _("Cannot set {rule}: {reason}").format(rule=esc(error.name[:40]), reason=esc(error.reason))
        )
        return
    await message.reply(_("✅ {rule} is now {value}.").format(rule=name, value=esc(rule_value(rules, name))))


# -- newcomers' messages: an observer of the group-message pipeline (bot/pipeline.py) ----------------------------


@router.message(Service("new_chat_members"), IN_GROUP)
async def service_join(message: Message, bot: Bot, group: Group | None, runtime: Runtime) -> None:
    """Notice joins that arrive only as service messages (chat_member updates missing). Never the end of the
    line: membership records the join too."""
    assert message.new_chat_members is not None
    watch = runtime.invites
    people = any(not person.is_bot for person in message.new_chat_members)
    if group is not None and group.id is not None and people and watch.saw_service_join(message.chat.id):
        await warn_updates_missing(message, bot)
    raise SkipHandler()


async def count_newcomer_message(message: Message, session: AsyncSession, group: Group, watch: InviteWatch) -> None:
    """Count a message of a newcomer whose invitation is pending toward its vesting activity (cheap: an
    in-process set, a database hit only for them). The pipeline calls this only for a message that stays (one
    that moderation removed counts for nothing)."""
    assert group.id is not None
    user = message.from_user
    if message.content_type in COUNTED_CONTENT and message.sender_chat is None and is_person(user):
        assert user is not None
        try:
            if await watch.is_pending(session, group.id, user.id) and not await invites.count_message(
                session, group.id, user.id
            ):
                watch.discard(group.id, user.id)
        except Exception:  # a passive observer must never cost the message its other observers
            log.exception("invites: message in %s not counted", message.chat.id)


async def warn_updates_missing(message: Message, bot: Bot) -> None:
    problem = await invite_right_problem(bot, message.chat.id)
    text = _("⚠️ Members are joining, but Telegram does not send me join updates, so invitations cannot be counted.")
    fix = problem or _("Admins: I am an admin, so the bot must be started with chat_member in allowed_updates "
                       "(qunbot run does this; check any other program using the same bot token).")
    try:
        await bot.send_message(message.chat.id, text + "\n" + fix)
    except TelegramAPIError as error:
        log.warning("could not warn %s about missing join updates: %s", message.chat.id, error)
