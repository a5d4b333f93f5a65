"""Earning points by taking part, within daily caps: chat messages (judged in batches by `ChatDesk`), showcase
posts (晒单, with a moderator's decision) and daily-topic answers. Check-ins earn through models.checkin; every
award is a ledger entry (models.points.ledger).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Integer,
    String,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import ReturningInsert, Update
from sqlmodel import Field, SQLModel

from models.batching import GroupDesk
from models.clock import local_day
from models.db import BigIntKey, UTCDateTime, dialect_insert, insert, is_postgres, long_running, transaction, utcnow
from models.groups import Group
from models.points.ledger import KEY_MAX, Award, LedgerResult, PointsEntry, _apply, _duplicate, _with_tiers, award_many
from models.points.rules import PointsRules, load_group, rules_of

# -- tables ----------------------------------------------------------------------------------------------------



class PointsDailyCounter(SQLModel, table=True):
    """Points a member earned of one kind on one local day: what the daily caps are enforced on."""

    __tablename__ = "points_daily"
    __table_args__ = (CheckConstraint("earned >= 0", name="earned_not_negative"),)

    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    )
    user_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False, index=True))
    kind: str = Field(sa_column=Column(String(16), primary_key=True))
    day: date = Field(sa_column=Column(Date, primary_key=True, index=True))
    earned: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))



class ChatAwardState(SQLModel, table=True):
    """When a member last earned chat points, and a hash of that message (never its text)."""

    __tablename__ = "points_chat_state"

    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    )
    user_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False, index=True))
    last_award_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    last_fingerprint: str = Field(default="", sa_column=Column(String(64), nullable=False, default=""))



class ShowcaseDecision(SQLModel, table=True):
    """A moderator's approval or rejection of one showcase photo: decided once, whoever presses first."""

    __tablename__ = "showcase_decisions"

    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True))
    message_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    approved: bool = Field(nullable=False)
    moderator_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True, index=True))
    decided_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))



# -- earning rules with caps -----------------------------------------------------------------------------------

EarnStatus = Literal["awarded", "duplicate", "disabled", "too_short", "cooldown", "same_text", "capped"]


@dataclass(frozen=True, slots=True)
class EarnResult:
    """What an activity earned. `points` > 0 only when status == "awarded"; `ledger` is set for awarded and
    duplicate (the earlier entry)."""

    status: EarnStatus
    points: int = 0
    ledger: LedgerResult | None = None

    @property
    def awarded(self) -> bool:
        return self.status == "awarded"


async def _take_cap(
    session: AsyncSession, group_id: int, user_id: int, kind: str, day: date, amount: int, cap: int
) -> bool:
    """Count `amount` against the member's daily cap for `kind`; False (nothing counted) if it would exceed."""
    await session.execute(
        insert(session, PointsDailyCounter)
        .values(group_id=group_id, user_id=user_id, kind=kind, day=day, earned=0)
        .on_conflict_do_nothing()
    )
    row = (
        await session.execute(
            update(PointsDailyCounter)
            .where(
                PointsDailyCounter.group_id == group_id,  # type: ignore[arg-type]
                PointsDailyCounter.user_id == user_id,  # type: ignore[arg-type]
                PointsDailyCounter.kind == kind,  # type: ignore[arg-type]
                PointsDailyCounter.day == day,  # type: ignore[arg-type]
                PointsDailyCounter.earned + amount <= cap,  # type: ignore[operator]
            )
            .values(earned=PointsDailyCounter.earned + amount)
            .returning(PointsDailyCounter.earned)  # type: ignore[arg-type]
        )
    ).first()
    return row is not None


