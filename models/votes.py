"""Votes on group-buy picks (投票选品): a title, 2 to 10 candidates, a deadline, one ballot per member.

A member's ballot is one row per (vote, member) — a unique key — whose choice may change until the vote closes,
so double taps and redelivered presses can never count twice. Optional eligibility (in the group at least
`min_hours`; at least tier `min_tier`) is checked when the ballot is cast, and the ballot's weight (tier weights,
default 1) is fixed then. Closing is claimed once by `UPDATE votes SET status='closed' WHERE status='open'`, so
the scheduler, a second scheduler and an admin's /vote close announce the winner exactly once.

Tie rule: the highest weighted total wins; on equal totals, the candidate with more voters; then the candidate
listed first. A vote nobody voted in has no winner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models import points
from models.db import BigIntKey, UTCDateTime, insert, transaction, utcnow
from models.groups import Member

MIN_OPTIONS = 2
MAX_OPTIONS = 10
MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=30)
MAX_WEIGHT = 100
TITLE_MAX = 128
NAME_MAX = 64
LINK_MAX = 512
STATUSES = ("open", "closed")


class Vote(SQLModel, table=True):
    __tablename__ = "votes"
    __table_args__ = (Index("ix_votes_status_closes", "status", "closes_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    title: str = Field(sa_column=Column(String(TITLE_MAX), nullable=False))
    status: str = Field(default="open", sa_column=Column(String(16), nullable=False, default="open"))
    created_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # The vote's post in the group (edited in place) and the photo message it replies to, if any.
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    photo_message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    min_hours: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    min_tier: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    # tier key -> ballot weight; tiers not listed weigh 1.
    weights: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    closes_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    closed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    closed_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # None: the deadline
    winner_option_id: int | None = Field(default=None, sa_column=Column(BigIntKey, nullable=True))


class VoteOption(SQLModel, table=True):
    """A candidate: a product with its price in cents and an optional link."""

    __tablename__ = "vote_options"
    __table_args__ = (
        UniqueConstraint("vote_id", "position"),
        CheckConstraint("price_cents >= 0", name="price_not_negative"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    vote_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("votes.id", ondelete="CASCADE"), nullable=False))
    position: int = Field(sa_column=Column(Integer, nullable=False))  # 1, 2, ... as listed
    name: str = Field(sa_column=Column(String(NAME_MAX), nullable=False))
    price_cents: int = Field(sa_column=Column(Integer, nullable=False))
    link: str | None = Field(default=None, sa_column=Column(String(LINK_MAX), nullable=True))


class VoteBallot(SQLModel, table=True):
    """One member's ballot in one vote (the unique key), with the choice they made last."""

    __tablename__ = "vote_ballots"
    __table_args__ = (
        UniqueConstraint("vote_id", "user_id"),
        CheckConstraint("weight >= 1", name="weight_positive"),
        Index("ix_vote_ballots_option", "vote_id", "option_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    vote_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("votes.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    option_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("vote_options.id", ondelete="CASCADE"), nullable=False)
    )
    weight: int = Field(default=1, sa_column=Column(Integer, nullable=False, default=1))
    cast_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    changed_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


# -- errors ----------------------------------------------------------------------------------------------------


class VoteError(Exception):
    """Base of the vote refusals. Nothing was written."""


class InvalidVote(VoteError, ValueError):
    """create_vote got input it cannot accept; the message says why (English, for logs)."""


class VoteNotFound(VoteError, LookupError):
    """No such vote in this group."""


class OptionNotFound(VoteError, LookupError):
    """No such candidate in this vote."""


class VoteClosed(VoteError):
    """The vote is closed (or past its deadline)."""


