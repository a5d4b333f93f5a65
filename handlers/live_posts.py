"""Live posts: the messages the bot keeps up to date by editing them (the check-in board, vote tallies, group-buy
counts, flash-sale stock, lottery entrants, the shop, the pinned leaderboard).

One `LivePosts` per process does it for every feature. A feature describes its post as a `LivePost`: a domain key
("checkin_board", group id, day), a kind (its coalescing interval), a render callback that reads the database and
says what the post should show and where it is now, and optionally how to post it anew. Then:

- many changes in a burst become one edit per interval per post, rendered when the edit is made (so it shows the
  latest state), and a change that arrives while the post is being created or edited is shown right after;
- an edit is sent only when the text or the buttons changed (Telegram refuses "not modified" edits, and each one
  would still cost one of a group's 20 messages a minute);
- a post that was deleted, or that belongs to a chat the group has left (a migration to a supergroup), is posted
  again where the group is now, and the feature stores its new id;
- every failure is logged with its post and the editor goes on; nothing raises out of its tasks;
- memory is bounded: what each post last showed is kept for at most `max_posts` posts.

This module knows Telegram and the database session, not the features (it imports no feature module, and no
scheduler/ or bot/ module): the features hand it their callbacks. It lives in handlers/ because handlers and the
scheduler use it and bot/ builds it, which keeps the arrows one way (bot -> handlers, scheduler -> handlers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Final

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.kit import current_currency, use_currency
from models.groups import chat_id_of

log = logging.getLogger("qunbot.live_posts")

MAX_POSTS = 10_000  # posts whose last shown state is remembered
BUSY_RETRIES = 6  # how many intervals to wait for a post someone else is creating before giving up

# What one refresh did.
SENT, UNCHANGED, WAIT = "sent", "unchanged", "wait"  # an edit or a new post; nothing to send; someone else posts


@dataclass(frozen=True, slots=True)
class PostKind:
    """A kind of live post and its coalescing interval: seconds between two edits of one post (a group takes
    20 messages a minute, and every post in it shares them)."""

    name: str
    interval: float


@dataclass(frozen=True, slots=True)
class Shown:
    """What a post should show, and where it is: `message_id` None when it is not posted (yet, or any more)."""

    chat_id: int
    message_id: int | None
    text: str
    markup: InlineKeyboardMarkup | None = None
    caption: bool = False  # a photo post: its caption is edited

    def signature(self) -> str:
        return self.text + "\x00" + (self.markup.model_dump_json() if self.markup is not None else "")


class Busy:
    """The type of BUSY."""

    def __repr__(self) -> str:
        return "BUSY"


# What a render returns when the post is being created by someone else (a scheduler, another worker): the editor
# looks again one interval later, so the post then shows this change too.
BUSY: Final = Busy()

Render = Callable[[AsyncSession], Awaitable["Shown | Busy | None"]]
# Post anew and store the new message id where the feature keeps it; `replacing` is the message id that is gone
# (None for a first post). Returns the new id; BUSY when someone else claimed the post first (the editor looks
# again later); None when the feature chose not to post it again (e.g. a sale that is over).
Repost = Callable[[AsyncSession, Shown, "int | None"], Awaitable["int | Busy | None"]]
# The post is gone and the feature does not post it again: forget it (e.g. stop refreshing a pinned leaderboard).
Forget = Callable[[AsyncSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LivePost:
    """One live post as a feature describes it. `render` returns None when there is nothing to show any more
    (closed: its closing already edited it). `locale`: the language it is rendered in; None for the language
    current where it was asked for."""

    key: Hashable
    kind: PostKind
    render: Render
    locale: str | None = None
    repost: Repost | None = None
    forget: Forget | None = None
    currency: str | None = None  # the group's currency (handlers.kit.money); None: the one current where asked


# A group post's contents as its feature reads them: its stored message id (None: not posted yet), text and keyboard;
# None once it is closed (its closing edited it for the last time).
Contents = Callable[[AsyncSession], Awaitable["tuple[int | None, str, InlineKeyboardMarkup | None] | None"]]


def group_post(bot: Bot, key: Hashable, kind: PostKind, group_id: int, locale: str | None, contents: Contents,
               store: Callable[[AsyncSession, int], Awaitable[None]]) -> LivePost:
    """The common live post: a text message in a group, whose message id its feature stores (a vote's tally, a
    group buy's counts). Shown in the group's chat as it is now; posted again (and `store`d) when it was deleted
    or the group moved. Its first post is its creator's, not the editor's."""

    async def render(session: AsyncSession) -> Shown | None:
        chat_id = await chat_id_of(session, group_id)  # it may have moved (a supergroup now)
        shown = await contents(session)
        if chat_id is None or shown is None or shown[0] is None:
            return None
        message_id, text, markup = shown
        return Shown(chat_id, message_id, text, markup)

    async def repost(session: AsyncSession, shown: Shown, replacing: int | None) -> int | None:
        message = await bot.send_message(shown.chat_id, shown.text, reply_markup=shown.markup)
        await store(session, message.message_id)
        return message.message_id

    return LivePost(key, kind, render, locale=locale, repost=repost)


def is_gone(error: TelegramBadRequest) -> bool:
    """Telegram's answer when the message to edit no longer exists (deleted) or is not the bot's to edit."""
    text = str(error).lower()
    return any(words in text for words in ("message to edit not found", "message not found",
                                           "message can't be edited", "message_id_invalid"))


class _State:
    """A post with work on its way: the one task that refreshes it, and whether it changed since it started."""

    __slots__ = ("post", "bot", "task", "dirty")

    def __init__(self, post: LivePost, bot: Bot) -> None:
        self.post, self.bot = post, bot
        self.task: asyncio.Task[None] | None = None
        self.dirty = False


class LivePosts:
    """Keeps live posts up to date: `request` after a change (coalesced), `refresh_now` after a state change
    that must show at once (closed, drawn, ended), `drain` / `close` for tests and shutdown."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], i18n: I18n, *,
                 intervals: Mapping[str, float] | None = None, every: float | None = None,
                 max_posts: int = MAX_POSTS) -> None:
        """`intervals` (by kind name) and then `every` override the kinds' own intervals (tests, benchmarks)."""
        self.sessionmaker, self.i18n = sessionmaker, i18n
        self.intervals = dict(intervals or {})
        self.every = every
        self.max_posts = max_posts
        self.edits = 0  # edits sent (tests and benchmarks read it)
        self.failures = 0  # refreshes that failed (each one logged)
        self._active: dict[Hashable, _State] = {}  # posts with a refresh on its way
        self._last: OrderedDict[Hashable, float] = OrderedDict()  # key -> when it was last refreshed
        self._shown: OrderedDict[tuple[int, int], str] = OrderedDict()  # (chat, message) -> signature shown
        self._where: OrderedDict[Hashable, tuple[int, int]] = OrderedDict()  # key -> (chat, message) last known
        self._closed = False
        self._flushing = asyncio.Event()  # set by close(): pending refreshes stop waiting for their interval

    def interval(self, kind: PostKind) -> float:
        if kind.name in self.intervals:
            return self.intervals[kind.name]
        return kind.interval if self.every is None else self.every

    # -- asking -----------------------------------------------------------------------------------------------

    def request(self, bot: Bot, post: LivePost) -> None:
        """The post's contents changed: bring it up to date soon (at most one edit per interval of its kind).
        A request while a refresh is under way is shown by one more refresh right after it."""
        if self._closed:
            log.warning("live post %s: change after close, not shown", post.key)
            return
        post = self._with_locale(post)
        state = self._active.get(post.key)
        if state is not None:
            state.post, state.bot, state.dirty = post, bot, True  # the latest description wins (locale, chat)
            return
        state = self._active[post.key] = _State(post, bot)
        state.task = asyncio.create_task(self._run(state), name=f"live post {post.key}")

    async def refresh_now(self, bot: Bot, post: LivePost) -> bool:
        """Bring the post up to date now (its state changed in a way members must see at once). True if it was
        edited or posted anew. Never raises: failures are logged like every other refresh."""
        self._touch(post.key)
        return await self._refresh(bot, self._with_locale(post)) == SENT

    async def drain(self) -> None:
        """Wait until every requested refresh is done, each at its own pace (tests)."""
        while self._active:
            await asyncio.gather(*[s.task for s in list(self._active.values()) if s.task is not None],
                                 return_exceptions=True)

    async def close(self, *, flush: bool = True) -> None:
        """Shutdown: show every pending change now (no waiting out intervals), or with flush=False drop them;
        then refuse new requests."""
        self._closed = True
        if flush:
            self._flushing.set()
        else:
            for state in list(self._active.values()):
                if state.task is not None:
                    state.task.cancel()
        await self.drain()

    @property
    def pending(self) -> int:
        """Posts with a refresh on its way."""
        return len(self._active)

    def _with_locale(self, post: LivePost) -> LivePost:
        """The post with the language current where it was asked for, when it names none."""
        if post.locale is None:
            post = replace(post, locale=self.i18n.current_locale)
        return post if post.currency is not None else replace(post, currency=current_currency())

    @property
    def remembered(self) -> int:
        """How many posts the editor holds state for (bounded by max_posts, plus posts with work on its way)."""
        return max(len(self._shown), len(self._last), len(self._where))

    # -- the work -----------------------------------------------------------------------------------------------

    async def _run(self, state: _State) -> None:
        """The one task that refreshes a post, so refreshes of a post never overtake each other."""
        key = state.post.key
        busy = 0
        try:
            while True:
                interval = self.interval(state.post.kind)
                last = self._last.get(key)
                if last is not None:
                    await self._pause(last + interval - time.monotonic())
                state.dirty = False  # what changed until now is rendered below
                self._touch(key)
                if await self._refresh(state.bot, state.post) == WAIT:
                    busy += 1
                    if busy > BUSY_RETRIES:
                        log.warning("live post %s: still being posted by someone else; giving up", key)
                        return
                    continue
                if not state.dirty:
                    return
        except Exception:  # never lose a failure inside the task
            self.failures += 1
            log.exception("live post %s: refresh task failed", key)
        finally:
            self._active.pop(key, None)

    async def _pause(self, seconds: float) -> None:
        if seconds > 0 and not self._flushing.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._flushing.wait(), seconds)

    async def _refresh(self, bot: Bot, post: LivePost) -> str:
        """Render and show the post once: SENT, UNCHANGED, or WAIT when someone else is creating it."""
        where: tuple[int, int | None] = (0, None)
        try:
            with self.i18n.context(), self.i18n.use_locale(post.locale or self.i18n.default_locale), \
                    use_currency(post.currency):
                async with self.sessionmaker() as session:
                    shown = await post.render(session)
                    await session.commit()  # end the render's reads: a repost's writes commit on their own
                    if isinstance(shown, Busy):
                        return WAIT
                    if shown is None:
                        return UNCHANGED
                    where = (shown.chat_id, shown.message_id)
                    if shown.message_id is None:
                        return await self._post(session, post, shown, None)
                    known = self._where.get(post.key)
                    if known is not None and known[1] == shown.message_id and known[0] != shown.chat_id:
                        # the group moved (supergroup): that id names a message of the old chat
                        log.info("live post %s: chat %s became %s; posting it anew", post.key, known[0],
                                 shown.chat_id)
                        return await self._post(session, post, shown, shown.message_id)
                    if self._shown.get((shown.chat_id, shown.message_id)) == shown.signature():
                        return UNCHANGED  # already shows this: no edit
                    try:
                        await self._edit(bot, shown)
                    except TelegramBadRequest as error:
                        if "not modified" in str(error):
                            self._remember(post.key, shown.chat_id, shown.message_id, shown.signature())
                            return UNCHANGED
                        if not is_gone(error):
                            raise
                        log.info("live post %s (%s/%s) is gone (%s)", post.key, shown.chat_id, shown.message_id,
                                 error.message)
                        if post.repost is not None:
                            return await self._post(session, post, shown, shown.message_id)
                        if post.forget is not None:
                            await post.forget(session)
                        self._forget((shown.chat_id, shown.message_id))
                        return UNCHANGED
                    self._remember(post.key, shown.chat_id, shown.message_id, shown.signature())
                    return SENT
        except TelegramAPIError as error:
            self.failures += 1
            log.warning("live post %s (%s/%s) not refreshed: %s", post.key, where[0], where[1], error)
        except Exception:
            self.failures += 1
            log.exception("live post %s (%s/%s) not refreshed", post.key, where[0], where[1])
        return UNCHANGED

    async def _post(self, session: AsyncSession, post: LivePost, shown: Shown, replacing: int | None) -> str:
        if post.repost is None:
            log.warning("live post %s has no message to edit and cannot be posted anew", post.key)
            return UNCHANGED
        message_id = await post.repost(session, shown, replacing)
        if isinstance(message_id, Busy):
            return WAIT  # someone else claimed it first; look again when they are done
        if message_id is None:
            return UNCHANGED
        self._remember(post.key, shown.chat_id, message_id, shown.signature())
        return SENT

    async def _edit(self, bot: Bot, shown: Shown) -> None:
        assert shown.message_id is not None
        if shown.caption:
            await bot.edit_message_caption(chat_id=shown.chat_id, message_id=shown.message_id, caption=shown.text,
                                           reply_markup=shown.markup)
        else:
            await bot.edit_message_text(text=shown.text, chat_id=shown.chat_id, message_id=shown.message_id,
                                        reply_markup=shown.markup)
        self.edits += 1

    # -- bounded memory -----------------------------------------------------------------------------------------

    def _touch(self, key: Hashable) -> None:
        self._last[key] = time.monotonic()
        self._last.move_to_end(key)
        while len(self._last) > self.max_posts:
            self._last.popitem(last=False)

    def _remember(self, key: Hashable, chat_id: int, message_id: int, signature: str) -> None:
        self._shown[(chat_id, message_id)] = signature
        self._shown.move_to_end((chat_id, message_id))
        self._where[key] = (chat_id, message_id)
        self._where.move_to_end(key)
        while len(self._shown) > self.max_posts:
            self._shown.popitem(last=False)
        while len(self._where) > self.max_posts:
            self._where.popitem(last=False)

    def _forget(self, where: tuple[int, int]) -> None:
        self._shown.pop(where, None)
