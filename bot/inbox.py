"""The process side of the inbox (models/inbox.py): receive, store, then confirm; handle in order per chat and person;
mark done; replay what a crash left; set poison aside; stop cleanly.

- Polling (`poll`): our own getUpdates loop. A batch is stored before the next getUpdates' offset confirms it.
- Webhook (`webhook_handler`): the update is stored before the 2xx.
- `accept` hands stored updates to one worker task per lane (models.inbox.lane_of: a chat and the person in it),
  so one person's updates in a chat are handled in the order they arrived, while chats, and different people in
  one chat, run side by side (a group's burst of presses still reaches the batching desks together).
- At most `max_in_flight` updates are held in memory: past that, `accept` waits (polling fetches no more, the
  webhook answers later), which is Telegram's cue to slow down.
- A handler's failure: the database unreachable (`is_unavailable`) is retried with backoff for as long as it
  lasts and counts no attempt; any other error is retried up to `max_attempts` in all (a crash of the process
  counts too: every replay counts one), then the update is set aside with a log line and counted
  (models.inbox.stats), and its lane goes on.
- `stop` (SIGTERM): take no more, let what is in flight finish (at most `drain_s`), mark it done; what did not
  finish stays pending for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramConflictError, TelegramNetworkError, TelegramServerError
from aiogram.methods import GetUpdates
from aiogram.types import Update
from aiohttp import web
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import inbox as store
from models.batching import Coalescer, in_transaction

log = logging.getLogger("qunbot.inbox")

# Exit status for what retrying cannot fix (bot/runner.py).
EXIT_CONFLICT = 3


class PollingConflict(RuntimeError):
    """Telegram answered getUpdates with 409 Conflict: another process polls with this token (or a webhook is
    set). Retrying would only trade 409s with it forever."""


def is_unavailable(error: BaseException) -> bool:
    """The database (or the network to it) is unavailable for now: worth waiting out, not the update's fault."""
    if isinstance(error, sa_exc.DBAPIError):
        return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError) or error.connection_invalidated
    if isinstance(error, sa_exc.TimeoutError):  # no connection free in the pool
        return True
    return isinstance(error, OSError) and not isinstance(error, TelegramNetworkError)


class _Item:
    __slots__ = ("update_id", "payload", "attempts", "replay")

    def __init__(self, update_id: int, payload: dict[str, Any], attempts: int, replay: bool) -> None:
        self.update_id, self.payload, self.attempts, self.replay = update_id, payload, attempts, replay


