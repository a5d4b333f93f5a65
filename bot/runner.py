"""`qunbot run` and `qunbot scheduler`: migrate, then serve updates (long polling or webhook) and run the
scheduler, until Ctrl-C / SIGTERM or a `stop` event."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
)
from aiohttp import web

import handlers
from bot.factory import create_bot, create_dispatcher, create_engine_for, create_runtime
from bot.i18n import CatalogI18n
from bot.inbox import EXIT_CONFLICT, Inbox, PollingConflict, webhook_handler
from bot.limits import TelegramLimits
from bot.metrics import inbox_hook, observe_process
from bot.runtime import Runtime
from bot.settings import Settings
from bot.startup import EXIT_CANNOT_START, CannotStart, prepare_database, reach_telegram
from bot.web import create_web_app, serve_health
from models.db import create_sessionmaker
from models.inbox import stats as inbox_stats
from models.migrate import upgrade_to_head
from scheduler.runner import create_scheduler

log = logging.getLogger("qunbot")

# Telegram's setMyCommands takes a two-letter ISO 639-1 language code, so zh_Hans and zh_Hant cannot each get a
# menu: the one "zh" menu is in the script of the deployment's audience (DEFAULT_LOCALE when it is Chinese: a
# Taiwan or Hong Kong deployment sets DEFAULT_LOCALE=zh_Hant and every Chinese reader sees 繁體; else 简体), and
# every language without its own menu gets DEFAULT_LOCALE's.
MENU_LANGUAGES = {"zh": "zh_Hans", "en": "en"}


def menu_languages(default_locale: str) -> dict[str, str]:
    """Each two-letter menu language and the locale its menu is written in."""
    chinese = default_locale if default_locale.startswith("zh") else MENU_LANGUAGES["zh"]
    return {**MENU_LANGUAGES, "zh": chinese}


async def set_commands(bot: Bot, i18n: CatalogI18n) -> None:
    """The command menus: members' in groups, more for group admins, private-chat ones, per language."""
    commands = handlers.all_commands()
    scopes = [
        (BotCommandScopeAllPrivateChats(), ("member", "private")),
        (BotCommandScopeAllGroupChats(), ("member",)),
        (BotCommandScopeAllChatAdministrators(), ("member", "admin")),
    ]
    languages: list[tuple[str | None, str]] = [(None, i18n.default_locale),
                                               *menu_languages(i18n.default_locale).items()]
    for scope, audiences in scopes:
        for language_code, locale in languages:
            with i18n.context(), i18n.use_locale(locale):
                menu = [
                    BotCommand(command=c.name, description=str(c.description)[:256])
                    for c in commands
                    if c.audience in audiences
                ]
            await bot.set_my_commands(menu, scope=scope, language_code=language_code)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    limits: TelegramLimits | None = None,
    with_scheduler: bool = True,
    polling_timeout: int = 10,
    owner: bool = True,
    reuse_port: bool = False,
) -> None:
    """The whole bot in one process. Returns when `stop` is set (or on SIGINT / SIGTERM).

    A web worker of `qunbot run --workers N` (bot/workers.py) runs with owner=False (the supervisor sets the
    webhook and the command menus, once), reuse_port=True (N workers listen on one port) and no scheduler."""
    if stop is None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
    engine = create_engine_for(settings)
    bot: Bot | None = None
    try:
        if not await prepare_database(engine, stop, upgrade_to_head):
            return
        sessionmaker = create_sessionmaker(engine)
        runtime = create_runtime(settings, sessionmaker)
        bot = create_bot(settings, sessionmaker=sessionmaker, limits=limits)
        observe_process(runtime.metrics, bot, engine)
        dp = create_dispatcher(runtime)
        me = await reach_telegram(bot, stop, settings.telegram_api_url or "api.telegram.org")
        if me is None:
            return
        log.info("running as @%s (id %s)", me.username, me.id)
        if owner:
            await set_commands(bot, runtime.i18n)
        inbox = Inbox(sessionmaker, dp, bot)
        runtime.metrics.inbox_stats = inbox_hook(sessionmaker, inbox_stats, bot.id)
        scheduler = create_scheduler(bot, runtime) if with_scheduler else None
        if scheduler is not None:
            scheduler.start()
        try:
            async with _health_server(runtime, bot):
                if settings.webhook_url:
                    await inbox.replay(everything=False)
                    inbox.start_sweeper()
                    await _serve_webhook(settings, bot, dp, stop, inbox, owner=owner, reuse_port=reuse_port)
                else:
                    await _poll(bot, dp, stop, polling_timeout, inbox)
        finally:
            await inbox.stop()  # in-flight handlers finish before the HTTP session closes
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            try:
                await runtime.activity.flush()  # the last minute's activity counts
            except Exception:
                log.exception("activity facts: the last flush failed")
            await runtime.live_posts.close()  # what members changed last is shown before the bot goes
    except CannotStart as error:
        log.error("cannot start: %s", error)
        raise SystemExit(EXIT_CANNOT_START) from None
    except PollingConflict:
        log.error("another program is polling with this bot token (Telegram: 409 Conflict); only one may. "
                  "Stop the other one (or remove its webhook), then start again")
        raise SystemExit(EXIT_CONFLICT) from None
    finally:
        if bot is not None:
            await bot.session.close()
        await engine.dispose()
        log.info("stopped")


