"""Group buys (拼团): a product at a group price that unlocks when enough members join before a deadline.

Invariants kept by the database:
- one entry per (group buy, member) — a unique key — so double taps and redelivered presses join once; pressing
  another quantity changes the entry's quantity;
- `sold` moves only by a conditional `UPDATE ... SET sold = sold + n WHERE status = 'open' AND sold + n <= total`
  (and a CHECK sold <= total), so concurrent joins never sell more than the total;
- success (成团) is claimed once (`succeeded_at IS NULL`), and closing once (`status = 'open'`), so each is announced
  once, even with two schedulers.
Outcome at closing (deadline, sold out, or an admin): "succeeded" if the participants then reach the minimum,
else "failed". Each entry has an unguessable order code (from `secrets`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    case,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel

from models import points
from models.db import BigIntKey, UTCDateTime, all_off_loop, insert, run_off_loop, transaction, utcnow
from models.groups import User

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud and typed by staff
PRODUCT_MAX = 128
MAX_PRICE_CENTS = 10**9  # ¥10,000,000
MAX_QUANTITY = 1_000_000
MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=60)


class GroupBuy(SQLModel, table=True):
    __tablename__ = "group_buys"
    __table_args__ = (
        CheckConstraint("sold >= 0 AND sold <= total_quantity", name="sold_within_total"),
        CheckConstraint("participants >= 0", name="participants_not_negative"),
        CheckConstraint("min_participants >= 1", name="min_participants_positive"),
        CheckConstraint("per_member_limit >= 1", name="limit_positive"),
        Index("ix_group_buys_status_deadline", "status", "deadline"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    product: str = Field(sa_column=Column(String(PRODUCT_MAX), nullable=False))
    price_cents: int = Field(sa_column=Column(Integer, nullable=False))  # the original price
    group_price_cents: int = Field(sa_column=Column(Integer, nullable=False))
    min_participants: int = Field(sa_column=Column(Integer, nullable=False))  # 成团人数
    total_quantity: int = Field(sa_column=Column(Integer, nullable=False))
    per_member_limit: int = Field(sa_column=Column(Integer, nullable=False))
    sold: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    participants: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    # open -> succeeded | failed (at closing)
    status: str = Field(default="open", sa_column=Column(String(16), nullable=False, default="open"))
    deadline: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    created_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Opened from a vote's winner: one group buy per vote, however often the button is pressed.
    vote_id: int | None = Field(default=None, sa_column=Column(BigIntKey, nullable=True, unique=True))
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    succeeded_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    closed_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class GroupBuyEntry(SQLModel, table=True):
    """One member's part in one group buy (the unique key) and their order code."""

    __tablename__ = "group_buy_entries"
    __table_args__ = (
        UniqueConstraint("groupbuy_id", "user_id"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    groupbuy_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("group_buys.id", ondelete="CASCADE"), nullable=False)
    )
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    quantity: int = Field(sa_column=Column(Integer, nullable=False))
    order_code: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    joined_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    changed_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


# -- money -----------------------------------------------------------------------------------------------------

def format_cents(cents: int) -> str:
    """3990 -> "39.90"."""
    return f"{cents // 100}.{cents % 100:02d}"


# -- errors ----------------------------------------------------------------------------------------------------


class GroupBuyError(Exception):
    """Base of the group-buy refusals. Nothing was written."""


class InvalidGroupBuy(GroupBuyError, ValueError):
    """create_groupbuy got input it cannot accept (English reason)."""


class GroupBuyNotFound(GroupBuyError, LookupError):
    """No such group buy in this group."""


class GroupBuyClosed(GroupBuyError):
    """Closed, or past its deadline."""


class OverLimit(GroupBuyError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} per member")
        self.limit = limit


class NotEnoughLeft(GroupBuyError):
    """Fewer units left than asked for."""

    def __init__(self, left: int) -> None:
        super().__init__(f"only {left} left")
        self.left = left


class NotJoined(GroupBuyError):
    """Leaving a group buy one never joined."""


# -- creating and reading --------------------------------------------------------------------------------------


