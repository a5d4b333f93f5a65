"""Points: the append-only ledger, balances, earning rules with daily caps, tiers, badges and leaderboards.

Every change of a member's points goes through one primitive (`_apply`): the ledger entry is inserted with
ON CONFLICT (key) DO NOTHING, so a redelivered key has no second effect, and the balance moves in the same
transaction by a conditional UPDATE that can never take it below zero. Invariant, for every member of every
group: balance == sum(ledger deltas) >= 0, and lifetime_earned == sum(positive ledger deltas).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError, field_validator, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    bindparam,
    cast,
    delete,
    func,
    literal,
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


class Badge(SQLModel, table=True):
    """A badge a member holds in a group (streak_7, streak_30, streak_100, or any later feature's)."""

    __tablename__ = "badges"
    __table_args__ = (UniqueConstraint("group_id", "user_id", "badge"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    badge: str = Field(sa_column=Column(String(32), nullable=False))
    awarded_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class ShowcaseDecision(SQLModel, table=True):
    """A moderator's approval or rejection of one showcase photo: decided once, whoever presses first."""

    __tablename__ = "showcase_decisions"

    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True))
    message_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    approved: bool = Field(nullable=False)
    moderator_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True, index=True))
    decided_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


# -- errors ----------------------------------------------------------------------------------------------------


class PointsError(Exception):
    """Base of the points errors."""


class InsufficientPoints(PointsError):
    """A spend larger than the balance. Nothing was written."""

    def __init__(self, balance: int, needed: int) -> None:
        super().__init__(f"balance {balance} is less than {needed}")
        self.balance = balance
        self.needed = needed


class InvalidRule(PointsError, ValueError):
    """`set_rule` got an unknown rule name or a value it cannot accept; `reason` says which."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class GroupNotFound(PointsError, LookupError):
    """No group row with this id."""


# -- rules -----------------------------------------------------------------------------------------------------


class Tier(BaseModel):
    """A tier reached at `threshold` lifetime points. `name` None means the handler's localized default."""

    threshold: int = PydanticField(ge=0)
    key: str = PydanticField(pattern=r"^[a-z0-9_]{1,16}$")
    name: str | None = PydanticField(default=None, max_length=32)


DEFAULT_TIERS = [
    Tier(threshold=0, key="normal"),
    Tier(threshold=500, key="silver"),
    Tier(threshold=2000, key="gold"),
    Tier(threshold=10000, key="diamond"),
]
# Default display names; the handler translates these keys, custom `Tier.name`s win.
DEFAULT_TIER_NAMES = {"normal": "普通", "silver": "银卡", "gold": "金卡", "diamond": "钻石"}


class PointsRules(BaseModel):
    """A group's earning rules, stored as JSON in `Group.settings["points"]`. Every field has a default."""

    checkin_base: int = PydanticField(default=10, ge=0)
    # Bonus paid on the day the streak reaches exactly this many days.
    checkin_streak_bonus: dict[int, int] = PydanticField(default_factory=lambda: {3: 5, 7: 20, 30: 100})
    checkin_first_n: int = PydanticField(default=3, ge=0)
    checkin_first_bonus: int = PydanticField(default=5, ge=0)
    makeup_enabled: bool = False
    makeup_cost: int = PydanticField(default=30, ge=0)
    chat_points: int = PydanticField(default=1, ge=0)
    chat_cooldown_s: int = PydanticField(default=60, ge=0)
    chat_min_length: int = PydanticField(default=5, ge=0)
    chat_daily_cap: int = PydanticField(default=20, ge=0)
    showcase_points: int = PydanticField(default=20, ge=0)
    showcase_hashtag: str = PydanticField(default="#晒单", min_length=1, max_length=32)
    showcase_auto_approve: bool = False
    showcase_daily_cap: int = PydanticField(default=40, ge=0)
    topic_points: int = PydanticField(default=5, ge=0)
    topic_daily_cap: int = PydanticField(default=10, ge=0)
    tiers: list[Tier] = PydanticField(default_factory=lambda: [tier.model_copy() for tier in DEFAULT_TIERS])

    @field_validator("checkin_streak_bonus")
    @classmethod
    def _bonus_table(cls, value: dict[int, int]) -> dict[int, int]:
        for day, bonus in value.items():
            if day < 1 or bonus < 0:
                raise ValueError("streak days must be >= 1 and bonuses >= 0")
        return dict(sorted(value.items()))

    @model_validator(mode="after")
    def _tier_order(self) -> PointsRules:
        tiers = self.tiers
        if not tiers or tiers[0].threshold != 0:
            raise ValueError("the first tier must start at 0")
        if any(a.threshold >= b.threshold for a, b in zip(tiers, tiers[1:], strict=False)):
            raise ValueError("tier thresholds must increase")
        if len({tier.key for tier in tiers}) != len(tiers):
            raise ValueError("tier keys must be unique")
        return self

    def tier_for(self, lifetime_earned: int) -> str:
        """The key of the highest tier whose threshold `lifetime_earned` reaches."""
        current = self.tiers[0].key
        for tier in self.tiers:
            if lifetime_earned >= tier.threshold:
                current = tier.key
        return current

    def tier_rank(self, key: str) -> int | None:
        """The position of tier `key` (0 = lowest), or None if the group has no such tier."""
        for position, tier in enumerate(self.tiers):
            if tier.key == key:
                return position
        return None

    def tier_name(self, key: str) -> str:
        """The tier's custom name, else the default Chinese name, else the key."""
        for tier in self.tiers:
            if tier.key == key and tier.name:
                return tier.name
        return DEFAULT_TIER_NAMES.get(key, key)