async def _poll(bot: Bot, dp: Dispatcher, stop: asyncio.Event, poll_seconds: int, inbox: Inbox) -> None:
    """Long polling through the inbox (bot/inbox.py): a batch is stored before it is confirmed. Polling allows
    one process per token, so everything left pending is this process's to replay."""
    await bot.delete_webhook(drop_pending_updates=False)
    await inbox.replay(everything=True)
    inbox.start_sweeper()
    polling = asyncio.create_task(inbox.poll(dp.resolve_used_update_types(), poll_seconds=poll_seconds))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
    inbox.stopping.set()
    if not polling.done():
        polling.cancel()  # an unfinished getUpdates confirmed nothing: Telegram sends its updates again
        with suppress(asyncio.CancelledError):
            await polling
    stopping.cancel()
    if polling.done() and not polling.cancelled() and polling.exception() is not None:
        raise polling.exception()  # type: ignore[misc]


async def _serve_webhook(
    settings: Settings, bot: Bot, dp: Dispatcher, stop: asyncio.Event, inbox: Inbox, *, owner: bool = True,
    reuse_port: bool = False,
) -> None:
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    path = urlsplit(settings.webhook_url).path or "/webhook"
    app = create_web_app(dp["runtime"], bot)  # /healthz, /readyz, /metrics beside the webhook (bot/web.py)
    app.router.add_post(path, webhook_handler(inbox, secret))  # stored in the inbox before the 200
    runner = web.AppRunner(app, access_log=None)  # a line per update costs CPU and says nothing the logs don't
    await runner.setup()
    host, port = settings.listen_host_port
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    await site.start()
    try:
        if owner:
            await set_webhook(settings, bot, dp)
        log.info("webhook at %s, listening on %s:%s", settings.webhook_url, host, port)
        await stop.wait()
    finally:
        await runner.cleanup()


async def set_webhook(settings: Settings, bot: Bot, dp: Dispatcher) -> None:
    """Point Telegram at WEBHOOK_URL, asking for the update types the handlers use."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    await bot.set_webhook(settings.webhook_url, secret_token=secret, allowed_updates=dp.resolve_used_update_types())


async def run_scheduler(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """The scheduler alone (for deployments that run it as its own process)."""
    if stop is None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
    engine = create_engine_for(settings)
    bot = None
    try:
        await upgrade_to_head(engine)
        sessionmaker = create_sessionmaker(engine)
        bot = create_bot(settings, sessionmaker=sessionmaker)
        runtime = create_runtime(settings, sessionmaker)
        observe_process(runtime.metrics, bot, engine)
        scheduler = create_scheduler(bot, runtime)
        scheduler.start()
        log.info("scheduler running")
        async with _health_server(runtime, bot):
            await stop.wait()
        scheduler.shutdown(wait=False)
        await runtime.live_posts.close()
    finally:
        if bot is not None:
            await bot.session.close()
        await engine.dispose()


@asynccontextmanager
async def _health_server(runtime: Runtime, bot: Bot) -> AsyncIterator[None]:
    """/healthz, /readyz and /metrics on WEB_LISTEN (none when it is empty or the webhook's own address)."""
    web_runner = await serve_health(runtime, bot)
    try:
        yield
    finally:
        if web_runner is not None:
            await web_runner.cleanup()


async def migrate(settings: Settings) -> None:
    engine = create_engine_for(settings)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
