"""Newcomers: captcha on join (button, sum or pick-the-emoji), join requests verified in private chat, the
welcome message, and anti-raid.

A newcomer in a group with captcha on is restricted at once (every permission off) and must answer a challenge
that only they can press; a pass lifts the restriction and welcomes them, a timeout (scheduler/newcomers.py) or
three wrong answers removes them (ban, then unban so they may come back) and deletes the join and captcha
messages. A join request is answered in private chat and approved on a pass, declined on timeout.

Group posts are scarce (20 a minute per group): at most INDIVIDUAL_PER_MINUTE challenges and welcomes a minute
get their own message; beyond that, and always during a raid, newcomers are folded into ONE combined post per
group ("the lobby"), edited in place at most every LOBBY_EDIT_INTERVAL seconds. More than N joins in a minute
switch raid mode on: every newcomer is restricted without a challenge until admins release them with
/antiraid off, or until raid mode ends by itself: then they get one post with the challenge (scheduler/
newcomers.py), or are released when captcha is off; the admins are alerted once.

This router comes before membership's: it raises SkipHandler after its work, so membership (and others) see the
same chat_member updates and service messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    CallbackQuery,
    ChatJoinRequest,
    ChatMember,
    ChatMemberUpdated,
    ChatPermissions,
    InlineKeyboardMarkup,
    Message,
    User,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.common import ADMIN_STATUSES, CommandInfo, esc, person_seen
from handlers.kit import (
    DURATION_FORMS,
    HOUR_MINUTE,
    Count,
    RowId,
    fold,
    local_time,
    parse_duration,
    whole_number,
)
from handlers.roles import is_chat_admin, notify_admins, require_admin
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint, Service
from models import boards, groups, moderation, newcomers
from models.db import utcnow
from models.groups import Group
from models.newcomers import Expired, NewcomerCheck, NewcomerSettings

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("qunbot.newcomers")

router = Blueprint("newcomers")

COMMANDS = [
    CommandInfo("captcha", __("Captcha for newcomers: /captcha on|off|button|sum|emoji|timeout 3m"), "admin"),
    CommandInfo("setwelcome", __("Welcome message: /setwelcome text with {name} {group} {mention}, or off"), "admin"),
    CommandInfo("antiraid", __("Anti-raid: /antiraid on|off|threshold N|duration 15m"), "admin"),
]

INDIVIDUAL_PER_MINUTE = 6  # own messages (challenges, welcomes) per group per minute; the rest share one post
LOBBY_EDIT_INTERVAL = 10.0  # seconds between two edits of the combined post
LOBBY_REUSE = 600.0  # the combined post is edited for this long; after that a new one is posted
LOBBY_NAMES = 10
RIGHTS_CLAIM = "newcomer_rights"

# Bot API restrictChatMember: "Pass True for all permissions to lift restrictions from a user" — the member then
# follows the group's default permissions again (no need to copy them from getChat).
MUTED = ChatPermissions(**{name: False for name in ChatPermissions.model_fields})
UNMUTED = ChatPermissions(**{name: True for name in ChatPermissions.model_fields})

RIGHT_NAMES = {
    "can_restrict_members": __("Ban users (to hold newcomers until they pass the captcha, and remove those who fail)"),
    "can_delete_messages": __("Delete messages (to clean up join and captcha messages)"),
    "can_invite_users": __("Invite users via link (to approve or decline join requests)"),
}


class NewcomerPress(CallbackData, prefix="nc"):
    """A press on a challenge: c = check id (0 for the combined post), r = its round, o = the option."""

    c: RowId
    r: Count
    o: str


# -- small helpers ---------------------------------------------------------------------------------------------


def present(member: ChatMember) -> bool:
    """In the chat: a member, an admin, or restricted but still a member."""
    if member.status == "restricted":
        return bool(getattr(member, "is_member", False))
    return member.status in ("member", "administrator", "creator")


def mention(user_id: int, name: str) -> str:
    return f'<a href="tg://user?id={user_id}">{esc(name or "?")}</a>'


def full_name(user: User) -> str:
    return " ".join(part for part in (user.first_name, user.last_name) if part) or (user.username or "?")


def duration_text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return _("{count} h").format(count=seconds // 3600)
    if seconds % 60 == 0:
        return _("{count} min").format(count=seconds // 60)
    return _("{count} s").format(count=seconds)


def render_welcome(template: str, user_id: int, name: str, group_title: str) -> str:
    """The admin's welcome text, HTML-escaped, with {name}, {group} and {mention} filled in."""
    text = esc(template)
    text = text.replace("{name}", esc(name)).replace("{group}", esc(group_title))
    return text.replace("{mention}", mention(user_id, name))