RULE_NAMES = tuple(PointsRules.model_fields)
_TRUE = {"1", "true", "yes", "on", "y", "开", "是"}
_FALSE = {"0", "false", "no", "off", "n", "关", "否"}


def _parse_rule(name: str, raw: str) -> Any:
    raw = raw.strip()
    annotation = PointsRules.model_fields[name].annotation
    if annotation is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise InvalidRule(name, "expected on/off")
    if annotation is int:
        if not re.fullmatch(r"\d{1,9}", raw):
            raise InvalidRule(name, "expected a whole number >= 0")
        return int(raw)
    if annotation is str:
        return raw
    if name == "checkin_streak_bonus":
        table: dict[int, int] = {}
        if raw.lower() in ("", "none", "-", "off", "0"):
            return table
        for part in raw.replace("，", ",").split(","):
            match = re.fullmatch(r"\s*(\d{1,5})\s*[:：=]\s*(\d{1,9})\s*", part)
            if not match:
                raise InvalidRule(name, f"expected day:bonus pairs like 3:5,7:20, got {part.strip()!r}")
            day, bonus = int(match[1]), int(match[2])
            if day < 1 or day in table:
                raise InvalidRule(name, f"bad or repeated streak day {day}")
            table[day] = bonus
        return table
    if name == "tiers":
        tiers = []
        for part in raw.replace("，", ",").split(","):
            match = re.fullmatch(r"\s*([a-z0-9_]{1,16})\s*[:：=]\s*(\d{1,9})\s*(?:[:：]\s*(\S.{0,31}?))?\s*", part)
            if not match:
                raise InvalidRule(name, f"expected key:threshold[:name] like silver:500:银卡, got {part.strip()!r}")
            tiers.append({"key": match[1], "threshold": int(match[2]), "name": match[3] or None})
        return tiers
    raise InvalidRule(name, "cannot be set")  # pragma: no cover


async def load_group(session: AsyncSession, group_id: int, *, for_update: bool = False) -> Group:
    """The group row by its id (call inside a transaction). Raises GroupNotFound."""
    statement = select(Group).where(Group.id == group_id)  # type: ignore[arg-type]
    if for_update:
        statement = statement.with_for_update()
    group = await session.scalar(statement)
    if group is None:
        raise GroupNotFound(group_id)
    return group


def rules_of(group: Group) -> PointsRules:
    """The rules stored on a loaded group row (defaults for anything unset or unreadable). Shared and read-only:
    the same stored rules give the same object, parsed once (every chat message and check-in reads them).

    Settings are replaced, never changed in place (every writer builds a new dict), so a stored dict already
    seen is recognised by identity before its content is compared."""
    stored = (group.settings or _NOTHING).get("points") or _NOTHING
    seen = _SEEN_RULES.get(id(stored))
    if seen is not None and seen[0] is stored:
        return seen[1]
    key = json.dumps(stored, sort_keys=True, default=str)
    rules = _PARSED_RULES.get(key)
    if rules is None:
        try:
            rules = PointsRules.model_validate(stored)
        except ValidationError:
            rules = PointsRules()
        if len(_PARSED_RULES) >= 1024:
            _PARSED_RULES.clear()
        _PARSED_RULES[key] = rules
    if len(_SEEN_RULES) >= 1024:
        _SEEN_RULES.clear()
    _SEEN_RULES[id(stored)] = (stored, rules)  # holding the dict keeps its id from being reused
    return rules


_NOTHING: dict[str, Any] = {}
_SEEN_RULES: dict[int, tuple[dict[str, Any], PointsRules]] = {}
_PARSED_RULES: dict[str, PointsRules] = {}


async def get_rules(session: AsyncSession, group_id: int) -> PointsRules:
    """The group's points rules (defaults where the group set nothing). Raises GroupNotFound."""
    async with transaction(session):
        return rules_of(await load_group(session, group_id))


