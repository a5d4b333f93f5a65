"""Start-up that says what is wrong in one line: the database and Telegram are waited for (retried with backoff,
one line when the wait begins), and what waiting cannot fix (wrong credentials, a missing database, a refused
bot token) ends the process with exit status 2 (bot/runner.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

from aiogram import Bot
from aiogram.exceptions import TelegramNotFound, TelegramUnauthorizedError
from aiogram.types import User
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("qunbot")

T = TypeVar("T")

EXIT_CANNOT_START = 2

# asyncpg's errors for what retrying cannot fix (found by name along the cause chain: asyncpg is optional).
FATAL_DATABASE_ERRORS = {
    "InvalidPasswordError": "the database refused the credentials in DATABASE_URL",
    "InvalidAuthorizationSpecificationError": "the database refused the user in DATABASE_URL",
    "InvalidCatalogNameError": "the database named in DATABASE_URL does not exist",
}


class CannotStart(Exception):
    """What retrying cannot fix; the message is the one line shown."""


def _fatal_database_reason(error: BaseException) -> str | None:
    seen: BaseException | None = error
    for _ in range(6):
        if seen is None:
            return None
        reason = FATAL_DATABASE_ERRORS.get(type(seen).__name__)
        if reason:
            return reason
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "orig", None)
    return None


SLOW_ATTEMPT = 2.0  # seconds before an attempt still waiting is reported as unreachable


async def _with_backoff(what: str, attempt: Callable[[], Awaitable[T]], stop: asyncio.Event,
                        fatal: Callable[[BaseException], str | None], max_delay: float = 30.0) -> T | None:
    """`attempt()` until it succeeds (its result), `stop` is set (None) or `fatal` names the error (CannotStart)."""
    failures = 0
    said = False
    while True:
        # The attempt races `stop`; an attempt that is itself retried for a while (the flow controller retries
        # refused connections for up to its budget) is reported once after SLOW_ATTEMPT seconds.
        task = asyncio.ensure_future(attempt())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            done, _pending = await asyncio.wait({task, stopping}, timeout=SLOW_ATTEMPT,
                                                return_when=asyncio.FIRST_COMPLETED)
            if not done and not said:
                said = True
                log.error("%s is unreachable (no answer yet); retrying with backoff", what)
            if not done:
                done, _pending = await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await task
                return None
        finally:
            stopping.cancel()
        try:
            result = task.result()
        except Exception as error:
            reason = fatal(error)
            if reason:
                raise CannotStart(reason) from error
            failures += 1
            if not said:
                said = True
                log.error("%s is unreachable (%s: %s); retrying with backoff", what, type(error).__name__,
                          str(error).splitlines()[0][:200] if str(error) else "")
            try:
                await asyncio.wait_for(stop.wait(), min(max_delay, 0.5 * 2 ** min(failures, 6)))
                return None
            except TimeoutError:
                continue
        if said:
            log.info("%s is reachable again", what)
        return result


async def prepare_database(engine: AsyncEngine, stop: asyncio.Event,
                           upgrade: Callable[[AsyncEngine], Awaitable[None]]) -> bool:
    """Migrate once the database answers. False if `stop` came first."""
    url = make_url(str(engine.url))
    what = f"the database ({url.get_backend_name()} at {url.host or url.database})"

    async def attempt() -> bool:
        await upgrade(engine)
        return True

    return bool(await _with_backoff(what, attempt, stop, _fatal_database_reason))


async def reach_telegram(bot: Bot, stop: asyncio.Event, api: str) -> User | None:
    """getMe once Telegram answers. None if `stop` came first; CannotStart if the token is refused."""

    def fatal(error: BaseException) -> str | None:
        if isinstance(error, TelegramUnauthorizedError):
            return "Telegram refused BOT_TOKEN (401 Unauthorized): check the token from @BotFather"
        if isinstance(error, TelegramNotFound):
            return "Telegram does not know BOT_TOKEN (404 Not Found): check the token from @BotFather"
        return None  # unreachable, 5xx, timeouts: waited out

    return await _with_backoff(f"Telegram ({api})", bot.get_me, stop, fatal)
