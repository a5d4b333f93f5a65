"""Lotteries (抽奖) that anyone can check: entries, a provably fair draw, prizes, claims and rerolls.

The draw (documented in the README; `qunbot verify-lottery` recomputes it without a database):

1. At creation a secret seed is made: 32 random bytes written as 64 lowercase hex characters, `seed_hex`.
   The post shows its commitment `sha256(seed_hex as ASCII).hexdigest()`; the seed itself stays secret.
2. When entries close, the entrant user ids are sorted ascending (as integers) and frozen. The list text is
   the ids in decimal joined by "\\n" (no trailing newline); `list_hash = sha256(list text as UTF-8).hexdigest()`.
3. With n entrants, for counter = 0, 1, 2, ...: h = int(sha256(f"{seed_hex}:{list_hash}:{counter}").hexdigest(),
   16). If h >= 2**256 - (2**256 % n) the value is rejected (no modulo bias); otherwise index = h % n, and if
   that index was not picked before, the entrant at that index (in the sorted list) is the next winner.
4. The first `winners` picks are the winners. Rerolls (an unclaimed prize, an admin's reroll) continue the
   same counter sequence and skip every earlier winner, so the k-th reroll is pick `winners + k`.

Anything that must happen once has a database key: one entry per (lottery, member); one draw per lottery (a
conditional UPDATE from "open"); one winner per (lottery, member) and per (lottery, position); ledger keys
for entry costs, refunds and points prizes.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel

from models import checkin, points, shop
from models.clock import local_day
from models.db import (
    BigIntKey,
    UTCDateTime,
    all_off_loop,
    dialect_insert,
    insert,
    is_postgres,
    join_off_loop,
    run_off_loop,
    transaction,
    utcnow,
)
from models.groups import Member, User

PRIZE_KINDS = ("text", "points", "coupon")
ENTRY_MODES = ("button", "keyword")
STATUSES = ("open", "drawn", "cancelled")
# A winner: delivered (points/coupon given), pending (must claim by claim_deadline), claimed, expired (did not
# claim: rerolled), rerolled (replaced by an admin), undelivered (the coupon could not be issued: see admins).
WINNER_STATUSES = ("delivered", "pending", "claimed", "expired", "rerolled", "undelivered")
MAX_WINNERS = 100
KEYWORD_MAX = 32
PRIZE_MAX = 200
SPACE = 2**256


# -- the draw, as pure functions (no database) -----------------------------------------------------------------


def new_seed() -> str:
    """A fresh secret seed: 64 lowercase hex characters (32 bytes from `secrets`)."""
    return secrets.token_hex(32)


def commitment_of(seed_hex: str) -> str:
    """What the post shows before the draw: sha256 of the seed's hex text (ASCII), hex."""
    return hashlib.sha256(seed_hex.encode("ascii")).hexdigest()


def entrant_list_text(entrant_ids: Iterable[int]) -> str:
    """The frozen entrant list: distinct ids sorted ascending, in decimal, joined by "\\n"."""
    return "\n".join(str(user_id) for user_id in sorted(set(entrant_ids)))


def list_hash_of(list_text: str) -> str:
    return hashlib.sha256(list_text.encode("utf-8")).hexdigest()


def draw_sequence(seed_hex: str, list_hash: str, n: int, *, start: int = 0) -> Iterator[tuple[int, int]]:
    """(counter, index) for every accepted value from `start` on (indices may repeat; callers skip taken ones)."""
    if n <= 0:
        return
    limit = SPACE - SPACE % n
    counter = start
    while True:
        value = int(hashlib.sha256(f"{seed_hex}:{list_hash}:{counter}".encode("ascii")).hexdigest(), 16)
        if value < limit:
            yield counter, value % n
        counter += 1


def next_picks(
    seed_hex: str, list_hash: str, n: int, count: int, *, taken: Iterable[int] = (), start: int = 0
) -> tuple[list[tuple[int, int]], int]:
    """The next `count` picks as (index, counter), skipping indices in `taken`, and the counter to continue
    from. Fewer picks when fewer entrants are left."""
    chosen = set(taken)
    count = max(0, min(count, n - len(chosen)))
    picks: list[tuple[int, int]] = []
    next_counter = start
    if count == 0:
        return picks, next_counter
    for counter, index in draw_sequence(seed_hex, list_hash, n, start=start):
        next_counter = counter + 1
        if index in chosen:
            continue
        chosen.add(index)
        picks.append((index, counter))
        if len(picks) == count:
            break
    return picks, next_counter


def pick_winners(seed_hex: str, entrant_ids: Iterable[int], count: int) -> list[int]:
    """The first `count` winners (user ids, in order) of the documented draw. Picks after the number of winners
    announced are the rerolls, in order."""
    seed_hex = seed_hex.strip().lower()
    ids = sorted(set(entrant_ids))
    list_hash = list_hash_of(entrant_list_text(ids))
    picks, _next = next_picks(seed_hex, list_hash, len(ids), count)
    return [ids[index] for index, _counter in picks]


