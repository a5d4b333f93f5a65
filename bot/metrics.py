"""Prometheus metrics for one process, kept in its Runtime (`runtime.metrics`), served at /metrics (bot/web.py).

Every collector is registered on the Metrics' own `CollectorRegistry`, never on prometheus-client's global one,
so two Runtimes in one process (tests, the demo) never share or clash. What is counted where:

- updates received / handled / failed by type and the handler latency: the update pipeline
  (bot/middlewares.py calls `update_started` and `update_finished`);
- outbound calls by method and result (ok, 429, 400, 403, ..., network, timeout): `OutboundMetrics`, a request
  middleware registered inside the flow controller, so it sees every attempt, the 429s the controller retries
  included;
- limiter waits and 429 retries: read from the flow controller at scrape time;
- scheduler lag (how late a job started after its planned time) and missed runs: an APScheduler listener
  (`watch_scheduler`);
- database pool use: read from the engine's pool at scrape time;
- inbox depth, oldest age and set-aside count: `inbox_stats`, a hook the process sets (see `InboxStatsHook`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

log = logging.getLogger("qunbot.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Handler latency buckets, in seconds: most updates take a few milliseconds; a press must be answered within 15 s.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0)


class InboxStatsLike(Protocol):
    """What models.inbox.stats returns (depth, oldest_age_s, set_aside)."""

    depth: int
    oldest_age_s: float
    set_aside: int


# Set by the process that owns an inbox: `runtime.metrics.inbox_stats = lambda: ...` returning InboxStatsLike.
InboxStatsHook = Callable[[], Awaitable[InboxStatsLike]]


class Metrics:
    """One process's collectors. Cheap to build; nothing here talks to the network."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.updates_received = Counter("qunbot_updates_received", "Updates that reached the update pipeline",
                                        ["type"], registry=r)
        self.updates_handled = Counter("qunbot_updates_handled", "Updates handled without an error",
                                       ["type"], registry=r)
        self.updates_failed = Counter("qunbot_updates_failed", "Updates whose handling raised (each attempt)",
                                      ["type"], registry=r)
        self.handler_seconds = Histogram("qunbot_handler_seconds", "Time from the pipeline taking an update to "
                                         "its handler returning", ["type"], buckets=LATENCY_BUCKETS, registry=r)
        self.outbound_calls = Counter("qunbot_outbound_calls", "Bot API calls (each attempt) by method and result",
                                      ["method", "result"], registry=r)
        self.outbound_seconds = Histogram("qunbot_outbound_seconds", "Bot API call time, each attempt",
                                          ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.scheduler_lag = Histogram("qunbot_scheduler_lag_seconds", "How late a scheduler job started after "
                                       "its planned time", ["job"], buckets=LAG_BUCKETS, registry=r)
        self.scheduler_missed = Counter("qunbot_scheduler_missed_runs", "Scheduler runs skipped (missed their "
                                        "grace time)", ["job"], registry=r)
        self.scheduler_errors = Counter("qunbot_scheduler_job_errors", "Scheduler jobs that raised", ["job"],
                                        registry=r)
        self.inbox_depth = Gauge("qunbot_inbox_depth", "Updates stored and not yet handled", registry=r)
        self.inbox_oldest_age = Gauge("qunbot_inbox_oldest_age_seconds", "Age of the oldest pending update",
                                      registry=r)
        self.inbox_set_aside = Gauge("qunbot_inbox_set_aside", "Updates set aside after failing every attempt",
                                     registry=r)
        self.started = Gauge("qunbot_process_start_time_seconds", "When this process started (Unix time)",
                             registry=r)
        self.started.set(time.time())
        self.inbox_stats: InboxStatsHook | None = None
        self._by_kind: dict[str, tuple[Any, Any, Any, Any]] = {}
        self._live = _LiveReadings()
        r.register(self._live)

    # -- what the process tells it -------------------------------------------------------------------------

    def watch_bot(self, bot: Bot) -> None:
        """Read the flow controller's limiter waits and 429 retries of this bot at every scrape."""
        self._live.bot = bot

    def watch_engine(self, engine: AsyncEngine) -> None:
        """Read this engine's connection pool at every scrape."""
        self._live.engine = engine

    def watch_scheduler(self, scheduler: BaseScheduler) -> None:
        """Record each job's lag (start time minus planned time), missed runs and errors."""
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED

        def listen(event: Any) -> None:
            job = str(event.job_id)
            if event.code == EVENT_JOB_SUBMITTED:
                now = time.time()
                for planned in event.scheduled_run_times:
                    self.scheduler_lag.labels(job).observe(max(0.0, now - planned.timestamp()))
            elif event.code == EVENT_JOB_MISSED:
                self.scheduler_missed.labels(job).inc()
            elif event.code == EVENT_JOB_ERROR:
                self.scheduler_errors.labels(job).inc()

        scheduler.add_listener(listen, EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR)

    def update_started(self, kind: str) -> float:
        """Count an update of this type as received; the start time to hand to `update_finished`."""
        self._update_children(kind)[0].inc()
        return time.perf_counter()

    def update_finished(self, kind: str, started: float, *, failed: bool) -> None:
        _, handled, failed_, seconds = self._update_children(kind)
        seconds.observe(time.perf_counter() - started)
        (failed_ if failed else handled).inc()

    def _update_children(self, kind: str) -> tuple[Any, Any, Any, Any]:
        # labels() takes a lock and builds a key: per type once, as every update passes here
        children = self._by_kind.get(kind)
        if children is None:
            children = self._by_kind[kind] = (
                self.updates_received.labels(kind), self.updates_handled.labels(kind),
                self.updates_failed.labels(kind), self.handler_seconds.labels(kind),
            )
        return children

    # -- reading -------------------------------------------------------------------------------------------

    async def render(self) -> bytes:
        """The Prometheus text exposition, with the inbox read first (when the hook is set)."""
        if self.inbox_stats is not None:
            try:
                stats = await asyncio.wait_for(self.inbox_stats(), timeout=5)
            except Exception as error:  # a scrape during a database outage still answers, without the inbox
                log.warning("inbox stats unavailable for /metrics: %s", type(error).__name__)
            else:
                self.inbox_depth.set(stats.depth)
                self.inbox_oldest_age.set(stats.oldest_age_s)
                self.inbox_set_aside.set(stats.set_aside)
        return generate_latest(self.registry)


class _LiveReadings(Collector):
    """Values read at scrape time from objects that keep them anyway (the flow controller, the pool)."""

    def __init__(self) -> None:
        self.bot: Bot | None = None
        self.engine: AsyncEngine | None = None

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        flow = flow_controller(self.bot) if self.bot is not None else None
        if flow is not None:
            waited = CounterMetricFamily("qunbot_limiter_wait_seconds", "Time sends waited for a slot under "
                                         "Telegram's limits (this process's outbound limiter)")
            waited.add_metric([], float(getattr(flow.pacer, "waited", 0.0)))
            yield waited
            retried = CounterMetricFamily("qunbot_outbound_429_retries", "Calls Telegram refused with 429 and "
                                          "the flow controller tried again")
            retried.add_metric([], float(getattr(flow, "retried_429", 0)))
            yield retried
        if self.engine is not None:
            pool = self.engine.pool
            readings = {"size": "size", "checked_out": "checkedout", "overflow": "overflow"}
            gauge = GaugeMetricFamily("qunbot_db_pool_connections", "Database pool connections by state",
                                      labels=["state"])
            found = False
            for state, name in readings.items():
                reader = getattr(pool, name, None)
                if callable(reader):
                    try:
                        gauge.add_metric([state], float(reader()))
                        found = True
                    except Exception:  # a pool kind without this reading
                        continue
            if found:
                yield gauge


def inbox_hook(
    sessionmaker: async_sessionmaker[AsyncSession],
    stats: Callable[..., Awaitable[InboxStatsLike]],
    bot_id: int | None = None,
) -> InboxStatsHook:
    """The `Metrics.inbox_stats` hook for a stats function such as models.inbox.stats(session, bot_id):
    `runtime.metrics.inbox_stats = inbox_hook(sessionmaker, models.inbox.stats, bot.id)`."""

    async def read() -> InboxStatsLike:
        async with sessionmaker() as session:
            return await stats(session, bot_id)

    return read


def flow_controller(bot: Bot) -> Any:
    """The bot session's flow controller (bot/flow.py), or None."""
    from bot.flow import FlowController

    for middleware in getattr(bot.session.middleware, "_middlewares", []):
        if isinstance(middleware, FlowController):
            return middleware
    return None


class OutboundMetrics(BaseRequestMiddleware):
    """Counts every Bot API attempt by method and result. Registered after the flow controller, so it runs
    inside it and sees each attempt (a 429 that the controller waits out and retries counts once as "429")."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        started = time.perf_counter()
        result = "ok"
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter:
            result = "429"
            raise
        except TelegramNetworkError:
            result = "network"
            raise
        except TelegramAPIError as error:
            result = _status_of(error)
            raise
        except (TimeoutError, asyncio.CancelledError):
            result = "timeout"
            raise
        except Exception:
            result = "error"
            raise
        finally:
            if name != "getUpdates":  # long polls wait by design: their time says nothing about Telegram
                self.metrics.outbound_seconds.labels(name).observe(time.perf_counter() - started)
            self.metrics.outbound_calls.labels(name, result).inc()


def _status_of(error: TelegramAPIError) -> str:
    """The status a refused call stands for (aiogram's exception classes are its status codes)."""
    for kind, status in _STATUSES:
        if isinstance(error, kind):
            return status
    return "error"


_STATUSES = (
    (TelegramMigrateToChat, "400"), (TelegramBadRequest, "400"), (TelegramUnauthorizedError, "401"),
    (TelegramForbiddenError, "403"), (TelegramNotFound, "404"), (TelegramConflictError, "409"),
    (TelegramServerError, "5xx"),
)


def update_kind(event: Any) -> str:
    """The update's type (message, callback_query, ...) as a label; "unknown" when it has none."""
    try:
        return str(event.event_type)
    except Exception:
        return "unknown"


def observe_process(metrics: Metrics, bot: Bot, engine: AsyncEngine | None = None) -> None:
    """Count this bot's calls (inside its flow controller), read its limiter and the engine's pool at scrape
    time. Call once per process, after the bot (and its flow controller) is built."""
    bot.session.middleware(OutboundMetrics(metrics))
    metrics.watch_bot(bot)
    if engine is not None:
        metrics.watch_engine(engine)
