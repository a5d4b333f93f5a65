"""Group commit: presses and arrivals that come together are recorded together, with the same outcomes as one
at a time (ranks, streaks, points, redeliveries)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import boards, checkin, groups, points
from models.batching import Coalescer
from models.checkin import Checkin, CheckinDesk, check_in, check_in_many
from models.db import transaction
from models.groups import ArrivalDesk, Arriving, ChatSeen, Member, UserSeen, arrive_many
from models.points import PointsBalance, PointsEntry
from tests.test_checkin import D0, make_group, shanghai


async def ledger_matches_balances(session: AsyncSession, group_id: int) -> None:
    async with transaction(session):
        sums = dict((await session.execute(
            select(PointsEntry.user_id, func.sum(PointsEntry.delta)).where(PointsEntry.group_id == group_id)
            .group_by(PointsEntry.user_id))).all())
        balances = dict((await session.execute(
            select(PointsBalance.user_id, PointsBalance.balance).where(PointsBalance.group_id == group_id))).all())
    assert {u: b for u, b in balances.items() if b or u in sums} == sums


async def test_a_batch_ranks_in_order_and_checks_a_repeated_member_in_once(session: AsyncSession) -> None:
    group_id = await make_group(session)
    await check_in(session, group_id, 7, now=shanghai(D0))  # checked in earlier today
    results = await check_in_many(session, group_id, [1, 2, 7, 1, 3], now=shanghai(D0, 13))
    assert [(r.already, r.rank) for r in results] == [(False, 2), (False, 3), (True, 1), (True, 2), (False, 4)]
    assert [r.first_bonus > 0 for r in results] == [True, True, False, False, False]  # first 3; repeats earn 0
    assert results[3].points == results[0].points == 15 and results[4].points == 10
    await ledger_matches_balances(session, group_id)
    async with transaction(session):
        assert await session.scalar(select(func.count()).select_from(Checkin)) == 4


async def test_a_batch_continues_and_breaks_streaks_per_member(session: AsyncSession) -> None:
    group_id = await make_group(session)
    await check_in_many(session, group_id, [1, 2], now=shanghai(D0))
    await check_in_many(session, group_id, [1], now=shanghai(D0.replace(day=D0.day + 1)))
    day3 = await check_in_many(session, group_id, [2, 1], now=shanghai(D0.replace(day=D0.day + 2)))
    assert [(r.streak, r.best_streak) for r in day3] == [(1, 1), (3, 3)]
    assert day3[1].streak_bonus == 5  # the 3-day bonus
    await ledger_matches_balances(session, group_id)


async def test_desk_turns_a_burst_into_few_transactions(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        group_id = await make_group(session)
    desk = CheckinDesk(sessionmaker)
    batches: list[int] = []
    record = desk._record

    async def counting(group: int, presses, session):  # type: ignore[no-untyped-def]
        batches.append(len(presses))
        return await record(group, presses, session)

    desk.coalescer.run = counting
    presses = [u for u in range(1, 41)] + [5] * 10  # 40 members, one of them pressing 11 times
    results = await asyncio.gather(*(desk.check_in(group_id, u, now=shanghai(D0)) for u in presses))
    assert sum(not r.already for r in results) == 40
    assert sorted(r.rank for r in results if not r.already) == list(range(1, 41))  # type: ignore[type-var]
    assert len(batches) < 10 and sum(batches) == 50
    async with sessionmaker() as session:
        assert await checkin.today_count(session, group_id, now=shanghai(D0)) == 40
        await ledger_matches_balances(session, group_id)
        assert (await points.get_balance(session, group_id, 5)).balance == 10  # once, rank 5: no first-3 bonus


async def test_a_failing_batch_fails_each_of_its_requests_and_the_next_batch_runs() -> None:
    calls: list[list[int]] = []

    async def run(key: str, items, opened):  # type: ignore[no-untyped-def]
        assert opened is None  # no opener
        calls.append(list(items))
        if 13 in items:
            raise RuntimeError("bad batch")
        return [item * 2 for item in items]

    coalescer: Coalescer[str, int, int] = Coalescer(run)
    first = await asyncio.gather(coalescer.submit("k", 13), coalescer.submit("k", 1), return_exceptions=True)
    assert [type(r) for r in first] == [RuntimeError, RuntimeError]
    assert await asyncio.gather(coalescer.submit("k", 2), coalescer.submit("k", 3)) == [4, 6]


async def test_requests_made_while_the_connection_is_busy_join_one_batch() -> None:
    """A batch is taken when its opener has the connection, not before: no batch of one ahead of the crowd."""
    busy = asyncio.Event()
    calls: list[list[int]] = []

    @asynccontextmanager
    async def connection():  # type: ignore[no-untyped-def]
        await busy.wait()  # e.g. SQLite's one connection, busy with another desk's batch
        yield "conn"

    async def run(key: str, items, opened):  # type: ignore[no-untyped-def]
        assert opened == "conn"
        calls.append(list(items))
        return [item + 100 for item in items]

    coalescer: Coalescer[str, int, int] = Coalescer(run, opener=connection)
    first = asyncio.ensure_future(coalescer.submit("k", 1))
    await asyncio.sleep(0.01)  # the flush has started and waits for the connection
    rest = [asyncio.ensure_future(coalescer.submit("k", i)) for i in range(2, 12)]
    busy.set()
    assert await asyncio.gather(first, *rest) == list(range(101, 112))
    assert calls == [list(range(1, 12))]


async def test_no_result_is_handed_out_before_the_batch_is_committed() -> None:
    """A commit that fails (the opener's exit) fails every request of the batch: nobody hears "done" for a write
    that did not last."""

    @asynccontextmanager
    async def failing_commit():  # type: ignore[no-untyped-def]
        yield "conn"
        raise RuntimeError("disk full")

    async def run(key: str, items, opened):  # type: ignore[no-untyped-def]
        return [item for item in items]

    coalescer: Coalescer[str, int, int] = Coalescer(run, opener=failing_commit)
    outcome = await asyncio.gather(coalescer.submit("k", 1), coalescer.submit("k", 2), return_exceptions=True)
    assert [str(r) for r in outcome] == ["disk full", "disk full"]


async def test_arrivals_claim_updates_once_and_keep_memberships(session: AsyncSession) -> None:
    chat = ChatSeen(-1009000000001, "Fans", "supergroup")
    alice, bob = UserSeen(11, "Alice", "alice", "en"), UserSeen(12, "Bob")
    batch = [
        Arriving(500, chat, alice, member=True),
        Arriving(501, chat, bob, member=True),
        Arriving(500, chat, alice, member=True),  # the same update again in the same batch
        Arriving(None, None, alice, private=True),
    ]
    results = await arrive_many(session, 42, batch, default_timezone="Asia/Shanghai")
    assert [r.fresh for r in results] == [True, True, False, True]
    assert results[0].group is not None and results[0].group is results[1].group
    assert results[0].member is not None and results[0].member.user_id == 11 and results[3].member is None
    again = await arrive_many(session, 42, [Arriving(501, chat, bob, member=True)], default_timezone="UTC")
    assert again == [groups.Arrived(False)]
    user = await session.get(groups.User, 11)
    assert user is not None and user.started_at is not None and user.username == "alice"
    await groups.set_member_role(session, results[0].group, bob, "left")  # type: ignore[arg-type]
    back = await arrive_many(session, 42, [Arriving(502, chat, bob, member=True)], default_timezone="UTC")
    assert back[0].member is not None and back[0].member.role == "member"
    async with transaction(session):
        assert await session.scalar(select(func.count()).select_from(Member)) == 2


async def test_arrival_desk_shares_a_burst(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    desk = ArrivalDesk(sessionmaker, "Asia/Shanghai")
    chat = ChatSeen(-1009000000002, "Fans", "supergroup")
    arrivals = [Arriving(1000 + i, chat, UserSeen(100 + i, f"M{i}"), member=True) for i in range(30)]
    results = await asyncio.gather(*(desk.arrive(42, a) for a in arrivals + arrivals[:5]))
    assert sum(r.fresh for r in results) == 30
    async with sessionmaker() as session, session.begin():
        assert await session.scalar(select(func.count()).select_from(Member)) == 30


async def test_a_member_who_keeps_talking_is_written_once_a_minute(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    desk = ArrivalDesk(sessionmaker, "UTC", refresh_s=60.0)
    chat = ChatSeen(-1009000000003, "Fans", "supergroup")
    ann = UserSeen(300, "Ann", language_code="en")

    async def seen_at() -> tuple[object, object]:
        async with sessionmaker() as session, session.begin():
            member = await session.scalar(select(Member.last_seen_at).where(Member.user_id == 300))
            user = await session.scalar(select(groups.User.seen_at).where(groups.User.user_id == 300))
        return member, user

    first = await desk.arrive(42, Arriving(1, chat, ann, member=True, routine=True))
    written = await seen_at()
    again = await desk.arrive(42, Arriving(2, chat, ann, member=True, routine=True))
    assert again.fresh and again.member == first.member  # the snapshot recorded a moment ago
    assert await seen_at() == written  # no second write within the minute
    assert not (await desk.arrive(42, Arriving(2, chat, ann, member=True, routine=True))).fresh  # still claimed

    renamed = UserSeen(300, "Ann Lee", language_code="en")  # a change is written at once
    await desk.arrive(42, Arriving(3, chat, renamed, member=True, routine=True))
    async with sessionmaker() as session, session.begin():
        assert await session.scalar(select(groups.User.first_name).where(groups.User.user_id == 300)) == "Ann Lee"

    # Leaving is never skipped, and what the desk remembered about the membership is dropped with it.
    async with sessionmaker() as session:
        group = await groups.get_group(session, chat.chat_id)
        assert group is not None
        await groups.set_member_role(session, group, renamed, "left")
    await desk.arrive(42, Arriving(4, chat, renamed, member=False, routine=False))
    assert (chat.chat_id, 300) not in desk.recent
    back = await desk.arrive(42, Arriving(5, chat, renamed, member=True, routine=True))
    assert back.member is not None and back.member.role == "member"  # written again: a member once more

    desk.refresh_s = 0.0  # past the minute: written again
    await desk.arrive(42, Arriving(6, chat, renamed, member=True, routine=True))
    assert (await seen_at())[0] != written[0]


async def test_the_desk_reloads_a_group_only_when_its_row_changed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    desk = ArrivalDesk(sessionmaker, "UTC")
    chat = ChatSeen(-1009000000004, "Fans", "supergroup")
    ann = UserSeen(400, "Ann")
    first = await desk.arrive(42, Arriving(1, chat, ann, member=True, routine=True))
    again = await desk.arrive(42, Arriving(2, chat, ann, member=True, routine=True))
    assert again.group is first.group  # unchanged: the same snapshot

    # Changes made anywhere, by any models function, are seen by the next arrival.
    async with sessionmaker() as session:
        await groups.set_group_locale(session, chat.chat_id, "en")  # a Core UPDATE
    after_locale = (await desk.arrive(42, Arriving(3, chat, ann, member=True, routine=True))).group
    assert after_locale is not None and after_locale.locale == "en" and after_locale is not first.group
    async with sessionmaker() as session:
        await boards.set_board_settings(session, after_locale.id or 0, keywords=["到"])  # an ORM change
    after_keywords = (await desk.arrive(42, Arriving(4, chat, ann, member=True, routine=True))).group
    assert after_keywords is not None and boards.board_settings(after_keywords).keywords == ("到",)
    renamed = (await desk.arrive(42, Arriving(5, ChatSeen(chat.chat_id, "Fans 2", "supergroup"), ann,
                                                member=True, routine=True))).group
    assert renamed is not None and renamed.title == "Fans 2"
    async with sessionmaker() as session:
        stored = await groups.get_group(session, chat.chat_id)
    assert stored is not None and stored.title == "Fans 2" and stored.locale == "en"
