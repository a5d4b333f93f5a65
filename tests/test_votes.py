"""Votes (models): one ballot per member however often they press, changeable until closing; eligibility and
weights; the tie rule; closing claimed once; privacy. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import points, votes
from models.groups import ChatSeen, Group, Member, UserSeen, upsert_group, upsert_member
from models.votes import NewOption, VoteBallot

CHAT_IDS = itertools.count(-1004000000000, -1)
NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
CANDIDATES = [NewOption("面膜", 3990), NewOption("精华", 12900, "https://shop.example/2"), NewOption("口红", 8900)]


async def make_group(session: AsyncSession) -> int:
    group = await upsert_group(session, ChatSeen(next(CHAT_IDS), "Fans", "supergroup"), default_timezone="UTC")
    assert group.id is not None
    return group.id


async def make_vote(session: AsyncSession, group_id: int, **options: object) -> tuple[int, list[int]]:
    vote = await votes.create_vote(session, group_id, "下期团购选品", CANDIDATES, NOW + timedelta(days=2),
                                   created_by=7, now=NOW, **options)  # type: ignore[arg-type]
    assert vote.id is not None
    return vote.id, [option.id for option in await votes.get_options(session, vote.id)]  # type: ignore[misc]


async def ballots(session: AsyncSession, vote_id: int) -> int:
    return int(await session.scalar(select(func.count()).select_from(VoteBallot).where(VoteBallot.vote_id == vote_id))
               or 0)


async def test_one_ballot_per_member_changeable_until_closed(session: AsyncSession) -> None:
    gid = await make_group(session)
    vote_id, (mask, serum, lipstick) = await make_vote(session, gid)
    first = await votes.cast_ballot(session, gid, vote_id, 1, mask, now=NOW)
    again = await votes.cast_ballot(session, gid, vote_id, 1, mask, now=NOW)
    changed = await votes.cast_ballot(session, gid, vote_id, 1, serum, now=NOW)
    assert (first.status, again.status, changed.status) == ("cast", "same", "changed")
    await votes.cast_ballot(session, gid, vote_id, 2, serum, now=NOW)
    assert await ballots(session, vote_id) == 2
    tally = await votes.tally(session, vote_id)
    assert [(entry.option.name, entry.voters) for entry in tally.options] == [("面膜", 0), ("精华", 2), ("口红", 0)]
    assert tally.winner is not None and tally.winner.option.id == serum

    closed = await votes.close_vote(session, vote_id, group_id=gid, closed_by=7, now=NOW + timedelta(hours=1))
    assert closed is not None and closed.winner is not None and closed.winner.option.name == "精华"
    assert closed.vote.status == "closed" and closed.vote.winner_option_id == serum
    assert await votes.close_vote(session, vote_id, now=NOW + timedelta(hours=2)) is None  # announced once
    with pytest.raises(votes.VoteClosed):
        await votes.cast_ballot(session, gid, vote_id, 1, lipstick, now=NOW + timedelta(hours=1))
    assert (await votes.tally(session, vote_id)).options[1].voters == 2


async def test_past_deadline_refuses_and_is_due(session: AsyncSession) -> None:
    gid = await make_group(session)
    vote_id, (mask, *_rest) = await make_vote(session, gid)
    late = NOW + timedelta(days=2, seconds=1)
    with pytest.raises(votes.VoteClosed):
        await votes.cast_ballot(session, gid, vote_id, 1, mask, now=late)
    assert vote_id in await votes.due_votes(session, late)
    assert vote_id not in await votes.due_votes(session, NOW)
    other = await make_group(session)
    with pytest.raises(votes.VoteNotFound):
        await votes.cast_ballot(session, other, vote_id, 1, mask, now=NOW)


async def test_tie_rule_weighted_total_then_voters_then_listed_first(session: AsyncSession) -> None:
    gid = await make_group(session)
    await points.award(session, gid, 10, 600, "admin_give", "seed:10")  # silver
    vote_id, (mask, serum, lipstick) = await make_vote(session, gid, weights={"silver": 2})
    # serum: one silver voter (2 points); lipstick: two normal voters (2 points, more voters) -> lipstick wins.
    assert (await votes.cast_ballot(session, gid, vote_id, 10, serum, now=NOW)).weight == 2
    await votes.cast_ballot(session, gid, vote_id, 11, lipstick, now=NOW)
    await votes.cast_ballot(session, gid, vote_id, 12, lipstick, now=NOW)
    result = await votes.close_vote(session, vote_id, now=NOW)
    assert result is not None and result.winner is not None
    assert result.winner.option.id == lipstick and [entry.option.id for entry in result.tied] == [serum]

    # Equal totals and voters: the candidate listed first wins.
    vote_id, (mask, serum, lipstick) = await make_vote(session, gid)
    await votes.cast_ballot(session, gid, vote_id, 11, lipstick, now=NOW)
    await votes.cast_ballot(session, gid, vote_id, 12, serum, now=NOW)
    result = await votes.close_vote(session, vote_id, now=NOW)
    assert result is not None and result.winner is not None and result.winner.option.id == serum

    vote_id, _options = await make_vote(session, gid)
    result = await votes.close_vote(session, vote_id, now=NOW)
    assert result is not None and result.winner is None and result.vote.winner_option_id is None


async def test_eligibility_by_time_in_group_and_tier(session: AsyncSession) -> None:
    gid = await make_group(session)
    group = await session.get(Group, gid)
    assert group is not None
    for user_id in (1, 2):
        await upsert_member(session, group, UserSeen(user_id, "x"))
    await session.execute(update(Member).where(Member.user_id == 1).values(joined_at=NOW - timedelta(days=3)))
    await session.execute(update(Member).where(Member.user_id == 2).values(joined_at=NOW - timedelta(hours=1)))
    await session.commit()
    vote_id, (mask, *_rest) = await make_vote(session, gid, min_hours=24)
    assert (await votes.cast_ballot(session, gid, vote_id, 1, mask, now=NOW)).status == "cast"
    for newcomer in (2, 3):  # joined an hour ago; never seen at all
        with pytest.raises(votes.NotEligible) as refused:
            await votes.cast_ballot(session, gid, vote_id, newcomer, mask, now=NOW)
        assert refused.value.reason == "too_new" and refused.value.hours_needed == 24

    vote_id, (mask, *_rest) = await make_vote(session, gid, min_tier="gold", weights={"gold": 3})
    with pytest.raises(votes.NotEligible) as refused:
        await votes.cast_ballot(session, gid, vote_id, 1, mask, now=NOW)
    assert (refused.value.reason, refused.value.required, refused.value.tier) == ("tier", "gold", "normal")
    await points.award(session, gid, 1, 2500, "admin_give", "seed:gold")
    assert (await votes.cast_ballot(session, gid, vote_id, 1, mask, now=NOW)).weight == 3
    assert await ballots(session, vote_id) == 1


async def test_invalid_votes_are_refused(session: AsyncSession) -> None:
    gid = await make_group(session)
    later = NOW + timedelta(days=1)
    bad = [
        dict(title="x", options=CANDIDATES[:1], closes_at=later),
        dict(title="x", options=CANDIDATES * 4, closes_at=later),
        dict(title="", options=CANDIDATES, closes_at=later),
        dict(title="x", options=CANDIDATES, closes_at=NOW),
        dict(title="x", options=CANDIDATES, closes_at=NOW + timedelta(days=31)),
        dict(title="x", options=CANDIDATES, closes_at=later, min_tier="platinum"),
        dict(title="x", options=CANDIDATES, closes_at=later, weights={"gold": 0}),
    ]
    for arguments in bad:
        with pytest.raises(votes.InvalidVote):
            await votes.create_vote(session, gid, now=NOW, **arguments)  # type: ignore[arg-type]


async def test_concurrent_double_taps_make_one_ballot(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        gid = await make_group(session)
        vote_id, (mask, serum, _lipstick) = await make_vote(session, gid)

    async def tap(user_id: int, option_id: int) -> str:
        async with sessionmaker() as session:
            return (await votes.cast_ballot(session, gid, vote_id, user_id, option_id, now=NOW)).status

    statuses = await asyncio.gather(*(tap(user_id, mask) for user_id in (1, 2, 3) for _ in range(4)))
    assert statuses.count("cast") == 3 and statuses.count("same") == 9
    async with sessionmaker() as session:
        assert await ballots(session, vote_id) == 3
        assert (await votes.tally(session, vote_id)).options[0].voters == 3

    async def close() -> bool:
        async with sessionmaker() as session:
            return await votes.close_vote(session, vote_id, now=NOW) is not None

    assert sorted(await asyncio.gather(*(close() for _ in range(4)))) == [False, False, False, True]


async def test_export_and_erase_keep_the_result(session: AsyncSession) -> None:
    gid = await make_group(session)
    vote_id, (mask, *_rest) = await make_vote(session, gid)
    await votes.cast_ballot(session, gid, vote_id, 5, mask, now=NOW)
    exported = await votes.export_user_data(session, 5)
    assert exported["ballots"][0]["choice"] == "面膜" and exported["ballots"][0]["vote"] == "下期团购选品"
    assert (await votes.export_user_data(session, 7))["votes_managed"] == [{"id": vote_id, "title": "下期团购选品"}]
    await votes.erase_user_data(session, 5, pseudonym=-(2**62))
    await votes.erase_user_data(session, 7, pseudonym=-(2**62) - 1)
    assert (await votes.export_user_data(session, 5))["ballots"] == []
    assert (await votes.tally(session, vote_id)).options[0].voters == 1
    assert (await votes.get_vote(session, vote_id)).created_by == -(2**62) - 1
