"""Factories: everything the bot needs is built here and handed in; nothing lives in module globals."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import handlers
from bot.flow import FlowController
from bot.i18n import CatalogI18n, create_i18n
from bot.limits import TelegramLimits
from bot.middlewares import register_middlewares
from bot.pipeline import install_pipeline
from bot.retry import RetryPolicy
from bot.runtime import Runtime
from bot.settings import Settings
from handlers.flashsale import SoldOutRounds
from handlers.invites import InviteWatch
from handlers.live_posts import LivePosts
from handlers.membership import move_group
from handlers.moderation import ModerationState
from handlers.newcomers import Lobby
from handlers.points import ChatQuiet, TierAnnouncer
from handlers.roles import AdminCache
from models import groups
from models.analytics import ActivityDesk
from models.checkin import CheckinDesk
from models.db import create_engine
from models.points import ChatDesk

log = logging.getLogger("qunbot")


def create_bot(
    settings: Settings,
    *,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    limits: TelegramLimits | None = None,
    retry: RetryPolicy | None = None,
    pacer: Any = None,
) -> Bot:
    """A Bot whose every outbound call passes the flow controller. With TELEGRAM_API_URL it talks to that
    Bot API server (a local telegram-bot-api, or qunbot's sandbox) instead of api.telegram.org."""
    session = AiohttpSession()
    if settings.telegram_api_url:
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))

    async def chat_gone(chat_id: int) -> None:
        if sessionmaker is None:
            return
        async with sessionmaker() as db:
            if chat_id < 0:
                if await groups.set_group_active(db, chat_id, False):
                    log.warning("group %s is gone (403): marked inactive", chat_id)
            else:
                await groups.set_user_blocked(db, chat_id, True)

    async def chat_moved(old_chat_id: int, new_chat_id: int) -> None:
        if sessionmaker is not None:
            async with sessionmaker() as db:
                await move_group(db, old_chat_id, new_chat_id)

    if pacer is None and settings.redis_url:
        from bot.shared_limits import SharedPacer, SharedRedis

        shared = SharedRedis(settings.redis_url, settings.redis_prefix)
        pacer = SharedPacer(shared, limits or TelegramLimits(), workers=settings.workers)
    session.middleware(
        FlowController(limits, on_chat_gone=chat_gone, on_chat_moved=chat_moved, pacer=pacer, retry=retry)
    )
    return Bot(
        settings.token,
        session=session,
        default=DefaultBotProperties(parse_mode="HTML", link_preview_is_disabled=True),
    )


def create_engine_for(settings: Settings) -> AsyncEngine:
    """The process's database engine, with the pool sizes of DB_POOL_SIZE and DB_MAX_OVERFLOW."""
    return create_engine(settings.database_url, sqlite_driver=settings.sqlite_driver,
                         pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)


def create_storage(settings: Settings) -> tuple[BaseStorage, object | None]:
    """FSM storage and event isolation: in memory, and none, even with several workers.

    qunbot keeps no FSM state, and a per-chat lock across workers (aiogram's RedisEventIsolation) can fail after
    the update was acknowledged (it raised MaxConnectionsError under load, and the update was lost). The
    database is the judge of every once-only effect (unique keys, conditional updates), so two workers handling
    one chat's updates at once stay correct without a lock."""
    return MemoryStorage(), None


def create_runtime(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], i18n: CatalogI18n | None = None
) -> Runtime:
    """The process's Runtime: the one place its parts are built (and where shared parts would be chosen)."""
    i18n = i18n or create_i18n(settings.default_locale)
    shared = None
    moderation = ModerationState()
    admins = AdminCache()
    if settings.redis_url:  # several workers: the counters that must agree live in Redis
        from bot.shared_limits import SharedAdminCache, SharedPaces, SharedRedis

        shared = SharedRedis(settings.redis_url, settings.redis_prefix)
        moderation.shared = SharedPaces(shared)
        admins = SharedAdminCache(shared)
    return Runtime(
        settings=settings,
        sessionmaker=sessionmaker,
        i18n=i18n,
        arrivals=groups.ArrivalDesk(sessionmaker, settings.default_timezone),
        checkins=CheckinDesk(sessionmaker),
        chat_points=ChatDesk(sessionmaker),
        activity=ActivityDesk(sessionmaker, retention_days=settings.activity_retention_days),
        admins=admins,
        moderation=moderation,
        invites=InviteWatch(),
        tiers=TierAnnouncer(),
        chat_quiet=ChatQuiet(),
        sold_out=SoldOutRounds(),
        lobby=Lobby(sessionmaker, i18n),
        live_posts=LivePosts(sessionmaker, i18n),
        shared=shared,
    )


def create_dispatcher(runtime: Runtime, *, storage: BaseStorage | None = None) -> Dispatcher:
    """The Dispatcher: the update middleware, the group-message pipeline in front of every feature's handlers
    (the switchboard), and `runtime` as workflow data for handlers. `settings`, `sessionmaker` and `i18n` are
    offered too, as the runtime's own values under the names handlers take them by."""
    events_isolation = None
    if storage is None:
        storage, events_isolation = create_storage(runtime.settings)
    dp = Dispatcher(
        storage=storage,
        events_isolation=events_isolation,  # type: ignore[arg-type]
        # qunbot keeps no FSM state: the FSM layer is only worth its cost per update for what Redis gives several
        # workers (per-chat event isolation).
        disable_fsm=events_isolation is None,
        runtime=runtime,
        settings=runtime.settings,
        sessionmaker=runtime.sessionmaker,
        i18n=runtime.i18n,
        live_posts=runtime.live_posts,
    )
    register_middlewares(dp, runtime)
    install_pipeline(dp, handlers.install(dp))
    return dp
