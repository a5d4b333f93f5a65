"""What several handlers share: commands for /help and setMyCommands, escaping text for HTML, and the
switchboard. Who is acting (re-checked at the moment of acting) is handlers/roles.py's."""

from __future__ import annotations

import html
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from weakref import WeakKeyDictionary

from aiogram import Bot, Router
from aiogram.dispatcher.event.bases import UNHANDLED, SkipHandler
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, Filter
from aiogram.filters.callback_data import CallbackData, CallbackQueryFilter
from aiogram.types import CallbackQuery, Chat, InlineKeyboardMarkup, Message, TelegramObject, User
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n.lazy_proxy import LazyProxy
from magic_filter import MagicFilter

from models.groups import ChatSeen, UserSeen
from models.points import PointsRules

Handler = TypeVar("Handler", bound=Callable[..., Any])
Kept = TypeVar("Kept")


def kept(dispatcher: Router, key: str, make: Callable[[], Kept]) -> Kept:
    """What a feature keeps in this process, one per dispatcher (made on first use, not on every lookup)."""
    workflow = dispatcher.workflow_data  # type: ignore[attr-defined]
    found = workflow.get(key)
    if found is None:
        found = workflow[key] = make()
    return found  # type: ignore[no-any-return]

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


class Blueprint:
    """One feature's handlers, declared at import and used like an aiogram Router
    (`router = Blueprint("votes")`, `@router.message(Command("vote"))`, `router.filter("message", ...)`).

    Blueprints are not routers: `Switchboard` turns all of them into one Router for each Dispatcher (tests and
    `qunbot demo` build many dispatchers in one process, and an aiogram Router belongs to one parent only).
    """

    OBSERVERS = (
        "message", "edited_message", "callback_query", "my_chat_member", "chat_member",
        "poll_answer", "chat_join_request", "message_reaction",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []
        self.filters: dict[str, tuple[Any, ...]] = {}

    def __getattr__(self, observer: str) -> Callable[..., Callable[[Handler], Handler]]:
        if observer not in self.OBSERVERS:
            raise AttributeError(observer)

        def register(*filters: Any) -> Callable[[Handler], Handler]:
            def decorator(handler: Handler) -> Handler:
                self.handlers.append((observer, handler, filters))
                return handler

            return decorator

        return register

    def filter(self, observer: str, *filters: Any) -> None:
        """A filter for every handler of one kind in this feature (e.g. group chats only)."""
        self.filters[observer] = self.filters.get(observer, ()) + filters


def _wanted(call: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword arguments a handler or filter takes after the event (None: it takes **kwargs)."""
    parameters = list(inspect.signature(inspect.unwrap(call)).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def _pick(wanted: frozenset[str] | None, data: dict[str, Any]) -> dict[str, Any]:
    return data if wanted is None else {name: data[name] for name in wanted if name in data}


class _Check:
    """One filter, run the cheapest way it can be: magic F filters and plain functions inline (aiogram would send
    each synchronous filter through asyncio.to_thread), aiogram Filters and async functions awaited."""

    __slots__ = ("call", "wanted", "kind")

    def __init__(self, check: Any) -> None:
        if isinstance(check, MagicFilter):
            self.kind, self.call, self.wanted = "magic", check.resolve, frozenset[str]()
            return
        if not callable(check):
            raise TypeError(f"not a filter: {check!r}")
        target = check.__call__ if isinstance(check, Filter) else check
        awaited = isinstance(check, Filter) or inspect.iscoroutinefunction(inspect.unwrap(target))
        self.kind, self.call, self.wanted = ("await" if awaited else "sync"), target, _wanted(target)



class ChatIs(Filter):
    """The chat an update happened in is of one of these types (for a button press: the chat of its message).
    The switchboard sorts handlers by it, so these are never checked one by one."""

    def __init__(self, *types: str) -> None:
        self.types = frozenset(types)

    async def __call__(self, event: TelegramObject) -> bool:
        return chat_type_of(event) in self.types


class Keywords(Filter):
    """A message whose whole text is one of these words (e.g. 积分). The switchboard looks them up by text."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = frozenset(words)

    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and event.text in self.words


class Service(Filter):
    """A service message of one kind, named by its field (e.g. "new_chat_members"). The switchboard looks service
    messages up by kind, so ordinary chatter never meets these handlers."""

    def __init__(self, field: str) -> None:
        if field not in SERVICE_FIELDS:
            raise ValueError(f"not an indexed service message field: {field!r}")
        self.field = field

    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and bool(getattr(event, self.field))


SERVICE_FIELDS = ("new_chat_members", "left_chat_member", "migrate_to_chat_id", "migrate_from_chat_id")
GROUP_TYPES = frozenset({"group", "supergroup"})
IN_GROUP = ChatIs(*GROUP_TYPES)
IN_PRIVATE = ChatIs("private")


def chat_type_of(event: TelegramObject) -> str | None:
    if isinstance(event, CallbackQuery):
        message = event.message
        return message.chat.type if message is not None else None
    chat = getattr(event, "chat", None)
    return chat.type if chat is not None else None


class _Entry:
    """A handler with its feature's filters and its own, in the order aiogram would check them, minus those the
    switchboard's index already answered (chat type, command name, keyword, callback-data prefix)."""

    __slots__ = ("handler", "wanted", "checks", "chat_types", "keys")

    def __init__(self, handler: Callable[..., Any], filters: tuple[Any, ...]) -> None:
        if not inspect.iscoroutinefunction(inspect.unwrap(handler)):
            raise TypeError(f"handler {handler.__qualname__} must be async")
        self.handler = handler
        self.wanted = _wanted(handler)
        self.chat_types: frozenset[str | None] | None = None  # None: any chat
        self.keys: frozenset[str] | None = None  # the only index keys it can answer (None: any update)
        checks = []
        for f in filters:
            if isinstance(f, ChatIs):
                self.chat_types = f.types if self.chat_types is None else self.chat_types & f.types
                continue
            if isinstance(f, Keywords):
                self._narrow(frozenset(KEYWORD + word for word in f.words))
                continue
            if isinstance(f, Service):
                self._narrow(frozenset({SERVICE + f.field}))
                continue
            if isinstance(f, Command) and _plain_command(f):
                self._narrow(frozenset(COMMAND + name for name in f.commands))  # still checked: mention, args
            elif isinstance(f, CallbackQueryFilter) and f.callback_data.__separator__ == CALLBACK_SEPARATOR:
                self._narrow(frozenset({PREFIX + f.callback_data.__prefix__}))  # still checked: unpacking
                if f.rule is None and not f.callback_data.model_fields:
                    checks.append(_Check(_bare_press(f.callback_data)))  # nothing to unpack: the data is the prefix
                    continue
            checks.append(_Check(f))
        self.checks = tuple(checks)

    def _narrow(self, keys: frozenset[str]) -> None:
        self.keys = keys if self.keys is None else self.keys & keys

    async def passes(self, event: Any, data: dict[str, Any]) -> dict[str, Any] | None:
        """The data its filters add (e.g. `command`, `callback_data`), or None if one of them says no.
        (Every group message meets several of these: synchronous checks are called, not awaited.)"""
        extra: dict[str, Any] = {}
        for check in self.checks:
            kind = check.kind
            if kind == "magic":
                result = check.call(event)
            elif kind == "sync":
                result = check.call(event, **_pick(check.wanted, data))
            else:
                result = await check.call(event, **_pick(check.wanted, data))
            if not result:
                return None
            if isinstance(result, dict):
                extra.update(result)
        return extra


CALLBACK_SEPARATOR = ":"
COMMAND, KEYWORD, PREFIX, SERVICE = "/", "=", "#", "!"  # index keys: "/checkin", "=积分", "#vp", "!left_chat_member"
CHAT_KINDS = ("group", "supergroup", "private", "channel", None)


def _bare_press(data: type[CallbackData]) -> Callable[[CallbackQuery], dict[str, Any] | bool]:
    """The check of a button whose data has no fields (e.g. the check-in board's "ci"): the data is exactly the
    prefix, and the handler's `callback_data` is one shared instance (a model with no fields holds nothing)."""
    prefix, instance = data.__prefix__, data()

    def check(query: CallbackQuery) -> dict[str, Any] | bool:
        return {"callback_data": instance} if query.data == prefix else False

    return check


def _plain_command(f: Command) -> bool:
    """A Command filter the switchboard can index by name: "/" prefix, exact string names."""
    return f.prefix == "/" and not f.ignore_case and all(isinstance(c, str) for c in f.commands)


def index_key(event: TelegramObject) -> str | None:
    """What narrows an update's candidates: its command, its whole text as a keyword, its service kind, or its
    button's prefix."""
    if isinstance(event, Message):
        text = event.text or event.caption
        if not text:
            for field in SERVICE_FIELDS:
                if getattr(event, field):
                    return SERVICE + field
            return None
        if text[0] == "/":
            words = text.split(maxsplit=1)
            return COMMAND + words[0][1:].partition("@")[0] if words else None
        return KEYWORD + text if event.text else None
    if isinstance(event, CallbackQuery) and event.data:
        return PREFIX + event.data.partition(CALLBACK_SEPARATOR)[0]
    return None


class _Lane:
    """All handlers for one kind of update, in feature order, indexed by chat type and key (see index_key).

    A plain group message meets only the group handlers that answer any message; "/vote" only those plus the
    /vote handlers; a press on a "vp:..." button only the "vp" handlers. Each candidate's remaining filters then
    run as aiogram runs them: the first handler whose filters all pass is called, and one that raises
    SkipHandler lets the next candidate try."""

    def __init__(self, entries: list[_Entry]) -> None:
        keys = {key for e in entries if e.keys for key in e.keys}
        self.index: dict[tuple[str | None, str | None], tuple[_Entry, ...]] = {}
        for kind in CHAT_KINDS:
            for key in (None, *keys):
                self.index[kind, key] = tuple(
                    e for e in entries
                    if (e.chat_types is None or kind in e.chat_types) and (e.keys is None or key in e.keys)
                )

    async def dispatch(self, event: TelegramObject, **data: Any) -> Any:
        key = index_key(event)
        kind = chat_type_of(event)
        candidates = self.index.get((kind, key))
        if candidates is None:
            candidates = self.index.get((kind, None), ())
        for entry in candidates:
            extra = None
            if entry.checks:
                extra = await entry.passes(event, data)
                if extra is None:
                    continue
            kwargs = {**data, **extra} if extra else data
            try:
                return await entry.handler(event, **_pick(entry.wanted, kwargs))
            except SkipHandler:
                continue
        return UNHANDLED


class Switchboard:
    """Every feature's handlers behind one aiogram handler per kind of update.

    aiogram would pass each update through one router per feature and check every handler's filters in turn
    (about sixty command filters parse each group message). The switchboard keeps aiogram's order and rules
    (features in the given order; a feature's `router.filter` before its handlers' filters; first match wins;
    SkipHandler moves on; a filter's dict result reaches the handler) and checks only the handlers an update can
    concern."""

    def __init__(self, blueprints: list[Blueprint]) -> None:
        self.blueprints = blueprints

    def install(self, router: Router) -> None:
        """Register one handler per kind of update on `router` (the Dispatcher itself: no router in between)."""
        for observer in Blueprint.OBSERVERS:
            entries = [
                _Entry(handler, blueprint.filters.get(observer, ()) + filters)
                for blueprint in self.blueprints
                for kind, handler, filters in blueprint.handlers
                if kind == observer
            ]
            if entries:
                getattr(router, observer).register(_Lane(entries).dispatch)


TIER_NAMES = {"normal": __("Member"), "silver": __("Silver"), "gold": __("Gold"), "diamond": __("Diamond")}


def tier_label(rules: PointsRules, key: str) -> str:
    """The tier's custom name if the group set one, else the localized default, else its key."""
    for tier in rules.tiers:
        if tier.key == key and tier.name:
            return tier.name
    default = TIER_NAMES.get(key)
    return str(default) if default is not None else key


# What each live post last showed, per bot connection (Bot objects compare by token, and tests and the demo run
# several bots with one token in one process).
_shown: WeakKeyDictionary[object, dict[tuple[int, int], str]] = WeakKeyDictionary()
SHOWN_MAX = 50_000


async def edit_in_place(
    bot: Bot, chat_id: int, message_id: int, text: str, markup: InlineKeyboardMarkup | None = None, *,
    caption: bool = False,
) -> bool:
    """Edit a post the bot keeps up to date (a board, a tally, a sale). False when it already shows this: the
    edit is not sent at all, since Telegram would refuse it as "not modified" and it would still cost one of the
    group's 20 messages a minute. Other Telegram errors are raised."""
    shown = _shown.setdefault(bot.session, {})
    signature = text + (markup.model_dump_json() if markup is not None else "")
    if shown.get((chat_id, message_id)) == signature:
        return False
    try:
        if caption:
            await bot.edit_message_caption(chat_id=chat_id, message_id=message_id, caption=text, reply_markup=markup)
        else:
            await bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id, reply_markup=markup)
    except TelegramBadRequest as error:
        if "not modified" not in str(error):
            raise
    if len(shown) >= SHOWN_MAX:
        shown.clear()
    shown[(chat_id, message_id)] = signature
    return True

