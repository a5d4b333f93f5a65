"""Who may moderate: the group's owner and admins (a per-chat cache of getChatAdministrators, refreshed at most
every ADMIN_TTL seconds and corrected at once by chat_member updates), and the bot moderators the owner appoints
(/mod add | remove | list). Also: reaching the admins (notify_admins) and finding the member a command is about.

Every command and press calls actor_can_moderate when it runs; a demotion seen in a chat_member update takes
effect on the next check, without waiting for the cache to expire.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, ChatMemberUpdated, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import ADMIN_STATUSES, CommandInfo, esc
from handlers.switchboard import GROUP_TYPES, IN_GROUP, Blueprint
from models import groups, moderation, roles
from models.groups import Group

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("qunbot.roles")

router = Blueprint("roles")

COMMANDS = [
    CommandInfo("mod", __("Bot moderators (owner): /mod add | remove (reply, @user or id), /mod list"), "admin"),
]


ADMIN_TTL = 300.0  # seconds an admin list is trusted without a chat_member update
NOTIFY_MAX_ADMINS = 20  # private alerts per notification


# -- the admin cache -------------------------------------------------------------------------------------------


@dataclass
class ChatAdmins:
    fetched_at: float
    owner_id: int | None
    admin_ids: set[int] = field(default_factory=set)  # includes the owner


class AdminCache:
    """Admin lists per chat, one per process (the Runtime's `admins`)."""

    def __init__(self, ttl: float = ADMIN_TTL) -> None:
        self.ttl = ttl
        self._chats: dict[int, ChatAdmins] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def get(self, bot: Bot, chat_id: int) -> ChatAdmins | None:
        """The chat's admins, fetched when missing or older than the TTL; None if Telegram would not say."""
        entry = self._chats.get(chat_id)
        if entry is not None and time.monotonic() - entry.fetched_at < self.ttl:
            return entry
        lock = self._locks.setdefault(chat_id, asyncio.Lock())
        async with lock:  # one getChatAdministrators per chat at a time, however many messages arrive
            entry = self._chats.get(chat_id)
            if entry is not None and time.monotonic() - entry.fetched_at < self.ttl:
                return entry
            try:
                members = await bot.get_chat_administrators(chat_id)
            except TelegramAPIError as error:
                log.info("getChatAdministrators(%s) failed: %s", chat_id, error)
                return None
            if not isinstance(members, list):
                return None
            entry = ChatAdmins(time.monotonic(), None)
            for member in members:
                entry.admin_ids.add(member.user.id)
                if member.status == "creator":
                    entry.owner_id = member.user.id
            self._chats[chat_id] = entry
            return entry

    def member_changed(self, chat_id: int, user_id: int, status: str) -> None:
        """A chat_member update: promote or demote in place (the cache stays fresh for everyone else)."""
        entry = self._chats.get(chat_id)
        if entry is None:
            return
        if status in ADMIN_STATUSES:
            entry.admin_ids.add(user_id)
            if status == "creator":
                entry.owner_id = user_id
        else:
            entry.admin_ids.discard(user_id)
            if entry.owner_id == user_id:
                entry.owner_id = None

    def forget(self, chat_id: int) -> None:
        self._chats.pop(chat_id, None)


# The Runtime's admin cache, for the update being handled: bot/middlewares.py sets it around each update. The
# admin checks below are called from some sixty places that hold the Bot and the event, not the Runtime, so they
# find the cache here, as gettext finds its locale (a context variable, not a module-level cache).
current_admins: ContextVar[AdminCache | None] = ContextVar("qunbot_admins", default=None)


def admin_cache() -> AdminCache:
    """The current Runtime's admin cache; outside an update (a scheduler job) a fresh one, which asks Telegram."""
    cache = current_admins.get()
    return cache if cache is not None else AdminCache()


async def is_chat_admin(bot: Bot, chat_id: int, user_id: int) -> bool:
    """The owner or an admin of the chat, from the cache (asks getChatMember if the list is unavailable)."""
    admins = await admin_cache().get(bot, chat_id)
    if admins is not None:
        return user_id in admins.admin_ids
    try:
        member = await bot.get_chat_member(chat_id, user_id)
    except TelegramAPIError:
        return False
    return member.status in ADMIN_STATUSES


async def is_group_admin(bot: Bot, chat_id: int, user_id: int) -> bool:
    """The owner or an admin of the chat, from the per-chat admin cache in handlers/roles.py (refreshed every
    few minutes; a chat_member update promoting or demoting someone counts at once)."""
    return await is_chat_admin(bot, chat_id, user_id)


async def actor_is_admin(bot: Bot, event: Message | CallbackQuery) -> bool:
    """The person behind a message or a press is an admin of the chat it happened in, right now.

    An anonymous admin writes as the group itself (sender_chat == chat) and counts as an admin.
    """
    message = event if isinstance(event, Message) else event.message
    if message is None or message.chat.type not in ("group", "supergroup"):
        return False
    if isinstance(event, Message) and event.sender_chat is not None:
        return event.sender_chat.id == event.chat.id
    if event.from_user is None:
        return False
    return await is_group_admin(bot, message.chat.id, event.from_user.id)


async def require_admin(bot: Bot, event: Message | CallbackQuery) -> bool:
    """True if the actor is an admin now; otherwise tells them (an alert for a press, a reply for a command)."""
    if await actor_is_admin(bot, event):
        return True
    await refuse(event, _("Only group admins can do that."))
    return False


async def refuse(event: Message | CallbackQuery, text: str) -> None:
    """Tell a refused actor why: an alert for a press, a reply for a command."""
    if isinstance(event, CallbackQuery):
        await event.answer(text, show_alert=True)
    else:
        await event.reply(text)


async def is_chat_owner(bot: Bot, chat_id: int, user_id: int) -> bool:
    admins = await admin_cache().get(bot, chat_id)
    if admins is not None:
        return admins.owner_id == user_id
    try:
        return (await bot.get_chat_member(chat_id, user_id)).status == "creator"
    except TelegramAPIError:
        return False


async def admin_ids(bot: Bot, chat_id: int) -> list[int]:
    admins = await admin_cache().get(bot, chat_id)
    return sorted(admins.admin_ids) if admins is not None else []


# -- who is acting ---------------------------------------------------------------------------------------------


def event_message(event: Message | CallbackQuery) -> Message | None:
    if isinstance(event, Message):
        return event
    return event.message if isinstance(event.message, Message) else None


async def actor_can_moderate(bot: Bot, session: AsyncSession, event: Message | CallbackQuery) -> bool:
    """The owner, an admin, or a bot moderator of the chat, checked now. An anonymous admin (writing as the
    group itself) counts as an admin; someone writing as another channel does not."""
    message = event_message(event)
    if message is None or message.chat.type not in GROUP_TYPES:
        return False
    if isinstance(event, Message) and event.sender_chat is not None:
        return event.sender_chat.id == event.chat.id
    if event.from_user is None or event.from_user.is_bot:
        return False
    if await is_chat_admin(bot, message.chat.id, event.from_user.id):
        return True
    group = await groups.get_group(session, message.chat.id)
    return group is not None and group.id is not None and await roles.is_bot_moderator(
        session, group.id, event.from_user.id
    )


async def require_moderator(bot: Bot, session: AsyncSession, event: Message | CallbackQuery) -> bool:
    """actor_can_moderate, telling a refused actor why (an alert for a press, a reply for a command)."""
    if await actor_can_moderate(bot, session, event):
        return True
    await refuse(event, _("Only group admins and moderators can do that."))
    return False


# -- reaching the admins ---------------------------------------------------------------------------------------


async def notify_admins(
    bot: Bot, session: AsyncSession, group: Group, text: str, reply_markup: InlineKeyboardMarkup | None = None
) -> None:
    """Tell the group's admins: in the log chat if one is set; else privately to every admin who has started
    the bot; else once in the group itself."""
    assert group.id is not None
    rules = await moderation.get_rules(session, group.id)
    if rules.log_chat_id is not None:
        try:
            await bot.send_message(rules.log_chat_id, text, reply_markup=reply_markup)
            return
        except TelegramAPIError as error:
            log.warning("log chat %s of group %s refused: %s", rules.log_chat_id, group.chat_id, error)
    reached = 0
    for user_id in (await admin_ids(bot, group.chat_id))[:NOTIFY_MAX_ADMINS]:
        if user_id == bot.id or not await groups.can_write_privately(session, user_id):
            continue
        try:
            await bot.send_message(user_id, text, reply_markup=reply_markup)
            reached += 1
        except TelegramAPIError as error:
            log.info("admin %s not reachable privately: %s", user_id, error)
    if reached:
        return
    try:
        await bot.send_message(group.chat_id, text, reply_markup=reply_markup)
    except TelegramAPIError as error:
        log.warning("could not tell the admins of %s: %s", group.chat_id, error)


# -- the member a command is about -----------------------------------------------------------------------------

_MENTION = re.compile(r"^@([A-Za-z][A-Za-z0-9_]{3,31})$")
_USER_ID = re.compile(r"^(?:tg://user\?id=)?(\d{1,15})$")


@dataclass(frozen=True)
class TargetWords:
    """A command's words split into who it is about (an id or an @username, if given in the words) and the rest."""

    user_id: int | None
    username: str | None
    rest: str


def split_target(args: str) -> TargetWords:
    """`@name rest`, `123456 rest`, `tg://user?id=1 rest`, or just `rest` (the target then comes by reply)."""
    words = args.strip().split(maxsplit=1)
    if not words:
        return TargetWords(None, None, "")
    first, rest = words[0], (words[1] if len(words) > 1 else "")
    mention = _MENTION.match(first)
    if mention:
        return TargetWords(None, mention[1], rest)
    number = _USER_ID.match(first)
    if number and len(first) >= 5:  # Telegram user ids are long; "10m" or "3" are not people
        return TargetWords(int(number[1]), None, rest)
    return TargetWords(None, None, args.strip())


@dataclass(frozen=True)
class Target:
    user_id: int
    name: str
    is_sender_chat: bool = False  # a channel the member wrote as


async def find_target(session: AsyncSession, message: Message, group: Group, words: TargetWords) -> Target | None:
    """Who a command is about: the replied-to message's author, a text mention, an @username the bot has seen
    in this group, or a numeric id."""
    assert group.id is not None
    for entity in message.entities or []:
        if entity.type == "text_mention" and entity.user is not None:
            return Target(entity.user.id, entity.user.first_name)
    if words.username is not None:
        found = await roles.member_by_username(session, group.id, words.username)
        return Target(found[0], found[1]) if found else None
    if words.user_id is not None:
        names = await roles.member_names(session, [words.user_id])
        return Target(words.user_id, names.get(words.user_id, f"#{words.user_id}"))
    reply = message.reply_to_message
    if reply is not None:
        if reply.sender_chat is not None and reply.sender_chat.id != message.chat.id:
            return Target(reply.sender_chat.id, reply.sender_chat.title or "?", is_sender_chat=True)
        if reply.from_user is not None and not reply.is_automatic_forward:
            user = reply.from_user
            return Target(user.id, user.first_name or (f"@{user.username}" if user.username else "?"))
    return None


# -- keeping the cache current ---------------------------------------------------------------------------------


@router.chat_member(IN_GROUP)
async def member_changed(update: ChatMemberUpdated, runtime: Runtime) -> Any:
    """A promotion or demotion counts at once. Lets membership record the change too."""
    runtime.admins.member_changed(update.chat.id, update.new_chat_member.user.id, update.new_chat_member.status)
    raise SkipHandler()


@router.my_chat_member(IN_GROUP)
async def bot_changed(update: ChatMemberUpdated, runtime: Runtime) -> Any:
    runtime.admins.forget(update.chat.id)
    raise SkipHandler()


# -- /mod ------------------------------------------------------------------------------------------------------


def mod_usage() -> str:
    return _(
        "Usage: /mod add (reply to a member, or @username, or id)\n"
        "/mod remove (reply, @username or id)\n"
        "/mod list\n"
        "Only the group's owner appoints bot moderators."
    )


@router.message(Command("mod"), IN_GROUP)
async def mod_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    words = (command.args or "").strip().split(maxsplit=1)
    sub = words[0].lower() if words else ""
    if sub not in ("add", "remove", "del", "list"):
        await message.reply(esc(mod_usage()))
        return
    if sub == "list":
        if not await require_moderator(bot, session, message):
            return
        moderators = await roles.list_moderators(session, group.id)
        if not moderators:
            await message.reply(_("No bot moderators yet. The owner adds them with /mod add."))
            return
        names = await roles.member_names(session, [row.user_id for row in moderators])
        lines = [_("<b>Bot moderators</b>")]
        lines += [f"• {esc(names.get(row.user_id, f'#{row.user_id}'))} (<code>{row.user_id}</code>)"
                  for row in moderators]
        await message.reply("\n".join(lines))
        return
    actor = message.from_user
    if message.sender_chat is not None or actor is None or not await is_chat_owner(bot, message.chat.id, actor.id):
        await message.reply(_("Only the group's owner can appoint or dismiss bot moderators."))
        return
    target = await find_target(session, message, group, split_target(words[1] if len(words) > 1 else ""))
    if target is None or target.is_sender_chat:
        await message.reply(esc(mod_usage()))
        return
    if sub == "add":
        try:
            added = await roles.add_moderator(session, group.id, target.user_id, added_by=actor.id)
        except roles.TooManyModerators:
            await message.reply(_("This group already has {count} bot moderators.").format(count=roles.MAX_MODERATORS))
            return
        text = _("✅ {name} is now a bot moderator.") if added else _("{name} is already a bot moderator.")
    else:
        removed = await roles.remove_moderator(session, group.id, target.user_id)
        text = _("{name} is no longer a bot moderator.") if removed else _("{name} is not a bot moderator.")
    await moderation.record_action(
        session, group_id=group.id, actor_id=actor.id, target_id=target.user_id,
        action="mod_add" if sub == "add" else "mod_remove",
    )
    await message.reply(text.format(name=esc(target.name)))
