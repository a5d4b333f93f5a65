"""The switchboard: qunbot's dispatch engine over aiogram. Features declare their handlers on a `Blueprint`
(used like an aiogram Router); `Switchboard` puts every feature behind one aiogram handler per kind of update and
chooses the handler that aiogram's routers would choose (tests/test_switchboard_parity.py holds it to that),
checking only the handlers an update can concern.

Import direction: handlers/* import from here; this module imports aiogram and models.script (plain Python, for
keywords in both scripts) only (never a feature, never handlers.common), so it sits under every feature.

What it relies on from aiogram beyond its documented surface (each pinned by a test):
- `TelegramEventObserver.trigger` sets `data["handler"]` before checking a handler's filters and merges a filter's
  dict result into the data afterwards: the switchboard's one filter returns the chosen handler's
  `HandlerObject` under "handler", so inner middlewares, `get_flag(data, ...)` and the handler see the chosen
  handler's flags, as with plain routers.
- `CallbackData.__prefix__` / `__separator__` and `CallbackQueryFilter.callback_data` / `.rule`, and
  `Command.commands` / `.prefix` / `.ignore_case`: read once at install, to index handlers by button prefix and
  command name (the filters themselves still run, so mention, arguments and unpacking are aiogram's).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiogram import Router
from aiogram.dispatcher.event.bases import UNHANDLED, SkipHandler
from aiogram.dispatcher.event.handler import HandlerObject
from aiogram.filters import Command, Filter
from aiogram.filters.callback_data import CallbackData, CallbackQueryFilter
from aiogram.types import CallbackQuery, Message, TelegramObject
from magic_filter import MagicFilter

from models.script import fold

Handler = TypeVar("Handler", bound=Callable[..., Any])


@dataclass(frozen=True)
class Registration:
    """One handler as a feature declared it: the kind of update, the handler, its own filters, its flags."""

    observer: str
    handler: Callable[..., Any]
    filters: tuple[Any, ...]
    flags: dict[str, Any] = field(default_factory=dict)


class Blueprint:
    """One feature's handlers, declared at import and used like an aiogram Router
    (`router = Blueprint("votes")`, `@router.message(Command("vote"), flags={...})`,
    `router.filter("message", ...)`).

    Blueprints are not routers: `Switchboard` turns all of them into one handler per kind of update for each
    Dispatcher (tests and `qunbot demo` build many dispatchers in one process, and an aiogram Router belongs to
    one parent only). `as_router()` builds the plain aiogram Router the same declarations make.
    """

    OBSERVERS = (
        "message", "edited_message", "callback_query", "my_chat_member", "chat_member",
        "poll_answer", "chat_join_request", "message_reaction",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: list[Registration] = []
        self.filters: dict[str, tuple[Any, ...]] = {}

    def __getattr__(self, observer: str) -> Callable[..., Callable[[Handler], Handler]]:
        if observer not in self.OBSERVERS:
            raise AttributeError(observer)

        def register(*filters: Any, flags: dict[str, Any] | None = None) -> Callable[[Handler], Handler]:
            def decorator(handler: Handler) -> Handler:
                self.handlers.append(Registration(observer, handler, filters, dict(flags or {})))
                return handler

            return decorator

        return register

    def filter(self, observer: str, *filters: Any) -> None:
        """A filter for every handler of one kind in this feature (e.g. group chats only)."""
        self.filters[observer] = self.filters.get(observer, ()) + filters

    def as_router(self) -> Router:
        """The plain aiogram Router these declarations describe (a fresh one per call): the feature's filters as
        router filters, each handler registered with its filters and flags."""
        router = Router(name=self.name)
        for observer, filters in self.filters.items():
            getattr(router, observer).filter(*filters)
        for r in self.handlers:
            getattr(router, r.observer).register(r.handler, *r.filters, flags=dict(r.flags))
        return router


def handler_object(registration: Registration) -> HandlerObject:
    """The `HandlerObject` aiogram would make for this handler (`data["handler"]`): the declared flags, those its
    filters add (e.g. Command's "commands") and those set by flag decorators on the function."""
    flags = dict(registration.flags)
    for f in registration.filters:
        if isinstance(f, Filter):
            f.update_handler_flags(flags=flags)
    return HandlerObject(callback=registration.handler, filters=None, flags=flags)


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
    """A message whose whole text is one of these words (e.g. 积分), compared folded (models.script.fold: 積分,
    "积分 " and "ＣＨＥＣＫ ＩＮ" are the words 积分 and "check in"). The switchboard looks them up by folded text."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = frozenset(fold(word) for word in words)

    async def __call__(self, event: TelegramObject) -> bool:
        return isinstance(event, Message) and event.text is not None and keyword_form(event.text) in self.words


KEYWORD_TEXT_MAX = 40  # a longer text is no keyword: it is compared (and indexed) as it is, unfolded


def keyword_form(text: str) -> str:
    """A message's text as keywords are compared: folded (both scripts, full-width forms) when short enough to be
    one. (Every group message meets this: folding a long text would cost more than the whole keyword lookup.)"""
    return fold(text) if len(text) <= KEYWORD_TEXT_MAX else text


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

    __slots__ = ("handler", "handler_object", "wanted", "checks", "chat_types", "keys")

    def __init__(self, registration: Registration, feature_filters: tuple[Any, ...]) -> None:
        handler = registration.handler
        if not inspect.iscoroutinefunction(inspect.unwrap(handler)):
            raise TypeError(f"handler {handler.__qualname__} must be async")
        self.handler = handler
        self.handler_object = handler_object(registration)
        self.wanted = _wanted(handler)
        self.chat_types: frozenset[str | None] | None = None  # None: any chat
        self.keys: frozenset[str] | None = None  # the only index keys it can answer (None: any update)
        checks = []
        for f in feature_filters + registration.filters:
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
            for field_name in SERVICE_FIELDS:
                if getattr(event, field_name):
                    return SERVICE + field_name
            return None
        if text[0] == "/" or text[0].isspace():  # aiogram's Command reads the first word, after any blanks
            words = text.split(maxsplit=1)
            if words and words[0][0] == "/":
                return COMMAND + words[0][1:].partition("@")[0]
        return KEYWORD + keyword_form(text) if event.text else None
    if isinstance(event, CallbackQuery) and event.data:
        return PREFIX + event.data.partition(CALLBACK_SEPARATOR)[0]
    return None


class _Lane:
    """All handlers for one kind of update, in feature order, indexed by chat type and key (see index_key).

    A plain group message meets only the group handlers that answer any message; "/vote" only those plus the
    /vote handlers; a press on a "vp:..." button only the "vp" handlers. Each candidate's remaining filters then
    run as aiogram runs them: the first handler whose filters all pass is called, and one that raises
    SkipHandler lets the next candidate try.

    The lane is one aiogram handler: `choose` is its filter and `call` its callback, so aiogram's inner
    middlewares run around the chosen handler and see it as data["handler"]. (A candidate tried after a
    SkipHandler runs inside that same middleware call, with data["handler"] set to it.)"""

    def __init__(self, entries: list[_Entry]) -> None:
        keys = {key for e in entries if e.keys for key in e.keys}
        self.index: dict[tuple[str | None, str | None], tuple[_Entry, ...]] = {}
        for kind in CHAT_KINDS:
            for key in (None, *keys):
                self.index[kind, key] = tuple(
                    e for e in entries
                    if (e.chat_types is None or kind in e.chat_types) and (e.keys is None or key in e.keys)
                )

    def candidates(self, event: TelegramObject) -> tuple[_Entry, ...]:
        kind = chat_type_of(event)
        found = self.index.get((kind, index_key(event)))
        return found if found is not None else self.index.get((kind, None), ())

    async def choose(self, event: TelegramObject, **data: Any) -> dict[str, Any] | bool:
        """The first candidate whose filters pass, as aiogram's data: "handler" and what its filters added."""
        found = await self._first(event, self.candidates(event), data, 0)
        return found[1] if found is not None else False

    async def dispatch(self, event: TelegramObject, **data: Any) -> Any:
        """Choose and call in one go, for a caller that is itself the aiogram handler (the group-message
        pipeline, bot/pipeline.py): UNHANDLED when no candidate takes the event."""
        found = await self._first(event, self.candidates(event), data, 0)
        if found is None:
            return UNHANDLED
        data.update(found[1])
        return await self.call(event, **data)

    async def call(self, event: TelegramObject, **data: Any) -> Any:
        """Call the chosen handler; if it raises SkipHandler, the next candidate whose filters pass, and so on."""
        candidates = self.candidates(event)
        chosen = data["handler"]
        position = next(i for i, e in enumerate(candidates) if e.handler_object is chosen)
        while True:
            entry = candidates[position]
            try:
                return await entry.handler(event, **_pick(entry.wanted, data))
            except SkipHandler:
                pass
            found = await self._first(event, candidates, data, position + 1)
            if found is None:
                return UNHANDLED
            position, added = found
            data.update(added)

    @staticmethod
    async def _first(
        event: TelegramObject, candidates: tuple[_Entry, ...], data: dict[str, Any], start: int,
    ) -> tuple[int, dict[str, Any]] | None:
        """The position of the first candidate from `start` whose filters pass, and the data it adds."""
        for position in range(start, len(candidates)):
            entry = candidates[position]
            data["handler"] = entry.handler_object  # as aiogram sets it before a handler's filters run
            extra = await entry.passes(event, data) if entry.checks else {}
            if extra is not None:
                return position, {**extra, "handler": entry.handler_object}
        return None


class Switchboard:
    """Every feature's handlers behind one aiogram handler per kind of update.

    aiogram would pass each update through one router per feature and check every handler's filters in turn
    (about sixty command filters parse each group message). The switchboard keeps aiogram's order and rules
    (features in the given order; a feature's `router.filter` before its handlers' filters; first match wins;
    SkipHandler moves on; a filter's dict result reaches the handler; the chosen handler's flags in
    data["handler"]) and checks only the handlers an update can concern."""

    def __init__(self, blueprints: list[Blueprint]) -> None:
        self.blueprints = blueprints
        self.lanes: dict[str, _Lane] = {}  # filled by install: one per kind of update that has handlers

    def install(self, router: Router) -> None:
        """Register one handler per kind of update on `router` (the Dispatcher itself: no router in between)."""
        for observer in Blueprint.OBSERVERS:
            entries = [
                _Entry(registration, blueprint.filters.get(observer, ()))
                for blueprint in self.blueprints
                for registration in blueprint.handlers
                if registration.observer == observer
            ]
            if entries:
                lane = self.lanes[observer] = _Lane(entries)
                getattr(router, observer).register(lane.call, lane.choose)