def parse_entrant_ids(text: str) -> list[int]:
    """Ids from a published entrant list (one per line; commas and spaces also separate). Raises ValueError."""
    return [int(token) for token in text.replace(",", " ").split()]


# -- tables ----------------------------------------------------------------------------------------------------


class Lottery(SQLModel, table=True):
    """A lottery in a group. `seed` is secret until status becomes "drawn"; `commitment` is public."""

    __tablename__ = "lotteries"
    __table_args__ = (
        CheckConstraint("winners >= 1", name="winners_positive"),
        CheckConstraint("entry_cost >= 0", name="entry_cost_not_negative"),
        Index("ix_lotteries_group_status", "group_id", "status"),
        Index("ix_lotteries_status_ends", "status", "ends_at"),
        Index("ix_lotteries_group_message", "group_id", "message_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    created_by: int = Field(sa_column=Column(BigInteger, nullable=False))
    prize_kind: str = Field(sa_column=Column(String(8), nullable=False))
    prize_text: str = Field(default="", sa_column=Column(String(PRIZE_MAX), nullable=False, default=""))
    prize_points: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    prize_item_id: int | None = Field(
        default=None, sa_column=Column(BigIntKey, ForeignKey("shop_items.id", ondelete="SET NULL"), nullable=True)
    )
    winners: int = Field(default=1, sa_column=Column(Integer, nullable=False, default=1))
    entry_mode: str = Field(default="button", sa_column=Column(String(8), nullable=False, default="button"))
    keyword: str | None = Field(default=None, sa_column=Column(String(KEYWORD_MAX), nullable=True))
    ends_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    max_entrants: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    min_tier: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    min_member_hours: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    require_checkin: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    min_streak: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    entry_cost: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    claim_hours: int = Field(default=24, sa_column=Column(Integer, nullable=False, default=24))
    seed: str = Field(sa_column=Column(String(64), nullable=False))
    commitment: str = Field(sa_column=Column(String(64), nullable=False))
    status: str = Field(default="open", sa_column=Column(String(12), nullable=False, default="open"))
    entrant_count: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    list_hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    draw_counter: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    closed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class LotteryEntry(SQLModel, table=True):
    """One member's entry: at most one per (lottery, member), so a redelivered entry counts once."""

    __tablename__ = "lottery_entries"
    __table_args__ = (UniqueConstraint("lottery_id", "user_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    lottery_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("lotteries.id", ondelete="CASCADE"), nullable=False)
    )
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    cost: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class LotterySnapshot(SQLModel, table=True):
    """The frozen entrant list exactly as hashed (one write at the draw; rerolls read positions from it)."""

    __tablename__ = "lottery_snapshots"

    lottery_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("lotteries.id", ondelete="CASCADE"), primary_key=True,
                         autoincrement=False)
    )
    entrants: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class LotteryWinner(SQLModel, table=True):
    """A pick of the draw: `position` is the index in the frozen list, `pick` the 1-based order of the picks
    (winners first, then rerolls), `counter` the draw counter that produced it."""

    __tablename__ = "lottery_winners"
    __table_args__ = (
        UniqueConstraint("lottery_id", "position"),
        UniqueConstraint("lottery_id", "user_id"),
        UniqueConstraint("lottery_id", "pick"),
        Index("ix_lottery_winners_pending", "status", "claim_deadline"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    lottery_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("lotteries.id", ondelete="CASCADE"), nullable=False)
    )
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    pick: int = Field(sa_column=Column(Integer, nullable=False))
    counter: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(sa_column=Column(String(12), nullable=False))
    claim_deadline: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    claimed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    ledger_key: str | None = Field(default=None, sa_column=Column(String(points.KEY_MAX), nullable=True))
    coupon_id: int | None = Field(
        default=None, sa_column=Column(BigIntKey, ForeignKey("coupons.id", ondelete="SET NULL"), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


# -- errors ----------------------------------------------------------------------------------------------------


class LotteryError(Exception):
    """Base of the lottery refusals."""


class LotteryNotFound(LotteryError, LookupError):
    """No lottery with this id in this group."""


class LotteryClosed(LotteryError):
    """The lottery takes no more entries (drawn, cancelled, past its end, or full). `status` is the lottery's."""

    def __init__(self, status: str) -> None:
        super().__init__(f"lottery is {status}")
        self.status = status


class InvalidLottery(LotteryError, ValueError):
    """A setting out of range; `field` names it."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


Reason = Literal["tier", "member_hours", "checkin", "streak"]


class NotEligible(LotteryError):
    """The member does not meet a requirement: `reason`, what is `required` and what they `have`."""

    def __init__(self, reason: Reason, required: Any, have: Any) -> None:
        super().__init__(f"{reason}: need {required}, have {have}")
        self.reason = reason
        self.required = required
        self.have = have


class RerollRefused(LotteryError):
    """The pick cannot be rerolled: `reason` is "not_found", "not_drawn", "done" (already replaced or claimed),
    "spent" (points already spent), "coupon_used" or "no_entrants_left"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


InsufficientPoints = points.InsufficientPoints


# -- creating --------------------------------------------------------------------------------------------------


@dataclass
class LotterySpec:
    """What an admin asked for. `ends_at` and/or `max_entrants` end it (at least one is required)."""

    prize_kind: str = "text"
    prize_text: str = ""
    prize_points: int | None = None
    prize_item_id: int | None = None
    winners: int = 1
    entry_mode: str = "button"
    keyword: str | None = None
    ends_at: datetime | None = None
    max_entrants: int | None = None
    min_tier: str | None = None
    min_member_hours: int | None = None
    require_checkin: bool = False
    min_streak: int | None = None
    entry_cost: int = 0
    claim_hours: int = 24


def _check(spec: LotterySpec, now: datetime) -> None:
    def positive(name: str, value: int | None, *, most: int = 10**7) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most):
            raise InvalidLottery(name, f"must be a whole number from 1 to {most}")

    if spec.prize_kind not in PRIZE_KINDS:
        raise InvalidLottery("prize", "unknown prize kind")
    if spec.prize_kind == "text" and not 0 < len(spec.prize_text.strip()) <= PRIZE_MAX:
        raise InvalidLottery("prize", f"a prize of 1..{PRIZE_MAX} characters is required")
    if spec.prize_kind == "points" and spec.prize_points is None:
        raise InvalidLottery("prize", "points prizes need an amount")
    if spec.prize_kind == "coupon" and spec.prize_item_id is None:
        raise InvalidLottery("prize", "coupon prizes need a shop item")
    positive("prize_points", spec.prize_points, most=1_000_000)
    positive("winners", spec.winners, most=MAX_WINNERS)
    positive("max_entrants", spec.max_entrants)
    positive("min_member_hours", spec.min_member_hours, most=24 * 365 * 10)
    positive("min_streak", spec.min_streak, most=3650)
    positive("claim_hours", spec.claim_hours, most=24 * 90)
    if not isinstance(spec.entry_cost, int) or not 0 <= spec.entry_cost <= 1_000_000:
        raise InvalidLottery("entry_cost", "must be a whole number from 0 to 1000000")
    if spec.entry_mode not in ENTRY_MODES:
        raise InvalidLottery("entry", "unknown entry mode")
    if spec.entry_mode == "keyword" and not (spec.keyword and 0 < len(spec.keyword.strip()) <= KEYWORD_MAX):
        raise InvalidLottery("keyword", f"a keyword of 1..{KEYWORD_MAX} characters is required")
    if spec.ends_at is None and spec.max_entrants is None:
        raise InvalidLottery("end", "an end time or a number of entrants is required")
    if spec.ends_at is not None and spec.ends_at <= now:
        raise InvalidLottery("end", "the end must be in the future")
    if spec.max_entrants is not None and spec.max_entrants < spec.winners:
        raise InvalidLottery("max_entrants", "must be at least the number of winners")


async def create_lottery(
    session: AsyncSession, group_id: int, created_by: int, spec: LotterySpec, *, now: datetime | None = None
) -> Lottery:
    """Open a lottery with a fresh secret seed. Raises InvalidLottery, points.GroupNotFound, shop.ItemNotFound
    (coupon prize of an item not in the group's shop), InvalidLottery("min_tier") for an unknown tier."""
    now = now or utcnow()
    _check(spec, now)
    async with transaction(session):
        rules = points.rules_of(await points.load_group(session, group_id))
        if spec.min_tier is not None and rules.tier_rank(spec.min_tier) is None:
            raise InvalidLottery("min_tier", "unknown tier")
        if spec.prize_kind == "coupon":
            assert spec.prize_item_id is not None
            item = await shop.get_item(session, group_id, spec.prize_item_id)
            if not item.active:
                raise shop.ItemNotFound(spec.prize_item_id)
            spec.prize_text = spec.prize_text.strip() or item.name
        seed = new_seed()
        lottery = Lottery(
            group_id=group_id, created_by=created_by, seed=seed, commitment=commitment_of(seed), status="open",
            prize_kind=spec.prize_kind, prize_text=spec.prize_text.strip()[:PRIZE_MAX],
            prize_points=spec.prize_points if spec.prize_kind == "points" else None,
            prize_item_id=spec.prize_item_id if spec.prize_kind == "coupon" else None,
            winners=spec.winners, entry_mode=spec.entry_mode,
            keyword=spec.keyword.strip() if spec.entry_mode == "keyword" and spec.keyword else None,
            ends_at=spec.ends_at, max_entrants=spec.max_entrants, min_tier=spec.min_tier,
            min_member_hours=spec.min_member_hours, require_checkin=spec.require_checkin,
            min_streak=spec.min_streak, entry_cost=spec.entry_cost, claim_hours=spec.claim_hours,
            entrant_count=0, draw_counter=0, created_at=now,
        )  # fmt: skip
        session.add(lottery)
        await session.flush()
        return lottery


async def set_post_message(session: AsyncSession, lottery_id: int, message_id: int) -> None:
    """Remember the group post that shows the lottery (edited in place; keyword entries reply to it)."""
    async with transaction(session):
        await session.execute(update(Lottery).where(Lottery.id == lottery_id).values(message_id=message_id))  # type: ignore[arg-type]


async def _load(session: AsyncSession, lottery_id: int, *, for_update: bool = False) -> Lottery:
    statement = select(Lottery).where(Lottery.id == lottery_id).execution_options(populate_existing=True)  # type: ignore[arg-type]
    if for_update and is_postgres(session):
        statement = statement.with_for_update()
    lottery = await session.scalar(statement)
    if lottery is None:
        raise LotteryNotFound(lottery_id)
    return lottery


async def get_lottery(session: AsyncSession, group_id: int, lottery_id: int) -> Lottery:
    """The group's lottery. Raises LotteryNotFound."""
    async with transaction(session):
        lottery = await _load(session, lottery_id)
        if lottery.group_id != group_id:
            raise LotteryNotFound(lottery_id)
        return lottery


@dataclass(frozen=True, slots=True)
class LotteryPlace:
    """Where a lottery lives: what a handler or the scheduler needs to post and render."""

    lottery_id: int
    group_id: int
    chat_id: int
    timezone: str
    locale: str | None
    message_id: int | None
    rules: points.PointsRules


async def place_of(session: AsyncSession, lottery_id: int) -> LotteryPlace:
    """The lottery's group chat, time zone, locale, post and points rules. Raises LotteryNotFound."""
    async with transaction(session):
        lottery = await _load(session, lottery_id)
        group = await points.load_group(session, lottery.group_id)
        return LotteryPlace(lottery_id, lottery.group_id, group.chat_id, group.timezone, group.locale,
                            lottery.message_id, points.rules_of(group))


async def lottery_by_post(session: AsyncSession, group_id: int, message_id: int) -> Lottery | None:
    """The lottery whose group post is `message_id`, if any."""
    async with transaction(session):
        return await session.scalar(
            select(Lottery).where(Lottery.group_id == group_id, Lottery.message_id == message_id)  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        )


async def list_lotteries(session: AsyncSession, group_id: int, *, recent: int = 5) -> list[Lottery]:
    """The group's open lotteries (soonest end first), then its `recent` latest finished ones."""
    async with transaction(session):
        open_ = await session.scalars(
            select(Lottery).where(Lottery.group_id == group_id, Lottery.status == "open").order_by(Lottery.id)  # type: ignore[arg-type]
        )
        done = await session.scalars(
            select(Lottery)
            .where(Lottery.group_id == group_id, Lottery.status != "open")  # type: ignore[arg-type]
            .order_by(Lottery.id.desc())  # type: ignore[union-attr]
            .limit(recent)
        )
        return list(open_.all()) + list(done.all())


# -- entering --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryResult:
    """entered: this call added the entry (False: the member was already in). `full`: this entry reached
    max_entrants, so the lottery should be drawn now."""

    entered: bool
    count: int
    full: bool
    cost: int = 0


async def _check_requirements(session: AsyncSession, lottery: Lottery, user_id: int, now: datetime) -> None:
    group = await points.load_group(session, lottery.group_id)
    if lottery.min_tier is not None:
        rules = points.rules_of(group)
        view = await points.get_balance(session, lottery.group_id, user_id)
        required, have = rules.tier_rank(lottery.min_tier), rules.tier_rank(view.tier)
        if required is not None and (have is None or have < required):
            raise NotEligible("tier", lottery.min_tier, view.tier)
    if lottery.min_member_hours is not None:
        joined = await session.scalar(
            select(Member.joined_at).where(Member.group_id == lottery.group_id, Member.user_id == user_id)  # type: ignore[call-overload]
        )
        hours = 0 if joined is None else int((now - joined).total_seconds() // 3600)
        if joined is None or now - joined < timedelta(hours=lottery.min_member_hours):
            raise NotEligible("member_hours", lottery.min_member_hours, hours)
    if lottery.require_checkin:
        day = local_day(now, group.timezone)
        done = await session.scalar(
            select(checkin.Checkin.id).where(  # type: ignore[call-overload]
                checkin.Checkin.group_id == lottery.group_id, checkin.Checkin.user_id == user_id,
                checkin.Checkin.day == day,
            )
        )
        if done is None:
            raise NotEligible("checkin", True, False)
    if lottery.min_streak is not None:
        streak = await checkin.get_streak(session, lottery.group_id, user_id, now=now)
        if streak.current < lottery.min_streak:
            raise NotEligible("streak", lottery.min_streak, streak.current)


def entry_key(lottery_id: int, user_id: int) -> str:
    """The ledger key of an entry's cost (its refund is points.reverse of it)."""
    return f"lottery-entry:{lottery_id}:{user_id}"


async def enter_lottery(
    session: AsyncSession, lottery_id: int, user_id: int, *, now: datetime | None = None
) -> EntryResult:
    """Enter the member: requirements checked, entry cost spent (ledger key entry_key), the count raised by a
    conditional UPDATE that never passes max_entrants. Entering twice returns entered=False and changes nothing.
    Raises LotteryNotFound, LotteryClosed (drawn, cancelled, past its end, full), NotEligible,
    InsufficientPoints; nothing is written then."""
    now = now or utcnow()
    async with transaction(session), session.begin_nested():
        lottery = await _load(session, lottery_id)
        mine = await session.scalar(
            select(LotteryEntry.id).where(LotteryEntry.lottery_id == lottery_id, LotteryEntry.user_id == user_id)  # type: ignore[call-overload]
        )
        if mine is not None:
            return EntryResult(False, lottery.entrant_count, False)
        if lottery.status != "open" or (lottery.ends_at is not None and lottery.ends_at <= now):
            raise LotteryClosed(lottery.status if lottery.status != "open" else "ended")
        await _check_requirements(session, lottery, user_id, now)
        inserted = await session.scalar(
            insert(session, LotteryEntry)
            .values(lottery_id=lottery_id, user_id=user_id, cost=lottery.entry_cost, created_at=now)
            .on_conflict_do_nothing()
            .returning(LotteryEntry.id)  # type: ignore[arg-type]
        )
        if inserted is None:  # a concurrent delivery of the same entry won
            return EntryResult(False, lottery.entrant_count, False)
        columns = Lottery.__table__.c  # type: ignore[attr-defined]
        count = await session.scalar(
            update(Lottery)
            .where(
                columns.id == lottery_id, columns.status == "open",
                (columns.max_entrants.is_(None)) | (columns.entrant_count < columns.max_entrants),
            )
            .values(entrant_count=columns.entrant_count + 1)
            .returning(columns.entrant_count)
        )  # fmt: skip
        if count is None:
            raise LotteryClosed("full")
        if lottery.entry_cost > 0:
            await points.spend(
                session, lottery.group_id, user_id, lottery.entry_cost, "lottery", entry_key(lottery_id, user_id),
                reference=f"lottery:{lottery_id}", now=now,
            )  # fmt: skip
        full = lottery.max_entrants is not None and count >= lottery.max_entrants
        return EntryResult(True, int(count), full, lottery.entry_cost)


async def is_entered(session: AsyncSession, lottery_id: int, user_id: int) -> bool:
    async with transaction(session):
        return (
            await session.scalar(
                select(LotteryEntry.id).where(LotteryEntry.lottery_id == lottery_id, LotteryEntry.user_id == user_id)  # type: ignore[call-overload]
            )
        ) is not None


# -- drawing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WinnerView:
    user_id: int
    name: str
    pick: int
    status: str
    claim_deadline: datetime | None
    coupon_code: str | None = None


@dataclass(frozen=True, slots=True)
class DrawResult:
    """A finished draw: the published values (seed revealed) and the winners in pick order."""

    lottery: Lottery
    list_text: str
    winners: list[WinnerView] = field(default_factory=list)

    @property
    def entrants(self) -> int:
        return self.lottery.entrant_count


def _prize_key(lottery_id: int, position: int) -> str:
    return f"lottery-prize:{lottery_id}:{position}"


async def _add_winner(
    session: AsyncSession, lottery: Lottery, user_id: int, position: int, pick: int, counter: int, now: datetime
) -> None:
    """Store a pick and hand over its prize: points and coupons at once, other prizes by a claim button."""
    assert lottery.id is not None
    key = _prize_key(lottery.id, position)
    values: dict[str, Any] = {
        "lottery_id": lottery.id, "user_id": user_id, "position": position, "pick": pick, "counter": counter,
        "created_at": now, "status": "delivered", "ledger_key": None, "coupon_id": None, "claim_deadline": None,
    }  # fmt: skip
    if user_id < 0:  # an erased person (pseudonym): nobody can receive or claim
        values["status"] = "expired"
    elif lottery.prize_kind == "points":
        assert lottery.prize_points is not None
        await points.award(
            session, lottery.group_id, user_id, lottery.prize_points, "lottery", key,
            reference=f"lottery:{lottery.id}", now=now,
        )  # fmt: skip
        values["ledger_key"] = key
    elif lottery.prize_kind == "coupon":
        try:
            async with session.begin_nested():
                coupon = await shop.grant_coupon(
                    session, lottery.group_id, user_id, lottery.prize_item_id or 0, key=key, now=now
                )
            values["coupon_id"] = coupon.id
        except (shop.OutOfStock, shop.ItemNotFound):
            values["status"] = "undelivered"
    else:
        values["status"] = "pending"
        values["claim_deadline"] = now + timedelta(hours=lottery.claim_hours)
    await session.execute(insert(session, LotteryWinner).values(**values))


async def winners_of(session: AsyncSession, lottery_id: int) -> list[WinnerView]:
    """Every pick of the lottery in order, with display names (and coupon codes for coupon prizes)."""
    async with transaction(session):
        rows = (
            await session.execute(
                select(LotteryWinner, User.first_name, User.username, shop.Coupon.code)
                .join(User, User.user_id == LotteryWinner.user_id, isouter=True)  # type: ignore[arg-type]
                .join(shop.Coupon, shop.Coupon.id == LotteryWinner.coupon_id, isouter=True)  # type: ignore[arg-type]
                .where(LotteryWinner.lottery_id == lottery_id)  # type: ignore[arg-type]
                .order_by(LotteryWinner.pick)  # type: ignore[arg-type]
                .execution_options(populate_existing=True)
            )
        ).all()
        return [
            WinnerView(row.user_id, first or (f"@{username}" if username else "—"), row.pick, row.status,
                       row.claim_deadline, code)
            for row, first, username, code in rows
        ]  # fmt: skip


async def due_lotteries(session: AsyncSession, *, now: datetime | None = None) -> list[int]:
    """Open lotteries whose end time has come (ids, oldest first)."""
    async with transaction(session):
        ids = await session.scalars(
            select(Lottery.id)  # type: ignore[call-overload]
            .where(Lottery.status == "open", Lottery.ends_at.is_not(None), Lottery.ends_at <= (now or utcnow()))  # type: ignore[union-attr]
            .order_by(Lottery.id)
        )
        return [int(i) for i in ids.all()]


async def draw_lottery(
    session: AsyncSession, lottery_id: int, *, now: datetime | None = None, force: bool = False
) -> DrawResult | None:
    """Close entries and draw, exactly once: status goes "open" -> "drawn" by a conditional UPDATE (only when
    the end time has come or the lottery is full, or `force` for an admin's early draw). The entrants are
    frozen (list text stored and hashed), winners picked as the module docstring says and their prizes handed
    over, all in one transaction. None if someone else drew it, it was cancelled, or it is not due."""
    now = now or utcnow()
    async with transaction(session):
        columns = Lottery.__table__.c  # type: ignore[attr-defined]
        conditions = [columns.id == lottery_id, columns.status == "open"]
        if not force:
            conditions.append((columns.ends_at <= now) | (columns.entrant_count >= columns.max_entrants))
        claimed = await session.scalar(
            update(Lottery)
            .where(*conditions)
            .values(status="drawn", closed_at=now)
            .returning(columns.id)
        )
        if claimed is None:
            return None
        lottery = await _load(session, lottery_id)
        ids, text, list_hash = await run_off_loop(session, partial(_freeze_entrants, lottery_id=lottery_id))
        picks, next_counter = next_picks(lottery.seed, list_hash, len(ids), lottery.winners)
        for pick, (index, counter) in enumerate(picks, start=1):
            await _add_winner(session, lottery, ids[index], index, pick, counter, now)
        await session.execute(
            update(Lottery)
            .where(columns.id == lottery_id)
            .values(list_hash=list_hash, draw_counter=next_counter, entrant_count=len(ids))
        )
        lottery = await _load(session, lottery_id)
        return DrawResult(lottery, text, await winners_of(session, lottery_id))


def _freeze_entrants(session: Session, lottery_id: int) -> tuple[list[int], str, str]:
    """The entrant ids in order, their list text and its hash, the text stored as the lottery's snapshot. The
    draw's long part (100,000 entrants: reading, joining, hashing), so it runs off the event loop."""
    entries = LotteryEntry.__table__.c  # type: ignore[attr-defined]
    ordered = select(entries.user_id).where(entries.lottery_id == lottery_id).order_by(entries.user_id)
    ids = all_off_loop(session.scalars(ordered))
    text = join_off_loop("\n", ids)
    session.execute(dialect_insert(is_postgres(session), LotterySnapshot).values(lottery_id=lottery_id,
                                                                                 entrants=text))
    return ids, text, list_hash_of(text)


async def entrant_list(session: AsyncSession, lottery_id: int) -> str | None:
    """The frozen entrant list text of a drawn lottery (what list_hash hashes), None before the draw."""
    async with transaction(session):
        return await session.scalar(
            select(LotterySnapshot.entrants).where(LotterySnapshot.lottery_id == lottery_id)  # type: ignore[call-overload]
        )


# -- rerolls and claims ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RerollResult:
    lottery: Lottery
    replaced: WinnerView
    new: WinnerView | None  # None when every entrant has already won


async def _view(session: AsyncSession, lottery_id: int, pick: int) -> WinnerView:
    return next(view for view in await winners_of(session, lottery_id) if view.pick == pick)


async def _replace(session: AsyncSession, lottery: Lottery, replaced_pick: int, now: datetime) -> RerollResult:
    """Pick the next winner of the same sequence, skipping every earlier pick (call with the lottery locked)."""
    assert lottery.id is not None and lottery.list_hash is not None
    text = await entrant_list(session, lottery.id) or ""
    ids = [int(line) for line in text.split("\n") if line]
    rows = (await session.execute(
        select(LotteryWinner.position, func.max(LotteryWinner.pick))  # type: ignore[call-overload]
        .where(LotteryWinner.lottery_id == lottery.id).group_by(LotteryWinner.position)
    )).all()  # fmt: skip
    taken = {position for position, _ in rows}
    last_pick = max((pick for _, pick in rows), default=0)
    picks, next_counter = next_picks(lottery.seed, lottery.list_hash, len(ids), 1, taken=taken,
                                     start=lottery.draw_counter)
    new = None
    if picks:
        index, counter = picks[0]
        await _add_winner(session, lottery, ids[index], index, last_pick + 1, counter, now)
        columns = Lottery.__table__.c  # type: ignore[attr-defined]
        await session.execute(update(Lottery).where(columns.id == lottery.id).values(draw_counter=next_counter))
        new = await _view(session, lottery.id, last_pick + 1)
    return RerollResult(await _load(session, lottery.id), await _view(session, lottery.id, replaced_pick), new)


async def reroll(
    session: AsyncSession, group_id: int, lottery_id: int, pick: int, *, actor_id: int | None = None,
    now: datetime | None = None,
) -> RerollResult:
    """An admin replaces pick number `pick` (as shown in the result) with the next winner of the sequence.
    A delivered points prize is reversed and a coupon cancelled first. Raises LotteryNotFound,
    RerollRefused("not_drawn" | "not_found" | "done" | "spent" | "coupon_used")."""
    now = now or utcnow()
    async with transaction(session), session.begin_nested():
        lottery = await _load(session, lottery_id, for_update=True)
        if lottery.group_id != group_id:
            raise LotteryNotFound(lottery_id)
        if lottery.status != "drawn":
            raise RerollRefused("not_drawn")
        winner = await session.scalar(
            select(LotteryWinner).where(LotteryWinner.lottery_id == lottery_id, LotteryWinner.pick == pick)  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        )
        if winner is None:
            raise RerollRefused("not_found")
        columns = LotteryWinner.__table__.c  # type: ignore[attr-defined]
        taken = await session.scalar(
            update(LotteryWinner)
            .where(columns.id == winner.id, columns.status.in_(("delivered", "pending", "claimed", "undelivered")))
            .values(status="rerolled")
            .returning(columns.id)
        )
        if taken is None:
            raise RerollRefused("done")
        if winner.ledger_key:
            try:
                await points.reverse(session, winner.ledger_key, actor_id=actor_id, now=now)
            except points.InsufficientPoints as error:
                raise RerollRefused("spent") from error
        if winner.coupon_id is not None:
            coupon = await session.get(shop.Coupon, winner.coupon_id)
            if coupon is not None:
                if coupon.status == "used":
                    raise RerollRefused("coupon_used")
                if coupon.status == "issued":
                    await shop.cancel_coupon(session, group_id, coupon.code, actor_id or 0, now=now)
        return await _replace(session, lottery, pick, now)


async def expire_claims(session: AsyncSession, *, now: datetime | None = None) -> list[RerollResult]:
    """Winners who did not claim by their deadline lose the prize to the next pick of the same sequence
    (each expiry once, by a conditional UPDATE). Returns what changed, for the announcements."""
    now = now or utcnow()
    async with transaction(session):
        late = (
            await session.execute(
                select(LotteryWinner.id, LotteryWinner.lottery_id, LotteryWinner.pick).where(  # type: ignore[call-overload]
                    LotteryWinner.status == "pending", LotteryWinner.claim_deadline <= now
                ).order_by(LotteryWinner.id).limit(200)
            )
        ).all()
    results = []
    columns = LotteryWinner.__table__.c  # type: ignore[attr-defined]
    for winner_id, lottery_id, pick in late:
        async with transaction(session):
            lottery = await _load(session, lottery_id, for_update=True)
            taken = await session.scalar(
                update(LotteryWinner)
                .where(columns.id == winner_id, columns.status == "pending", columns.claim_deadline <= now)
                .values(status="expired")
                .returning(columns.id)
            )
            if taken is None or lottery.status != "drawn":
                continue
            results.append(await _replace(session, lottery, pick, now))
    return results


ClaimStatus = Literal["claimed", "already", "not_winner", "expired", "automatic"]


async def claim_prize(
    session: AsyncSession, lottery_id: int, user_id: int, *, now: datetime | None = None
) -> ClaimStatus:
    """A winner claims a prize that is not handed over automatically, before the deadline (once)."""
    now = now or utcnow()
    async with transaction(session):
        winner = await session.scalar(
            select(LotteryWinner).where(LotteryWinner.lottery_id == lottery_id, LotteryWinner.user_id == user_id)  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        )
        if winner is None or winner.status == "rerolled":
            return "not_winner"
        columns = LotteryWinner.__table__.c  # type: ignore[attr-defined]
        done = await session.scalar(
            update(LotteryWinner)
            .where(columns.id == winner.id, columns.status == "pending", columns.claim_deadline > now)
            .values(status="claimed", claimed_at=now)
            .returning(columns.id)
        )
        if done is not None:
            return "claimed"
        return {"claimed": "already", "delivered": "automatic"}.get(winner.status, "expired")  # type: ignore[return-value]


# -- cancelling ------------------------------------------------------------------------------------------------


async def cancel_lottery(
    session: AsyncSession, group_id: int, lottery_id: int, actor_id: int, *, now: datetime | None = None
) -> tuple[Lottery, int]:
    """Cancel an open lottery (once, by a conditional UPDATE) and refund every entry cost through the ledger
    (points.reverse of each entry's key). Returns the lottery and how many entries were refunded.
    Raises LotteryNotFound, LotteryClosed (already drawn or cancelled)."""
    now = now or utcnow()
    async with transaction(session):
        lottery = await _load(session, lottery_id)
        if lottery.group_id != group_id:
            raise LotteryNotFound(lottery_id)
        columns = Lottery.__table__.c  # type: ignore[attr-defined]
        claimed = await session.scalar(
            update(Lottery)
            .where(columns.id == lottery_id, columns.status == "open")
            .values(status="cancelled", closed_at=now)
            .returning(columns.id)
        )
        if claimed is None:
            raise LotteryClosed(lottery.status)
        payers = await session.scalars(
            select(LotteryEntry.user_id).where(LotteryEntry.lottery_id == lottery_id, LotteryEntry.cost > 0)  # type: ignore[call-overload]
        )
        refunded = 0
        for user_id in payers.all():
            result = await points.reverse(session, entry_key(lottery_id, user_id), actor_id=actor_id, now=now)
            refunded += 1 if result is not None and result.applied else 0
        return await _load(session, lottery_id), refunded


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's entries and wins, and the lotteries they created as an admin (without secret seeds)."""
    async with transaction(session):
        entries = await session.scalars(select(LotteryEntry).where(LotteryEntry.user_id == user_id))  # type: ignore[arg-type]
        wins = await session.scalars(select(LotteryWinner).where(LotteryWinner.user_id == user_id))  # type: ignore[arg-type]
        created = await session.scalars(select(Lottery).where(Lottery.created_by == user_id))  # type: ignore[arg-type]
        return {
            "entries": [points.row_dict(row) for row in entries.all()],
            "wins": [points.row_dict(row) for row in wins.all()],
            "created": [
                {k: v for k, v in points.row_dict(row).items() if k != "seed" or row.status == "drawn"}
                for row in created.all()
            ],
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Entries of open lotteries are deleted (without refund: the ledger keeps the spend under the pseudonym).
    Entries and wins of finished lotteries are shared records (counts, published lists): kept under
    `pseudonym`, also in the stored entrant lists, so list positions and later rerolls stay as they were."""
    async with transaction(session):
        open_ids = select(Lottery.id).where(Lottery.status == "open")  # type: ignore[call-overload]
        entries = LotteryEntry.__table__.c  # type: ignore[attr-defined]
        removed = await session.scalars(
            delete(LotteryEntry).where(entries.user_id == user_id, entries.lottery_id.in_(open_ids))
            .returning(entries.lottery_id)
        )  # fmt: skip
        for lottery_id in removed.all():
            await session.execute(
                update(Lottery).where(Lottery.id == lottery_id).values(entrant_count=Lottery.entrant_count - 1)  # type: ignore[arg-type]
            )
        await session.execute(update(LotteryEntry).where(entries.user_id == user_id).values(user_id=pseudonym))
        await session.execute(
            update(LotteryWinner).where(LotteryWinner.user_id == user_id).values(user_id=pseudonym)  # type: ignore[arg-type]
        )
        await session.execute(update(Lottery).where(Lottery.created_by == user_id).values(created_by=pseudonym))  # type: ignore[arg-type]
        needle = str(user_id)
        snapshots = await session.scalars(
            select(LotterySnapshot).where(LotterySnapshot.entrants.contains(needle))  # type: ignore[attr-defined]
        )
        for snapshot in snapshots.all():
            lines = snapshot.entrants.split("\n")
            if needle in lines:
                snapshot.entrants = "\n".join(str(pseudonym) if line == needle else line for line in lines)
        await session.flush()