def challenge_text(challenge: newcomers.Challenge, who: str, timeout: int) -> str:
    time_left = duration_text(timeout)
    if challenge.kind == "sum":
        return _("👋 {who}, to post here, tap the answer to <b>{question}</b> within {time}.").format(
            who=who, question=challenge.question, time=time_left
        )
    if challenge.kind == "emoji":
        return _("👋 {who}, to post here, tap {emoji} within {time}.").format(
            who=who, emoji=challenge.question, time=time_left
        )
    return _(
        "👋 Welcome, {who}! Tap the button below within {time} to show you are human; until then you can't post."
    ).format(who=who, time=time_left)


def challenge_keyboard(check: NewcomerCheck, challenge: newcomers.Challenge) -> InlineKeyboardMarkup:
    assert check.id is not None
    keyboard = InlineKeyboardBuilder()
    if challenge.kind == "button":
        keyboard.button(text=_("✅ I'm human"), callback_data=NewcomerPress(c=check.id, r=check.round, o="ok"))
        return keyboard.as_markup()
    for option in challenge.options:
        keyboard.button(text=option, callback_data=NewcomerPress(c=check.id, r=check.round, o=option))
    keyboard.adjust(4 if challenge.kind == "sum" else 3)
    return keyboard.as_markup()


def seconds_left(check: NewcomerCheck) -> int:
    """Time left to answer, rounded up to 10 s (so a fresh 3-minute challenge says "3 min", not "179 s")."""
    if check.deadline is None:
        return 0
    left = max(0.0, (check.deadline - utcnow()).total_seconds())
    return int(-(-left // 10) * 10)


async def bot_lacks(bot: Bot, session: AsyncSession, group: Group, right: str) -> bool:
    """The bot's known rights say it lacks `right` (then the admins are told, once a day)."""
    rights = group.bot_rights or {}
    if rights and group.bot_status == "administrator" and not rights.get(right, False):
        await warn_missing_right(bot, session, group, right)
        return True
    if rights and group.bot_status not in ("administrator", "creator"):
        await warn_missing_right(bot, session, group, right)
        return True
    return False


async def warn_missing_right(bot: Bot, session: AsyncSession, group: Group, right: str) -> None:
    """Tell the group's admins that a right is missing: at most once a day per right (claimed in the database)."""
    assert group.id is not None
    if not await boards.claim_post(session, group.id, RIGHTS_CLAIM, f"{right[:16]}:{utcnow().date().isoformat()}"):
        return
    text = _("⚠️ I can't protect {group} from bots and raids: please give me the admin right “{right}”.").format(
        group=esc(group.title), right=str(RIGHT_NAMES.get(right, right))
    )
    await notify_admins(bot, session, group, text)


async def audit(session: AsyncSession, group_id: int, target_id: int | None, action: str, reason: str) -> None:
    await moderation.record_action(
        session, group_id=group_id, actor_id=None, target_id=target_id, action=action, rule="newcomers", reason=reason
    )


async def restrict(bot: Bot, session: AsyncSession, group: Group, user_id: int) -> bool:
    """Mute a newcomer. False (and the admins told once) when the bot may not."""
    if await bot_lacks(bot, session, group, "can_restrict_members"):
        return False
    try:
        await bot.restrict_chat_member(group.chat_id, user_id, MUTED, use_independent_chat_permissions=True)
    except TelegramAPIError as error:
        log.info("could not restrict %s in %s: %s", user_id, group.chat_id, error)
        await warn_missing_right(bot, session, group, "can_restrict_members")
        return False
    return True


async def unrestrict(bot: Bot, chat_id: int, user_id: int) -> None:
    try:
        await bot.restrict_chat_member(chat_id, user_id, UNMUTED)
    except TelegramAPIError as error:
        log.warning("could not lift the restriction of %s in %s: %s", user_id, chat_id, error)


async def delete_quietly(bot: Bot, chat_id: int | None, message_id: int | None) -> bool:
    if chat_id is None or message_id is None:
        return True
    try:
        await bot.delete_message(chat_id, message_id)
    except TelegramBadRequest as error:
        return "not found" in str(error)  # already gone is fine; "can't be deleted" means a missing right
    except TelegramAPIError:
        return False
    return True


# -- the combined post -----------------------------------------------------------------------------------------


@dataclass
class LobbyPost:
    message_id: int
    since: datetime  # joins from this time on are shown
    posted_at: float
    last_edit: float


class Lobby:
    """Per process (the Runtime's `lobby`): each group's budget of individual newcomer messages, and its combined
    post (posted once, then edited in place, coalesced). `clock` is injectable so tests can play a minute of
    joins."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], i18n: I18n, *,
                 clock: Callable[[], float] = time.monotonic, budget: int = INDIVIDUAL_PER_MINUTE,
                 interval: float = LOBBY_EDIT_INTERVAL) -> None:
        self.sessionmaker, self.i18n = sessionmaker, i18n
        self.clock, self.budget, self.interval = clock, budget, interval
        self.sent: dict[int, deque[float]] = {}
        self.posts: dict[int, LobbyPost] = {}
        self.pending: dict[int, tuple[asyncio.Task[None], tuple[Bot, int, int, str, str, str]]] = {}
        self.locks: dict[int, asyncio.Lock] = {}

    def take_slot(self, chat_id: int) -> bool:
        """Room for one more individual message in this group this minute? (Takes it if so.)"""
        window = self.sent.setdefault(chat_id, deque())
        now = self.clock()
        while window and now - window[0] >= 60:
            window.popleft()
        if len(window) >= self.budget:
            return False
        window.append(now)
        return True

    async def show(self, bot: Bot, group: Group, since: datetime, locale: str) -> None:
        """Make the combined post reflect the latest joins: post it if there is none (recent), else edit it.
        A new post shows the joins from a minute before `since` on (concurrent joins finish out of order)."""
        assert group.id is not None
        since = since - newcomers.RAID_WINDOW
        chat_id = group.chat_id
        args = (bot, chat_id, group.id, group.title, group.timezone, locale)
        async with self.locks.setdefault(chat_id, asyncio.Lock()):
            post = self.posts.get(chat_id)
            if post is None or self.clock() - post.posted_at > LOBBY_REUSE:
                text, markup = await self._render(group.id, group.title, group.timezone, since)
                try:
                    message = await bot.send_message(chat_id, text, reply_markup=markup)
                except TelegramAPIError as error:
                    log.warning("combined newcomer post in %s failed: %s", chat_id, error)
                    return
                now = self.clock()
                self.posts[chat_id] = LobbyPost(message.message_id, since, now, now)
                return
        if chat_id in self.pending:
            return  # an edit is on its way and will show this join too
        delay = max(0.0, post.last_edit + self.interval - self.clock())
        self.pending[chat_id] = (asyncio.create_task(self._edit_later(args, delay)), args)

    async def _edit_later(self, args: tuple[Bot, int, int, str, str, str], delay: float) -> None:
        await asyncio.sleep(delay)
        self.pending.pop(args[1], None)
        await self._edit(args)

    async def _edit(self, args: tuple[Bot, int, int, str, str, str]) -> None:
        bot, chat_id, group_id, title, zone, locale = args
        try:
            # One edit at a time per chat, each rendered when it gets the lock: the last edit shows the latest state.
            async with self.locks.setdefault(chat_id, asyncio.Lock()):
                post = self.posts.get(chat_id)
                if post is None:
                    return
                post.last_edit = self.clock()
                with self.i18n.context(), self.i18n.use_locale(locale):
                    text, markup = await self._render(group_id, title, zone, post.since)
                await bot.edit_message_text(text=text, chat_id=chat_id, message_id=post.message_id,
                                                 reply_markup=markup)
        except TelegramBadRequest as error:
            if "not modified" not in str(error):
                log.warning("combined newcomer post %s not edited: %s", chat_id, error)
        except TelegramAPIError as error:
            log.warning("combined newcomer post %s not edited: %s", chat_id, error)

    async def _render(
        self, group_id: int, title: str, zone: str, since: datetime
    ) -> tuple[str, InlineKeyboardMarkup | None]:
        async with self.sessionmaker() as session:
            snapshot = await newcomers.lobby_snapshot(session, group_id, since, names=LOBBY_NAMES)
            settings = await newcomers.get_settings(session, group_id)
        return render_lobby(snapshot, settings, title, zone)

    async def flush(self) -> None:
        """Make every pending edit now (tests, shutdown)."""
        for chat_id, (task, args) in list(self.pending.items()):
            task.cancel()
            self.pending.pop(chat_id, None)
            await self._edit(args)


def render_lobby(snapshot: newcomers.LobbySnapshot, settings: NewcomerSettings, title: str,
                 zone: str) -> tuple[str, InlineKeyboardMarkup | None]:
    lines: list[str] = []
    markup = None
    if snapshot.raid_until is not None:
        lines.append(
            _("🚨 <b>Raid mode</b> until {time}: {count} newcomers restricted, welcome messages paused.").format(
                time=local_time(snapshot.raid_until, zone, HOUR_MINUTE), count=snapshot.held
            )
        )
        lines.append(_("Admins: /antiraid off ends raid mode and releases them."))
    elif snapshot.held:
        lines.append(
            _("Raid mode is over. {count} newcomers are still restricted: admins, /antiraid off releases them.").format(
                count=snapshot.held
            )
        )
    if snapshot.verifying and snapshot.raid_until is None:
        lines.append(
            _("👋 {count} new members: tap the button below within {time} to show you are human, "
              "or you will be removed.").format(count=snapshot.verifying, time=duration_text(settings.timeout))
        )
        markup = lobby_button()
    if snapshot.welcomed and settings.welcome and snapshot.raid_until is None:
        names = ", ".join(esc(name) for name in snapshot.names)
        more = snapshot.welcomed - len(snapshot.names)
        if more > 0:
            names = _("{names} and {count} more").format(names=names, count=more)
        lines.append(_("🎉 Welcome to {group}: {names}!").format(group=esc(title), names=names))
    if not lines:
        lines.append(_("👋 Welcome to all our new members!"))
    return "\n".join(lines), markup


def lobby_button() -> InlineKeyboardMarkup:
    """The combined post's button: it passes the open challenge of whoever presses it (answer_lobby)."""
    keyboard = InlineKeyboardBuilder()
    keyboard.button(text=_("✅ I'm human"), callback_data=NewcomerPress(c=0, r=0, o="lobby"))
    return keyboard.as_markup()


async def raid_over(bot: Bot, session: AsyncSession, over: newcomers.RaidOver) -> None:
    """A raid ended by itself with newcomers held (scheduler/newcomers.py): one post that gives them the
    challenge (captcha on), or their release (captcha off). Recorded in the moderation log."""
    if over.released:
        for person in over.released:
            if person.lift:
                await unrestrict(bot, over.chat_id, person.user_id)
        reason = f"ended; released {len(over.released)}"
    else:
        text = _("✅ Raid mode is over. {count} newcomers joined during it: tap the button below within {time} to "
                 "show you are human, or you will be removed.").format(count=over.challenged,
                                                                       time=duration_text(over.timeout))
        try:
            await bot.send_message(over.chat_id, text, reply_markup=lobby_button())
        except TelegramAPIError as error:  # they stay restricted; the timeout removes them
            log.warning("raid-over post in %s failed: %s", over.chat_id, error)
        reason = f"ended; challenged {over.challenged}"
    await moderation.record_action(session, group_id=over.group_id, actor_id=None, target_id=None,
                                   action="raid_off", rule="newcomers", reason=reason)


# -- joining ---------------------------------------------------------------------------------------------------


@dataclass
class Context:
    """What acting on a join needs (handlers pass their dependencies in)."""

    bot: Bot
    session: AsyncSession
    group: Group
    lobby: Lobby
    locale: str


async def on_join(ctx: Context, user: User, *, exempt: bool = False, was_restricted: bool = False,
                  via_request: bool = False, join_message_id: int | None = None) -> None:
    group = ctx.group
    assert group.id is not None
    outcome = await newcomers.note_join(
        ctx.session, group.id, user.id, needs_captcha=not exempt, was_restricted=was_restricted,
        via_request=via_request, join_message_id=join_message_id,
    )
    if outcome.raid_started:
        await raid_alert(ctx, outcome.raid_until)
    check = outcome.check
    if outcome.action == "duplicate":
        return
    if outcome.action == "hold":
        await restrict(ctx.bot, ctx.session, group, user.id)
        await ctx.lobby.show(ctx.bot, group, check.joined_at, ctx.locale)
        return
    if outcome.action == "captcha":
        if not await restrict(ctx.bot, ctx.session, group, user.id):
            await newcomers.drop_challenge(ctx.session, check.id)  # type: ignore[arg-type]
        else:
            await post_challenge(ctx, check, user)
            return
    await welcome(ctx, check, user.id, full_name(user))


async def post_challenge(ctx: Context, check: NewcomerCheck, user: User) -> None:
    assert check.id is not None
    if not ctx.lobby.take_slot(ctx.group.chat_id):
        await newcomers.fold_into_lobby(ctx.session, check.id)
        await ctx.lobby.show(ctx.bot, ctx.group, check.joined_at, ctx.locale)
        return
    challenge = newcomers.challenge_of(check)
    text = challenge_text(challenge, mention(user.id, full_name(user)), seconds_left(check) or 1)
    try:
        message = await ctx.bot.send_message(ctx.group.chat_id, text, reply_markup=challenge_keyboard(check, challenge))
    except TelegramAPIError as error:
        log.warning("captcha for %s in %s not posted: %s", user.id, ctx.group.chat_id, error)
        return  # they stay restricted; the timeout removes them
    await newcomers.set_check_message(ctx.session, check.id, chat_id=ctx.group.chat_id, message_id=message.message_id)


async def welcome(ctx: Context, check: NewcomerCheck, user_id: int, name: str) -> None:
    """Welcome the person, in their own message if the group's budget allows, else in the combined post."""
    group = ctx.group
    assert group.id is not None
    settings = newcomers.newcomer_settings(group)
    if not settings.welcome or await newcomers.raid_until(ctx.session, group.id) is not None:
        return
    if check.lobby or not ctx.lobby.take_slot(group.chat_id):
        await newcomers.fold_into_lobby(ctx.session, check.id)  # type: ignore[arg-type]
        await ctx.lobby.show(ctx.bot, group, check.joined_at, ctx.locale)
        return
    try:
        await ctx.bot.send_message(group.chat_id, render_welcome(settings.welcome, user_id, name, group.title))
    except TelegramAPIError as error:
        log.warning("welcome in %s not posted: %s", group.chat_id, error)


async def raid_alert(ctx: Context, until: datetime | None) -> None:
    group = ctx.group
    assert group.id is not None
    settings = newcomers.newcomer_settings(group)
    text = _(
        "🚨 Raid detected in {group}: more than {count} joins in a minute. Raid mode is on until {time}: "
        "newcomers are restricted and welcome messages are paused. Send /antiraid off in the group to end it "
        "and release them."
    ).format(group=esc(group.title), count=settings.raid_threshold,
             time=local_time(until or utcnow(), group.timezone, HOUR_MINUTE))
    await audit(ctx.session, group.id, None, "raid_on", f"more than {settings.raid_threshold} joins in a minute")
    await notify_admins(ctx.bot, ctx.session, group, text)


@router.chat_member(IN_GROUP)
async def member_changed(update: ChatMemberUpdated, bot: Bot, session: AsyncSession, group: Group | None,
                         runtime: Runtime, locale: str) -> Any:
    user = update.new_chat_member.user
    if group is not None and not user.is_bot:
        old, new = update.old_chat_member, update.new_chat_member
        ctx = Context(bot, session, group, runtime.lobby, locale)
        if not present(old) and present(new):
            if update.from_user.id != user.id:
                await groups.upsert_user(session, person_seen(user))  # added by someone: keep their name
            exempt = new.status in ADMIN_STATUSES or await added_by_admin(bot, update.chat.id, update.from_user, user)
            await on_join(ctx, user, exempt=exempt, was_restricted=old.status == "restricted",
                          via_request=bool(update.via_join_request))
        elif present(old) and not present(new):
            await on_leave(ctx, user.id)
    raise SkipHandler()


async def added_by_admin(bot: Bot, chat_id: int, actor: User, user: User) -> bool:
    """People an admin adds by hand need no captcha."""
    if actor.id in (user.id, bot.id) or actor.is_bot:
        return False
    return await is_chat_admin(bot, chat_id, actor.id)


@router.message(Service("new_chat_members"), IN_GROUP)
async def members_joined(message: Message, bot: Bot, session: AsyncSession, group: Group | None, runtime: Runtime,
                         locale: str) -> Any:
    """The service message of a join: the same join as its chat_member update (counted once); it also works for
    a bot that gets no chat_member updates, and tells which message to clean up."""
    if group is not None and message.new_chat_members:
        ctx = Context(bot, session, group, runtime.lobby, locale)
        actor = message.from_user
        for user in message.new_chat_members:
            if user.is_bot:
                continue
            if actor is not None and actor.id != user.id:
                await groups.upsert_user(session, person_seen(user))
            exempt = actor is not None and await added_by_admin(bot, message.chat.id, actor, user)
            await on_join(ctx, user, exempt=exempt, join_message_id=message.message_id)
    raise SkipHandler()


@router.message(Service("left_chat_member"), IN_GROUP)
async def member_left(message: Message, bot: Bot, session: AsyncSession, group: Group | None, runtime: Runtime,
                      locale: str) -> Any:
    user = message.left_chat_member
    if group is not None and user is not None and not user.is_bot:
        await on_leave(Context(bot, session, group, runtime.lobby, locale), user.id)
    raise SkipHandler()


async def on_leave(ctx: Context, user_id: int) -> None:
    """Leaving closes an open challenge (a rejoin gets a new one); its message is cleaned up."""
    assert ctx.group.id is not None
    closed = await newcomers.note_leave(ctx.session, ctx.group.id, user_id)
    if closed is not None and not closed.lobby:
        await delete_quietly(ctx.bot, closed.message_chat_id, closed.message_id)


# -- join requests ---------------------------------------------------------------------------------------------


@router.chat_join_request()
async def join_requested(request: ChatJoinRequest, bot: Bot, session: AsyncSession, group: Group | None) -> Any:
    """With captcha on, the requester gets the challenge in private chat (Bot API: a bot may write to a join
    requester through user_chat_id for 5 minutes); a pass approves the request, a timeout declines it."""
    if group is not None and group.id is not None:
        opened = await newcomers.open_request_check(session, group.id, request.from_user.id, request.user_chat_id)
        if opened is not None:
            check, challenge = opened
            assert check.id is not None
            who = esc(full_name(request.from_user))
            text = _("To join <b>{group}</b>, please answer this first.").format(group=esc(group.title)) + "\n\n"
            text += challenge_text(challenge, who, seconds_left(check) or 1)
            try:
                message = await bot.send_message(request.user_chat_id, text,
                                                  reply_markup=challenge_keyboard(check, challenge))
            except TelegramAPIError as error:
                log.info("join request challenge for %s not delivered: %s", request.from_user.id, error)
                await newcomers.drop_challenge(session, check.id)  # the admins decide, as without captcha
            else:
                await newcomers.set_check_message(session, check.id, chat_id=request.user_chat_id,
                                                  message_id=message.message_id)
    raise SkipHandler()


# -- answers ---------------------------------------------------------------------------------------------------


@router.callback_query(NewcomerPress.filter())
async def challenge_pressed(query: CallbackQuery, callback_data: NewcomerPress, bot: Bot, session: AsyncSession,
                            group: Group | None, runtime: Runtime, locale: str) -> None:
    presser = query.from_user
    if callback_data.c == 0:
        if group is None or group.id is None:
            await query.answer()
            return
        result = await newcomers.answer_lobby(session, group.id, presser.id)
        if result.status == "not_yours":
            await query.answer(_("Only new members who still have to verify need this button."), show_alert=True)
            return
    else:
        result = await newcomers.answer_check(session, callback_data.c, presser.id, callback_data.r, callback_data.o)
    check = result.check
    if result.status == "not_yours":
        await query.answer(_("This button is for the new member it greets, not for you."), show_alert=True)
        return
    if result.status == "stale" or check is None:
        await query.answer(_("This challenge is closed."), show_alert=True)
        return
    if result.status == "wrong":
        await query.answer(_("❌ Wrong answer. Tries left: {count}.").format(count=result.tries_left), show_alert=True)
        return
    target = group if group is not None else await groups.get_group(session, result.chat_id)
    if result.status == "failed":
        await query.answer(_("❌ Too many wrong answers."), show_alert=True)
        if target is not None:
            item = Expired.of(check, result.chat_id, locale)
            await remove_newcomer(bot, session, target, item, reason="wrong answers")
        return
    # passed
    await query.answer(_("✅ Verified. Welcome!"), show_alert=False)
    if check.via == "request":
        await approve_request(bot, session, query, check, result.chat_id, target)
        return
    if target is None:
        return
    if check.lift:
        await unrestrict(bot, result.chat_id, check.user_id)
    ctx = Context(bot, session, target, runtime.lobby, locale)
    if check.lobby:
        await ctx.lobby.show(bot, target, check.joined_at, locale)
    else:
        await delete_quietly(bot, check.message_chat_id, check.message_id)
    await welcome(ctx, check, check.user_id, full_name(presser))


async def approve_request(bot: Bot, session: AsyncSession, query: CallbackQuery, check: NewcomerCheck, chat_id: int,
                          group: Group | None) -> None:
    title = esc(group.title) if group is not None else ""
    try:
        await bot.approve_chat_join_request(chat_id, check.user_id)
        text = _("✅ Verified: your request to join <b>{group}</b> is approved. Welcome!").format(group=title)
    except TelegramAPIError as error:
        log.info("join request of %s in %s not approved: %s", check.user_id, chat_id, error)
        if group is not None and "right" in str(error).lower():
            await warn_missing_right(bot, session, group, "can_invite_users")
        text = _("✅ Verified, but the request could not be approved any more. Please ask to join again.")
    if isinstance(query.message, Message):
        try:
            await query.message.edit_text(text)
        except TelegramAPIError:
            await bot.send_message(query.from_user.id, text)


# -- removal ---------------------------------------------------------------------------------------------------


async def remove_newcomer(bot: Bot, session: AsyncSession, group: Group, item: Expired, *, reason: str) -> None:
    """Remove someone who failed (timeout, wrong answers): ban then unban, so they may join again later, and
    delete the join and captcha messages. A join request is declined instead."""
    if item.via == "request":
        try:
            await bot.decline_chat_join_request(item.chat_id, item.user_id)
        except TelegramAPIError as error:
            log.info("join request of %s in %s not declined: %s", item.user_id, item.chat_id, error)
        if item.message_chat_id is not None and item.message_id is not None:
            try:
                await bot.edit_message_text(
                    text=_("⌛ Not verified in time, so your request to join was declined. You may ask again."),
                    chat_id=item.message_chat_id, message_id=item.message_id,
                )
            except TelegramAPIError:
                pass
        await audit(session, item.group_id, item.user_id, "decline", f"captcha {reason}")
        return
    if item.in_group:
        try:
            await bot.ban_chat_member(item.chat_id, item.user_id)
            await bot.unban_chat_member(item.chat_id, item.user_id, only_if_banned=True)
        except TelegramAPIError as error:
            log.info("could not remove %s from %s: %s", item.user_id, item.chat_id, error)
            await warn_missing_right(bot, session, group, "can_restrict_members")
    cleaned = await delete_quietly(bot, item.message_chat_id, item.message_id)
    cleaned = await delete_quietly(bot, item.chat_id, item.join_message_id) and cleaned
    if not cleaned:
        await warn_missing_right(bot, session, group, "can_delete_messages")
    await audit(session, item.group_id, item.user_id, "kick", f"captcha {reason}")


# -- admin commands --------------------------------------------------------------------------------------------


def captcha_usage() -> str:
    return _(
        "Usage:\n/captcha on | off — captcha for newcomers\n/captcha button | sum | emoji — the kind of challenge\n"
        "/captcha timeout 3m — time to answer (30s to 60m: {forms}); those who don't answer are removed"
    ).format(forms=DURATION_FORMS)


def captcha_status(settings: NewcomerSettings) -> str:
    kinds = {"button": _("button"), "sum": _("sum"), "emoji": _("pick the emoji")}
    if not settings.captcha:
        return _("Captcha is off (when on: {kind}, {time} to answer).").format(
            kind=kinds.get(settings.kind, settings.kind), time=duration_text(settings.timeout)
        )
    return _("Captcha is on: {kind}, {time} to answer.").format(
        kind=kinds.get(settings.kind, settings.kind), time=duration_text(settings.timeout)
    )


@router.message(Command("captcha", "setwelcome", "antiraid"), IN_PRIVATE)
async def settings_in_private(message: Message) -> None:
    await message.answer(_("Send this command in your group (admins only)."))


@router.message(Command("captcha"), IN_GROUP)
async def captcha_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                          group: Group) -> None:
    assert group.id is not None
    words = (command.args or "").strip().lower().split()
    if not await require_admin(bot, message):
        return
    changes: dict[str, Any] = {}
    if len(words) == 1 and words[0] in ("on", "off"):
        changes["captcha"] = words[0] == "on"
    elif len(words) == 1 and words[0] in newcomers.CAPTCHA_KINDS:
        changes = {"captcha": True, "kind": words[0]}
    elif len(words) == 2 and words[0] == "timeout":
        seconds = parse_duration(words[1])
        if seconds is None or not newcomers.MIN_TIMEOUT <= seconds <= newcomers.MAX_TIMEOUT:
            await message.reply(_("The timeout must be between 30s and 60m, e.g. /captcha timeout 3m."))
            return
        changes["timeout"] = seconds
    else:
        settings = newcomers.newcomer_settings(group)
        await message.reply(captcha_status(settings) + "\n\n" + esc(captcha_usage()))
        return
    settings = await newcomers.update_settings(session, group.id, **changes)
    text = captcha_status(settings)
    if settings.captcha and await bot_lacks(bot, session, group, "can_restrict_members"):
        text += "\n" + _("⚠️ I need the right to ban users to hold newcomers.")
    await message.reply(text)


def welcome_usage() -> str:
    return _(
        "Usage: /setwelcome text — the welcome message for newcomers. Placeholders: {name} (their name), "
        "{group} (this group), {mention} (a mention of them).\n/setwelcome off — no welcome message\n"
        "Example: /setwelcome 欢迎 {mention} 加入 {group}!"
    )


@router.message(Command("setwelcome"), IN_GROUP)
async def setwelcome_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                             group: Group, member: Any = None) -> None:
    assert group.id is not None
    raw = (command.args or "").strip()
    if not await require_admin(bot, message):
        return
    if not raw:
        current = newcomers.newcomer_settings(group).welcome
        status = _("Current welcome: {text}").format(text=esc(current)) if current else _("No welcome message is set.")
        await message.reply(status + "\n\n" + esc(welcome_usage()))
        return
    if fold(raw) in ("off", "none", "关", "关闭", "无"):
        await newcomers.update_settings(session, group.id, welcome=None)
        await message.reply(_("Welcome message turned off."))
        return
    if len(raw) > newcomers.MAX_WELCOME:
        limit = newcomers.MAX_WELCOME
        await message.reply(_("The welcome text may be at most {count} characters.").format(count=limit))
        return
    await newcomers.update_settings(session, group.id, welcome=raw)
    user = message.from_user
    sample = render_welcome(raw, user.id if user else 0, full_name(user) if user else "?", group.title)
    await message.reply(_("Welcome message saved. Newcomers will see:") + "\n\n" + sample)


