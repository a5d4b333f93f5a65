"""The switchboard routes as aiogram would: a corpus of updates (commands with and without @bot, with arguments,
unknown commands, keywords, buttons with good and malformed data, service messages, edits, membership changes,
every chat type) goes through the switchboard built from every feature's blueprint, and through plain aiogram
Routers built from the same declarations (one Router per feature, in FEATURES order, the feature's filters as
router filters), and both must choose the same handlers with the same flags.

The handlers are replaced by recorders that note their name and data["handler"]'s flags and raise SkipHandler,
so the record is every handler whose filters pass, in the order they are tried: the first is the one chosen.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest
from aiogram import BaseMiddleware, Bot, Dispatcher, flags
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.dispatcher.flags import get_flag
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData, CallbackQueryFilter
from aiogram.types import (
    CallbackQuery,
    Chat,
    ChatJoinRequest,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberUpdated,
    Message,
    PhotoSize,
    Update,
    User,
)

import handlers
from handlers.switchboard import IN_GROUP, Blueprint, Keywords, Registration, Switchboard
from models.groups import Group
from models.points import PointsRules
from tests.factories import BOT_USER
from tests.test_switchboard import MeOnly

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ANN = User(id=7, is_bot=False, first_name="Ann")
BOB = User(id=8, is_bot=False, first_name="Bob", username="bob")
CHATS = {
    "private": Chat(id=7, type="private", first_name="Ann"),
    "group": Chat(id=-11, type="group", title="Small group"),
    "supergroup": Chat(id=-10011, type="supergroup", title="Big group"),
    "channel": Chat(id=-10022, type="channel", title="Channel"),
}


def recording(blueprints: list[Blueprint], seen: list[tuple[str, Any]]) -> list[Blueprint]:
    """Copies of `blueprints` whose handlers record their name and flags, then let the update go on."""

    def recorder(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        async def record(event: Any, **data: Any) -> None:
            seen.append((name, data["handler"].flags))
            raise SkipHandler()

        if hasattr(original, "aiogram_flag"):  # flags set by aiogram's @flags decorators travel with it
            record.aiogram_flag = original.aiogram_flag  # type: ignore[attr-defined]
        return record

    copies = []
    for blueprint in blueprints:
        copy = Blueprint(blueprint.name)
        copy.filters = dict(blueprint.filters)
        copy.handlers = [
            Registration(r.observer, recorder(f"{blueprint.name}.{r.handler.__name__}", r.handler), r.filters,
                         dict(r.flags))
            for r in blueprint.handlers
        ]
        copies.append(copy)
    return copies


def engines(blueprints: list[Blueprint]) -> tuple[Dispatcher, Dispatcher, list[tuple[str, Any]]]:
    """The switchboard and plain aiogram routers over the same recording handlers (one record for both)."""
    seen: list[tuple[str, Any]] = []
    recorded = recording(blueprints, seen)
    switchboard = Dispatcher()
    Switchboard(recorded).install(switchboard)
    plain = Dispatcher()
    for blueprint in recorded:
        plain.include_router(blueprint.as_router())
    return switchboard, plain, seen


# The corpus ------------------------------------------------------------------------------------------------

_ids = itertools.count(1)


def message(chat: str, text: str | None = None, *, sender: User | None = ANN, **fields: Any) -> Message:
    return Message(message_id=next(_ids), date=NOW, chat=CHATS[chat], from_user=sender, text=text, **fields)


def bot_post(chat: str) -> Message:
    return Message(message_id=next(_ids), date=NOW, chat=CHATS[chat], from_user=BOT_USER, text="post")


def sample(annotation: Any) -> Any:
    """A valid value for one CallbackData field."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)[0]
    if origin is not None:  # X | None and the like: the first concrete type
        return sample(next(a for a in typing.get_args(annotation) if a is not type(None)))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return next(iter(annotation))
    return {int: 3, bool: True, str: "a", float: 1.5}.get(annotation, 1)


def button_data(blueprints: list[Blueprint]) -> Iterator[str]:
    """For every button a feature answers: well-formed data, and malformed variants of it."""
    classes: dict[str, type[CallbackData]] = {}
    for blueprint in blueprints:
        for registration in blueprint.handlers:
            for f in registration.filters:
                if isinstance(f, CallbackQueryFilter):
                    classes[f.callback_data.__prefix__] = f.callback_data
    for prefix, cls in classes.items():
        good = cls(**{name: sample(info.annotation) for name, info in cls.model_fields.items()})
        packed = good.pack()
        yield packed
        yield f"{packed}:extra"
        yield f"{prefix}:"
        yield f"{prefix}:abc"
        yield f"{prefix}:0"
        yield f"{prefix}:-1"
        yield f"{prefix}:{2**70}"
        yield prefix
        yield f"{prefix}x:1"
    yield from ("", "unknown:1", "x" * 64)


