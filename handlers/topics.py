"""Daily topics (互动话题): admins keep a pool of questions (/topic add | list | remove | import | now); the
scheduler posts one a day at the group's "topic" schedule time (/schedule set topic 20:00); members answer by
replying to the topic post and earn the topic points (rules topic_points, topic_daily_cap), once per topic.

Replies are seen by the group-message pipeline (bot/pipeline.py) after moderation let them stay; the reply
observer is silent (points show in /me; tier-ups are announced, coalesced) and the message goes on to the later
observers (showcase, chat points).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import Document, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, display_name, esc
from handlers.kit import parse_row_id
from handlers.points import announce_tier_up, is_person
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, Blueprint
from models import points, topics
from models.clock import local_day
from models.db import utcnow
from models.groups import Group

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("qunbot.topics")

router = Blueprint("topics")
router.filter("message", IN_GROUP)

COMMANDS = [
    CommandInfo("topic", __("Daily topics: /topic list | add text | remove ID | import (a .txt file) | now"), "admin"),
]

REPLY_WINDOW = timedelta(days=2)  # replies to topic posts older than this earn nothing
LIST_MAX = 40  # topics shown by /topic list


def usage() -> str:
    return _(
        "Usage (admins):\n/topic list — the topic pool\n/topic add question — add one (one per line for several)\n"
        "/topic remove ID — remove one\n/topic import — send a .txt file (one topic per line) with this caption, "
        "or reply to it\n/topic now — post a topic now\nPost one every day: /schedule set topic 20:00"
    )


def render_topic(text: str, rules: points.PointsRules) -> str:
    lines = [_("💬 <b>Today's topic</b>"), "", esc(text), ""]
    if rules.topic_points > 0:
        lines.append(_("Reply to this message to join in: +{points} points.").format(points=rules.topic_points))
    else:
        lines.append(_("Reply to this message to join in!"))
    return "\n".join(lines)


async def post_topic(bot: Bot, session: AsyncSession, group_id: int, chat_id: int, locale: str | None,
                     day: date) -> int:
    """Take the pool's next topic and post it; replies to it earn topic points. Returns the message id.
    On a Telegram error the topic goes back to the round and the error is raised."""
    topic = await topics.next_topic(session, group_id, locale)
    rules = await points.get_rules(session, group_id)
    try:
        message = await bot.send_message(chat_id, render_topic(topic.text, rules))
    except TelegramAPIError:
        assert topic.id is not None
        await topics.release_topic(session, topic.id)
        raise
    await topics.record_post(session, group_id, topic.id, message.message_id, day)
    return message.message_id


# -- admin commands --------------------------------------------------------------------------------------------


@router.message(Command("topic"))
async def topic_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                        group: Group | None, i18n: I18n) -> None:
    if group is None or group.id is None:
        return
    action, _sep, rest = (command.args or "").strip().partition(" ")
    action = action.lower()
    if action not in ("list", "add", "remove", "import", "now"):
        await message.reply(usage())
        return
    if not await require_admin(bot, message):
        return
    if action == "list":
        await show_pool(message, session, group)
    elif action == "add":
        await add(message, session, group, rest)
    elif action == "remove":
        await remove(message, session, group, rest.strip())
    elif action == "import":
        await import_file(message, bot, session, group)
    else:  # a group post: in the group's language, like the scheduled one
        locale = group.locale or i18n.default_locale
        with i18n.use_locale(locale):
            await post_topic(bot, session, group.id, group.chat_id, locale, local_day(utcnow(), group.timezone))


async def show_pool(message: Message, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    pool = await topics.list_topics(session, group.id)
    if not pool:
        await message.reply(
            _("The topic pool is empty: the starter pack ({count} topics) will be used. Add your own with "
              "/topic add or /topic import.").format(count=len(topics.starter_topics(group.locale)))
        )
        return
    used = sum(1 for topic in pool if topic.used)
    lines = [_("<b>Topic pool</b>: {count} topics, {used} posted this round").format(count=len(pool), used=used)]
    for topic in pool[:LIST_MAX]:
        mark = "✓" if topic.used else "·"
        short = topic.text if len(topic.text) <= 60 else topic.text[:59] + "…"
        lines.append(f"{mark} <code>{topic.id}</code> {esc(short)}")
    if len(pool) > LIST_MAX:
        lines.append(_("…and {count} more").format(count=len(pool) - LIST_MAX))
    lines.append(_("Remove one with /topic remove ID"))
    await message.reply("\n".join(lines))


def render_added(result: topics.AddResult) -> str:
    lines = [_("✅ Added {count} topics.").format(count=result.added)]
    if result.duplicates:
        lines.append(_("Already in the pool: {count}").format(count=result.duplicates))
    if result.invalid:
        lines.append(_("Skipped (empty or longer than {most} characters): {count}").format(
            most=topics.TOPIC_MAX_LENGTH, count=result.invalid))
    if result.over_limit:
        lines.append(_("Not added, the pool holds at most {most} topics: {count}").format(
            most=topics.POOL_MAX, count=result.over_limit))
    return "\n".join(lines)


async def add(message: Message, session: AsyncSession, group: Group, text: str) -> None:
    assert group.id is not None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        await message.reply(_("Usage: /topic add 你最近入手的宝藏好物是什么？ (one topic per line)"))
        return
    if len(lines) > topics.IMPORT_MAX_LINES:
        await message.reply(_("At most {most} topics at once.").format(most=topics.IMPORT_MAX_LINES))
        return
    await message.reply(render_added(await topics.add_topics(session, group.id, lines)))


async def remove(message: Message, session: AsyncSession, group: Group, raw: str) -> None:
    assert group.id is not None
    topic_id = parse_row_id(raw)
    if topic_id is None:
        await message.reply(_("Usage: /topic remove ID (the number shown by /topic list)"))
        return
    if await topics.remove_topic(session, group.id, topic_id):
        await message.reply(_("Topic {id} removed.").format(id=raw))
    else:
        await message.reply(_("There is no topic {id} in this group.").format(id=raw))


def _document_of(message: Message) -> Document | None:
    if message.document is not None:
        return message.document
    if message.reply_to_message is not None:
        return message.reply_to_message.document
    return None


async def import_file(message: Message, bot: Bot, session: AsyncSession, group: Group) -> None:
    """Topics from a .txt document sent with the command as caption, or replied to with the command."""
    assert group.id is not None
    document = _document_of(message)
    if document is None:
        await message.reply(_("Send a .txt file (one topic per line) with the caption /topic import, or reply to "
                              "the file with /topic import."))
        return
    name = (document.file_name or "").lower()
    if not name.endswith(".txt") and document.mime_type != "text/plain":
        await message.reply(_("Only .txt files (plain text, one topic per line) can be imported."))
        return
    limit_kb = topics.IMPORT_MAX_BYTES // 1024
    if document.file_size is not None and document.file_size > topics.IMPORT_MAX_BYTES:
        await message.reply(_("The file is too large: at most {size} KB.").format(size=limit_kb))
        return
    try:
        downloaded = await bot.download(document)
        assert downloaded is not None
        content = topics.decode_topic_file(downloaded.read(topics.IMPORT_MAX_BYTES + 1))
    except TelegramAPIError as error:
        log.warning("topic file in %s not downloaded: %s", message.chat.id, error)
        await message.reply(_("I could not download that file. Please send it again."))
        return
    except topics.TopicError:
        await message.reply(_("That file is not plain text of at most {size} KB.").format(size=limit_kb))
        return
    lines = topics.topic_lines(content)
    if not lines:
        await message.reply(_("The file has no topics: put one topic per line."))
        return
    result = await topics.add_topics(session, group.id, lines[: topics.IMPORT_MAX_LINES])
    text = render_added(result)
    if len(lines) > topics.IMPORT_MAX_LINES:
        text += "\n" + _("Only the first {most} lines were read.").format(most=topics.IMPORT_MAX_LINES)
    await message.reply(text)


# -- replies to the topic post: an observer of the group-message pipeline (bot/pipeline.py) --------------------


async def topic_reply(message: Message, bot: Bot, session: AsyncSession, group: Group, runtime: Runtime) -> bool:
    """A member's answer to a topic post earns topic points once per topic (within the daily cap). The pipeline
    calls this only for a message that moderation let stay. True: it earned topic points (a topic reply, for the
    activity facts)."""
    replied = message.reply_to_message
    user = message.from_user
    text = (message.text or message.caption or "").strip()
    eligible = (
        group.id is not None
        and replied is not None
        and replied.from_user is not None
        and replied.from_user.is_bot  # cheap test first: only the bot's own posts can be topic posts
        and message.sender_chat is None
        and is_person(user)
        and not text.startswith("/")
    )
    if eligible:
        assert group.id is not None and replied is not None and user is not None
        rules = points.rules_of(group)
        if rules.topic_points > 0 and (len(text) >= rules.chat_min_length or message.photo):
            post = await topics.find_post(session, group.id, replied.message_id, since=utcnow() - REPLY_WINDOW)
            if post is not None:
                result = await points.award_topic(
                    session, group.id, user.id, key=f"topic:{post.id}:{user.id}", reference=f"topic_post:{post.id}"
                )
                if result.awarded:
                    await announce_tier_up(runtime.tiers, bot, group, user.id,
                                           display_name(user.first_name, user.username), result.ledger)
                return result.awarded
    return False