def antiraid_usage() -> str:
    return _(
        "Usage:\n/antiraid on — raid mode now: every newcomer is restricted\n"
        "/antiraid off — end raid mode and release the newcomers it restricted\n"
        "/antiraid threshold 20 — joins in a minute that switch raid mode on (0 = never automatically)\n"
        "/antiraid duration 15m — how long raid mode lasts (1m to 24h: {forms})"
    ).format(forms=DURATION_FORMS)


def antiraid_status(settings: NewcomerSettings, until: datetime | None, zone: str) -> str:
    if settings.raid_threshold:
        lines = [_("Anti-raid: more than {count} joins in a minute switch raid mode on for {time}.").format(
            count=settings.raid_threshold, time=duration_text(settings.raid_minutes * 60))]
    else:
        lines = [_("Anti-raid: automatic raid mode is off.")]
    if until is not None:
        lines.append(_("🚨 Raid mode is on until {time}.").format(time=local_time(until, zone, HOUR_MINUTE)))
    return "\n".join(lines)


@router.message(Command("antiraid"), IN_GROUP)
async def antiraid_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                           group: Group) -> None:
    assert group.id is not None
    words = (command.args or "").strip().lower().split()
    if not await require_admin(bot, message):
        return
    group_id, zone, chat_id = group.id, group.timezone, group.chat_id
    actor = message.from_user.id if message.from_user else None
    if words == ["on"]:
        _started, until = await newcomers.start_raid(session, group_id)
        await moderation.record_action(session, group_id=group_id, actor_id=actor, target_id=None, action="raid_on",
                                       rule="newcomers")
        await message.reply(_("🚨 Raid mode is on until {time}: every newcomer is restricted. /antiraid off ends it.")
                            .format(time=local_time(until, zone, HOUR_MINUTE)))
        return
    if words == ["off"]:
        released = await newcomers.end_raid(session, group_id)
        await moderation.record_action(session, group_id=group_id, actor_id=actor, target_id=None, action="raid_off",
                                       rule="newcomers", reason=f"released {len(released)}")
        for person in released:
            if person.lift:
                await unrestrict(bot, chat_id, person.user_id)
        await message.reply(_("Raid mode is off. Newcomers released: {count}.").format(count=len(released)))
        return
    changes: dict[str, Any] = {}
    if len(words) == 2 and words[0] == "threshold":
        number = whole_number(words[1])
        value = 0 if words[1] in ("off", "0") else (number if number is not None else -1)
        if not 0 <= value <= 100_000 or 0 < value < 3:
            await message.reply(_("The threshold must be a number of joins from 3 up, or 0 to switch it off."))
            return
        changes["raid_threshold"] = value
    elif len(words) == 2 and words[0] == "duration":
        seconds = parse_duration(words[1])
        if seconds is None or seconds % 60 or not 1 <= seconds // 60 <= newcomers.MAX_RAID_MINUTES:
            await message.reply(_("The duration must be whole minutes from 1m to 24h, e.g. /antiraid duration 15m."))
            return
        changes["raid_minutes"] = seconds // 60
    else:
        settings = newcomers.newcomer_settings(group)
        until = await newcomers.raid_until(session, group_id)
        await message.reply(antiraid_status(settings, until, zone) + "\n\n" + esc(antiraid_usage()))
        return
    settings = await newcomers.update_settings(session, group_id, **changes)
    await message.reply(antiraid_status(settings, await newcomers.raid_until(session, group_id), zone))
