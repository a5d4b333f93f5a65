"""Daily topics as people see them: admins manage the pool (add, list, remove, import a .txt file), the
scheduler posts a topic on the group's clock, and replies to it earn topic points once per topic within the
daily cap, while chat points still see the same message."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.methods import GetFile, SendMessage
from aiogram.types import Document, File, Message, MessageEntity, PhotoSize, Update
from sqlalchemy import select

from models import groups, points, schedules, topics
from models.points import PointsEntry
from scheduler.runner import run_schedules
from tests.factories import BOT_USER, texts


class Pool:
    def __init__(self, world: Any) -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en")
        self.bob = world.user("Bob", language_code="en")
        self.chat = world.group("Fans", owner=self.owner)
        self.gid = 0

    async def start(self) -> Pool:
        await self.world.send(self.chat, self.owner, "hello")
        await self.world.send(self.chat, self.owner, "/lang en")  # scheduled posts speak the group's language
        async with self.world.sessionmaker() as session:
            group = await groups.get_group(session, self.chat.id)
            self.gid = group.id
        return self

    async def pool(self) -> list[str]:
        async with self.world.sessionmaker() as session:
            return [t.text for t in await topics.list_topics(session, self.gid)]

    async def entries(self, kind: str) -> list[PointsEntry]:
        async with self.world.sessionmaker() as session:
            rows = await session.scalars(select(PointsEntry).where(PointsEntry.kind == kind))
            return list(rows.all())

    async def post_now(self) -> tuple[str, int]:
        """/topic now: the post's text and message id (as recorded for replies)."""
        calls = await self.world.send(self.chat, self.owner, "/topic now")
        [post] = [c for c in calls if isinstance(c, SendMessage)]
        return post.text, await self.latest_post_id()

    async def latest_post_id(self) -> int:
        async with self.world.sessionmaker() as session:
            return int(await session.scalar(
                select(topics.TopicPost.message_id).order_by(topics.TopicPost.id.desc()).limit(1)))

    async def reply(self, user: Any, message_id: int, text: str, **fields: Any) -> list[Any]:
        original = Message(message_id=message_id, date=datetime.now(UTC), chat=self.chat, from_user=BOT_USER,
                           text="💬")
        return await self.world.send(self.chat, user, text, reply_to_message=original, **fields)

    async def balance(self, user: Any) -> int:
        async with self.world.sessionmaker() as session:
            return (await points.get_balance(session, self.gid, user.id)).balance


def document_message(world: Any, chat: Any, user: Any, caption: str | None, name: str = "topics.txt",
                     size: int = 100, mime: str = "text/plain") -> Message:
    entities = [MessageEntity(type="bot_command", offset=0, length=len(caption.split()[0]))] if caption else None
    return Message(message_id=next(world.message_ids), date=datetime.now(UTC), chat=chat, from_user=user,
                   document=Document(file_id="topics-file", file_unique_id="u1", file_name=name, mime_type=mime,
                                     file_size=size),
                   caption=caption, caption_entities=entities)