async def set_rule(session: AsyncSession, group_id: int, name: str, raw_value: str) -> PointsRules:
    """Set one rule from an admin's text and return the new rules.

    Accepted syntax: whole numbers >= 0; on/off for flags; "3:5,7:20,30:100" (or "none") for
    checkin_streak_bonus; "normal:0,silver:500:银卡,gold:2000" (key:threshold[:custom name]) for tiers.
    Raises InvalidRule(name, reason) for an unknown name or a value that fails validation; nothing is written then.
    """
    if name not in RULE_NAMES:
        raise InvalidRule(name, "unknown rule")
    value = _parse_rule(name, raw_value)
    async with transaction(session):
        group = await load_group(session, group_id, for_update=True)
        current = rules_of(group).model_dump(mode="json")
        current[name] = value
        try:
            rules = PointsRules.model_validate(current)
        except ValidationError as error:
            raise InvalidRule(name, error.errors()[0]["msg"]) from error
        settings = dict(group.settings or {})
        settings["points"] = rules.model_dump(mode="json")
        group.settings = settings
        group.updated_at = utcnow()
        return rules


@dataclass(frozen=True, slots=True)
class PinnedBoard:
    """A leaderboard message pinned in a group, refreshed in place by the scheduler."""

    group_id: int
    chat_id: int
    locale: str | None
    period: str
    message_id: int


async def set_pinned_board(session: AsyncSession, group_id: int, period: str | None, message_id: int | None) -> None:
    """Remember the group's pinned leaderboard (period None: there is none any more)."""
    async with transaction(session):
        group = await load_group(session, group_id, for_update=True)
        settings = dict(group.settings or {})
        if period is None or message_id is None:
            settings.pop("leaderboard", None)
        else:
            settings["leaderboard"] = {"period": period, "message_id": message_id}
        group.settings = settings
        group.updated_at = utcnow()


async def pinned_boards(session: AsyncSession) -> list[PinnedBoard]:
    """Every active group's pinned leaderboard."""
    async with transaction(session):
        rows = await session.execute(
            select(Group.id, Group.chat_id, Group.locale, Group.settings).where(Group.active.is_(True))  # type: ignore[attr-defined]
        )
        boards = []
        for group_id, chat_id, locale, settings in rows:
            pinned = (settings or {}).get("leaderboard")
            if isinstance(pinned, dict) and pinned.get("period") in ("week", "month", "all"):
                boards.append(PinnedBoard(group_id, chat_id, locale, pinned["period"], int(pinned["message_id"])))
        return boards


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


# -- badges ----------------------------------------------------------------------------------------------------

STREAK_BADGES = {7: "streak_7", 30: "streak_30", 100: "streak_100"}


async def grant_badge(
    session: AsyncSession, group_id: int, user_id: int, badge: str, *, now: datetime | None = None
) -> bool:
    """Give the member `badge` in the group. True if it is new, False if they already had it."""
    if not badge or len(badge) > 32:
        raise ValueError("a badge name of 1..32 characters is required")
    async with transaction(session):
        result = await session.execute(
            insert(session, Badge)
            .values(group_id=group_id, user_id=user_id, badge=badge, awarded_at=now or utcnow())
            .on_conflict_do_nothing()
        )
        return result.rowcount == 1


async def list_badges(session: AsyncSession, group_id: int, user_id: int) -> list[Badge]:
    """The member's badges in the group, oldest first."""
    async with transaction(session):
        result = await session.scalars(
            select(Badge)
            .where(Badge.group_id == group_id, Badge.user_id == user_id)  # type: ignore[arg-type]
            .order_by(Badge.awarded_at, Badge.id)  # type: ignore[arg-type]
        )
        return list(result.all())


# -- leaderboards ----------------------------------------------------------------------------------------------

Period = Literal["week", "month", "all"]


@dataclass(frozen=True, slots=True)
class RankRow:
    user_id: int
    points: int
    place: int  # 1 + the number of members with more points (ties share a place)


def period_start(period: Period, zone: str, now: datetime) -> datetime | None:
    """The UTC moment the local week (Monday 00:00) or month (1st 00:00) began in `zone`; None for "all"."""
    if period == "all":
        return None
    today = local_day(now, zone)
    if period == "week":
        first = today - timedelta(days=today.weekday())
    elif period == "month":
        first = today.replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return datetime.combine(first, time(0), tzinfo=ZoneInfo(zone))


