"""The live-post editor on its own (handlers/live_posts.py): a post stands for any feature's (a board, a tally), a
stub bot records what reaches Telegram. Feature-level proofs are in the handler and sandbox tests."""

from __future__ import annotations

import logging
from typing import Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import EditMessageText
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import create_i18n
from handlers.live_posts import BUSY, Busy, LivePost, LivePosts, PostKind, Shown

KIND = PostKind("test", 3600.0)  # an hour: only what the editor does at once, or on close, is seen
CHAT, OTHER_CHAT = -1001, -1002


class StubBot:
    """Records edits and posts; `gone` message ids answer like a deleted message."""

    def __init__(self) -> None:
        self.edits: list[tuple[int, int, str]] = []
        self.posts: list[tuple[int, str]] = []
        self.gone: set[int] = set()
        self.fail_next: str | None = None
        self.next_id = 100

    async def edit_message_text(self, *, text: str, chat_id: int, message_id: int, reply_markup: Any = None) -> None:
        if self.fail_next is not None:
            description, self.fail_next = self.fail_next, None
            raise TelegramBadRequest(EditMessageText(text=text), description)
        if message_id in self.gone:
            raise TelegramBadRequest(EditMessageText(text=text), "Bad Request: message to edit not found")
        self.edits.append((chat_id, message_id, text))

    async def send_message(self, chat_id: int, text: str, reply_markup: Any = None) -> int:
        self.next_id += 1
        self.posts.append((chat_id, text))
        return self.next_id


class Counter:
    """A feature's state: a count shown on a post whose message id it stores (as a posts row would)."""

    def __init__(self, bot: StubBot, key: str = "post", message_id: int | None = 1) -> None:
        self.bot, self.key = bot, key
        self.count, self.chat_id, self.message_id = 0, CHAT, message_id
        self.renders = 0
        self.fail_render = False

    def post(self) -> LivePost:
        async def render(session: AsyncSession) -> Shown | Busy | None:
            self.renders += 1
            if self.fail_render:
                self.fail_render = False
                raise RuntimeError("the database went away")
            return Shown(self.chat_id, self.message_id, f"count {self.count}")

        async def repost(session: AsyncSession, shown: Shown, replacing: int | None) -> int:
            self.message_id = await self.bot.send_message(shown.chat_id, shown.text)
            return self.message_id

        return LivePost(("counter", self.key), KIND, render, locale="en", repost=repost)


def editor(sessionmaker: Any, **options: Any) -> LivePosts:
    return LivePosts(sessionmaker, create_i18n("en"), **options)