async def _capped_award(
    session: AsyncSession,
    group: Group,
    rules: PointsRules,
    user_id: int,
    kind: str,
    amount: int,
    cap: int,
    key: str,
    now: datetime,
    reference: str | None = None,
) -> EarnResult:
    assert group.id is not None
    if await session.scalar(select(PointsEntry.id).where(PointsEntry.key == key)) is not None:  # type: ignore[call-overload]
        return EarnResult("duplicate", 0, await _duplicate(session, key))
    if not await _take_cap(session, group.id, user_id, kind, local_day(now, group.timezone), amount, cap):
        return EarnResult("capped")
    result = await _apply(session, group.id, user_id, amount, kind, key, reference=reference, actor_id=None, now=now)
    if not result.applied:  # a concurrent delivery of the same key won: give back what we counted
        counter = PointsDailyCounter.__table__.c  # type: ignore[attr-defined]
        await session.execute(
            update(PointsDailyCounter)
            .where(
                counter.group_id == group.id,
                counter.user_id == user_id,
                counter.kind == kind,
                counter.day == local_day(now, group.timezone),
            )
            .values(earned=counter.earned - amount)
        )
        return EarnResult("duplicate", 0, result)
    return EarnResult("awarded", amount, _with_tiers(result, rules))


async def award_chat(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    text_length: int,
    fingerprint: str,
    *,
    now: datetime | None = None,
    key: str | None = None,
) -> EarnResult:
    """Chat points for a message of `text_length` characters whose normalized text hashes to `fingerprint`.

    Earns rules.chat_points unless: the message is shorter than chat_min_length ("too_short"); the member
    earned chat points less than chat_cooldown_s ago ("cooldown"); the fingerprint equals that of their last
    rewarded message ("same_text"); or chat_daily_cap for the local day is reached ("capped"). Only the hash is
    stored. `key` (e.g. f"chat:{chat_id}:{message_id}") makes a redelivered message a no-op.
    """
    now = now or utcnow()
    key = key or f"chat:{group_id}:{user_id}:{now.timestamp():.6f}"
    return (await award_chat_many(session, group_id, [ChatMessage(user_id, text_length, fingerprint, key)], now=now))[0]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message that may earn chat points (see award_chat)."""

    user_id: int
    length: int
    fingerprint: str
    key: str


async def award_chat_many(
    session: AsyncSession, group_id: int, messages: Sequence[ChatMessage], *, now: datetime | None = None,
    group: Group | None = None,
) -> list[EarnResult]:
    """`award_chat` for many messages of one group in one transaction and a fixed number of statements (a busy
    group: every member's first message of the minute earns). One result per message, in order. A member's
    messages are judged in the order given (the second one within the cooldown is "cooldown").

    Exact on both engines: the members' chat states and daily counters are read locked (SQLite: the write lock
    BEGIN IMMEDIATE took; PostgreSQL: FOR UPDATE), judged, then written. `group`: its row as the caller read it."""
    now = now or utcnow()
    async with transaction(session):
        if group is None or group.id != group_id:
            group = await load_group(session, group_id)
        rules = rules_of(group)
        results: list[EarnResult | None] = [None] * len(messages)
        if rules.chat_points <= 0 or rules.chat_daily_cap <= 0:
            return [EarnResult("disabled")] * len(messages)
        pending = []
        for i, m in enumerate(messages):
            if m.length < rules.chat_min_length:
                results[i] = EarnResult("too_short")
            else:
                pending.append(i)
        used = set(await session.scalars(
            select(PointsEntry.key).where(PointsEntry.key.in_({messages[i].key[:KEY_MAX] for i in pending}))  # type: ignore[attr-defined, call-overload]
        )) if pending else set()
        for i in [i for i in pending if messages[i].key[:KEY_MAX] in used]:
            results[i] = EarnResult("duplicate", 0, await _duplicate(session, messages[i].key[:KEY_MAX]))
        pending = [i for i in pending if results[i] is None]
        while pending:  # one message per member a round; a member's next message is judged after their first
            firsts: dict[int, int] = {}
            for i in pending:
                firsts.setdefault(messages[i].user_id, i)
            round_ = sorted(firsts.values(), key=lambda i: messages[i].user_id)  # one lock order: no deadlocks
            await _chat_round(session, group, rules, messages, round_, results, now)
            pending = [i for i in pending if results[i] is None]
        done = [r for r in results if r is not None]
        assert len(done) == len(messages)
        return done


async def _chat_round(
    session: AsyncSession, group: Group, rules: PointsRules, messages: Sequence[ChatMessage], round_: list[int],
    results: list[EarnResult | None], now: datetime,
) -> None:
    """Judge and award one message each of distinct members (sorted by member)."""
    assert group.id is not None
    postgres = is_postgres(session)
    users = [messages[i].user_id for i in round_]
    fingerprints = {messages[i].user_id: messages[i].fingerprint[:64] for i in round_}
    # Cooldown and same text: a first chat state is written as claimed; an existing one is read locked, judged.
    created = set((await session.execute(
        _chat_state_insert(postgres),
        [dict(group_id=group.id, user_id=u, last_award_at=now, last_fingerprint=fingerprints[u]) for u in users],
    )).scalars())
    state = ChatAwardState.__table__.c  # type: ignore[attr-defined]
    earlier = {row.user_id: row for row in (await session.execute(
        select(state.user_id, state.last_award_at, state.last_fingerprint)
        .where(state.group_id == group.id, state.user_id.in_([u for u in users if u not in created]))
        .with_for_update()
    ))} if len(created) < len(users) else {}
    claimed = set(created)
    cutoff = now - timedelta(seconds=rules.chat_cooldown_s)
    for i in round_:
        u = messages[i].user_id
        if u in created:
            continue
        row = earlier[u]
        if row.last_award_at <= cutoff and row.last_fingerprint != fingerprints[u]:
            claimed.add(u)
        else:
            results[i] = EarnResult("same_text" if row.last_fingerprint == fingerprints[u] else "cooldown")
    if claimed - created:
        await session.execute(_chat_state_claim(), [
            dict(g=group.id, u=u, at=now, fp=fingerprints[u]) for u in sorted(claimed - created)
        ])
    # The daily cap, counted the same way: a first counter of the day is written as counted.
    amount, cap, day = rules.chat_points, rules.chat_daily_cap, local_day(now, group.timezone)
    counting = sorted(claimed) if amount <= cap else []
    counted = set((await session.execute(
        _daily_counter_insert(postgres),
        [dict(group_id=group.id, user_id=u, kind="chat", day=day, earned=amount) for u in counting],
    )).scalars()) if counting else set()
    daily = PointsDailyCounter.__table__.c  # type: ignore[attr-defined]
    rest = [u for u in counting if u not in counted]
    if rest:
        earned = dict((await session.execute(
            select(daily.user_id, daily.earned)
            .where(daily.group_id == group.id, daily.kind == "chat", daily.day == day, daily.user_id.in_(rest))
            .with_for_update()
        )).all())
        more = [u for u in rest if earned[u] + amount <= cap]
        if more:
            await session.execute(
                _daily_counter_add(), [dict(g=group.id, u=u, k="chat", d=day, n=amount) for u in more]
            )
        counted |= set(more)
    by_user = {messages[i].user_id: i for i in round_}
    for u in claimed - counted:
        results[by_user[u]] = EarnResult("capped")
    awards = [Award(u, amount, messages[by_user[u]].key[:KEY_MAX]) for u in sorted(counted)]
    ledger = await award_many(session, group.id, awards, "chat", now=now, rules=rules)
    for u in sorted(counted):
        result = ledger[u]
        if result.applied:
            results[by_user[u]] = EarnResult("awarded", amount, result)
        else:  # a concurrent delivery of the same key won: give back what was counted
            await session.execute(_daily_counter_add(), [dict(g=group.id, u=u, k="chat", d=day, n=-amount)])
            results[by_user[u]] = EarnResult("duplicate", 0, result)


class ChatDesk(GroupDesk[ChatMessage, EarnResult]):
    """Chat points through one desk per process: messages that arrive together are judged and awarded together
    (`award_chat_many`, one transaction), as check-ins are (checkin.CheckinDesk)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessionmaker, award_chat_many)

    async def award(
        self, group_id: int, message: ChatMessage, *, now: datetime | None = None, group: Group | None = None
    ) -> EarnResult:
        """`group`: the group's row as the arrival read it (saves loading it again), if the caller has it."""
        return await self.submit(group_id, message, now=now, group=group)