def serve_file(world: Any, content: bytes) -> None:
    """Let the recording bot answer getFile and the download with `content`."""
    recording = world.session
    answer = recording.make_request

    async def make_request(bot: Any, method: Any, timeout: int | None = None) -> Any:  # noqa: ASYNC109
        if isinstance(method, GetFile):
            recording.calls.append(method)
            return File(file_id=method.file_id, file_unique_id="u1", file_size=len(content),
                        file_path="documents/topics.txt")
        return await answer(bot, method, timeout)

    async def stream_content(*args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        yield content

    recording.make_request = make_request
    recording.stream_content = stream_content


# -- the pool --------------------------------------------------------------------------------------------------


async def test_admins_add_list_and_remove_topics(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    assert "starter pack (15 topics)" in texts(await world.send(pool.chat, pool.owner, "/topic list"))[0]
    command = "/topic add 你最近入手的宝藏好物是什么？\n- Best deal this week?"
    [added] = texts(await world.send(pool.chat, pool.owner, command))
    assert added == "✅ Added 2 topics."
    [again] = texts(await world.send(pool.chat, pool.owner, "/topic add Best deal this week?"))
    assert again == "✅ Added 0 topics.\nAlready in the pool: 1"
    assert await pool.pool() == ["你最近入手的宝藏好物是什么？", "Best deal this week?"]
    listing = texts(await world.send(pool.chat, pool.owner, "/topic list"))[0]
    assert "2 topics, 0 posted this round" in listing and "Best deal this week?" in listing
    async with world.sessionmaker() as session:
        first_id = (await topics.list_topics(session, pool.gid))[0].id
    assert texts(await world.send(pool.chat, pool.owner, f"/topic remove {first_id}")) == [
        f"Topic {first_id} removed."]
    assert texts(await world.send(pool.chat, pool.owner, f"/topic remove {first_id}")) == [
        f"There is no topic {first_id} in this group."]
    assert "Usage: /topic remove ID" in texts(await world.send(pool.chat, pool.owner, "/topic remove x"))[0]
    assert await pool.pool() == ["Best deal this week?"]


async def test_members_are_refused_and_bad_input_gets_usage(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    assert texts(await world.send(pool.chat, pool.bob, "/topic add Mine?")) == ["Only group admins can do that."]
    assert texts(await world.send(pool.chat, pool.bob, "/topic now")) == ["Only group admins can do that."]
    assert texts(await world.send(pool.chat, pool.bob, "/topic"))[0].startswith("Usage (admins):")
    assert "Usage: /topic add" in texts(await world.send(pool.chat, pool.owner, "/topic add"))[0]
    assert await pool.pool() == []


async def test_import_a_text_file_by_caption_or_reply(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    serve_file(world, "# our topics\n1. 夏天必备的防晒好物？\n\n2. 你的购物车里躺着什么？\n".encode())
    calls = await world.feed(Update(update_id=next(world.update_ids),
                                    message=document_message(world, pool.chat, pool.owner, "/topic import")))
    assert texts(calls) == ["✅ Added 2 topics."]
    assert await pool.pool() == ["夏天必备的防晒好物？", "你的购物车里躺着什么？"]
    serve_file(world, "第三个话题？\n".encode("gb18030"))
    file_message = document_message(world, pool.chat, pool.owner, None)
    calls = await world.send(pool.chat, pool.owner, "/topic import", reply_to_message=file_message)
    assert texts(calls) == ["✅ Added 1 topics."]
    assert len(await pool.pool()) == 3


async def test_import_limits(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    assert "Send a .txt file" in texts(await world.send(pool.chat, pool.owner, "/topic import"))[0]
    big = document_message(world, pool.chat, pool.owner, "/topic import", size=topics.IMPORT_MAX_BYTES + 1)
    assert "too large" in texts(await world.feed(Update(update_id=next(world.update_ids), message=big)))[0]
    pdf = document_message(world, pool.chat, pool.owner, "/topic import", name="x.pdf", mime="application/pdf")
    assert "Only .txt files" in texts(await world.feed(Update(update_id=next(world.update_ids), message=pdf)))[0]
    serve_file(world, b"\xff\xfe\x00\x00" * 10)
    bad = document_message(world, pool.chat, pool.owner, "/topic import")
    assert "not plain text" in texts(await world.feed(Update(update_id=next(world.update_ids), message=bad)))[0]
    serve_file(world, "\n".join(f"Q{n}?" for n in range(topics.IMPORT_MAX_LINES + 5)).encode())
    many = document_message(world, pool.chat, pool.owner, "/topic import")
    [reply] = texts(await world.feed(Update(update_id=next(world.update_ids), message=many)))
    assert f"Added {topics.IMPORT_MAX_LINES} topics" in reply and "Only the first" in reply
    assert await pool.pool() == [f"Q{n}?" for n in range(topics.IMPORT_MAX_LINES)]


# -- posting and replies ---------------------------------------------------------------------------------------


async def test_the_scheduler_posts_a_topic_at_the_groups_time(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    await world.send(pool.chat, pool.owner, "/topic add Which summer item do you love?")
    await world.send(pool.chat, pool.owner, "/schedule set topic 20:00")
    ctx = world.jobs()
    eight_pm = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)  # 20:00 in Shanghai
    before = len(world.session.calls)
    assert await run_schedules(ctx, eight_pm - timedelta(minutes=1), kinds={"topic"}) == 0
    assert await run_schedules(ctx, eight_pm, kinds={"topic"}) == 1
    assert await run_schedules(ctx, eight_pm + timedelta(minutes=1), kinds={"topic"}) == 0
    [post] = [c for c in world.session.calls[before:] if isinstance(c, SendMessage)]
    # The group chose no language: DEFAULT_LOCALE (zh_Hans) for the frame, the admin's words as written.
    assert "Which summer item do you love?" in post.text and int(post.chat_id) == pool.chat.id
    message_id = await pool.latest_post_id()
    await pool.reply(pool.bob, message_id, "Linen shirts, so cool")
    assert await pool.balance(pool.bob) >= 5


async def test_a_reply_earns_topic_points_once_and_chat_points_still_count(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    await world.send(pool.chat, pool.owner, "/topic add What did you buy this week?")
    text, message_id = await pool.post_now()
    assert "What did you buy this week?" in text and "+5 points" in text
    calls = await pool.reply(pool.bob, message_id, "A new rice cooker!")
    assert not [c for c in calls if isinstance(c, SendMessage)]  # silent
    await pool.reply(pool.bob, message_id, "And a kettle, on sale")
    topic_entries = await pool.entries("topic")
    assert [(e.user_id, e.delta) for e in topic_entries] == [(pool.bob.id, 5)]
    bobs_chat = [e for e in await pool.entries("chat") if e.user_id == pool.bob.id]
    assert len(bobs_chat) == 1  # chat points saw the first reply too (their cooldown stops the second)


async def test_replies_that_earn_nothing(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    _text, message_id = await pool.post_now()
    await pool.reply(pool.bob, message_id, "ok")  # shorter than chat_min_length
    await pool.reply(pool.bob, message_id + 1, "Replying to something else entirely")  # not a topic post
    await pool.reply(pool.bob, message_id, "/me please")
    assert await pool.entries("topic") == []
    photo = [PhotoSize(file_id="p", file_unique_id="p", width=10, height=10)]
    await pool.reply(pool.bob, message_id, "", photo=photo)  # a photo answers too
    assert len(await pool.entries("topic")) == 1


async def test_the_daily_cap_limits_topic_points(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    await world.send(pool.chat, pool.owner, "/topic add One?\nTwo?\nThree?")
    for _n in range(3):  # default rules: 5 points a topic, 10 a day
        _text, message_id = await pool.post_now()
        await pool.reply(pool.bob, message_id, f"My answer number {_n}")
    assert sum(e.delta for e in await pool.entries("topic")) == 10
    async with world.sessionmaker() as session:
        await points.set_rule(session, pool.gid, "topic_points", "0")
    _text, message_id = await pool.post_now()
    assert "+0" not in _text and "Reply to this message to join in!" in _text


async def test_a_disabled_topic_schedule_posts_nothing(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    async with world.sessionmaker() as session:
        await schedules.set_schedule(session, pool.gid, "topic", "20:00", enabled=False)
    ctx = world.jobs()
    assert await run_schedules(ctx, datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC), kinds={"topic"}) == 0
