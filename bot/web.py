"""The process's web server: the webhook (when there is one), `/healthz`, `/readyz` and `/metrics`.

- `/healthz`: 200 while the process runs its event loop (a liveness probe: restart it when this fails).
- `/readyz`: 200 when the process can do its work: the database answers, Redis answers (with REDIS_URL),
  Telegram answers getMe (cached for a few seconds, so probes do not become Bot API traffic) and the inbox's
  oldest pending update is younger than READY_INBOX_MAX_AGE; else 503. The JSON body names each check.
- `/metrics`: Prometheus text (bot/metrics.py), when METRICS is on.

In webhook mode these live beside the webhook path on WEBHOOK_LISTEN; while polling, and in `qunbot scheduler`,
the server runs when WEB_LISTEN is set. Put only the webhook path behind the public TLS proxy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot
from aiohttp import web
from sqlalchemy import text

from bot.runtime import Runtime

log = logging.getLogger("qunbot.web")

TELEGRAM_CACHE_S = 10.0  # a getMe answer is trusted this long
CHECK_TIMEOUT_S = 5.0  # each readiness check gives up after this


class Readiness:
    """The checks behind /readyz. Each returns None when fine, else a short reason."""

    def __init__(self, runtime: Runtime, bot: Bot | None) -> None:
        self.runtime, self.bot = runtime, bot
        self.telegram_ok_until = 0.0
        self.redis: Any = None

    async def database(self) -> str | None:
        async with self.runtime.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
        return None

    async def telegram(self) -> str | None:
        if self.bot is None:
            return None
        now = time.monotonic()
        if now < self.telegram_ok_until:
            return None
        await self.bot.get_me()
        self.telegram_ok_until = now + TELEGRAM_CACHE_S
        return None

    async def redis_ping(self) -> str | None:
        url = self.runtime.settings.redis_url
        if not url:
            return None
        if self.redis is None:
            from redis.asyncio import Redis

            self.redis = Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S)
        await self.redis.ping()
        return None

    async def inbox(self) -> str | None:
        hook = self.runtime.metrics.inbox_stats
        if hook is None:
            return None
        stats = await hook()
        limit = self.runtime.settings.ready_inbox_max_age
        if stats.depth and stats.oldest_age_s > limit:
            return f"{stats.depth} pending, the oldest {stats.oldest_age_s:.0f} s old (limit {limit:.0f} s)"
        return None

    async def check(self) -> dict[str, str]:
        """Every check's outcome: "ok", "off", or what failed."""
        checks: dict[str, Callable[[], Awaitable[str | None]]] = {
            "database": self.database, "redis": self.redis_ping, "telegram": self.telegram, "inbox": self.inbox,
        }
        skipped = {
            "redis": not self.runtime.settings.redis_url,
            "telegram": self.bot is None,
            "inbox": self.runtime.metrics.inbox_stats is None,
        }

        async def run(name: str) -> str:
            if skipped.get(name):
                return "off"
            try:
                problem = await asyncio.wait_for(checks[name](), CHECK_TIMEOUT_S)
            except Exception as error:
                return f"unreachable: {type(error).__name__}"
            return problem or "ok"

        results = await asyncio.gather(*(run(name) for name in checks))
        return dict(zip(checks, results, strict=True))

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def create_web_app(runtime: Runtime, bot: Bot | None) -> web.Application:
    """An aiohttp app with /healthz, /readyz and (METRICS on) /metrics. The caller adds the webhook route."""
    app = web.Application()
    readiness = Readiness(runtime, bot)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = await readiness.check()
        ready = all(value in ("ok", "off") for value in checks.values())
        if not ready:
            log.warning("not ready: %s", ", ".join(f"{k} {v}" for k, v in checks.items() if v not in ("ok", "off")))
        return web.json_response({"status": "ok" if ready else "unavailable", "checks": checks},
                                 status=200 if ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        body = await runtime.metrics.render()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def close(_app: web.Application) -> None:
        await readiness.close()

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if runtime.settings.metrics:
        app.router.add_get("/metrics", metrics)
    app.on_cleanup.append(close)
    return app


def worker_listen(web_listen: str, index: int) -> str:
    """WEB_LISTEN for web worker `index` (0-based) of `qunbot run --workers N`: port + index, so Prometheus can
    scrape each worker on its own port while they share the webhook port. Empty stays empty."""
    if not web_listen:
        return web_listen
    host, _, port = web_listen.rpartition(":")
    return f"{host}:{int(port) + index}"


async def start_web(app: web.Application, host: str, port: int, *, reuse_port: bool = False) -> web.AppRunner:
    """Listen on host:port; the caller awaits `runner.cleanup()` when done."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    return runner


async def serve_health(runtime: Runtime, bot: Bot | None) -> web.AppRunner | None:
    """A web server with only /healthz, /readyz and /metrics on WEB_LISTEN (polling, the scheduler role, or a
    webhook worker's own address beside the shared webhook port); None when WEB_LISTEN is empty or is the
    webhook's own address (which serves them already)."""
    settings = runtime.settings
    address = settings.web_host_port
    if address is None or (settings.webhook_url and settings.web_listen == settings.webhook_listen):
        return None
    runner = await start_web(create_web_app(runtime, bot), *address)
    log.info("health and metrics on %s:%s", *address)
    return runner