@functools.cache
def _chat_state_insert(postgres: bool) -> ReturningInsert[Any]:
    return dialect_insert(postgres, ChatAwardState).on_conflict_do_nothing().returning(ChatAwardState.user_id)  # type: ignore[arg-type]


@functools.cache
def _chat_state_claim() -> Update:
    state = ChatAwardState.__table__.c  # type: ignore[attr-defined]
    return (
        update(ChatAwardState.__table__)  # type: ignore[arg-type]
        .where(state.group_id == bindparam("g"), state.user_id == bindparam("u"))
        .values(last_award_at=bindparam("at"), last_fingerprint=bindparam("fp"))
    )


@functools.cache
def _daily_counter_insert(postgres: bool) -> ReturningInsert[Any]:
    return dialect_insert(postgres, PointsDailyCounter).on_conflict_do_nothing().returning(PointsDailyCounter.user_id)  # type: ignore[arg-type]


@functools.cache
def _daily_counter_add() -> Update:
    daily = PointsDailyCounter.__table__.c  # type: ignore[attr-defined]
    return (
        update(PointsDailyCounter.__table__)  # type: ignore[arg-type]
        .where(daily.group_id == bindparam("g"), daily.user_id == bindparam("u"), daily.kind == bindparam("k"),
               daily.day == bindparam("d"))
        .values(earned=daily.earned + bindparam("n"))
    )


