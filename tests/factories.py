"""Test factories: people, chats and updates in one line, fed through the real Dispatcher, with a bot session
that records every method the bot called (assert on what the bot did, not on how)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageText,
    GetChatAdministrators,
    GetChatMember,
    GetMe,
    SendDocument,
    SendMessage,
    TelegramMethod,
)
from aiogram.types import (
    CallbackQuery,
    Chat,
    ChatMemberAdministrator,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    ChatMemberUpdated,
    Document,
    Message,
    MessageEntity,
    Update,
    User,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.factory import create_dispatcher, create_runtime
from bot.settings import Settings
from handlers.live_posts import LivePosts
from handlers.roles import AdminCache
from scheduler.runner import JobContext

BOT_USER = User(id=42, is_bot=True, first_name="qunbot", username="qunbot")


class RecordingSession(BaseSession):
    """A bot session that answers like Telegram would, from the World's state, and records every call."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.calls: list[TelegramMethod[Any]] = []
        self.message_ids = itertools.count(1000)

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None  # noqa: ASYNC109 (aiogram's API)
    ) -> Any:
        self.calls.append(method)
        world = self.world
        if isinstance(method, GetMe):
            return BOT_USER
        if isinstance(method, GetChatMember):
            return world.member_status(int(method.chat_id), method.user_id)
        if isinstance(method, GetChatAdministrators):
            chat_id = int(method.chat_id)
            ids = {*world.admins.get(chat_id, set()), *([world.owners[chat_id]] if chat_id in world.owners else [])}
            return [world.member_status(chat_id, user_id) for user_id in sorted(ids)]
        if isinstance(method, SendMessage | SendDocument | EditMessageText):
            chat = world.chats.get(int(method.chat_id or 0)) or Chat(id=int(method.chat_id or 0), type="private")
            message_id = getattr(method, "message_id", None) or next(self.message_ids)
            document = None
            if isinstance(method, SendDocument):
                document = Document(file_id="doc", file_unique_id="doc", file_name="file")
            return Message(
                message_id=message_id, date=datetime.now(UTC), chat=chat, from_user=BOT_USER,
                text=getattr(method, "text", None), caption=getattr(method, "caption", None), document=document,
            )
        return True

    async def close(self) -> None:
        pass

    def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:  # pragma: no cover
        raise NotImplementedError