def command_texts(blueprints: list[Blueprint]) -> Iterator[str]:
    names = {
        name
        for blueprint in blueprints
        for registration in blueprint.handlers
        for f in registration.filters if isinstance(f, Command)
        for name in f.commands if isinstance(name, str)
    }
    for name in sorted(names):
        yield from (f"/{name}", f"/{name}@{BOT_USER.username}", f"/{name}@someone_else_bot", f"/{name} 12 abc",
                    f"/{name}@{BOT_USER.username} x", f"/{name.upper()}", f" /{name}", f"/{name}\nsecond line")
    yield from ("/", "/nope", "/nope@qunbot", "/start payload", "//checkin", "/checkin@", "hello /checkin")


def keyword_texts(blueprints: list[Blueprint]) -> Iterator[str]:
    words = {
        word
        for blueprint in blueprints
        for registration in blueprint.handlers
        for f in registration.filters if isinstance(f, Keywords)
        for word in f.words
    }
    for word in sorted(words):
        yield from (word, f"{word} please", f" {word}", word.upper())
    yield from ("签到", "打卡", "check in", "Check In", " 签到 ", "hello", "加微信 便宜代购")
    yield from ("簽到", "積分", " 積分商城 ", "團購", "ＣＨＥＣＫ ＩＮ", "积分" + " " * 40)  # both scripts, full width


def updates(blueprints: list[Blueprint]) -> Iterator[Update]:
    texts = [*command_texts(blueprints), *keyword_texts(blueprints)]
    hashtag = PointsRules().showcase_hashtag
    photo = [PhotoSize(file_id="p", file_unique_id="p", width=1, height=1)]
    for chat in CHATS:
        for text in texts:
            yield Update(update_id=next(_ids), message=message(chat, text))
            yield Update(update_id=next(_ids), edited_message=message(chat, text, edit_date=int(NOW.timestamp())))
        yield Update(update_id=next(_ids), message=message(chat, "签到", reply_to_message=bot_post(chat)))
        yield Update(update_id=next(_ids), message=message(chat, "me too", reply_to_message=message(chat, "hi")))
        yield Update(update_id=next(_ids), message=message(chat, None, photo=photo, caption=f"look {hashtag}"))
        yield Update(update_id=next(_ids), message=message(chat, None, photo=photo, caption="/checkin"))
        yield Update(update_id=next(_ids), message=message(chat, None, photo=photo))
        yield Update(update_id=next(_ids), message=message(chat, "hi", sender=None, sender_chat=CHATS[chat]))
        yield Update(update_id=next(_ids), message=message(chat, "hi", sender=BOT_USER))
        yield Update(update_id=next(_ids), message=message(chat, new_chat_members=[BOB]))
        yield Update(update_id=next(_ids), message=message(chat, new_chat_members=[BOT_USER]))
        yield Update(update_id=next(_ids), message=message(chat, left_chat_member=BOB))
        yield Update(update_id=next(_ids), message=message(chat, migrate_to_chat_id=-100999))
        yield Update(update_id=next(_ids), message=message(chat, migrate_from_chat_id=-999))
        yield Update(update_id=next(_ids), message=message(chat, pinned_message=bot_post(chat)))
        yield Update(update_id=next(_ids), channel_post=message(chat, "a channel post", sender=None))
        for data in button_data(blueprints):
            query = CallbackQuery(id=str(next(_ids)), from_user=ANN, chat_instance="c", message=bot_post(chat),
                                  data=data or None)
            yield Update(update_id=next(_ids), callback_query=query)
        for who, (old, new) in itertools.product(
            (BOB, BOT_USER),
            ((ChatMemberLeft(user=BOB), ChatMemberMember(user=BOB)),
             (ChatMemberMember(user=BOB), ChatMemberLeft(user=BOB))),
        ):
            change = ChatMemberUpdated(chat=CHATS[chat], from_user=ANN, date=NOW,
                                       old_chat_member=old.model_copy(update={"user": who}),
                                       new_chat_member=new.model_copy(update={"user": who}))
            field = "my_chat_member" if who is BOT_USER else "chat_member"
            yield Update(update_id=next(_ids), **{field: change})
        yield Update(update_id=next(_ids), chat_join_request=ChatJoinRequest(
            chat=CHATS[chat], from_user=BOB, user_chat_id=BOB.id, date=NOW))
    inline = CallbackQuery(id="inline", from_user=ANN, chat_instance="c", inline_message_id="im", data="vp:1:1")
    yield Update(update_id=next(_ids), callback_query=inline)


