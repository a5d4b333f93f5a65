"""The append-only points ledger and the balances kept beside it.

Every change of a member's points goes through one primitive (`_apply`): the ledger entry is inserted with
ON CONFLICT (key) DO NOTHING, so a redelivered key has no second effect, and the balance moves in the same
transaction by a conditional UPDATE that can never take it below zero. Invariant, for every member of every
group: balance == sum(ledger deltas) >= 0, and lifetime_earned == sum(positive ledger deltas).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import Field, SQLModel

from models.db import BigIntKey, UTCDateTime, dialect_insert, insert, is_postgres, transaction, utcnow
from models.groups import GONE_ROLES, Group, Member
from models.points.rules import PointsError, PointsRules, load_group, rules_of

KINDS = (
    "checkin",
    "makeup",
    "chat",
    "showcase",
    "topic",
    "admin_give",
    "admin_take",
    "redeem",
    "refund",
    "reversal",
    "invite",
    "lottery",
    "vote",
)
KEY_MAX = 128
REFERENCE_MAX = 128



# -- tables ----------------------------------------------------------------------------------------------------



class PointsEntry(SQLModel, table=True):
    """One change of one member's points. Never updated or deleted (erasure only pseudonymizes user_id/key)."""

    __tablename__ = "points_ledger"
    __table_args__ = (
        CheckConstraint("delta <> 0", name="delta_not_zero"),
        # history(): a member's newest entries; leaderboards: a group's entries since a moment.
        Index("ix_points_ledger_member", "group_id", "user_id", "id"),
        Index("ix_points_ledger_group_created", "group_id", "created_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    delta: int = Field(sa_column=Column(Integer, nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    reference: str | None = Field(default=None, sa_column=Column(String(REFERENCE_MAX), nullable=True))
    actor_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    key: str = Field(sa_column=Column(String(KEY_MAX), nullable=False, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))



class PointsBalance(SQLModel, table=True):
    """A member's current balance in one group, kept equal to the sum of their ledger entries."""

    __tablename__ = "points_balances"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("lifetime_earned >= 0", name="lifetime_not_negative"),
        Index("ix_points_balances_lifetime", "group_id", "lifetime_earned"),
    )

    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    )
    user_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False, index=True))
    balance: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    lifetime_earned: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))



class InsufficientPoints(PointsError):
    """A spend larger than the balance. Nothing was written."""

    def __init__(self, balance: int, needed: int) -> None:
        super().__init__(f"balance {balance} is less than {needed}")
        self.balance = balance
        self.needed = needed



# -- ledger ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerResult:
    """The outcome of one ledger operation.

    applied: True if this call wrote the entry; False if the key had been used before (nothing changed now).
    Keys are global across groups: callers build them from globally unique parts (the group, a callback id).
    Reusing a key for another member or group raises ValueError.
    delta/entry_id: the entry under this key (the earlier one for a duplicate). balance and lifetime_earned are
    the member's values after the call. tier_before/tier_after are filled by award/spend/give/take
    (equal for duplicates), so `tier_up` is reported exactly once.
    """

    applied: bool
    entry_id: int
    key: str
    group_id: int
    user_id: int
    delta: int
    balance: int
    lifetime_earned: int
    tier_before: str | None = None
    tier_after: str | None = None

    @property
    def tier_up(self) -> bool:
        return self.applied and self.tier_before is not None and self.tier_before != self.tier_after


@dataclass(frozen=True, slots=True)
class BalanceView:
    balance: int
    lifetime_earned: int
    tier: str


async def _ensure_balance_row(session: AsyncSession, group_id: int, user_id: int, now: datetime) -> None:
    await session.execute(
        insert(session, PointsBalance)
        .values(group_id=group_id, user_id=user_id, balance=0, lifetime_earned=0, updated_at=now)
        .on_conflict_do_nothing()
    )


async def _balance_row(session: AsyncSession, group_id: int, user_id: int) -> tuple[int, int]:
    row = (
        await session.execute(
            select(PointsBalance.balance, PointsBalance.lifetime_earned).where(  # type: ignore[call-overload]
                PointsBalance.group_id == group_id, PointsBalance.user_id == user_id
            )
        )
    ).first()
    return (row[0], row[1]) if row else (0, 0)


