"""The update pipeline: one outer middleware (`UpdatePipeline`, registered by `register_middlewares`) whose steps
run in this order for every update:

1. error boundary - one bad update never stops the bot; the person gets a short localized apology. Fed by the
                   inbox (bot/inbox.py), a failure is re-raised for the inbox to retry, and the apology is
                   given only on the last attempt (never while the database is merely unavailable).
2. session       - one AsyncSession per update, handed to handlers as `session` (closed if it was used; an
                   untouched one serves a later update).
3. arrival       - one transaction: a redelivered update (same update_id) stops here with no second effect;
                   the group, the person and their membership rows are kept current (`group` / `member`).
4. locale        - a group's language (/lang, else DEFAULT_LOCALE); in private, the person's; as `locale`, with
                   gettext bound to it for the handler.

They are one middleware rather than four because aiogram wraps every registered middleware anew for each
update; the steps stay separate methods. Around them all, `__call__` observes the update: it is counted in the
process's metrics (bot/metrics.py) and its update and chat ids go on every log line meanwhile (bot/logs.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Dispatcher
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Chat, TelegramObject, Update, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.i18n import locale_for_language_code
from bot.inbox import is_unavailable
from bot.logs import current_chat_id, current_update_id
from bot.metrics import update_kind
from bot.runtime import Runtime
from handlers.common import chat_seen, person_seen
from handlers.kit import use_currency
from handlers.roles import current_admins
from handlers.switchboard import GROUP_TYPES
from models import groups

log = logging.getLogger("qunbot.updates")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


FAILED = "update_failed"  # set in an update's data when the error boundary handled it (for the metrics)
SPARE_SESSIONS = 256  # untouched sessions kept for the next updates (about the number handled at once): Runtime


class UpdatePipeline(BaseMiddleware):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime, self.sessionmaker, self.i18n = runtime, runtime.sessionmaker, runtime.i18n
        # Updates arriving together are recorded together (models.groups.ArrivalDesk: one transaction a burst).
        self.desk = runtime.arrivals
        self.spare = runtime.spare_sessions
        self.metrics = runtime.metrics

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        kind = update_kind(event)
        started = self.metrics.update_started(kind)
        chat: Chat | None = data.get("event_chat")
        update_token = current_update_id.set(event.update_id if isinstance(event, Update) else None)
        chat_token = current_chat_id.set(chat.id if chat is not None else None)
        failed = True
        try:
            result = await self.handle(handler, event, data)
            failed = data.get(FAILED, False)  # the error boundary answered it with an apology
            return result
        finally:
            self.metrics.update_finished(kind, started, failed=failed)
            current_chat_id.reset(chat_token)
            current_update_id.reset(update_token)

    async def handle(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        try:
            session = self.spare.pop() if self.spare else self.sessionmaker()
            data["session"] = session
            try:
                if not await self.arrive(event, data):
                    return None
                locale = data["locale"] = self.locale(data)
                # gettext for the handler in this locale (what aiogram's I18nMiddleware does, minus two wrappers)
                i18n_token, locale_token = I18n.set_current(self.i18n), self.i18n.ctx_locale.set(locale)
                admins_token = current_admins.set(self.runtime.admins)  # see handlers/roles.py: admin_cache
                group = data.get("group")
                try:
                    with use_currency(group.currency if group is not None else None):  # how money() writes prices
                        return await handler(event, data)
                finally:
                    current_admins.reset(admins_token)
                    self.i18n.ctx_locale.reset(locale_token)
                    I18n.reset_current(i18n_token)
            finally:
                # Most updates (ordinary chatter) never use their session, and one that holds no transaction and
                # no objects is as good as new: it serves the next update. Closing it would release nothing and
                # cost more than all of a plain message's own work.
                if session.in_transaction() or session.sync_session.identity_map:
                    await session.close()
                elif len(self.spare) < SPARE_SESSIONS:
                    self.spare.append(session)
        except Exception as error:
            update_id = event.update_id if isinstance(event, Update) else None
            if _press_expired(error):  # answered already (a replay) or too late: what it did stands
                log.info("update %s: its press can no longer be answered (%s)", update_id, error.message)
                return None
            if "inbox_final" in data and (not data["inbox_final"] or is_unavailable(error)):
                raise  # the inbox tries it again (bot/inbox.py); the person hears nothing yet
            log.exception("update %s failed", update_id)
            await self.apologize(event, data)
            if "inbox_final" in data:
                raise  # the inbox sets it aside
            return None

    async def arrive(self, event: TelegramObject, data: dict[str, Any]) -> bool:
        """Claim the update_id (False: a redelivery, to stop here) and hand handlers `group` and `member`:
        read-only snapshots loaded by the desk's transaction. Handlers change rows only through models
        functions, which load what they write in their own transaction."""
        chat: Chat | None = data.get("event_chat")
        user: User | None = data.get("event_from_user")
        in_group = chat is not None and chat.type in GROUP_TYPES
        person = None
        if user is not None and not user.is_bot and user.id != 777000:  # 777000: Telegram's service account
            person = person_seen(user)
        arrived = await self.desk.arrive(data["bot"].id, groups.Arriving(
            # A replay from the inbox (bot/inbox.py) was claimed by its first try, which did not finish: the
            # inbox, not the claim, keeps it single, and its effects are keyed.
            update_id=event.update_id if isinstance(event, Update) and not data.get("inbox_replay") else None,
            chat=chat_seen(chat) if in_group and chat is not None else None,
            person=person,
            private=chat is not None and chat.type == "private",
            member=in_group and person is not None and not _is_leaving(event),
            routine=_is_routine(event),
        ))
        if not arrived.fresh:
            log.info("update %s was already handled; dropped", getattr(event, "update_id", None))
            return False
        data["group"], data["member"] = arrived.group, arrived.member
        return True

    def locale(self, data: dict[str, Any]) -> str:
        """A group speaks one language: its /lang choice, else DEFAULT_LOCALE (its posts, replies and alerts are
        seen by everyone, so they must not switch language with whoever pressed last). A private chat speaks the
        person's Telegram language, else DEFAULT_LOCALE."""
        group = data.get("group")
        if group is not None:
            return group.locale or self.i18n.default_locale  # type: ignore[no-any-return]
        user: User | None = data.get("event_from_user")
        return locale_for_language_code(user.language_code if user else None, self.i18n.default_locale)

    async def apologize(self, event: TelegramObject, data: dict[str, Any]) -> None:
        data[FAILED] = True
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


def _press_expired(error: Exception) -> bool:
    return isinstance(error, TelegramBadRequest) and "query is too old" in error.message


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


def register_middlewares(dp: Dispatcher, runtime: Runtime) -> None:
    """The bot's one outer update middleware (it runs once per update, around every handler)."""
    dp.update.outer_middleware(UpdatePipeline(runtime))
