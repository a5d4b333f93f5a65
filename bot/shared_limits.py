"""Limits shared by every worker through Redis (REDIS_URL): Telegram's outbound budgets and members' flood pace.

Decision: ONE shared outbound limiter, not chats partitioned to workers. Telegram sends every webhook update to
one URL and the kernel spreads connections over the workers (SO_REUSEPORT), so any worker may answer any chat;
and the overall 30 messages a second is one budget whichever way chats were split. So the budgets live in Redis:
a sorted set per window (overall, each chat, each group), checked and taken in one Lua script on Redis's own
clock (one round trip a counted call, no clock skew between workers), and a 429's retry_after is written there
too, so a global 429 holds every worker and a chat's 429 every worker's sends to that chat.

When Redis fails: each call falls back to this process's own `Pacer` (bot/flow.py) with the overall budget
divided by the number of workers, a warning is logged once, and Redis is tried again after a few seconds. Nothing
is dropped: a send waits for a slot either way, and a 429 from sharing too loosely is waited out by the flow
controller. The same holds for the flood counters (`SharedPaces`): without Redis they count per process; and for
the admin cache (`SharedAdminCache`): a change seen by one worker makes every worker ask Telegram again.
Raid counters need nothing here: joins are counted in the database (models/newcomers.py), which all workers share.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bot.flow import JITTER, SAFETY, Pacer
from bot.limits import TelegramLimits, is_group_chat
from handlers.roles import ADMIN_TTL, AdminCache, ChatAdmins

log = logging.getLogger("qunbot.shared")

T = TypeVar("T")

RETRY_REDIS_AFTER = 5.0  # seconds without trying Redis after it failed

# KEYS: the windows, then the block keys. ARGV: number of windows, (limit, length in ms) per window, a unique id.
# Returns 0 when the call may go (and records it in every window), else the milliseconds to wait.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local wait = 0
for i = 1, n do
  local limit = tonumber(ARGV[2 * i])
  local length = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - length)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local first = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    local w = tonumber(first[2]) + length - now
    if w > wait then wait = w end
  end
end
for j = n + 1, #KEYS do
  local blocked = redis.call('GET', KEYS[j])
  if blocked then
    local w = tonumber(blocked) - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return math.ceil(wait) end
for i = 1, n do
  redis.call('ZADD', KEYS[i], now, ARGV[2 * n + 2] .. ':' .. i)
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]) + 1000)
end
return 0
"""

# KEYS[1]: the block key. ARGV[1]: milliseconds. Nobody sends there before Redis's now + ARGV[1].
BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untill = now + tonumber(ARGV[1])
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < untill then
  redis.call('SET', KEYS[1], untill, 'PX', tonumber(ARGV[1]) + 1000)
end
return untill
"""

# A member's flood pace: KEYS[1] their recent message times (sorted set). ARGV: limit, window ms, unique id.
# Returns 1 when this message makes `limit` inside the window (then the count restarts), else 0.
FLOOD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local length = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - length)
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], length + 1000)
if redis.call('ZCARD', KEYS[1]) >= limit then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# A member's repeated text: KEYS[1] a hash {digest, repeats}. ARGV: digest, limit, ttl ms.
REPEAT = """
local last = redis.call('HGET', KEYS[1], 'digest')
local repeats = 1
if last == ARGV[1] then repeats = tonumber(redis.call('HGET', KEYS[1], 'repeats') or '0') + 1 end
if repeats > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'repeats', repeats)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 0
"""


def text_digest(text: str) -> str:
    """A stable hash of a message's normalised text (the same in every process; the text itself is never kept)."""
    return hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=8).hexdigest()