class NotEligible(VoteError):
    """The member may not vote: `reason` is "too_new" (with hours_needed) or "tier" (with required/tier)."""

    def __init__(self, reason: str, *, hours_needed: int = 0, required: str = "", tier: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hours_needed = hours_needed
        self.required = required
        self.tier = tier


# -- creating --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewOption:
    name: str
    price_cents: int
    link: str | None = None


async def create_vote(
    session: AsyncSession,
    group_id: int,
    title: str,
    options: list[NewOption],
    closes_at: datetime,
    *,
    created_by: int | None = None,
    min_hours: int = 0,
    min_tier: str | None = None,
    weights: dict[str, int] | None = None,
    photo_message_id: int | None = None,
    now: datetime | None = None,
) -> Vote:
    """Open a vote. Raises InvalidVote (bad title, option count, duration, tier or weights)."""
    now = now or utcnow()
    title = " ".join(title.split())
    weights = dict(weights or {})
    if not title or len(title) > TITLE_MAX:
        raise InvalidVote("title must be 1 to 128 characters")
    if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        raise InvalidVote("a vote has 2 to 10 candidates")
    for option in options:
        if not option.name or len(option.name) > NAME_MAX or option.price_cents < 0:
            raise InvalidVote(f"bad candidate {option.name!r}")
        if option.link is not None and len(option.link) > LINK_MAX:
            raise InvalidVote("link too long")
    if not MIN_DURATION <= closes_at - now <= MAX_DURATION + timedelta(minutes=1):
        raise InvalidVote("a vote lasts from 1 minute to 30 days")
    if min_hours < 0:
        raise InvalidVote("min_hours must be >= 0")
    if any(not 1 <= weight <= MAX_WEIGHT for weight in weights.values()):
        raise InvalidVote("weights are 1 to 100")
    async with transaction(session):
        rules = points.rules_of(await points.load_group(session, group_id))
        for key in [*weights, *([min_tier] if min_tier else [])]:
            if rules.tier_rank(key) is None:
                raise InvalidVote(f"unknown tier {key!r}")
        vote = Vote(
            group_id=group_id, title=title, status="open", created_by=created_by, min_hours=min_hours,
            min_tier=min_tier, weights=weights, created_at=now, closes_at=closes_at,
            photo_message_id=photo_message_id,
        )  # fmt: skip
        session.add(vote)
        await session.flush()
        assert vote.id is not None
        for position, option in enumerate(options, start=1):
            session.add(
                VoteOption(vote_id=vote.id, position=position, name=option.name, price_cents=option.price_cents,
                           link=option.link)
            )
        await session.flush()
        return vote


async def set_message(session: AsyncSession, vote_id: int, message_id: int) -> None:
    """Remember the vote's post, so its tally is edited in place."""
    async with transaction(session):
        await session.execute(update(Vote).where(Vote.id == vote_id).values(message_id=message_id))  # type: ignore[arg-type]


# -- reading ---------------------------------------------------------------------------------------------------


async def get_vote(session: AsyncSession, vote_id: int, group_id: int | None = None) -> Vote:
    """The vote (fresh from the database). Raises VoteNotFound, also when it belongs to another group."""
    async with transaction(session):
        vote = await session.scalar(
            select(Vote).where(Vote.id == vote_id).execution_options(populate_existing=True)  # type: ignore[arg-type]
        )
        if vote is None or (group_id is not None and vote.group_id != group_id):
            raise VoteNotFound(vote_id)
        return vote


async def get_options(session: AsyncSession, vote_id: int) -> list[VoteOption]:
    async with transaction(session):
        result = await session.scalars(
            select(VoteOption).where(VoteOption.vote_id == vote_id).order_by(VoteOption.position)  # type: ignore[arg-type]
        )
        return list(result.all())


async def open_votes(session: AsyncSession, group_id: int) -> list[Vote]:
    async with transaction(session):
        result = await session.scalars(
            select(Vote).where(Vote.group_id == group_id, Vote.status == "open").order_by(Vote.id)  # type: ignore[arg-type]
        )
        return list(result.all())


@dataclass(frozen=True)
class OptionTally:
    option: VoteOption
    voters: int
    total: int  # weighted


@dataclass(frozen=True)
class Tally:
    vote: Vote
    options: list[OptionTally]
    voters: int
    winner: OptionTally | None = None
    tied: list[OptionTally] = field(default_factory=list)  # candidates level on weighted total with the winner


def pick_winner(options: list[OptionTally]) -> tuple[OptionTally | None, list[OptionTally]]:
    """The tie rule: highest weighted total, then more voters, then listed first. No votes, no winner."""
    voted = [entry for entry in options if entry.voters > 0]
    if not voted:
        return None, []
    winner = min(voted, key=lambda entry: (-entry.total, -entry.voters, entry.option.position))
    tied = [entry for entry in voted if entry.total == winner.total and entry is not winner]
    return winner, tied


async def tally(session: AsyncSession, vote_id: int) -> Tally:
    """Voters and weighted totals per candidate, in listed order, and who leads (or won) by the tie rule."""
    async with transaction(session):
        vote = await get_vote(session, vote_id)
        options = await get_options(session, vote_id)
        rows = await session.execute(
            select(VoteBallot.option_id, func.count(), func.sum(VoteBallot.weight))  # type: ignore[call-overload]
            .where(VoteBallot.vote_id == vote_id)
            .group_by(VoteBallot.option_id)
        )
        counts = {option_id: (int(voters), int(total or 0)) for option_id, voters, total in rows.all()}
        entries = [OptionTally(option, *counts.get(option.id, (0, 0))) for option in options]
        winner, tied = pick_winner(entries)
        return Tally(vote, entries, sum(entry.voters for entry in entries), winner, tied)


# -- voting ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BallotResult:
    """status: "cast" (first ballot), "changed" (another candidate now), "same" (nothing changed)."""

    status: str
    option: VoteOption
    weight: int


async def _weight_and_check(session: AsyncSession, vote: Vote, user_id: int, now: datetime) -> int:
    rules = points.rules_of(await points.load_group(session, vote.group_id))
    if vote.min_hours > 0:
        joined_at = await session.scalar(
            select(Member.joined_at).where(Member.group_id == vote.group_id, Member.user_id == user_id)  # type: ignore[arg-type,call-overload]
        )
        if joined_at is None or now - joined_at < timedelta(hours=vote.min_hours):
            raise NotEligible("too_new", hours_needed=vote.min_hours)
    if not vote.min_tier and not vote.weights:
        return 1
    tier = (await points.get_balance(session, vote.group_id, user_id)).tier
    if vote.min_tier:
        required, have = rules.tier_rank(vote.min_tier), rules.tier_rank(tier)
        if required is None or have is None or have < required:
            raise NotEligible("tier", required=vote.min_tier, tier=tier)
    return int(vote.weights.get(tier, 1))


async def cast_ballot(
    session: AsyncSession, group_id: int, vote_id: int, user_id: int, option_id: int, *, now: datetime | None = None
) -> BallotResult:
    """Vote for a candidate, or change the vote. One ballot per (vote, member) whatever the number of presses.

    Raises VoteNotFound, OptionNotFound, VoteClosed, NotEligible; nothing is written then.
    """
    now = now or utcnow()
    async with transaction(session):
        # A shared lock on the vote row: ballots run side by side, but close_vote's UPDATE waits for them, and a
        # ballot after it sees status 'closed' (PostgreSQL; SQLite serializes every writer anyway).
        vote = await session.scalar(
            select(Vote)
            .where(Vote.id == vote_id, Vote.group_id == group_id)  # type: ignore[arg-type]
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        )
        if vote is None:
            raise VoteNotFound(vote_id)
        if vote.status != "open" or vote.closes_at <= now:
            raise VoteClosed(vote_id)
        option = await session.scalar(
            select(VoteOption).where(VoteOption.id == option_id, VoteOption.vote_id == vote_id)  # type: ignore[arg-type]
        )
        if option is None:
            raise OptionNotFound(option_id)
        weight = await _weight_and_check(session, vote, user_id, now)
        ballots = VoteBallot.__table__.c  # type: ignore[attr-defined]
        # Insert, else change, else nothing: each step is one statement the unique key arbitrates, so concurrent
        # presses of one member report "cast" once (PostgreSQL makes the second INSERT wait for the first).
        inserted = await session.scalar(
            insert(session, VoteBallot)
            .values(vote_id=vote_id, user_id=user_id, option_id=option_id, weight=weight, cast_at=now, changed_at=now)
            .on_conflict_do_nothing()
            .returning(ballots.id)
        )
        if inserted is not None:
            return BallotResult("cast", option, weight)
        changed = (
            await session.execute(
                update(VoteBallot)
                .where(ballots.vote_id == vote_id, ballots.user_id == user_id, ballots.option_id != option_id)
                .values(option_id=option_id, weight=weight, changed_at=now)
                .returning(ballots.id)
            )
        ).first()
        if changed is not None:
            return BallotResult("changed", option, weight)
        stored = await session.scalar(
            select(ballots.weight).where(ballots.vote_id == vote_id, ballots.user_id == user_id)
        )
        return BallotResult("same", option, int(stored or weight))


# -- closing ---------------------------------------------------------------------------------------------------


async def close_vote(
    session: AsyncSession, vote_id: int, *, group_id: int | None = None, closed_by: int | None = None,
    now: datetime | None = None,
) -> Tally | None:
    """Close the vote and record its winner. Returns the final tally to the one caller that closed it; None if it
    was already closed (someone else announces). Raises VoteNotFound for a vote not in `group_id`."""
    now = now or utcnow()
    async with transaction(session):
        await get_vote(session, vote_id, group_id)
        claimed = (
            await session.execute(
                update(Vote)
                .where(Vote.id == vote_id, Vote.status == "open")  # type: ignore[arg-type]
                .values(status="closed", closed_at=now, closed_by=closed_by)
                .returning(Vote.id)  # type: ignore[arg-type]
            )
        ).first()
        if claimed is None:
            return None
        result = await tally(session, vote_id)
        if result.winner is not None:
            await session.execute(
                update(Vote).where(Vote.id == vote_id).values(winner_option_id=result.winner.option.id)  # type: ignore[arg-type]
            )
        vote = await get_vote(session, vote_id)
        return Tally(vote, result.options, result.voters, result.winner, result.tied)


async def due_votes(session: AsyncSession, now: datetime | None = None) -> list[int]:
    """Ids of open votes whose deadline has passed (for the scheduler)."""
    async with transaction(session):
        result = await session.scalars(
            select(Vote.id).where(Vote.status == "open", Vote.closes_at <= (now or utcnow())).order_by(Vote.id)  # type: ignore[arg-type,call-overload]
        )
        return [int(vote_id) for vote_id in result.all()]


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's ballots (with the vote and candidate they chose) and the votes they opened or closed."""
    async with transaction(session):
        rows = await session.execute(
            select(VoteBallot, Vote.title, VoteOption.name)  # type: ignore[call-overload]
            .join(Vote, Vote.id == VoteBallot.vote_id)
            .join(VoteOption, VoteOption.id == VoteBallot.option_id)
            .where(VoteBallot.user_id == user_id)
            .order_by(VoteBallot.id)
        )
        ballots = [
            {"vote": title, "choice": name, **points.row_dict(ballot)} for ballot, title, name in rows.all()
        ]
        managed = await session.scalars(
            select(Vote).where((Vote.created_by == user_id) | (Vote.closed_by == user_id)).order_by(Vote.id)  # type: ignore[arg-type]
        )
        return {
            "ballots": ballots,
            "votes_managed": [{"id": vote.id, "title": vote.title} for vote in managed.all()],
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Ballots are shared records (a closed vote's result must not change): keep them under `pseudonym`."""
    async with transaction(session):
        await session.execute(update(VoteBallot).where(VoteBallot.user_id == user_id).values(user_id=pseudonym))  # type: ignore[arg-type]
        await session.execute(update(Vote).where(Vote.created_by == user_id).values(created_by=pseudonym))  # type: ignore[arg-type]
        await session.execute(update(Vote).where(Vote.closed_by == user_id).values(closed_by=pseudonym))  # type: ignore[arg-type]
