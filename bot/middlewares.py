"""Middlewares, registered in one place (`register_middlewares`), outermost first:

1. ErrorBoundary  - one bad update never stops the bot; the person gets a short localized apology.
2. DatabaseSession - one AsyncSession per update, handed to handlers as `session` (closed if it was used).
3. Arrival        - one transaction: a redelivered update (same update_id) stops here with no second effect;
                    the group, the person and their membership rows are kept current (`group` / `member`).
4. Locale         - a group's language (/lang, else DEFAULT_LOCALE); in private, the person's; as `locale`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Dispatcher
from aiogram.types import Chat, TelegramObject, Update, User
from aiogram.utils.i18n import I18nMiddleware
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import CatalogI18n, locale_for_language_code
from bot.settings import Settings
from handlers.common import GROUP_TYPES, chat_seen, person_seen
from models import groups

log = logging.getLogger("qunbot.updates")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class ErrorBoundary(BaseMiddleware):
    def __init__(self, i18n: CatalogI18n) -> None:
        self.i18n = i18n

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        try:
            return await handler(event, data)
        except Exception:
            update_id = event.update_id if isinstance(event, Update) else None
            log.exception("update %s failed", update_id)
            await self._apologize(event, data)
            return None

    async def _apologize(self, event: TelegramObject, data: dict[str, Any]) -> None:
        if not isinstance(event, Update):
            return
        i18n = self.i18n
        with i18n.context(), i18n.use_locale(data.get("locale", i18n.default_locale)):
            text = _("Sorry, something went wrong on our side. Please try again in a moment.")
        try:
            if event.callback_query is not None:
                await event.callback_query.answer(text, show_alert=True)
            elif event.message is not None and event.message.text and event.message.text.startswith("/"):
                # Only commands get an apology in the chat: ordinary chatter must not trigger bot messages.
                await event.message.reply(text)
        except Exception:  # the apology itself must never raise
            log.warning("could not deliver the apology for update %s", event.update_id)


class DatabaseSession(BaseMiddleware):
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        session = self.sessionmaker()
        data["session"] = session
        try:
            return await handler(event, data)
        finally:
            # Most updates (ordinary chatter) never use their session. Closing one that holds no transaction and
            # no objects releases nothing, and costs more than all of a plain message's own work.
            if session.in_transaction() or session.sync_session.identity_map:
                await session.close()


class Arrival(BaseMiddleware):
    """Claim the update_id (a redelivery stops here, with no second effect) and keep the group, the person and
    their membership rows current, handed to handlers as `group` and `member` (read-only snapshots).

    Updates arriving together are recorded together (models.groups.ArrivalDesk: one transaction for a burst)."""

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.desk = groups.ArrivalDesk(sessionmaker, settings.default_timezone)

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        chat: Chat | None = data.get("event_chat")
        user: User | None = data.get("event_from_user")
        in_group = chat is not None and chat.type in GROUP_TYPES
        person = None
        if user is not None and not user.is_bot and user.id != 777000:  # 777000: Telegram's service account
            person = person_seen(user)
        arrived = await self.desk.arrive(data["bot"].id, groups.Arriving(
            update_id=event.update_id if isinstance(event, Update) else None,
            chat=chat_seen(chat) if in_group and chat is not None else None,
            person=person,
            private=chat is not None and chat.type == "private",
            member=in_group and person is not None and not _is_leaving(event),
            routine=_is_routine(event),
        ))
        if not arrived.fresh:
            log.info("update %s was already handled; dropped", getattr(event, "update_id", None))
            return None
        # Read-only snapshots, loaded by the desk's transaction (detached): handlers read them and change rows
        # only through models functions, which load what they write in their own transaction.
        data["group"], data["member"] = arrived.group, arrived.member
        return await handler(event, data)


class Locale(I18nMiddleware):
    """A group speaks one language: its /lang choice, else DEFAULT_LOCALE (its posts, replies and alerts are seen
    by everyone, so they must not switch language with whoever pressed last). A private chat speaks the person's
    Telegram language, else DEFAULT_LOCALE."""

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        group = data.get("group")
        if group is not None:
            locale = group.locale or self.i18n.default_locale
        else:
            user: User | None = data.get("event_from_user")
            locale = locale_for_language_code(user.language_code if user else None, self.i18n.default_locale)
        data["locale"] = locale
        return locale


def _is_routine(event: TelegramObject) -> bool:
    """A message or a button press that says nothing about who is in the group (no join, no leave)."""
    if not isinstance(event, Update):
        return False
    message = event.message or event.edited_message
    if message is not None:
        return not (message.new_chat_members or message.left_chat_member)
    return event.callback_query is not None


def _is_leaving(event: TelegramObject) -> bool:
    """A chat_member update or service message about someone leaving must not re-create their membership."""
    if isinstance(event, Update):
        if event.chat_member is not None:
            return event.chat_member.new_chat_member.status in ("left", "kicked")
        if event.message is not None and event.message.left_chat_member is not None:
            return True
    return False


def register_middlewares(
    dp: Dispatcher, *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], i18n: CatalogI18n
) -> None:
    """Every middleware of the bot, in order. Outer update middlewares run once per update."""
    dp.update.outer_middleware(ErrorBoundary(i18n))
    dp.update.outer_middleware(DatabaseSession(sessionmaker))
    dp.update.outer_middleware(Arrival(settings, sessionmaker))
    dp.update.outer_middleware(Locale(i18n))


