"""The durable inbox (models/inbox.py, bot/inbox.py): stored once, handled per chat in order, retried, set aside
when poisonous, waited out while the database is away, replayed after a crash, bounded, pruned."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from aiogram import Bot, Dispatcher
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from bot.inbox import Inbox
from models import inbox as store
from models.db import utcnow

BOT_TOKEN = "4200:TEST-TOKEN-abcdefghij"


def message(update_id: int, chat_id: int, text: str = "hi") -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {"message_id": update_id, "date": 0, "text": text,
                    "chat": {"id": chat_id, "type": "supergroup", "title": "G"},
                    "from": {"id": 7, "is_bot": False, "first_name": "Ann"}},
    }


class Recorder:
    """A stand-in for Dispatcher.feed_update that records what it handled and can fail on cue."""

    def __init__(self) -> None:
        self.handled: list[tuple[int, bool]] = []  # (update_id, replay)
        self.fail: dict[int, list[BaseException]] = {}  # update_id -> errors to raise, one per call
        self.gate: asyncio.Event | None = None

    async def __call__(self, bot: Bot, update: Any, **kwargs: Any) -> None:
        if self.gate is not None:
            await self.gate.wait()
        errors = self.fail.get(update.update_id)
        if errors:
            raise errors.pop(0)
        await asyncio.sleep(0)
        self.handled.append((update.update_id, kwargs["inbox_replay"]))


def make_inbox(sessionmaker: Any, recorder: Recorder, **options: Any) -> tuple[Inbox, Bot]:
    bot = Bot(BOT_TOKEN)
    options.setdefault("retry_s", 0.01)
    return Inbox(sessionmaker, Dispatcher(), bot, feed=recorder, **options), bot


async def settle(inbox: Inbox) -> None:
    for _ in range(500):
        if not inbox.held and not inbox.done:
            break
        await asyncio.sleep(0.01)
    await inbox.stop()


async def rows(sessionmaker: Any) -> dict[int, store.InboxUpdate]:
    async with sessionmaker() as session:
        return {r.update_id: r for r in (await session.scalars(select(store.InboxUpdate))).all()}


def unavailable() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


async def test_a_redelivered_update_is_stored_once_and_handled_once(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    recorder = Recorder()
    inbox, _ = make_inbox(sessionmaker, recorder)
    await inbox.accept([message(1, -100), message(2, -100)])
    await inbox.accept([message(2, -100), message(3, -100)])  # 2 again: Telegram did not see our confirmation
    await settle(inbox)
    assert recorder.handled == [(1, False), (2, False), (3, False)]
    stored = await rows(sessionmaker)
    assert {u: r.state for u, r in stored.items()} == {1: "done", 2: "done", 3: "done"}
    assert all(r.payload is None for r in stored.values())  # no message text kept once handled


async def test_a_persons_updates_in_a_chat_are_handled_in_order_while_chats_run_side_by_side(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    recorder = Recorder()
    recorder.fail = {2: [RuntimeError("flaky")]}  # the chat's second update needs a retry
    inbox, _ = make_inbox(sessionmaker, recorder)
    await inbox.accept([message(1, -100), message(2, -100), message(3, -100), message(4, -200)])
    await settle(inbox)
    first_chat = [u for u, _ in recorder.handled if u in (1, 2, 3)]
    assert first_chat == [1, 2, 3]
    assert recorder.handled.index((4, False)) < recorder.handled.index((2, True))  # -200 did not wait for -100


async def test_a_poison_update_is_set_aside_after_bounded_attempts_and_its_chat_goes_on(  # type: ignore[no-untyped-def]
    sessionmaker, caplog
) -> None:
    recorder = Recorder()
    recorder.fail = {2: [ValueError("bad") for _ in range(10)]}
    inbox, bot = make_inbox(sessionmaker, recorder, max_attempts=3)
    with caplog.at_level(logging.ERROR, logger="qunbot.inbox"):
        await inbox.accept([message(1, -100), message(2, -100), message(3, -100)])
        await settle(inbox)
    assert [u for u, _ in recorder.handled] == [1, 3]
    assert len(recorder.fail[2]) == 10 - 3  # tried three times, no more
    assert "update 2 set aside after 3 attempts" in caplog.text
    async with sessionmaker() as session:
        stats = await store.stats(session, bot.id)
    assert (stats.depth, stats.set_aside) == (0, 1)
    assert (await rows(sessionmaker))[2].state == "aside"


async def test_an_unavailable_database_is_waited_out_and_costs_no_attempt(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    recorder = Recorder()
    recorder.fail = {1: [unavailable() for _ in range(4)]}
    inbox, _ = make_inbox(sessionmaker, recorder, max_attempts=2)
    await inbox.accept([message(1, -100), message(2, -100)])
    await settle(inbox)
    assert [u for u, _ in recorder.handled] == [1, 2]
    assert {r.state for r in (await rows(sessionmaker)).values()} == {"done"}


async def test_what_a_crash_left_pending_is_replayed_at_start_and_counts_an_attempt(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    crashed = Recorder()
    crashed.gate = asyncio.Event()  # never opens: the process "dies" with both updates in flight
    dead, bot = make_inbox(sessionmaker, crashed)
    await dead.accept([message(1, -100), message(2, -200)])
    for task in list(dead.workers.values()):
        task.cancel()

    recorder = Recorder()
    inbox, _ = make_inbox(sessionmaker, recorder)
    assert await inbox.replay(everything=True) == 2
    await settle(inbox)
    assert sorted(recorder.handled) == [(1, True), (2, True)]
    stored = await rows(sessionmaker)
    assert [(r.state, r.attempts) for r in stored.values()] == [("done", 1), ("done", 1)]


async def test_an_update_that_kills_the_process_every_time_is_set_aside_at_the_next_start(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    dead, bot = make_inbox(sessionmaker, Recorder())
    async with sessionmaker() as session:
        await store.store(session, bot.id, [store.Received(5, -100, message(5, -100))], owner="gone")
        await session.execute(update(store.InboxUpdate).values(attempts=4))
        await session.commit()
    recorder = Recorder()
    inbox, _ = make_inbox(sessionmaker, recorder, max_attempts=5)
    await inbox.replay(everything=True)  # its fifth taking: no fifth handling
    await settle(inbox)
    assert recorder.handled == []
    assert (await rows(sessionmaker))[5].state == "aside"


async def test_a_sweeper_takes_only_what_no_live_process_holds(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot = Bot(BOT_TOKEN)
    async with sessionmaker() as session:
        await store.store(session, bot.id, [store.Received(1, -1, message(1, -1))], owner="alive")
        await store.store(session, bot.id, [store.Received(2, -2, message(2, -2))], owner="dead")
        await session.execute(
            update(store.InboxUpdate).values(taken_at=utcnow() - timedelta(minutes=5))
        )
        await session.commit()
        await store.renew(session, bot.id, owner="alive")
        taken = await store.take_pending(session, bot.id, owner="me", lease=timedelta(seconds=60))
        assert [p.update_id for p in taken] == [2]
        again = await store.take_pending(session, bot.id, owner="other", lease=timedelta(seconds=60))
        assert again == []  # just taken by "me": not taken twice


async def test_pending_updates_are_bounded(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    inbox, _ = make_inbox(sessionmaker, recorder, max_in_flight=2)
    await inbox.accept([message(1, -1), message(2, -2)])
    third = asyncio.create_task(inbox.accept([message(3, -3)]))
    await asyncio.sleep(0.2)
    assert not third.done()  # held back until one finishes
    assert 3 not in await rows(sessionmaker)
    recorder.gate.set()
    await asyncio.wait_for(third, 5)
    await settle(inbox)
    assert sorted(u for u, _ in recorder.handled) == [1, 2, 3]


async def test_handled_and_set_aside_rows_are_pruned_and_stats_count_what_waits(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    bot = Bot(BOT_TOKEN)
    async with sessionmaker() as session:
        received = [store.Received(u, -1, message(u, -1)) for u in (1, 2, 3, 4)]
        await store.store(session, bot.id, received, owner="me")
        await store.mark_done(session, bot.id, [1, 2])
        await store.set_aside(session, bot.id, 3, "ValueError: bad")
        stats = await store.stats(session, bot.id)
        assert (stats.depth, stats.set_aside) == (1, 1) and stats.oldest_age_s >= 0
        await session.execute(update(store.InboxUpdate).where(store.InboxUpdate.update_id == 1)
                              .values(finished_at=utcnow() - timedelta(days=3)))
        await session.commit()
        assert await store.prune(session) == 1
        assert await store.prune(session, aside_for=timedelta(0)) == 1
        left = sorted((await session.scalars(select(store.InboxUpdate.update_id))).all())
    assert left == [2, 4]


def test_an_update_is_ordered_by_its_chat_and_the_person_in_it() -> None:
    assert store.chat_of(message(1, -100)) == -100
    assert store.lane_of(message(1, -100)) == (-100, 7)
    press = {"update_id": 2, "callback_query": {"id": "1", "from": {"id": 9}, "chat_instance": "x",
                                                  "message": {"chat": {"id": -5}}}}
    assert store.chat_of(press) == -5 and store.lane_of(press) == (-5, 9)
    inline = {"update_id": 3, "inline_query": {"id": "1", "from": {"id": 9}, "query": "", "offset": ""}}
    assert store.chat_of(inline) == 9
