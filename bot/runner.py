"""`qunbot run` and `qunbot scheduler`: migrate, then serve updates (long polling or webhook) and run the
scheduler, until Ctrl-C / SIGTERM or a `stop` event."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

import handlers
from bot.factory import create_bot, create_dispatcher, create_runtime
from bot.i18n import CatalogI18n
from bot.limits import TelegramLimits
from bot.settings import Settings
from models.db import create_engine, create_sessionmaker
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
) -> None:
    """The whole bot in one process. Returns when `stop` is set (or on SIGINT / SIGTERM)."""
    if stop is None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
    engine = create_engine(settings.database_url, sqlite_driver=settings.sqlite_driver)
    bot: Bot | None = None
    try:
        await upgrade_to_head(engine)
        sessionmaker = create_sessionmaker(engine)
        runtime = create_runtime(settings, sessionmaker)
        bot = create_bot(settings, sessionmaker=sessionmaker, limits=limits)
        dp = create_dispatcher(runtime)
        me = await bot.get_me()
        log.info("running as @%s (id %s)", me.username, me.id)
        await set_commands(bot, runtime.i18n)
        scheduler = create_scheduler(bot, runtime) if with_scheduler else None
        if scheduler is not None:
            scheduler.start()
        try:
            if settings.webhook_url:
                await _serve_webhook(settings, bot, dp, stop)
            else:
                await _poll(bot, dp, stop, polling_timeout)
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            await runtime.live_posts.close()  # what members changed last is shown before the bot goes
    finally:
        if bot is not None:
            await bot.session.close()
        await engine.dispose()
        log.info("stopped")


async def _poll(bot: Bot, dp: Dispatcher, stop: asyncio.Event, poll_seconds: int) -> None:
    await bot.delete_webhook(drop_pending_updates=False)
    polling = asyncio.create_task(
        dp.start_polling(
            bot,
            handle_signals=False,
            close_bot_session=False,
            polling_timeout=poll_seconds,
            allowed_updates=dp.resolve_used_update_types(),
        )
    )
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not polling.done():
        with suppress(RuntimeError):
            await dp.stop_polling()
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(polling, timeout=poll_seconds + 5)
    stopping.cancel()
    if polling.done() and not polling.cancelled() and polling.exception() is not None:
        raise polling.exception()  # type: ignore[misc]


async def _serve_webhook(settings: Settings, bot: Bot, dp: Dispatcher, stop: asyncio.Event) -> None:
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    path = urlsplit(settings.webhook_url).path or "/webhook"
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret).register(app, path=path)
    setup_application(app, dp, bot=bot)
    runner = web.AppRunner(app)
    await runner.setup()
    host, port = settings.listen_host_port
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await bot.set_webhook(
            settings.webhook_url,
            secret_token=secret,
            allowed_updates=dp.resolve_used_update_types(),
        )
        log.info("webhook at %s, listening on %s:%s", settings.webhook_url, host, port)
        await stop.wait()
    finally:
        await runner.cleanup()


async def run_scheduler(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """The scheduler alone (for deployments that run it as its own process)."""
    if stop is None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
    engine = create_engine(settings.database_url, sqlite_driver=settings.sqlite_driver)
    bot = None
    try:
        await upgrade_to_head(engine)
        sessionmaker = create_sessionmaker(engine)
        bot = create_bot(settings, sessionmaker=sessionmaker)
        runtime = create_runtime(settings, sessionmaker)
        scheduler = create_scheduler(bot, runtime)
        scheduler.start()
        log.info("scheduler running")
        await stop.wait()
        scheduler.shutdown(wait=False)
        await runtime.live_posts.close()
    finally:
        if bot is not None:
            await bot.session.close()
        await engine.dispose()


async def migrate(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