class SharedRedis:
    """One Redis client for the process's shared parts, and the one switch between shared and per-process
    behaviour: `call(work, fallback)` runs `work` on Redis, or `fallback` while Redis is failing."""

    def __init__(self, url: str, prefix: str, *, client: Any = None) -> None:
        if client is None:
            from redis.asyncio import Redis

            client = Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=15)
        self.redis = client
        self.prefix = prefix
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.fallbacks = 0  # calls answered per process because Redis failed
        self._ids = itertools.count()
        self._tag = f"{os.getpid()}-{id(self) & 0xFFFF:x}"
        self._scripts: dict[str, Any] = {}

    def key(self, *parts: object) -> str:
        return ":".join((self.prefix, *map(str, parts)))

    def unique(self) -> str:
        return f"{self._tag}-{next(self._ids)}"

    def script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        return script

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    async def call(self, work: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import RedisError

        now = time.monotonic()
        if self.down_since is not None and now < self.retry_at:
            self.fallbacks += 1
            return await fallback()
        try:
            result = await work()
        except (RedisError, OSError) as error:
            if self.down_since is None:
                self.down_since = now
                log.warning("Redis failed (%s: %s): limits and counters are per process until it is back",
                            type(error).__name__, error)
            self.retry_at = now + RETRY_REDIS_AFTER
            self.fallbacks += 1
            return await fallback()
        if self.down_since is not None:
            log.warning("Redis is back after %.0f s: limits and counters are shared again", now - self.down_since)
            self.down_since = None
        return result

    async def close(self) -> None:
        await self.redis.aclose()


class SharedPacer:
    """The flow controller's pacer (acquire / block), kept in Redis for every worker; see the module docstring."""

    def __init__(self, shared: SharedRedis, limits: TelegramLimits, *, workers: int = 1) -> None:
        self.shared = shared
        self.limits = limits
        local = TelegramLimits(max(1, limits.global_per_second // max(1, workers)), limits.chat_per_second,
                               limits.group_per_minute, limits.second, limits.minute)
        self.fallback = Pacer(local)  # while Redis fails: this worker's share of the overall budget
        self.second_ms = round((limits.second * SAFETY + JITTER) * 1000)
        self.minute_ms = round((limits.minute * SAFETY + JITTER) * 1000)
        self.waited = 0.0

    def _plan(self, chat_id: int | str | None) -> tuple[list[str], list[object]]:
        key = self.shared.key
        windows: list[tuple[str, int, int]] = [(key("out", "all"), self.limits.global_per_second, self.second_ms)]
        blocks = [key("block", "all")]
        if chat_id is not None:
            windows.append((key("out", "chat", chat_id), self.limits.chat_per_second, self.second_ms))
            blocks.append(key("block", "chat", chat_id))
            if isinstance(chat_id, int) and is_group_chat(chat_id):
                windows.append((key("out", "group", chat_id), self.limits.group_per_minute, self.minute_ms))
        args: list[object] = [len(windows)]
        for _, limit, length in windows:
            args += [limit, length]
        args.append(self.shared.unique())
        return [name for name, _, _ in windows] + blocks, args

    async def acquire(self, chat_id: int | str | None) -> None:
        started = time.monotonic()
        keys, args = self._plan(chat_id)
        script = self.shared.script(ACQUIRE)
        while True:
            async def shared() -> float:
                return float(await script(keys=keys, args=args)) / 1000

            async def local() -> float:
                await self.fallback.acquire(chat_id)
                return 0.0

            wait = await self.shared.call(shared, local)
            if wait <= 0:
                self.waited += time.monotonic() - started
                return
            await asyncio.sleep(wait)

    async def block(self, chat_id: int | str | None, seconds: float) -> None:
        """A 429: every worker holds its sends to that chat (or all of them, for None) for `seconds`."""
        self.fallback.block(chat_id, seconds)
        name = self.shared.key("block", "all") if chat_id is None else self.shared.key("block", "chat", chat_id)

        async def shared() -> None:
            await self.shared.script(BLOCK)(keys=[name], args=[max(1, round(seconds * 1000))])

        async def local() -> None:
            return None

        await self.shared.call(shared, local)


class SharedPaces:
    """Members' flood and repeat counters in Redis, so N workers count one member's messages together."""

    def __init__(self, shared: SharedRedis) -> None:
        self.shared = shared

    async def count(self, chat_id: int, user_id: int, text: str | None, rules: Any,
                    local: Callable[[], str | None]) -> str | None:
        """"flood" or "repeat" when the member went over (the counts restart), like models Pace.count; `local`
        counts in this process instead while Redis fails."""

        async def shared() -> str | None:
            if rules.flood_messages:
                went_over = await self.shared.script(FLOOD)(
                    keys=[self.shared.key("pace", chat_id, user_id)],
                    args=[rules.flood_messages, round(rules.flood_seconds * 1000), self.shared.unique()],
                )
                if went_over:
                    return "flood"
            if rules.flood_repeat and text:
                went_over = await self.shared.script(REPEAT)(
                    keys=[self.shared.key("repeat", chat_id, user_id)],
                    args=[text_digest(text), rules.flood_repeat, 3_600_000],
                )
                if went_over:
                    return "repeat"
            return None

        async def fallback() -> str | None:
            return local()

        return await self.shared.call(shared, fallback)


class SharedAdminCache(AdminCache):
    """The admin cache of handlers/roles.py, kept per process but invalidated for every worker: a chat_member
    update (a promotion, a demotion) seen by one worker bumps the chat's version in Redis, and every other worker
    asks Telegram again at its next check instead of trusting its list until the TTL runs out. Without Redis it
    is the per-process cache (TTL and the chat_member updates this process sees)."""

    def __init__(self, shared: SharedRedis, ttl: float = ADMIN_TTL) -> None:
        super().__init__(ttl)
        self.shared = shared
        self._versions: dict[int, int] = {}
        self._bumps: set[asyncio.Future[None]] = set()

    async def get(self, bot: Any, chat_id: int) -> ChatAdmins | None:
        key = self.shared.key("admins", chat_id)

        async def version() -> int | None:
            return int(await self.shared.redis.get(key) or 0)

        async def unknown() -> int | None:
            return None

        current = await self.shared.call(version, unknown)
        if current is not None and self._versions.get(chat_id, 0) != current:
            AdminCache.forget(self, chat_id)
            self._versions[chat_id] = current
        return await super().get(bot, chat_id)

    def member_changed(self, chat_id: int, user_id: int, status: str) -> None:
        super().member_changed(chat_id, user_id, status)
        self._bump(chat_id)

    def forget(self, chat_id: int) -> None:
        super().forget(chat_id)
        self._bump(chat_id)

    def _bump(self, chat_id: int) -> None:
        key = self.shared.key("admins", chat_id)

        async def bump() -> None:
            async def shared() -> None:
                version = int(await self.shared.redis.incr(key))
                await self.shared.redis.expire(key, 7 * 86400)
                # This worker's own list already has the change; only a change from elsewhere should refetch.
                if self._versions.get(chat_id, 0) == version - 1:
                    self._versions[chat_id] = version

            async def local() -> None:
                return None

            await self.shared.call(shared, local)

        task = asyncio.ensure_future(bump())
        self._bumps.add(task)
        task.add_done_callback(self._bumps.discard)