class Inbox:
    """One process's inbox. `accept` stores and dispatches; `replay` / `sweep` pick up what others left."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], dp: Dispatcher, bot: Bot, *,
        max_in_flight: int = 2000, max_attempts: int = 5, lease_s: float = 60.0, sweep_s: float = 15.0,
        drain_s: float = 10.0, prune_every_s: float = 600.0, retry_s: float = 0.25, mark_every_s: float = 0.05,
        feed: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.sessionmaker, self.dp, self.bot = sessionmaker, dp, bot
        self.max_attempts, self.lease, self.sweep_s = max_attempts, timedelta(seconds=lease_s), sweep_s
        self.drain_s, self.prune_every_s, self.retry_s = drain_s, prune_every_s, retry_s
        self.mark_every_s = mark_every_s
        self.feed = feed or dp.feed_update
        self.owner = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.storer: Coalescer[int, store.Received, bool] = Coalescer(
            self._store_batch, opener=in_transaction(sessionmaker)
        )
        self.room = asyncio.Semaphore(max_in_flight)
        self.max_in_flight = max_in_flight
        self.lanes: dict[tuple[int, int], deque[_Item]] = {}
        self.workers: dict[tuple[int, int], asyncio.Task[None]] = {}
        self.held: set[int] = set()  # update ids in memory (queued or running)
        self.done: list[int] = []
        self.done_ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.closing = False  # the flusher's cue to end once all is marked
        self.flusher: asyncio.Task[None] | None = None
        self.sweeper: asyncio.Task[None] | None = None
        self.set_aside_count = 0

    # -- receiving -------------------------------------------------------------------------------------------

    async def accept(self, payloads: list[dict[str, Any]]) -> None:
        """Store these raw updates, then hand the new ones to their chats. Returns once they are stored (it is
        then safe to confirm them to Telegram); waits first while `max_in_flight` updates are held. Raises if the
        database cannot store them (then they must not be confirmed)."""
        if not payloads:
            return
        for _ in payloads:
            await self.room.acquire()
        received = [store.Received(int(p["update_id"]), store.chat_of(p), p) for p in payloads]
        try:
            # Stored by group commit: concurrent webhook requests share one transaction (models/batching.py).
            outcomes = await asyncio.gather(*(self.storer.submit(self.bot.id, r) for r in received),
                                            return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            for _ in payloads:
                self.room.release()
            raise
        for r, new in zip(received, outcomes, strict=True):
            if new and r.update_id not in self.held:
                self._enqueue(store.lane_of(r.payload), _Item(r.update_id, r.payload, 0, replay=False))
            else:
                self.room.release()  # a redelivered copy: its first copy is, or was, handled

    async def _store_batch(self, bot_id: int, received: list[store.Received], session: AsyncSession) -> list[bool]:
        new = await store.store(session, bot_id, received, owner=self.owner)
        outcomes = []
        for r in received:  # the same update twice in one batch: the first copy is the one handled
            outcomes.append(r.update_id in new)
            new.discard(r.update_id)
        return outcomes

    def _enqueue(self, lane: tuple[int, int], item: _Item) -> None:
        self.held.add(item.update_id)
        self.lanes.setdefault(lane, deque()).append(item)
        if lane not in self.workers:
            self.workers[lane] = asyncio.create_task(self._serve_lane(lane))
        if self.flusher is None:
            self.flusher = asyncio.create_task(self._flush_done())

    # -- handling --------------------------------------------------------------------------------------------

    async def _serve_lane(self, lane: tuple[int, int]) -> None:
        queue = self.lanes[lane]
        try:
            while queue:
                item = queue[0]
                try:
                    finished = await self._handle(item)
                except asyncio.CancelledError:
                    raise
                if not finished:  # stopping: it stays pending in the database for the next start
                    return
                queue.popleft()
                self.held.discard(item.update_id)
                self.room.release()
        finally:
            if self.workers.get(lane) is asyncio.current_task():
                del self.workers[lane]
                if not queue:
                    self.lanes.pop(lane, None)

    async def _handle(self, item: _Item) -> bool:
        """Handle one update until it is done or set aside (True), or the process stops (False)."""
        waited = 0
        while True:
            if item.attempts >= self.max_attempts:  # taken this often already (each crash took it once)
                await self._set_aside(item, "crashed the process or failed on every attempt")
                return True
            if self.stopping.is_set() and waited:
                return False
            item.attempts += 1
            try:
                update = Update.model_validate(item.payload, context={"bot": self.bot})
                await self.feed(
                    self.bot, update, inbox_replay=item.replay, inbox_final=item.attempts >= self.max_attempts,
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if is_unavailable(error):
                    item.attempts -= 1  # not the update's fault
                    waited += 1
                    delay = min(5.0, self.retry_s * 2 ** min(waited, 5))
                    if waited == 1:
                        log.warning("update %s waits: the database is unavailable (%s)", item.update_id,
                                    type(error).__name__)
                elif item.attempts >= self.max_attempts:
                    await self._set_aside(item, f"{type(error).__name__}: {error}")
                    return True
                else:
                    waited += 1
                    delay = self.retry_s * 2 ** item.attempts
                    log.warning("update %s failed (attempt %s of %s): %s", item.update_id, item.attempts,
                                self.max_attempts, type(error).__name__)
                item.replay = True  # its effects may be half applied: the arrival must not drop it
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay * (0.5 + random.random()))
                except TimeoutError:
                    pass
                continue
            self.done.append(item.update_id)
            self.done_ready.set()
            return True

    async def _set_aside(self, item: _Item, reason: str) -> None:
        log.error("update %s set aside after %s attempts: %s", item.update_id, item.attempts, reason[:200])
        self.set_aside_count += 1
        for delay in (0.5, 1, 2, 4, 8):
            try:
                async with self.sessionmaker() as session:
                    await store.set_aside(session, self.bot.id, item.update_id, reason)
                return
            except Exception as error:  # the database is away: it stays pending, taken again later
                if not is_unavailable(error) or self.stopping.is_set():
                    return
                await asyncio.sleep(delay)

    async def _flush_done(self) -> None:
        """Mark handled updates done, many per transaction (a handled update waits for nothing here: a crash
        before its mark only replays it, and its keyed effects make the replay a no-op). Ends once `closing`
        and nothing is left to mark."""
        failures = 0
        while True:
            await self.done_ready.wait()
            if not self.closing:  # gather a batch: a transaction a mark would take turns with the handlers' own
                await asyncio.sleep(self.mark_every_s)
            self.done_ready.clear()
            batch, self.done = self.done, []
            if batch:
                try:
                    async with self.sessionmaker() as session:
                        await store.mark_done(session, self.bot.id, batch)
                    failures = 0
                except Exception as error:
                    self.done = batch + self.done
                    failures += 1
                    if not is_unavailable(error):
                        log.exception("could not mark %s updates done", len(batch))
                    if self.closing and failures >= 3:
                        return  # they are replayed at the next start, as no-ops
                    await asyncio.sleep(0.5)
                    self.done_ready.set()
                    continue
            if self.closing and not self.done:
                return

    # -- what a crash left -----------------------------------------------------------------------------------

    async def replay(self, *, everything: bool) -> int:
        """Take the pending updates no live process holds (`everything`: all of them, when this process is the
        only one that may handle them) and hand them to their chats, oldest first. Returns how many."""
        taken = 0
        while True:
            async with self.sessionmaker() as session:
                pending = await store.take_pending(
                    session, self.bot.id, owner=self.owner, lease=None if everything else self.lease,
                    exclude=sorted(self.held) if len(self.held) < 5000 else (),
                )
            pending = [p for p in pending if p.update_id not in self.held]
            if not pending:
                break
            for p in pending:
                await self.room.acquire()
                self._enqueue(store.lane_of(p.payload), _Item(p.update_id, p.payload, p.attempts, replay=True))
            taken += len(pending)
        if taken:
            log.info("replaying %s updates left pending", taken)
        return taken

    def start_sweeper(self) -> None:
        """Every `sweep_s`: renew this process's hold, replay what a dead process left, prune now and then."""
        if self.sweeper is None:
            self.sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        since_prune = 0.0
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), self.sweep_s)
                return
            except TimeoutError:
                pass
            try:
                async with self.sessionmaker() as session:
                    await store.renew(session, self.bot.id, owner=self.owner)
                await self.replay(everything=False)
                since_prune += self.sweep_s
                if since_prune >= self.prune_every_s:
                    since_prune = 0.0
                    async with self.sessionmaker() as session:
                        removed = await store.prune(session)
                    if removed:
                        log.info("inbox: pruned %s rows", removed)
            except Exception as error:
                log.warning("inbox sweep failed: %s", type(error).__name__)

    # -- stopping --------------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Take no more; let in-flight updates finish (at most `drain_s`); mark them done. What did not finish
        stays pending in the database. Call before closing the bot's HTTP session."""
        self.stopping.set()
        if self.sweeper is not None:
            self.sweeper.cancel()
        workers = list(self.workers.values())
        if workers:
            done, running = await asyncio.wait(workers, timeout=self.drain_s)
            for task in running:
                task.cancel()
            if running:
                log.warning("stopping: %s lanes' updates left for the next start", len(running))
                await asyncio.wait(running, timeout=5)
        if self.flusher is not None:
            self.closing = True
            self.done_ready.set()
            try:
                await asyncio.wait_for(self.flusher, 10)
            except TimeoutError:
                log.warning("could not mark the last updates done; they will be replayed")

    # -- transports ------------------------------------------------------------------------------------------

    async def poll(self, allowed_updates: list[str], *, poll_seconds: int = 10) -> None:
        """Long polling until `stopping`: fetch a batch, store it, and only then confirm it (the next call's
        offset). Telegram unreachable: a line, then backoff. 409 Conflict: PollingConflict."""
        offset: int | None = None
        failures = 0
        while not self.stopping.is_set():
            try:
                updates = await self.bot(
                    GetUpdates(offset=offset, timeout=poll_seconds, allowed_updates=allowed_updates),
                    request_timeout=poll_seconds + 10,
                )
            except TelegramConflictError as error:
                raise PollingConflict(str(error)) from error
            except (TelegramNetworkError, TelegramServerError, OSError, TimeoutError) as error:
                failures += 1
                if failures == 1:
                    log.warning("Telegram is unreachable (%s); retrying", type(error).__name__)
                await self._pause(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if failures:
                log.info("Telegram is reachable again")
                failures = 0
            if not updates:
                continue
            payloads = [u.model_dump(mode="json", by_alias=True, exclude_none=True) for u in updates]
            stored = False
            waited = 0
            while not stored and not self.stopping.is_set():
                try:
                    await self.accept(payloads)
                    stored = True
                except Exception as error:
                    if not is_unavailable(error):
                        raise
                    waited += 1
                    if waited == 1:
                        log.warning("cannot store updates: the database is unavailable (%s); retrying",
                                    type(error).__name__)
                    await self._pause(min(5.0, 0.25 * 2 ** min(waited, 5)))
            if stored:
                offset = updates[-1].update_id + 1

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass


def webhook_handler(inbox: Inbox, secret: str | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler for Telegram's webhook: the update is stored before the 200. The database unavailable
    or the process stopping: 503, and Telegram delivers it again later."""

    async def handle(request: web.Request) -> web.Response:
        if secret is not None and not secrets.compare_digest(
            request.headers.get("X-Telegram-Bot-Api-Secret-Token", ""), secret
        ):
            return web.Response(status=401)
        if inbox.stopping.is_set():
            return web.Response(status=503)
        try:
            payload = await request.json()
            int(payload["update_id"])
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400)
        try:
            await inbox.accept([payload])
        except Exception as error:
            log.warning("update %s not stored (%s): Telegram will send it again", payload.get("update_id"),
                        type(error).__name__)
            return web.Response(status=503)
        return web.Response(status=200)

    return handle
