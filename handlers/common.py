"""What several handlers share: who is acting (re-checked at the moment of acting), commands for /help and
setMyCommands, and escaping text for HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Literal

from aiogram import Bot
from aiogram.types import CallbackQuery, Chat, Message, User
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n.lazy_proxy import LazyProxy

# The switchboard's names, re-exported for code written before it had its own module (import them from
# handlers.switchboard).
from handlers.switchboard import (  # noqa: F401
    GROUP_TYPES,
    IN_GROUP,
    IN_PRIVATE,
    Blueprint,
    ChatIs,
    Keywords,
    Service,
    Switchboard,
    chat_type_of,
    index_key,
)
from models.groups import ChatSeen, UserSeen
from models.points import PointsRules

ADMIN_STATUSES = ("creator", "administrator")
TELEGRAM_SERVICE_USER = 777000  # Telegram's account that posts a linked channel's automatic forwards
GROUP_ANONYMOUS_BOT = 1087968824  # @GroupAnonymousBot: the "from" of messages an anonymous admin sends


def esc(value: object) -> str:
    """Escape a person-supplied value for parse_mode=HTML."""
    return html.escape(str(value), quote=False)


def display_name(first_name: str | None, username: str | None = None) -> str:
    return first_name or (f"@{username}" if username else "?")


async def is_group_admin(bot: Bot, chat_id: int, user_id: int) -> bool:
    """The owner or an admin of the chat, from the per-chat admin cache in handlers/roles.py (refreshed every
    few minutes; a chat_member update promoting or demoting someone counts at once)."""
    from handlers.roles import is_chat_admin  # roles builds on this module

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
    text = _("Only group admins can do that.")
    if isinstance(event, CallbackQuery):
        await event.answer(text, show_alert=True)
    else:
        await event.reply(text)
    return False


Audience = Literal["member", "admin", "private"]


@dataclass(frozen=True)
class CommandInfo:
    """A chat command, for /help and setMyCommands. `audience`: who sees it in the command menu."""

    name: str
    description: LazyProxy | str
    audience: Audience = "member"


def person_seen(user: User) -> UserSeen:
    """The part of a Telegram user that qunbot keeps."""
    name = " ".join(part for part in (user.first_name, user.last_name) if part)
    return UserSeen(user.id, name, user.username, user.language_code, user.is_bot)


def chat_seen(chat: Chat) -> ChatSeen:
    return ChatSeen(chat.id, chat.title or "", chat.type)


TIER_NAMES = {"normal": __("Member"), "silver": __("Silver"), "gold": __("Gold"), "diamond": __("Diamond")}


def tier_label(rules: PointsRules, key: str) -> str:
    """The tier's custom name if the group set one, else the localized default, else its key."""
    for tier in rules.tiers:
        if tier.key == key and tier.name:
            return tier.name
    default = TIER_NAMES.get(key)
    return str(default) if default is not None else key

