"""What several handlers share: commands for /help and setMyCommands, escaping text for HTML, the people and
chats qunbot keeps, tier names. Who is acting (re-checked at the moment of acting) is handlers/roles.py's; the
dispatch engine is handlers/switchboard.py; argument parsing, durations and money are handlers/kit.py's."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Literal

from aiogram.types import Chat, User
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n.lazy_proxy import LazyProxy

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