async def create_groupbuy(
    session: AsyncSession,
    group_id: int,
    product: str,
    *,
    price_cents: int,
    group_price_cents: int,
    min_participants: int,
    total_quantity: int,
    per_member_limit: int,
    deadline: datetime,
    created_by: int | None = None,
    vote_id: int | None = None,
    now: datetime | None = None,
) -> tuple[GroupBuy, bool]:
    """Open a group buy. Returns (group buy, created); with `vote_id`, a second call returns the first one and
    False. Raises InvalidGroupBuy."""
    now = now or utcnow()
    product = " ".join(product.split())
    if not product or len(product) > PRODUCT_MAX:
        raise InvalidGroupBuy("product must be 1 to 128 characters")
    if not (0 <= group_price_cents <= MAX_PRICE_CENTS and 0 <= price_cents <= MAX_PRICE_CENTS):
        raise InvalidGroupBuy("bad price")
    if not 1 <= total_quantity <= MAX_QUANTITY:
        raise InvalidGroupBuy("total quantity must be 1 to 1,000,000")
    if not 1 <= min_participants <= total_quantity:
        raise InvalidGroupBuy("the minimum of participants must be 1 to the total quantity")
    if not 1 <= per_member_limit <= total_quantity:
        raise InvalidGroupBuy("the per-member limit must be 1 to the total quantity")
    if not MIN_DURATION <= deadline - now <= MAX_DURATION + timedelta(minutes=1):
        raise InvalidGroupBuy("the deadline must be 1 minute to 60 days away")
    async with transaction(session):
        new_id = await session.scalar(
            insert(session, GroupBuy)
            .values(
                group_id=group_id, product=product, price_cents=price_cents, group_price_cents=group_price_cents,
                min_participants=min_participants, total_quantity=total_quantity, per_member_limit=per_member_limit,
                sold=0, participants=0, status="open", deadline=deadline, created_by=created_by, vote_id=vote_id,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(GroupBuy.id)  # type: ignore[arg-type]
        )  # fmt: skip
        if new_id is None:  # this vote already has its group buy
            existing = await session.scalar(select(GroupBuy).where(GroupBuy.vote_id == vote_id))  # type: ignore[arg-type]
            assert existing is not None
            return existing, False
        return await get_groupbuy(session, int(new_id)), True


async def set_message(session: AsyncSession, groupbuy_id: int, message_id: int) -> None:
    async with transaction(session):
        await session.execute(
            update(GroupBuy).where(GroupBuy.id == groupbuy_id).values(message_id=message_id)  # type: ignore[arg-type]
        )


async def get_groupbuy(session: AsyncSession, groupbuy_id: int, group_id: int | None = None) -> GroupBuy:
    """The group buy, fresh from the database. Raises GroupBuyNotFound (also for another group's)."""
    async with transaction(session):
        row = await session.scalar(
            select(GroupBuy).where(GroupBuy.id == groupbuy_id).execution_options(populate_existing=True)  # type: ignore[arg-type]
        )
        if row is None or (group_id is not None and row.group_id != group_id):
            raise GroupBuyNotFound(groupbuy_id)
        return row


async def open_groupbuys(session: AsyncSession, group_id: int) -> list[GroupBuy]:
    async with transaction(session):
        result = await session.scalars(
            select(GroupBuy).where(GroupBuy.group_id == group_id, GroupBuy.status == "open").order_by(GroupBuy.id)  # type: ignore[arg-type]
        )
        return list(result.all())


async def get_entry(session: AsyncSession, groupbuy_id: int, user_id: int) -> GroupBuyEntry | None:
    async with transaction(session):
        return await session.scalar(
            select(GroupBuyEntry)
            .where(GroupBuyEntry.groupbuy_id == groupbuy_id, GroupBuyEntry.user_id == user_id)  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        )


@dataclass(frozen=True)
class Participant:
    user_id: int
    first_name: str
    username: str | None
    quantity: int
    order_code: str
    joined_at: datetime


async def participants(session: AsyncSession, groupbuy_id: int) -> list[Participant]:
    """Everyone in the group buy, first joined first, with the name the bot last saw (for the export; read off
    the event loop: a big group buy has thousands)."""
    return await run_off_loop(session, partial(_participants, groupbuy_id=groupbuy_id))


def _participants(session: Session, groupbuy_id: int) -> list[Participant]:
    rows = session.execute(
        select(GroupBuyEntry, User.first_name, User.username)  # type: ignore[call-overload]
        .outerjoin(User, User.user_id == GroupBuyEntry.user_id)
        .where(GroupBuyEntry.groupbuy_id == groupbuy_id)
        .order_by(GroupBuyEntry.joined_at, GroupBuyEntry.id)
    )
    return [
        Participant(entry.user_id, first_name or "", username, entry.quantity, entry.order_code, entry.joined_at)
        for entry, first_name, username in all_off_loop(rows)
    ]


# -- joining and leaving ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Closing:
    """A group buy this call closed (exactly one caller gets it): status "succeeded" or "failed"."""

    groupbuy: GroupBuy
    status: str


@dataclass(frozen=True)
class JoinResult:
    """status: "joined", "changed" (new quantity), "same" (nothing changed). `reached`: this call made the group
    buy reach its minimum (announce 成团 once). `closing`: this call sold the last unit and closed it."""

    status: str
    entry: GroupBuyEntry
    groupbuy: GroupBuy
    reached: bool = False
    closing: Closing | None = None


def new_order_code() -> str:
    """An unguessable order code like GB-7KQM-X3PD (8 symbols of 31: about 40 bits from `secrets`)."""
    symbols = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    return f"GB-{symbols[:4]}-{symbols[4:]}"


def _columns() -> Any:
    return GroupBuy.__table__.c  # type: ignore[attr-defined]


async def _refusal(session: AsyncSession, groupbuy_id: int, now: datetime) -> GroupBuyError:
    row = await get_groupbuy(session, groupbuy_id)
    if row.status != "open" or row.deadline <= now:
        return GroupBuyClosed(groupbuy_id)
    return NotEnoughLeft(row.total_quantity - row.sold)


async def _close(session: AsyncSession, groupbuy_id: int, now: datetime, closed_by: int | None) -> Closing | None:
    gb = _columns()
    row = (
        await session.execute(
            update(GroupBuy)
            .where(gb.id == groupbuy_id, gb.status == "open")
            .values(
                status=case((gb.participants >= gb.min_participants, "succeeded"), else_="failed"),
                closed_at=now,
                closed_by=closed_by,
            )
            .returning(gb.status)
        )
    ).first()
    if row is None:
        return None
    return Closing(await get_groupbuy(session, groupbuy_id), str(row[0]))


async def join(
    session: AsyncSession, group_id: int, groupbuy_id: int, user_id: int, quantity: int, *,
    now: datetime | None = None,
) -> JoinResult:
    """Join with `quantity` units, or change one's quantity. Raises GroupBuyNotFound, GroupBuyClosed, OverLimit,
    NotEnoughLeft; nothing is written then."""
    now = now or utcnow()
    gb = _columns()
    async with transaction(session):
        row = await get_groupbuy(session, groupbuy_id, group_id)
        if row.status != "open" or row.deadline <= now:
            raise GroupBuyClosed(groupbuy_id)
        if not 1 <= quantity <= row.per_member_limit:
            raise OverLimit(row.per_member_limit)
        for _attempt in range(3):
            async with session.begin_nested() as savepoint:
                entry = await session.scalar(
                    select(GroupBuyEntry)
                    .where(GroupBuyEntry.groupbuy_id == groupbuy_id, GroupBuyEntry.user_id == user_id)  # type: ignore[arg-type]
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
                if entry is not None and entry.quantity == quantity:
                    return JoinResult("same", entry, await get_groupbuy(session, groupbuy_id))
                delta = quantity - (entry.quantity if entry is not None else 0)
                newcomer = 1 if entry is None else 0
                moved = (
                    await session.execute(
                        update(GroupBuy)
                        .where(
                            gb.id == groupbuy_id, gb.status == "open", gb.deadline > now,
                            gb.sold + delta <= gb.total_quantity,
                        )
                        .values(sold=gb.sold + delta, participants=gb.participants + newcomer)
                        .returning(gb.sold, gb.participants, gb.min_participants, gb.total_quantity)
                    )
                ).first()
                if moved is None:
                    raise await _refusal(session, groupbuy_id, now)
                if entry is not None:
                    entry.quantity, entry.changed_at = quantity, now
                    await session.flush()
                    status = "changed"
                else:
                    entry_id = None
                    for _ in range(5):  # a fresh code on the (unlikely) collision of two codes
                        entry_id = await session.scalar(
                            insert(session, GroupBuyEntry)
                            .values(groupbuy_id=groupbuy_id, user_id=user_id, quantity=quantity,
                                    order_code=new_order_code(), joined_at=now, changed_at=now)
                            .on_conflict_do_nothing()
                            .returning(GroupBuyEntry.id)  # type: ignore[arg-type]
                        )
                        if entry_id is not None or await get_entry(session, groupbuy_id, user_id) is not None:
                            break
                    if entry_id is None:
                        # A concurrent press of the same member got in first: undo our count and look again.
                        await savepoint.rollback()
                        continue
                    status = "joined"
                sold, joined, minimum, total = moved
                reached = False
                if joined >= minimum:
                    reached = (
                        await session.execute(
                            update(GroupBuy)
                            .where(gb.id == groupbuy_id, gb.succeeded_at.is_(None))
                            .values(succeeded_at=now)
                            .returning(gb.id)
                        )
                    ).first() is not None
                closing = await _close(session, groupbuy_id, now, None) if sold >= total else None
                fresh_entry = await get_entry(session, groupbuy_id, user_id)
                assert fresh_entry is not None
                return JoinResult(status, fresh_entry, await get_groupbuy(session, groupbuy_id), reached, closing)
        raise RuntimeError("could not join (too much contention)")


async def leave(session: AsyncSession, group_id: int, groupbuy_id: int, user_id: int, *,
                now: datetime | None = None) -> GroupBuy:
    """Leave before the deadline: the entry goes, its units return. Raises GroupBuyNotFound, GroupBuyClosed,
    NotJoined."""
    now = now or utcnow()
    gb = _columns()
    async with transaction(session), session.begin_nested():
        row = await get_groupbuy(session, groupbuy_id, group_id)
        if row.status != "open" or row.deadline <= now:
            raise GroupBuyClosed(groupbuy_id)
        removed = (
            await session.execute(
                delete(GroupBuyEntry)
                .where(GroupBuyEntry.groupbuy_id == groupbuy_id, GroupBuyEntry.user_id == user_id)  # type: ignore[arg-type]
                .returning(GroupBuyEntry.quantity)  # type: ignore[arg-type]
            )
        ).first()
        if removed is None:
            raise NotJoined(groupbuy_id)
        moved = (
            await session.execute(
                update(GroupBuy)
                .where(gb.id == groupbuy_id, gb.status == "open", gb.deadline > now)
                .values(sold=gb.sold - removed[0], participants=gb.participants - 1)
                .returning(gb.id)
            )
        ).first()
        if moved is None:  # closed between our read and now: nothing changes
            raise GroupBuyClosed(groupbuy_id)
        return await get_groupbuy(session, groupbuy_id)


# -- closing ---------------------------------------------------------------------------------------------------


async def close_groupbuy(
    session: AsyncSession, groupbuy_id: int, *, group_id: int | None = None, closed_by: int | None = None,
    now: datetime | None = None,
) -> Closing | None:
    """Close now: "succeeded" if the participants reach the minimum, else "failed". Returns the Closing to the one
    caller that closed it, None if it was already closed. Raises GroupBuyNotFound."""
    now = now or utcnow()
    async with transaction(session):
        await get_groupbuy(session, groupbuy_id, group_id)
        return await _close(session, groupbuy_id, now, closed_by)


async def due_groupbuys(session: AsyncSession, now: datetime | None = None) -> list[int]:
    """Ids of open group buys past their deadline (for the scheduler)."""
    async with transaction(session):
        result = await session.scalars(
            select(GroupBuy.id)  # type: ignore[call-overload]
            .where(GroupBuy.status == "open", GroupBuy.deadline <= (now or utcnow()))
            .order_by(GroupBuy.id)
        )
        return [int(row_id) for row_id in result.all()]


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's group-buy entries (product, quantity, order code) and the group buys they opened or closed."""
    async with transaction(session):
        rows = await session.execute(
            select(GroupBuyEntry, GroupBuy.product)  # type: ignore[call-overload]
            .join(GroupBuy, GroupBuy.id == GroupBuyEntry.groupbuy_id)
            .where(GroupBuyEntry.user_id == user_id)
            .order_by(GroupBuyEntry.id)
        )
        managed = await session.scalars(
            select(GroupBuy)
            .where((GroupBuy.created_by == user_id) | (GroupBuy.closed_by == user_id))  # type: ignore[arg-type]
            .order_by(GroupBuy.id)
        )
        return {
            "entries": [{"product": product, **points.row_dict(entry)} for entry, product in rows.all()],
            "groupbuys_managed": [{"id": row.id, "product": row.product} for row in managed.all()],
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Entries are orders the organiser fulfils: they stay (quantities and codes) under `pseudonym`."""
    async with transaction(session):
        await session.execute(
            update(GroupBuyEntry).where(GroupBuyEntry.user_id == user_id).values(user_id=pseudonym)  # type: ignore[arg-type]
        )
        await session.execute(update(GroupBuy).where(GroupBuy.created_by == user_id).values(created_by=pseudonym))  # type: ignore[arg-type]
        await session.execute(update(GroupBuy).where(GroupBuy.closed_by == user_id).values(closed_by=pseudonym))  # type: ignore[arg-type]