def data_for(update: Update) -> dict[str, Any]:
    """What the pipeline hands filters: the group row in groups (with default settings), None elsewhere."""
    event = update.event
    chat = getattr(event, "chat", None) or getattr(getattr(event, "message", None), "chat", None)
    in_group = chat is not None and chat.type in ("group", "supergroup")
    return {"group": Group(id=1, chat_id=chat.id, title="G") if in_group and chat is not None else None}


async def test_every_feature_routes_as_plain_aiogram_routers_would() -> None:
    blueprints = [feature.router for feature in handlers.FEATURES]
    switchboard, plain, seen = engines(blueprints)
    bot = Bot("42:TEST-token-abcdefghijklmnop", session=MeOnly())
    corpus = list(updates(blueprints))
    differences, chosen = [], set()
    for update in corpus:
        await switchboard.feed_update(bot, update, **data_for(update))
        ours = seen[:]
        seen.clear()
        await plain.feed_update(bot, update, **data_for(update))
        theirs = seen[:]
        seen.clear()
        if ours != theirs:
            differences.append((update.event_type, getattr(update.event, "text", None) or
                                getattr(update.event, "data", None), ours, theirs))
        chosen.update(name for name, _ in ours)
    assert differences == []
    # The corpus reaches a good share of the handlers (so the comparison is not vacuous).
    assert len(corpus) > 1000
    assert len(chosen) >= 0.8 * sum(len(b.handlers) for b in blueprints), sorted(chosen)


class Tick(CallbackData, prefix="tk"):
    n: int


class FlagsSeen(BaseMiddleware):
    """An inner middleware that reads the chosen handler's flags, as aiogram's ChatActionMiddleware does."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    async def __call__(self, handler: Any, event: Any, data: dict[str, Any]) -> Any:
        self.seen.append(("middleware", get_flag(data, "chat_action"), get_flag(data, "rate")))
        return await handler(event, data)


async def test_handler_flags_reach_handlers_and_inner_middlewares_on_both_engines() -> None:
    feature = Blueprint("flagged")

    @feature.message(Command("slow"), IN_GROUP, flags={"chat_action": "typing"})
    @flags.rate(5)
    async def slow(message: Message, handler: Any, command: Any) -> None:
        sink.append(("slow", get_flag(handler, "chat_action"), get_flag(handler, "rate"),
                     [c.commands for c in get_flag(handler, "commands")]))

    @feature.callback_query(Tick.filter(), flags={"chat_action": "upload_photo"})
    async def tick(query: CallbackQuery, handler: Any, callback_data: Tick) -> None:
        sink.append(("tick", get_flag(handler, "chat_action"), callback_data.n))

    @feature.message()
    async def anything(message: Message, handler: Any) -> None:
        sink.append(("anything", get_flag(handler, "chat_action")))

    bot = Bot("42:TEST-token-abcdefghijklmnop", session=MeOnly())
    results = []
    for build in ("switchboard", "plain"):
        sink: list[Any] = []
        dp = Dispatcher()
        if build == "switchboard":
            Switchboard([feature]).install(dp)
        else:
            dp.include_router(feature.as_router())
        dp.message.middleware(FlagsSeen(sink))
        dp.callback_query.middleware(FlagsSeen(sink))
        for update in (
            Update(update_id=1, message=message("supergroup", "/slow now")),
            Update(update_id=2, message=message("private", "/slow")),
            Update(update_id=3, callback_query=CallbackQuery(id="1", from_user=ANN, chat_instance="c",
                                                             message=bot_post("group"), data="tk:4")),
        ):
            await dp.feed_update(bot, update)
        results.append(sink)
    switchboard_seen, plain_seen = results
    assert switchboard_seen == [
        ("middleware", "typing", 5), ("slow", "typing", 5, [("slow",)]),
        ("middleware", None, None), ("anything", None),
        ("middleware", "upload_photo", None), ("tick", "upload_photo", 4),
    ]
    assert plain_seen == switchboard_seen


@pytest.mark.parametrize("text", ["/vote x", "/vote@qunbot x", " /vote x"])
async def test_a_command_after_blanks_is_a_command_as_in_aiogram(text: str) -> None:
    feature = Blueprint("blanks")
    got: list[str] = []

    @feature.message(Command("vote"))
    async def vote(message: Message) -> None:
        got.append("vote")

    dp = Dispatcher()
    Switchboard([feature]).install(dp)
    await dp.feed_update(Bot("42:TEST-token-abcdefghijklmnop", session=MeOnly()),
                         Update(update_id=1, message=message("group", text)))
    assert got == ["vote"]