class World:
    """People, chats and a dispatcher; `send`, `press`, `join` feed updates and return what the bot did."""

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.session = RecordingSession(self)
        self.bot = Bot(settings.token, session=self.session, default=DefaultBotProperties(parse_mode="HTML"))
        # The process's Runtime: a test replaces a part by assigning it (world.runtime.lobby = Lobby(...)).
        self.runtime = create_runtime(settings, sessionmaker)
        self.dp = create_dispatcher(self.runtime)
        self.chats: dict[int, Chat] = {}
        self.admins: dict[int, set[int]] = {}
        self.owners: dict[int, int] = {}
        self.update_ids = itertools.count(1)
        self.message_ids = itertools.count(1)
        self.user_ids = itertools.count(100_000_001)
        self.group_ids = itertools.count(1_000_000_001)

    async def close(self) -> None:
        # Posts still being edited in the background end before the test's database goes.
        await self.runtime.live_posts.close(flush=False)
        await self.dp.storage.close()

    def jobs(self) -> JobContext:
        """What a scheduler job receives in this world (its bot and runtime)."""
        return JobContext(self.bot, self.runtime)

    def fast_live_posts(self, every: float = 0.01, **intervals: float) -> LivePosts:
        """The runtime's live-post editor, replaced by one that edits every `every` seconds (and `intervals`
        by kind name): tests see coalesced edits without waiting. `await world.live_posts.drain()` lands them."""
        editor = LivePosts(self.sessionmaker, self.runtime.i18n, every=every, intervals=intervals)
        self.runtime.live_posts = self.dp.workflow_data["live_posts"] = editor  # the dispatcher's name for it too
        return editor

    @property
    def live_posts(self) -> LivePosts:
        return self.runtime.live_posts

    # -- people and chats -------------------------------------------------------------------------------------

    def user(
        self, first_name: str = "Alice", language_code: str | None = "zh-hans", username: str | None = None
    ) -> User:
        return User(id=next(self.user_ids), is_bot=False, first_name=first_name, language_code=language_code,
                    username=username or first_name.lower())

    def group(self, title: str = "Brand Fans", owner: User | None = None) -> Chat:
        chat = Chat(id=-(10**12) - next(self.group_ids), type="supergroup", title=title)
        self.chats[chat.id] = chat
        self.admins[chat.id] = set()
        if owner is not None:
            self.owners[chat.id] = owner.id
        return chat

    def private(self, user: User) -> Chat:
        chat = Chat(id=user.id, type="private", first_name=user.first_name)
        self.chats[chat.id] = chat
        return chat

    def member_status(self, chat_id: int, user_id: int) -> Any:
        user = User(id=user_id, is_bot=False, first_name="x")
        if self.owners.get(chat_id) == user_id:
            return ChatMemberOwner(user=user, is_anonymous=False)
        if user_id in self.admins.get(chat_id, set()):
            return admin_member(user)
        return ChatMemberMember(user=user)

    # -- acting -----------------------------------------------------------------------------------------------

    async def feed(self, update: Update) -> list[TelegramMethod[Any]]:
        """Feed one update through the real dispatcher; return the methods the bot called for it."""
        # A test that edits `admins`/`owners` directly stands for Telegram telling the bot (a chat_member update):
        # the runtime's admin cache (handlers/roles.py) forgets what it knew.
        admins_now = (repr(sorted((chat, sorted(ids)) for chat, ids in self.admins.items())), repr(self.owners))
        if admins_now != getattr(self, "_admins_seen", admins_now):
            self.runtime.admins = AdminCache()
        self._admins_seen = admins_now
        start = len(self.session.calls)
        await self.dp.feed_update(self.bot, update)
        return self.session.calls[start:]

    def message(self, chat: Chat, user: User | None, text: str, **fields: Any) -> Message:
        entities = None
        if text.startswith("/"):
            command = text.split()[0]
            entities = [MessageEntity(type="bot_command", offset=0, length=len(command))]
        return Message(message_id=next(self.message_ids), date=datetime.now(UTC), chat=chat, from_user=user,
                       text=text, entities=entities, **fields)

    async def send(
        self, chat: Chat, user: User | None, text: str, *, update_id: int | None = None, **fields: Any
    ) -> list[TelegramMethod[Any]]:
        update_id = update_id if update_id is not None else next(self.update_ids)
        self.last_update_id = update_id
        return await self.feed(Update(update_id=update_id, message=self.message(chat, user, text, **fields)))

    async def press(self, chat: Chat, user: User, data: str, message_id: int = 1) -> list[TelegramMethod[Any]]:
        message = Message(message_id=message_id, date=datetime.now(UTC), chat=chat, from_user=BOT_USER, text="…")
        query = CallbackQuery(id=str(next(self.update_ids)), from_user=user, chat_instance=str(chat.id),
                              message=message, data=data)
        return await self.feed(Update(update_id=next(self.update_ids), callback_query=query))

    async def bot_status(self, chat: Chat, by: User, new: Any, old: Any | None = None) -> list[TelegramMethod[Any]]:
        change = ChatMemberUpdated(chat=chat, from_user=by, date=datetime.now(UTC),
                                   old_chat_member=old or ChatMemberLeft(user=BOT_USER), new_chat_member=new)
        return await self.feed(Update(update_id=next(self.update_ids), my_chat_member=change))

    async def member_change(self, chat: Chat, user: User, old: Any, new: Any) -> list[TelegramMethod[Any]]:
        change = ChatMemberUpdated(chat=chat, from_user=user, date=datetime.now(UTC),
                                   old_chat_member=old, new_chat_member=new)
        return await self.feed(Update(update_id=next(self.update_ids), chat_member=change))


def admin_member(user: User, **rights: bool) -> ChatMemberAdministrator:
    defaults = dict(
        can_be_edited=False, is_anonymous=False, can_manage_chat=True, can_delete_messages=True,
        can_manage_video_chats=False, can_restrict_members=True, can_promote_members=False, can_change_info=False,
        can_invite_users=True, can_post_stories=False, can_edit_stories=False, can_delete_stories=False,
        can_pin_messages=True, can_send_welcome_messages=False,
    )
    defaults.update(rights)
    return ChatMemberAdministrator(user=user, **defaults)


def texts(calls: list[TelegramMethod[Any]]) -> list[str]:
    """The texts the bot sent or edited, and its callback answers, in order."""
    out = []
    for call in calls:
        if isinstance(call, SendMessage | EditMessageText):
            out.append(call.text)
        elif isinstance(call, AnswerCallbackQuery) and call.text:
            out.append(call.text)
        elif isinstance(call, SendDocument) and call.caption:
            out.append(call.caption)
    return out