async def award_showcase(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    *,
    key: str,
    now: datetime | None = None,
    reference: str | None = None,
) -> EarnResult:
    """Showcase (晒单) points, once per `key` (e.g. f"showcase:{chat_id}:{message_id}"), within
    showcase_daily_cap. Whether a post needs approval (showcase_auto_approve) is the caller's decision: call
    this when it is accepted."""
    now = now or utcnow()
    async with transaction(session):
        group = await load_group(session, group_id)
        rules = rules_of(group)
        if rules.showcase_points <= 0:
            return EarnResult("disabled")
        return await _capped_award(
            session,
            group,
            rules,
            user_id,
            "showcase",
            rules.showcase_points,
            rules.showcase_daily_cap,
            key,
            now,
            reference,
        )


@dataclass(frozen=True, slots=True)
class ShowcaseVerdict:
    """decided=False: someone decided this showcase before (nothing changed). earned: the award, if approved."""

    decided: bool
    earned: EarnResult | None = None


async def decide_showcase(
    session: AsyncSession,
    group_id: int,
    message_id: int,
    user_id: int,
    *,
    approve: bool,
    moderator_id: int | None,
    key: str,
    now: datetime | None = None,
) -> ShowcaseVerdict:
    """Record a moderator's decision on a showcase photo, once (a unique row per group and message); an approval
    pays award_showcase under `key` in the same transaction."""
    now = now or utcnow()
    async with transaction(session):
        claimed = await session.execute(
            insert(session, ShowcaseDecision)
            .values(group_id=group_id, message_id=message_id, user_id=user_id, approved=approve,
                    moderator_id=moderator_id, decided_at=now)
            .on_conflict_do_nothing()
        )
        if claimed.rowcount != 1:
            return ShowcaseVerdict(False)
        if not approve:
            return ShowcaseVerdict(True)
        return ShowcaseVerdict(True, await award_showcase(session, group_id, user_id, key=key, now=now))


async def award_topic(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    *,
    key: str,
    now: datetime | None = None,
    reference: str | None = None,
) -> EarnResult:
    """Daily-topic answer points, once per `key` (e.g. f"topic:{topic_id}:{user_id}"), within topic_daily_cap."""
    now = now or utcnow()
    async with transaction(session):
        group = await load_group(session, group_id)
        rules = rules_of(group)
        if rules.topic_points <= 0:
            return EarnResult("disabled")
        return await _capped_award(
            session, group, rules, user_id, "topic", rules.topic_points, rules.topic_daily_cap, key, now, reference
        )


@long_running
async def prune_daily_counters(session: AsyncSession, before: date) -> int:
    """Forget cap counters of days before `before` (they only matter on their own day). Returns rows removed."""
    async with transaction(session):
        result = await session.execute(delete(PointsDailyCounter).where(PointsDailyCounter.day < before))  # type: ignore[arg-type]
        return result.rowcount or 0