async def test_a_burst_of_changes_is_one_edit_showing_the_last(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot, posts = StubBot(), editor(sessionmaker)
    counter = Counter(bot)
    for _ in range(50):
        counter.count += 1
        posts.request(bot, counter.post())  # type: ignore[arg-type]
    await posts.close()  # shows what is pending at once
    assert bot.edits == [(CHAT, 1, "count 50")]


async def test_changes_during_an_edit_are_shown_right_after_it(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot, posts = StubBot(), editor(sessionmaker, every=0.0)
    counter = Counter(bot)
    original = bot.edit_message_text

    async def edit_and_meanwhile(**kwargs: Any) -> None:  # four more changes while the first edit is in flight
        await original(**kwargs)
        if counter.count < 5:
            counter.count += 4
            posts.request(bot, counter.post())  # type: ignore[arg-type]

    bot.edit_message_text = edit_and_meanwhile  # type: ignore[method-assign]
    counter.count = 1
    posts.request(bot, counter.post())  # type: ignore[arg-type]
    await posts.drain()
    assert [text for _chat, _id, text in bot.edits] == ["count 1", "count 5"]


async def test_an_unchanged_render_sends_nothing(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot, posts = StubBot(), editor(sessionmaker, every=0.0)
    counter = Counter(bot)
    counter.count = 3
    for _ in range(3):
        posts.request(bot, counter.post())  # type: ignore[arg-type]
        await posts.drain()
    assert await posts.refresh_now(bot, counter.post()) is False  # type: ignore[arg-type]
    assert bot.edits == [(CHAT, 1, "count 3")] and counter.renders == 4


async def test_a_failure_is_logged_with_its_post_and_the_editor_goes_on(sessionmaker, caplog) -> None:  # type: ignore[no-untyped-def]
    bot, posts = StubBot(), editor(sessionmaker, every=0.0)
    counter = Counter(bot)
    counter.fail_render = True
    with caplog.at_level(logging.WARNING, logger="qunbot.live_posts"):
        posts.request(bot, counter.post())  # type: ignore[arg-type]
        await posts.drain()
        bot.fail_next = "Bad Request: chat not found"
        counter.count = 1
        posts.request(bot, counter.post())  # type: ignore[arg-type]
        await posts.drain()
    logged = [r for r in caplog.records if "('counter', 'post')" in r.getMessage()]
    assert len(logged) == 2 and "the database went away" in (logged[0].exc_text or "")
    assert "chat not found" in logged[1].getMessage() and posts.failures == 2
    counter.count = 2
    posts.request(bot, counter.post())  # type: ignore[arg-type]
    await posts.drain()
    assert bot.edits == [(CHAT, 1, "count 2")]


async def test_a_deleted_post_is_posted_again_and_its_new_id_kept(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot, posts = StubBot(), editor(sessionmaker, every=0.0)
    counter = Counter(bot)
    bot.gone.add(1)
    counter.count = 1
    posts.request(bot, counter.post())  # type: ignore[arg-type]
    await posts.drain()
    assert bot.posts == [(CHAT, "count 1")] and counter.message_id == 101 and bot.edits == []
    counter.count = 2
    posts.request(bot, counter.post())  # type: ignore[arg-type]
    await posts.drain()
    assert bot.edits == [(CHAT, 101, "count 2")] and len(bot.posts) == 1


async def test_a_post_whose_group_moved_is_posted_in_the_new_chat(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot, posts = StubBot(), editor(sessionmaker, every=0.0)
    counter = Counter(bot)
    counter.count = 1
    posts.request(bot, counter.post())  # type: ignore[arg-type]
    await posts.drain()
    counter.chat_id, counter.count = OTHER_CHAT, 2  # a supergroup now; the stored id names an old-chat message
    posts.request(bot, counter.post())  # type: ignore[arg-type]
    await posts.drain()
    assert bot.edits == [(CHAT, 1, "count 1")] and bot.posts == [(OTHER_CHAT, "count 2")]


async def test_a_post_being_created_elsewhere_is_edited_once_it_is_up(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot, posts = StubBot(), editor(sessionmaker, every=0.0)
    answers: list[Shown | Busy] = [BUSY, BUSY, Shown(CHAT, 7, "count 3")]

    async def render(session: AsyncSession) -> Shown | Busy:
        return answers.pop(0)

    posts.request(bot, LivePost("board", KIND, render))  # type: ignore[arg-type]
    await posts.drain()
    assert bot.edits == [(CHAT, 7, "count 3")] and bot.posts == []


async def test_memory_is_bounded(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot, posts = StubBot(), editor(sessionmaker, every=0.0, max_posts=3)
    for n in range(20):
        counter = Counter(bot, key=f"post {n}", message_id=n + 1)
        counter.count = n
        assert await posts.refresh_now(bot, counter.post()) is True  # type: ignore[arg-type]
    assert len(bot.edits) == 20 and posts.remembered == 3 and posts.pending == 0


async def test_close_shows_pending_changes_at_once_and_refuses_later_ones(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot, posts = StubBot(), editor(sessionmaker)
    counter = Counter(bot)
    counter.count = 1
    posts.request(bot, counter.post())  # type: ignore[arg-type]
    await posts.drain()
    counter.count = 2
    posts.request(bot, counter.post())  # type: ignore[arg-type]  (waits an hour: the kind's interval)
    assert posts.pending == 1
    await posts.close()
    counter.count = 3
    posts.request(bot, counter.post())  # type: ignore[arg-type]
    await posts.drain()
    assert [text for _chat, _id, text in bot.edits] == ["count 1", "count 2"]


def test_each_dispatcher_has_one_editor(world) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(world.dp["live_posts"], LivePosts)
