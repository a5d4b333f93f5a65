"""What the dispatcher benchmarks share: feeding updates through a dispatcher at a fixed concurrency, and
measuring qunbot against bare aiogram in paired rounds.

A shared machine's speed drifts by tens of percent within seconds, so one measurement of each (or a
before-and-after bracket) lets that drift decide the ratio. Paired rounds put each slice of qunbot's work next to
a slice of bare aiogram's of the same size, alternating which goes first (bare, qunbot, qunbot, bare, ...), and
the ratio reported is the median of the rounds' ratios; the ratio of all rounds' times together and every round's
ratio are printed beside it, to show the spread.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiogram import Bot, Dispatcher
from aiogram.types import Update

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
# BENCH_INBOX=1: qunbot's updates go through the durable inbox as the webhook's do (bot/inbox.py): stored by
# group commit, handled in their lane, marked done; bare aiogram is fed directly as before.
THROUGH_INBOX = os.environ.get("BENCH_INBOX", "") not in ("", "0")


class ThroughInbox:
    """`feed_update` as the webhook path does it: `Inbox.accept`, then wait until the update was handled."""

    def __init__(self, dp: Dispatcher, bot: Bot) -> None:
        from bot.inbox import Inbox

        self.waiting: dict[int, asyncio.Future[None]] = {}

        async def feed(bot: Bot, update: Update, **kwargs: object) -> object:
            try:
                return await dp.feed_update(bot, update, **kwargs)
            finally:
                future = self.waiting.pop(update.update_id, None)
                if future is not None and not future.done():
                    future.set_result(None)

        self.inbox = Inbox(dp.workflow_data["sessionmaker"], dp, bot, feed=feed)

    async def feed_update(self, bot: Bot, update: Update) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting[update.update_id] = future
        await self.inbox.accept([update.model_dump(mode="json", by_alias=True, exclude_none=True)])
        await future


async def feed_all(dp: Dispatcher, bot: Bot, updates: Sequence[Update]) -> float:
    """Seconds to feed every update through `dp`, CONCURRENCY at a time (like a webhook server's requests)."""
    queue = iter(updates)

    async def worker() -> None:
        for update in queue:
            await dp.feed_update(bot, update)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


@dataclass
class Paired:
    ours: float  # seconds, all rounds
    bare: float
    ratios: list[float]  # each round's bare seconds / our seconds (= our rate / bare rate)
    size: int  # updates per round

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    def report(self) -> str:
        return (f"{self.median:.3f} (median of {len(self.ratios)} rounds of {self.size}; over all rounds together "
                f"{self.bare / self.ours:.3f})\n    rounds: {' '.join(f'{r:.2f}' for r in self.ratios)}")


async def paired_rounds(
    ours: Dispatcher, our_updates: Sequence[Update], bare: Dispatcher, bare_updates: Sequence[Update], bot: Bot,
    rounds: int = 20,
) -> Paired:
    """Feed `our_updates` through `ours` and as many of `bare_updates` through `bare`, in `rounds` paired rounds."""
    if THROUGH_INBOX:
        ours = ThroughInbox(ours, bot)  # type: ignore[assignment]
    count = len(our_updates)
    assert len(bare_updates) >= count, "bare aiogram gets as many updates as qunbot"
    size = -(-count // rounds)
    result = Paired(0.0, 0.0, [], size)
    for r, start in enumerate(range(0, count, size)):
        chunk = slice(start, start + size)
        if r % 2 == 0:
            bare_s = await feed_all(bare, bot, bare_updates[chunk])
            ours_s = await feed_all(ours, bot, our_updates[chunk])
        else:
            ours_s = await feed_all(ours, bot, our_updates[chunk])
            bare_s = await feed_all(bare, bot, bare_updates[chunk])
        result.ours, result.bare = result.ours + ours_s, result.bare + bare_s
        result.ratios.append(bare_s / ours_s)
    return result