def _scores(group_id: int, period: Period, start: datetime | None) -> Any:
    """(user_id, points) per member for the period, as a subquery. Erased people (pseudonyms < 0) are left out."""
    if period == "all":
        balances = PointsBalance.__table__.c  # type: ignore[attr-defined]
        return (
            select(balances.user_id.label("user_id"), balances.lifetime_earned.label("points"))
            .where(balances.group_id == group_id, balances.lifetime_earned > 0, balances.user_id > 0)
            .subquery()
        )
    ledger = PointsEntry.__table__.c  # type: ignore[attr-defined]
    return (
        select(ledger.user_id.label("user_id"), func.sum(ledger.delta).label("points"))
        .where(ledger.group_id == group_id, ledger.created_at >= start, ledger.delta > 0, ledger.user_id > 0)
        .group_by(ledger.user_id)
        .subquery()
    )


@long_running
async def leaderboard(
    session: AsyncSession, group_id: int, period: Period, *, now: datetime | None = None, limit: int = 10
) -> list[RankRow]:
    """The top `limit` members: points earned (positive deltas) since the local week/month began, or
    lifetime_earned for "all". Ordered by points, then user_id; ties share a place."""
    async with transaction(session):
        group = await load_group(session, group_id)
        scores = _scores(group_id, period, period_start(period, group.timezone, now or utcnow()))
        rows = (
            await session.execute(
                select(scores.c.user_id, scores.c.points)
                .order_by(scores.c.points.desc(), scores.c.user_id)
                .limit(limit)
            )
        ).all()
        out: list[RankRow] = []
        for index, (user_id, points) in enumerate(rows):
            place = out[-1].place if out and out[-1].points == points else index + 1
            out.append(RankRow(int(user_id), int(points), place))
        return out


@long_running
async def place_of(
    session: AsyncSession, group_id: int, user_id: int, period: Period, *, now: datetime | None = None
) -> RankRow | None:
    """The member's row on the `period` board (place = 1 + members with more points), None without points."""
    async with transaction(session):
        group = await load_group(session, group_id)
        scores = _scores(group_id, period, period_start(period, group.timezone, now or utcnow()))
        mine = await session.scalar(select(scores.c.points).where(scores.c.user_id == user_id))
        if not mine:
            return None
        above = await session.scalar(select(func.count()).select_from(scores).where(scores.c.points > literal(mine)))
        return RankRow(user_id, int(mine), int(above or 0) + 1)


# -- privacy ---------------------------------------------------------------------------------------------------


def row_dict(row: SQLModel) -> dict[str, Any]:
    """A row as JSON-ready data (dates and times as ISO strings), for the privacy exports."""
    dumped = row.model_dump()
    return {key: value.isoformat() if isinstance(value, datetime | date) else value for key, value in dumped.items()}


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's balances, ledger entries (their own, and those they made as an admin) and badges."""
    async with transaction(session):
        balances = await session.scalars(select(PointsBalance).where(PointsBalance.user_id == user_id))  # type: ignore[arg-type]
        entries = await session.scalars(
            select(PointsEntry)
            .where((PointsEntry.user_id == user_id) | (PointsEntry.actor_id == user_id))  # type: ignore[arg-type]
            .order_by(PointsEntry.id)  # type: ignore[arg-type]
        )
        badges = await session.scalars(select(Badge).where(Badge.user_id == user_id))  # type: ignore[arg-type]
        showcases = await session.scalars(
            select(ShowcaseDecision).where(
                (ShowcaseDecision.user_id == user_id) | (ShowcaseDecision.moderator_id == user_id)  # type: ignore[arg-type]
            )
        )
        return {
            "balances": [row_dict(row) for row in balances.all()],
            "ledger": [row_dict(row) for row in entries.all()],
            "badges": [row_dict(row) for row in badges.all()],
            "showcase_decisions": [row_dict(row) for row in showcases.all()],
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Delete the person's balances, cap counters, chat state and badges; keep their ledger entries (others'
    sums rely on them) under `pseudonym`, with keys (which may embed the id) replaced by "erased:<entry id>".

    Group sums of the ledger stay intact; the pseudonym has no balance row (it is no member).
    """
    async with transaction(session):
        for table in (PointsBalance, PointsDailyCounter, ChatAwardState, Badge):
            await session.execute(delete(table).where(table.user_id == user_id))  # type: ignore[attr-defined]
        ledger = PointsEntry.__table__.c  # type: ignore[attr-defined]
        await session.execute(
            update(PointsEntry)
            .where(ledger.user_id == user_id)
            .values(user_id=pseudonym, key=literal("erased:") + cast(ledger.id, String))
        )
        await session.execute(update(PointsEntry).where(ledger.actor_id == user_id).values(actor_id=pseudonym))
        decisions = ShowcaseDecision.__table__.c  # type: ignore[attr-defined]
        await session.execute(update(ShowcaseDecision).where(decisions.user_id == user_id).values(user_id=pseudonym))
        await session.execute(
            update(ShowcaseDecision).where(decisions.moderator_id == user_id).values(moderator_id=pseudonym)
        )
