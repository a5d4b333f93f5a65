"""The group-message pipeline: what happens to an ordinary message in a group, in one declared order.

The Dispatcher has one message handler, `GroupMessagePipeline.on_message`. A command, a service message (joins,
departures, migrations) and anything outside a group go straight to the switchboard (every feature's handlers,
handlers/__init__.py). An ordinary group message (and a command no feature answered) goes through these steps:

1. moderation verdict  handlers/moderation.check_message: a message that breaks a rule is removed (or only
                       logged in a dry run) and stops HERE: it earns nothing and counts for nothing below.
2. invite activity     handlers/invites.count_newcomer_message: a pending invitee's message counts toward their
                       inviter's reward.
3. keyword features    the switchboard's keyword handlers (签到 and the group's own check-in words, 积分, 排行,
                       积分商城, 投票, 拼团, 秒杀; a keyword lottery's entry by reply). A keyword that is answered
                       ends the line, as a command would (no topic or chat points for it).
4. topic replies       handlers/topics.topic_reply: an answer to the daily topic post earns topic points.
5. showcase (晒单)      handlers/points.showcase: a photo with the group's hashtag; its reply is the message's
                       answer, so the line ends there (no chat points for it).
6. chat points         handlers/points.chat_points: silent, batched through the Runtime's ChatDesk; members
                       resting after an award cost no database work.
7. activity facts      models/analytics.ActivityDesk.note_message: every message that stayed is counted (by
                       kind, reply, topic reply, showcase), whichever step above answered it; in memory, written
                       once a minute. No text is kept.

An edited group message goes through the moderation verdict only (a clean message edited into a link is removed).

It lives in bot/ because it composes features (bot -> handlers); each step is a plain function of its feature,
called with what it needs from the Runtime. Commands and buttons stay on the switchboard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import Message

from bot.runtime import Runtime
from handlers.invites import count_newcomer_message
from handlers.moderation import check_message
from handlers.points import chat_points, is_showcase, showcase
from handlers.switchboard import Switchboard
from handlers.topics import topic_reply
from models.analytics import ActivityDesk
from models.groups import Group

Features = Callable[..., Awaitable[Any]]  # the switchboard's handler for one kind of update: (event, **data)

GROUP_TYPES = frozenset({"group", "supergroup"})


class GroupMessagePipeline:
    """The Dispatcher's message (and edited message) handler: see the module docstring for the steps."""

    def __init__(self, features: Features, edited_features: Features | None = None) -> None:
        self.features = features  # the switchboard: commands, keywords, service messages, other chats
        self.edited_features = edited_features

    async def on_message(self, message: Message, **data: Any) -> Any:
        group: Group | None = data.get("group")
        if message.chat.type not in GROUP_TYPES or group is None or group.id is None or _is_service(message):
            return await self.features(message, **data)
        text = message.text or message.caption
        command = text is not None and text[:1] == "/"
        if command:
            answered = await self.features(message, **data)
            if answered is not UNHANDLED:
                return answered  # a command stays on the switchboard
        return await self.ordinary(message, group, data, keywords=not command)

    async def ordinary(self, message: Message, group: Group, data: dict[str, Any], *, keywords: bool) -> Any:
        """The steps, in order. `keywords`: whether the switchboard still has to be asked (a command no feature
        answered has been asked already)."""
        bot, session, runtime = data["bot"], data["session"], data["runtime"]
        assert isinstance(runtime, Runtime)
        # 1. moderation verdict: a removed message stops here
        if await check_message(message, bot, session, group, data.get("member"), runtime.moderation, edited=False):
            return None
        topic = showcased = False
        try:
            # 2. invite activity
            await count_newcomer_message(message, session, group, runtime.invites)
            # 3. keyword features: an answered keyword ends the line
            if keywords:
                answered = await self.features(message, **data)
                if answered is not UNHANDLED:
                    return answered
            # 4. topic replies
            if message.reply_to_message is not None:
                topic = await topic_reply(message, bot, session, group, runtime)
            # 5. showcase: its reply is the answer
            if is_showcase(message, group):
                showcased = True
                await showcase(message, bot, session, group, runtime.tiers)
                return None
            # 6. chat points
            await chat_points(message, bot, group, runtime)
            return UNHANDLED
        finally:
            # 7. activity facts: every message that stayed, whichever step answered it
            note_activity(runtime.activity, message, group, topic_reply=topic, showcase=showcased)

    async def on_edit(self, message: Message, **data: Any) -> Any:
        group: Group | None = data.get("group")
        if message.chat.type in GROUP_TYPES and group is not None and group.id is not None:
            runtime: Runtime = data["runtime"]
            if await check_message(message, data["bot"], data["session"], group, data.get("member"),
                                   runtime.moderation, edited=True):
                return None
        if self.edited_features is not None:
            return await self.edited_features(message, **data)
        return UNHANDLED


def note_activity(desk: ActivityDesk, message: Message, group: Group, *, topic_reply: bool, showcase: bool) -> None:
    """Count a message that stayed in the activity facts (no text: its kind and whether it replied)."""
    person = message.from_user
    if person is None or person.is_bot or message.sender_chat is not None or group.id is None:
        return  # channels, anonymous admins and bots are not members
    desk.note_message(group.id, group.timezone, person.id, message.date, message_kind(message),
                      reply=message.reply_to_message is not None, topic_reply=topic_reply, showcase=showcase,
                      language=person.language_code)


def message_kind(message: Message) -> str:
    """text, photo, video, voice, sticker or other (one of models.analytics.MESSAGE_KINDS)."""
    if message.photo:
        return "photo"
    if message.video is not None or message.video_note is not None or message.animation is not None:
        return "video"
    if message.voice is not None or message.audio is not None:
        return "voice"
    if message.sticker is not None:
        return "sticker"
    return "text" if message.text else "other"


def _is_service(message: Message) -> bool:
    """A join, a departure or a migration: the switchboard's service handlers take these."""
    return bool(message.new_chat_members or message.left_chat_member or message.migrate_to_chat_id
                or message.migrate_from_chat_id)


def install_pipeline(dp: Dispatcher, switchboard: Switchboard) -> None:
    """Put the pipeline in front of the switchboard (installed first by handlers.install): it becomes the
    Dispatcher's one message and edited-message handler, and asks the switchboard's lanes for what is not its own.
    (aiogram's inner middlewares, if any were registered, run around the pipeline, not around each feature.)"""
    if "message" not in switchboard.lanes:
        raise RuntimeError("install the switchboard (handlers.install) before the pipeline")
    edited = switchboard.lanes.get("edited_message")
    for observer in ("message", "edited_message"):
        dp.observers[observer].handlers.clear()  # the switchboard's own registration: the pipeline calls its lane
    pipeline = GroupMessagePipeline(switchboard.lanes["message"].dispatch, edited.dispatch if edited else None)
    dp.message.register(pipeline.on_message)
    dp.edited_message.register(pipeline.on_edit)
