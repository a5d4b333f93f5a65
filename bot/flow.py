"""The outbound flow controller: the only road from the bot to Telegram.

A request middleware on the bot's HTTP session. Every call that puts a message into a chat waits for a slot
under Telegram's limits (overall, per chat, per group); a 429 waits `retry_after` and tries again (Telegram
did nothing with a refused call, so nothing is sent twice); a 403 tells the database the chat is gone; a 400
with migrate_to_chat_id moves the group to its new id and retries there.

Failures of the road itself (bot/retry.py decides what is safe to repeat, and writes down why):
- every attempt has a timeout, and every call a total budget (a press's answer 10 s, inside the ~15 s after
  which Telegram refuses it; anything else 30 s, so a scheduler tick is never held longer than that);
- a refused or unreachable connection (the request never left) and a 5xx or a non-JSON gateway page (e.g.
  nginx's HTML "502 Bad Gateway") are retried with exponential backoff and full jitter, for every method;
- a timeout or a dropped connection after the request was sent is retried only for methods where a repeat
  is harmless (answers, edits, deletes, bans, reads); a send that timed out may have been delivered, so it is
  not repeated: it raises `DeliveryUnknown` (the scheduler keeps such a post's claim, so it is not posted twice);
- when the budget is spent, `TelegramUnavailable` (a TelegramNetworkError) is raised.

The pacer (the limits' bookkeeping) is this process's `Pacer`, or, with several workers and REDIS_URL, the
shared one from bot/shared_limits.py, which falls back to a `Pacer` while Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
)
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType

from bot.limits import COUNTED_METHODS, TelegramLimits, is_group_chat
from bot.retry import DeliveryUnknown, RetryPolicy, TelegramUnavailable, classify

log = logging.getLogger("qunbot.flow")

ChatGone = Callable[[int], Awaitable[None]]
ChatMoved = Callable[[int, int], Awaitable[None]]

# Our windows are a little longer than Telegram's, so clock skew and network jitter stay on the safe side.
SAFETY = 1.05
JITTER = 0.025  # seconds: the gap between our clock and Telegram's receipt of a request
MAX_RETRIES = 8  # for migrations; 429s are retried until they go through (Telegram did nothing with them)
MAX_FLOOD_WAITS = 100


class SlidingWindow:
    """At most `limit` events in any `length`-second window."""

    __slots__ = ("limit", "length", "times")

    def __init__(self, limit: int, length: float) -> None:
        self.limit, self.length = limit, length
        self.times: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        while self.times and self.times[0] <= now - self.length:
            self.times.popleft()
        if len(self.times) < self.limit:
            return 0.0
        return self.times[0] + self.length - now

    def record(self, now: float) -> None:
        self.times.append(now)


class Pacer:
    """Budgets for the whole bot, each chat and each group; `acquire(chat_id)` returns when a send may go."""

    def __init__(self, limits: TelegramLimits) -> None:
        self.limits = limits
        self.overall = SlidingWindow(limits.global_per_second, limits.second * SAFETY + JITTER)
        self.chats: dict[int | str, SlidingWindow] = {}
        self.groups: dict[int | str, SlidingWindow] = {}
        self.lock = asyncio.Lock()
        self.blocked_until: dict[int | str | None, float] = {}  # after a 429: nobody sends there before this
        self.waited = 0.0  # seconds spent waiting, for benchmarks and logs

    def block(self, chat_id: int | str | None, seconds: float) -> None:
        """Telegram said "retry after `seconds`": hold every send to that chat (or all, for None) until then."""
        until = time.monotonic() + seconds
        self.blocked_until[chat_id] = max(self.blocked_until.get(chat_id, 0.0), until)

    def _windows(self, chat_id: int | str | None) -> list[SlidingWindow]:
        windows = [self.overall]
        if chat_id is None:
            return windows
        chat = self.chats.get(chat_id)
        if chat is None:
            length = self.limits.second * SAFETY + JITTER
            chat = self.chats[chat_id] = SlidingWindow(self.limits.chat_per_second, length)
        windows.append(chat)
        if isinstance(chat_id, int) and is_group_chat(chat_id):
            group = self.groups.get(chat_id)
            if group is None:
                limit, length = self.limits.group_per_minute, self.limits.minute * SAFETY + JITTER
                group = self.groups[chat_id] = SlidingWindow(limit, length)
            windows.append(group)
        return windows

    async def acquire(self, chat_id: int | str | None) -> None:
        started = time.monotonic()
        while True:
            async with self.lock:
                now = time.monotonic()
                windows = self._windows(chat_id)
                wait = max(window.wait_time(now) for window in windows)
                blocked = max(self.blocked_until.get(chat_id, 0.0), self.blocked_until.get(None, 0.0))
                wait = max(wait, blocked - now)
                if wait <= 0:
                    for window in windows:
                        window.record(now)
                    self._forget_idle(now)
                    self.waited += now - started
                    return
            await asyncio.sleep(wait)

    def _forget_idle(self, now: float) -> None:
        # Keep memory flat with many chats: drop windows with nothing left in them, now and then.
        if len(self.chats) > 4096:
            for table in (self.chats, self.groups):
                for key in [k for k, w in table.items() if w.wait_time(now) == 0 and not w.times]:
                    del table[key]


class FlowController(BaseRequestMiddleware):
    """Request middleware: pace counted calls, retry 429s and transient failures (within a budget), report
    403s and follow group migrations."""

    def __init__(
        self,
        limits: TelegramLimits | None = None,
        *,
        on_chat_gone: ChatGone | None = None,
        on_chat_moved: ChatMoved | None = None,
        pacer: Any = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.pacer = pacer if pacer is not None else Pacer(limits or TelegramLimits())
        self.on_chat_gone = on_chat_gone
        self.on_chat_moved = on_chat_moved
        self.retry = retry or RetryPolicy()
        self.retried_429 = 0
        self.retried_transient = 0  # connection errors, 5xx and timeouts that were tried again

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        if name == "getUpdates":  # long polling has its own timeout, and aiogram's polling loop its own backoff
            return await make_request(bot, method)
        counted = name in COUNTED_METHODS
        moves = floods = failures = 0
        # The budget counts attempts, backoff and the slots waited for by retries: waiting for the first slot under
        # the limits, or out a 429, is not Telegram failing (a busy group's post may wait minutes for its turn).
        budget = self.retry.budget(name)
        uncertain = False  # an earlier attempt may have reached Telegram
        while True:
            chat_id = _chat_id(method)
            if counted:
                queued = time.monotonic()
                await self.pacer.acquire(chat_id)
                if failures:  # once failing, waiting for the next slot counts too: the retries stay bounded
                    budget -= time.monotonic() - queued
            timeout = max(0.05, min(self.retry.attempt_timeout(name), budget))
            attempt_started = time.monotonic()
            try:
                return await asyncio.wait_for(make_request(bot, method), timeout)
            except TelegramRetryAfter as error:
                floods += 1
                if floods > MAX_FLOOD_WAITS:
                    raise
                self.retried_429 += 1
                log.warning("429 on %s to %s: waiting %s s", name, chat_id, error.retry_after)
                blocked = self.pacer.block(chat_id, error.retry_after)
                if inspect.isawaitable(blocked):  # the shared pacer tells every worker
                    await blocked
                if not counted:
                    await asyncio.sleep(error.retry_after)
            except TelegramMigrateToChat as error:
                moves += 1
                if moves > MAX_RETRIES or not isinstance(chat_id, int):
                    raise
                log.info("group %s moved to %s", chat_id, error.migrate_to_chat_id)
                if self.on_chat_moved is not None:
                    await self.on_chat_moved(chat_id, error.migrate_to_chat_id)
                method.chat_id = error.migrate_to_chat_id  # type: ignore[attr-defined]
            except TelegramForbiddenError:
                if isinstance(chat_id, int) and self.on_chat_gone is not None:
                    await self.on_chat_gone(chat_id)
                raise
            except TelegramBadRequest as error:
                if uncertain and name == "answerCallbackQuery" and "query is too old" in error.message:
                    return True  # type: ignore[return-value]  # the attempt that timed out did answer it
                raise
            except Exception as error:
                verdict = classify(name, error)
                if verdict is None:
                    raise
                failures += 1
                budget -= time.monotonic() - attempt_started
                uncertain = uncertain or verdict.maybe_delivered
                if not verdict.retry:
                    log.warning("%s to %s: %s; not repeated (it may have been delivered)", name, chat_id, verdict)
                    raise DeliveryUnknown(method, f"{verdict}; it may have been delivered") from error
                pause = self.retry.backoff(failures)
                budget -= pause
                if budget <= 0:
                    log.warning("%s to %s: %s; gave up after %s attempts", name, chat_id, verdict, failures)
                    raise TelegramUnavailable(method, f"{verdict} ({failures} attempts)") from error
                self.retried_transient += 1
                log.debug("%s to %s: %s; retrying in %.2f s", name, chat_id, verdict, pause)
                await asyncio.sleep(pause)


def _chat_id(method: Any) -> int | str | None:
    chat_id = getattr(method, "chat_id", None)
    return chat_id if isinstance(chat_id, int | str) else None
