"""The switchboard: every feature's handlers behind one handler per kind of update, with aiogram's rules kept
(feature order, first match wins, SkipHandler moves on, filter data reaches the handler) and only the handlers an
update can concern checked (chat type, command, keyword, callback-data prefix)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.base import BaseSession
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import GetMe, TelegramMethod
from aiogram.types import CallbackQuery, Chat, Message, Update, User

from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint, Keywords, Service, Switchboard, index_key
from tests.factories import BOT_USER

GROUP = Chat(id=-100, type="supergroup", title="G")
PRIVATE = Chat(id=7, type="private", first_name="Ann")
ANN = User(id=7, is_bot=False, first_name="Ann")


class MeOnly(BaseSession):
    """The Bot API as far as these tests need it: who the bot is (for "/vote@name" mentions)."""

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:  # noqa: ASYNC109
        assert isinstance(method, GetMe), method
        return BOT_USER

    async def close(self) -> None:
        return None

    async def stream_content(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never downloads
        raise NotImplementedError


class Pick(CallbackData, prefix="pk"):
    choice: int


class Other(CallbackData, prefix="ot"):
    n: int


def message(chat: Chat, text: str | None = None, **extra: Any) -> Update:
    return Update(update_id=1, message=Message(message_id=1, date=datetime.now(UTC), chat=chat, from_user=ANN,
                                               text=text, **extra))


def press(data: str, chat: Chat = GROUP) -> Update:
    origin = Message(message_id=2, date=datetime.now(UTC), chat=chat, text="post")
    return Update(update_id=2, callback_query=CallbackQuery(id="q", from_user=ANN, chat_instance="c",
                                                            message=origin, data=data))


@pytest.fixture
def board() -> tuple[Dispatcher, Bot, list[str]]:
    seen: list[str] = []
    first, second = Blueprint("first"), Blueprint("second")
    first.filter("message", lambda m: m.text != "blocked-by-feature-filter")

    @first.message(Command("vote"), IN_GROUP)
    async def vote_in_group(message: Message, command: CommandObject) -> None:
        seen.append(f"vote:{command.args}")

    @first.message(Command("vote"), IN_PRIVATE)
    async def vote_in_private(message: Message) -> None:
        seen.append("vote-private")

    @first.message(Keywords({"积分"}), IN_GROUP)
    async def points_word(message: Message) -> None:
        seen.append("积分")

    @first.message(IN_GROUP)
    async def listener(message: Message) -> None:
        seen.append("listener")
        raise SkipHandler()  # lets later features see the message

    @first.callback_query(Pick.filter(F.choice > 0), IN_GROUP)
    async def picked(query: CallbackQuery, callback_data: Pick) -> None:
        seen.append(f"pick:{callback_data.choice}")

    @second.message(Service("left_chat_member"), IN_GROUP)
    async def left(message: Message) -> None:
        seen.append(f"left:{message.left_chat_member.first_name}")  # type: ignore[union-attr]

    @second.message(F.photo)
    async def photo(message: Message) -> None:
        seen.append("photo")

    @second.message(IN_GROUP)
    async def catch_all(message: Message) -> None:
        seen.append("catch-all")

    @second.callback_query()
    async def any_press(query: CallbackQuery) -> None:
        seen.append(f"any-press:{query.data}")

    dp = Dispatcher()
    Switchboard([first, second]).install(dp)
    return dp, Bot("42:TEST-token-abcdefghijklmnop", session=MeOnly()), seen


async def test_commands_reach_their_handler_with_the_parsed_command(board) -> None:  # type: ignore[no-untyped-def]
    dp, bot, seen = board
    await dp.feed_update(bot, message(GROUP, "/vote 面霜 精华"))
    await dp.feed_update(bot, message(PRIVATE, "/vote"))
    await dp.feed_update(bot, message(GROUP, "/vote@someone_else_bot x"))  # addressed to another bot
    await dp.feed_update(bot, message(GROUP, f"/vote@{BOT_USER.username} y"))
    assert seen == ["vote:面霜 精华", "vote-private", "listener", "catch-all", "vote:y"]


async def test_plain_text_skips_command_and_keyword_handlers(board) -> None:  # type: ignore[no-untyped-def]
    dp, bot, seen = board
    await dp.feed_update(bot, message(GROUP, "vote for me"))
    await dp.feed_update(bot, message(GROUP, "/unknown"))
    await dp.feed_update(bot, message(GROUP, "积分"))
    await dp.feed_update(bot, message(GROUP, "积分 please"))  # a keyword is the whole text
    assert seen == ["listener", "catch-all", "listener", "catch-all", "积分", "listener", "catch-all"]


async def test_feature_filter_and_chat_type_apply(board) -> None:  # type: ignore[no-untyped-def]
    dp, bot, seen = board
    await dp.feed_update(bot, message(GROUP, "blocked-by-feature-filter"))  # the first feature refuses it
    await dp.feed_update(bot, message(PRIVATE, "hello"))  # no group handler answers a private chat
    assert seen == ["catch-all"]


async def test_button_presses_are_looked_up_by_prefix(board) -> None:  # type: ignore[no-untyped-def]
    dp, bot, seen = board
    await dp.feed_update(bot, press("pk:3"))
    await dp.feed_update(bot, press("pk:0"))  # the rule refuses it: the next candidate answers
    await dp.feed_update(bot, press("ot:1"))
    await dp.feed_update(bot, press("pk:3", chat=PRIVATE))
    assert seen == ["pick:3", "any-press:pk:0", "any-press:ot:1", "any-press:pk:3"]


async def test_unhandled_update_is_reported_as_unhandled(board) -> None:  # type: ignore[no-untyped-def]
    dp, bot, seen = board
    dp.message.handlers.clear()
    result = await dp.feed_update(bot, message(GROUP, "anything"))
    assert seen == [] and result is not None and str(result) == "sentinel.UNHANDLED"


def test_synchronous_handlers_are_refused() -> None:
    feature = Blueprint("sync")

    @feature.message()
    def not_async(message: Message) -> None:  # aiogram would run it in a thread; ours must be async
        return None

    with pytest.raises(TypeError, match="must be async"):
        Switchboard([feature]).install(Dispatcher())


async def test_service_messages_are_looked_up_by_kind(board) -> None:  # type: ignore[no-untyped-def]
    dp, bot, seen = board
    await dp.feed_update(bot, message(GROUP, left_chat_member=ANN))
    await dp.feed_update(bot, message(GROUP, "bye"))  # ordinary text never meets the service handler
    assert seen == ["listener", "left:Ann", "listener", "catch-all"]
    assert index_key(message(GROUP, left_chat_member=ANN).message) == "!left_chat_member"  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Service("pinned_message")  # not indexed: would silently never match


class Bare(CallbackData, prefix="bare"):
    """A button whose data has no fields: matched by its exact data, unpacked once."""


async def test_a_button_without_fields_matches_its_exact_data_only() -> None:
    router, seen = Blueprint("bare"), []

    @router.callback_query(Bare.filter(), IN_GROUP)
    async def pressed(query: CallbackQuery, callback_data: Bare) -> None:
        seen.append(f"bare:{type(callback_data).__name__}")

    @router.callback_query(IN_GROUP)
    async def fallback(query: CallbackQuery) -> None:
        seen.append(f"fallback:{query.data}")

    dp = Dispatcher()
    Switchboard([router]).install(dp)
    bot = Bot("42:TEST-token-abcdefghijklmnop", session=MeOnly())
    for data in ("bare", "bare:1", "bared", "bare"):
        await dp.feed_update(bot, press(data))
    assert seen == ["bare:Bare", "fallback:bare:1", "fallback:bared", "bare:Bare"]