async def lock_member(session: AsyncSession, group_id: int, user_id: int, *, now: datetime | None = None) -> None:
    """Create the member's balance row if needed and lock it until the transaction ends (PostgreSQL;
    SQLite's BEGIN IMMEDIATE already serializes writers). Call inside a transaction to serialize one member's
    multi-step operations (redemptions with per-member limits)."""
    await _ensure_balance_row(session, group_id, user_id, now or utcnow())
    if is_postgres(session):
        await session.execute(
            select(PointsBalance.balance)  # type: ignore[call-overload]
            .where(PointsBalance.group_id == group_id, PointsBalance.user_id == user_id)
            .with_for_update()
        )


async def _apply(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    delta: int,
    kind: str,
    key: str,
    *,
    reference: str | None,
    actor_id: int | None,
    now: datetime | None,
) -> LedgerResult:
    """The one primitive behind every change of points (see the module docstring)."""
    if delta == 0:
        raise ValueError("a ledger entry needs a non-zero delta")
    if not key or len(key) > KEY_MAX:
        raise ValueError(f"an idempotency key of 1..{KEY_MAX} characters is required")
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    now = now or utcnow()
    async with transaction(session), session.begin_nested():
        await _ensure_balance_row(session, group_id, user_id, now)
        entry_id = await session.scalar(
            insert(session, PointsEntry)
            .values(
                group_id=group_id,
                user_id=user_id,
                delta=delta,
                kind=kind,
                reference=reference[:REFERENCE_MAX] if reference else None,
                actor_id=actor_id,
                key=key,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(PointsEntry.id)  # type: ignore[arg-type]
        )
        if entry_id is None:
            duplicate = await _duplicate(session, key)
            if (duplicate.group_id, duplicate.user_id) != (group_id, user_id):
                raise ValueError(f"idempotency key {key!r} was used for another member or group")
            return duplicate
        gain = max(delta, 0)
        row = (
            await session.execute(
                update(PointsBalance)
                .where(
                    PointsBalance.group_id == group_id,  # type: ignore[arg-type]
                    PointsBalance.user_id == user_id,  # type: ignore[arg-type]
                    PointsBalance.balance + delta >= 0,  # type: ignore[operator]
                )
                .values(
                    balance=PointsBalance.balance + delta,
                    lifetime_earned=PointsBalance.lifetime_earned + gain,
                    updated_at=now,
                )
                .returning(PointsBalance.balance, PointsBalance.lifetime_earned)  # type: ignore[arg-type]
            )
        ).first()
        if row is None:
            balance, _ = await _balance_row(session, group_id, user_id)
            raise InsufficientPoints(balance, -delta)
        return LedgerResult(True, entry_id, key, group_id, user_id, delta, row[0], row[1])


async def _duplicate(session: AsyncSession, key: str) -> LedgerResult:
    entry = (
        await session.execute(
            select(PointsEntry.id, PointsEntry.group_id, PointsEntry.user_id, PointsEntry.delta).where(  # type: ignore[call-overload]
                PointsEntry.key == key
            )
        )
    ).one()
    balance, lifetime = await _balance_row(session, entry.group_id, entry.user_id)
    return LedgerResult(False, entry.id, key, entry.group_id, entry.user_id, entry.delta, balance, lifetime)


def _with_tiers(result: LedgerResult, rules: PointsRules) -> LedgerResult:
    before = result.lifetime_earned - (max(result.delta, 0) if result.applied else 0)
    return LedgerResult(
        result.applied,
        result.entry_id,
        result.key,
        result.group_id,
        result.user_id,
        result.delta,
        result.balance,
        result.lifetime_earned,
        rules.tier_for(before),
        rules.tier_for(result.lifetime_earned),
    )


async def award(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    amount: int,
    kind: str,
    key: str,
    *,
    reference: str | None = None,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> LedgerResult:
    """Add `amount` (> 0) points under idempotency `key`. A key used before changes nothing and returns the
    earlier entry with applied=False. The result carries tier_before/tier_after (tier_up once)."""
    if amount <= 0:
        raise ValueError("award needs a positive amount")
    async with transaction(session):
        rules = rules_of(await load_group(session, group_id))
        result = await _apply(
            session, group_id, user_id, amount, kind, key, reference=reference, actor_id=actor_id, now=now
        )
        return _with_tiers(result, rules)


async def spend(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    amount: int,
    kind: str,
    key: str,
    *,
    reference: str | None = None,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> LedgerResult:
    """Take `amount` (> 0) points under idempotency `key`. Raises InsufficientPoints (writing nothing) when the
    balance is smaller; a key used before changes nothing and returns the earlier entry with applied=False."""
    if amount <= 0:
        raise ValueError("spend needs a positive amount")
    async with transaction(session):
        rules = rules_of(await load_group(session, group_id))
        result = await _apply(
            session, group_id, user_id, -amount, kind, key, reference=reference, actor_id=actor_id, now=now
        )
        return _with_tiers(result, rules)


async def reverse(
    session: AsyncSession, key: str, *, actor_id: int | None = None, now: datetime | None = None
) -> LedgerResult | None:
    """Cancel the entry with `key` by a new entry of the opposite delta, keyed f"reverse:{key}".

    None if no entry has that key. Reversing twice is a no-op (applied=False the second time). Reversing an
    earning the member has already spent raises InsufficientPoints (nothing written).
    """
    async with transaction(session):
        entry = await session.scalar(select(PointsEntry).where(PointsEntry.key == key))  # type: ignore[arg-type]
        if entry is None:
            return None
        return await _apply(
            session,
            entry.group_id,
            entry.user_id,
            -entry.delta,
            "reversal",
            f"reverse:{key}"[:KEY_MAX],
            reference=f"entry:{entry.id}",
            actor_id=actor_id,
            now=now,
        )


@dataclass(frozen=True, slots=True)
class Award:
    """One member's share of `award_many`."""

    user_id: int
    amount: int
    key: str
    reference: str | None = None


async def award_many(
    session: AsyncSession, group_id: int, awards: Sequence[Award], kind: str, *, now: datetime | None = None,
    rules: PointsRules | None = None,
) -> dict[int, LedgerResult]:
    """`award` for many members of one group in a handful of statements (a burst of check-ins).

    Same rules as `award`: a key used before changes nothing for that member; every other member gets one entry
    and a balance raised by the same transaction. Returns the result per user id (one award per member).
    `rules`: the group's rules when the caller has them (else they are loaded)."""
    if len({a.user_id for a in awards}) != len(awards) or any(a.amount <= 0 for a in awards):
        raise ValueError("award_many takes one positive award per member")
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    if not awards:
        return {}
    awards = sorted(awards, key=lambda a: a.user_id)  # one lock order for every batch: no deadlocks on PostgreSQL
    now = now or utcnow()
    async with transaction(session):
        rules = rules or rules_of(await load_group(session, group_id))
        # One compiled statement each, run for many rows (executemany), cached across batches.
        written = await session.execute(
            _ledger_insert(is_postgres(session)),
            [
                dict(group_id=group_id, user_id=a.user_id, delta=a.amount, kind=kind,
                     reference=a.reference[:REFERENCE_MAX] if a.reference else None, actor_id=None, key=a.key,
                     created_at=now)
                for a in awards
            ],
        )
        entry_ids = {row[0]: row[1] for row in written}
        applied = [a for a in awards if a.user_id in entry_ids]
        after: dict[int, tuple[int, int]] = {}
        if applied:  # a first balance row, or the balance raised: one upsert, returning the new figures
            raised = await session.execute(
                _balance_credit(is_postgres(session)),
                [dict(group_id=group_id, user_id=a.user_id, balance=a.amount, lifetime_earned=a.amount,
                      updated_at=now) for a in applied],
            )
            after = {row[0]: (row[1], row[2]) for row in raised}
        results: dict[int, LedgerResult] = {}
        for a in awards:
            if a.user_id in entry_ids:
                balance, lifetime = after[a.user_id]
                results[a.user_id] = LedgerResult(
                    True, entry_ids[a.user_id], a.key, group_id, a.user_id, a.amount, balance, lifetime,
                    rules.tier_for(lifetime - a.amount), rules.tier_for(lifetime),
                )
            else:
                duplicate = await _duplicate(session, a.key)
                balance, lifetime = await _balance_row(session, group_id, a.user_id)
                tier = rules.tier_for(lifetime)
                results[a.user_id] = LedgerResult(
                    False, duplicate.entry_id, a.key, group_id, a.user_id, duplicate.delta, balance, lifetime,
                    tier, tier,
                )
        return results


@functools.cache
def _ledger_insert(postgres: bool) -> ReturningInsert[Any]:
    statement = dialect_insert(postgres, PointsEntry).on_conflict_do_nothing(index_elements=["key"])
    return statement.returning(PointsEntry.user_id, PointsEntry.id)  # type: ignore[arg-type]


@functools.cache
def _balance_credit(postgres: bool) -> ReturningInsert[Any]:
    """Credit `balance` (and `lifetime_earned`) to a member's balance row, creating it on their first points."""
    balances = PointsBalance.__table__.c  # type: ignore[attr-defined]
    statement = dialect_insert(postgres, PointsBalance)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["group_id", "user_id"],
        set_={"balance": balances.balance + new.balance,
              "lifetime_earned": balances.lifetime_earned + new.lifetime_earned, "updated_at": new.updated_at},
    ).returning(balances.user_id, balances.balance, balances.lifetime_earned)


async def give(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    amount: int,
    reason: str | None,
    actor_id: int,
    key: str,
    *,
    now: datetime | None = None,
) -> LedgerResult:
    """An admin gives points (kind admin_give), recording who and why."""
    return await award(
        session, group_id, user_id, amount, "admin_give", key, reference=reason, actor_id=actor_id, now=now
    )


async def take(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    amount: int,
    reason: str | None,
    actor_id: int,
    key: str,
    *,
    now: datetime | None = None,
) -> LedgerResult:
    """An admin takes points (kind admin_take). Raises InsufficientPoints if the member has fewer."""
    return await spend(
        session, group_id, user_id, amount, "admin_take", key, reference=reason, actor_id=actor_id, now=now
    )


async def get_balance(session: AsyncSession, group_id: int, user_id: int) -> BalanceView:
    """The member's balance, lifetime earnings and tier key (zeros and the lowest tier if never seen)."""
    async with transaction(session):
        rules = rules_of(await load_group(session, group_id))
        balance, lifetime = await _balance_row(session, group_id, user_id)
        return BalanceView(balance, lifetime, rules.tier_for(lifetime))


async def history(session: AsyncSession, group_id: int, user_id: int, limit: int = 20) -> list[PointsEntry]:
    """The member's newest ledger entries in the group, newest first."""
    async with transaction(session):
        result = await session.scalars(
            select(PointsEntry)
            .where(PointsEntry.group_id == group_id, PointsEntry.user_id == user_id)  # type: ignore[arg-type]
            .order_by(PointsEntry.id.desc())  # type: ignore[union-attr]
            .limit(limit)
        )
        return list(result.all())


async def balances_in_groups(session: AsyncSession, user_id: int, limit: int = 30) -> list[tuple[Group, int, int]]:
    """(group, balance, lifetime_earned) in every active group the person is a member of, largest balance first
    (zeros where they never earned)."""
    async with transaction(session):
        rows = await session.execute(
            select(Group, PointsBalance.balance, PointsBalance.lifetime_earned)  # type: ignore[call-overload]
            .join(Member, Member.group_id == Group.id)  # type: ignore[arg-type]
            .outerjoin(
                PointsBalance,
                (PointsBalance.group_id == Group.id) & (PointsBalance.user_id == user_id),  # type: ignore[arg-type]
            )
            .where(Member.user_id == user_id, Member.role.not_in(GONE_ROLES), Group.active)  # type: ignore[attr-defined]
            .order_by(PointsBalance.balance.desc().nulls_last(), Group.title)  # type: ignore[union-attr]
            .limit(limit)
        )
        return [(group, balance or 0, lifetime or 0) for group, balance, lifetime in rows.all()]
