"""Flash sales (限时秒杀): a product catalog per group, sales scheduled on the group's clock, and grabs.

Three levels:
- FlashProduct: what is sold (name, list price, flash price and/or points price, stock per sale, limit, photo).
- FlashSale: a product on a schedule (daily, some weekdays, or one local date; HH:MM for D minutes), with an
  optional notice N minutes ahead. Its timing is mirrored into models.schedules rows (kinds "flash_sale" and
  "flash_notice", ref_id = the sale's id) that the scheduler turns into posts.
- FlashRound (one 场次): one sale on one local day. It is created when the sale starts, with its OWN stock copied
  from the product (the product's stock is the quantity offered in each round and is never decremented), and a
  snapshot of the name and prices, so an edit during a sale never changes what was advertised.

A grab is one unit of work: one read (the round and the member's existing order), then the order row inserted
(unique per (round, member), with ON CONFLICT DO NOTHING) and `UPDATE flash_rounds SET stock = stock - 1
WHERE id = :id AND stock > 0 AND status = 'live' AND starts_at <= now < ends_at RETURNING`; the per-member
limit is checked and points spent (ledger key f"flash:{round_id}:{user_id}") in the same transaction. Any
refusal rolls all of it back. Invariant per round: stock + orders == stock_total; never two orders for one
member in one round.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    cast,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel

from models import points, schedules
from models.boards import parse_hh_mm
from models.db import BigIntKey, UTCDateTime, all_off_loop, insert, run_off_loop, transaction, utcnow
from models.groups import Group, User
from models.points import KEY_MAX

SALE_KIND = "flash_sale"  # models.schedules kinds
NOTICE_KIND = "flash_notice"
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud by members and staff
LEDGER_KIND = "redeem"  # points spent on a grab are a redemption in the ledger
MAX_DURATION_MINUTES = 24 * 60
MAX_NOTICE_MINUTES = 24 * 60


class FlashProduct(SQLModel, table=True):
    """A product in a group's flash-sale catalog. Prices in cents; `stock` is offered in each round."""

    __tablename__ = "flash_products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("flash_price IS NOT NULL OR points_price IS NOT NULL", name="has_a_flash_price"),
        Index("ix_flash_products_group_active", "group_id", "active"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    name: str = Field(sa_column=Column(String(128), nullable=False))
    price: int = Field(sa_column=Column(Integer, nullable=False))  # list price, cents
    flash_price: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))  # cents
    points_price: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))  # points
    stock: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    per_member_limit: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    photo_file_id: str | None = Field(default=None, sa_column=Column(String(256), nullable=True))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, default=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class FlashSale(SQLModel, table=True):
    """A product on a schedule. The timing is mirrored in models.schedules (what the scheduler reads)."""

    __tablename__ = "flash_sales"
    __table_args__ = (
        CheckConstraint("duration_minutes > 0", name="duration_positive"),
        Index("ix_flash_sales_group_active", "group_id", "active"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    product_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("flash_products.id", ondelete="CASCADE"), nullable=False)
    )
    at: str = Field(sa_column=Column(String(5), nullable=False))  # "HH:MM", the group's clock
    weekdays: str = Field(default="1234567", sa_column=Column(String(7), nullable=False, default="1234567"))
    once_on: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    duration_minutes: int = Field(sa_column=Column(Integer, nullable=False))
    notice_minutes: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, default=True))
    created_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class FlashRound(SQLModel, table=True):
    """One sale on one local day (场次), with its own stock and a snapshot of what it sells."""

    __tablename__ = "flash_rounds"
    __table_args__ = (
        UniqueConstraint("sale_id", "day"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("stock <= stock_total", name="stock_within_total"),
        Index("ix_flash_rounds_status_ends", "status", "ends_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    sale_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("flash_sales.id", ondelete="CASCADE"), nullable=False))
    product_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("flash_products.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    day: date = Field(sa_column=Column(Date, nullable=False))
    starts_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    ends_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    name: str = Field(sa_column=Column(String(128), nullable=False))
    price: int = Field(sa_column=Column(Integer, nullable=False))
    flash_price: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    points_price: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    per_member_limit: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    stock_total: int = Field(sa_column=Column(Integer, nullable=False))
    stock: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(default="live", sa_column=Column(String(8), nullable=False, default="live"))  # live|ended
    photo_file_id: str | None = Field(default=None, sa_column=Column(String(256), nullable=True))
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class FlashOrder(SQLModel, table=True):
    """A member's order in one round: exactly one per (round, member). `code` is unguessable."""

    __tablename__ = "flash_orders"
    __table_args__ = (
        UniqueConstraint("round_id", "user_id"),
        Index("ix_flash_orders_product_member", "product_id", "user_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    round_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("flash_rounds.id", ondelete="CASCADE"), nullable=False)
    )
    product_id: int = Field(sa_column=Column(BigIntKey, nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    code: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    price: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))  # cents to pay
    points: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))  # points spent
    ledger_key: str | None = Field(default=None, sa_column=Column(String(KEY_MAX), nullable=True, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


# -- errors ----------------------------------------------------------------------------------------------------


class FlashError(Exception):
    """Base of the flash-sale refusals."""


class InvalidProduct(FlashError, ValueError):
    """add_product/edit_product got an unknown field or a value out of range."""


class InvalidSchedule(FlashError, ValueError):
    """create_sale got a bad time, weekdays, date, duration or notice."""


class ProductNotFound(FlashError, LookupError):
    """No (active) product with this id in this group."""


class SaleNotFound(FlashError, LookupError):
    """No (active) sale with this id in this group."""


class RoundNotFound(FlashError, LookupError):
    """No round with this id in this group."""


class NotStarted(FlashError):
    """The round has not started yet."""


class RoundEnded(FlashError):
    """The round is over (time ran out, or the sale was cancelled)."""


class SoldOut(FlashError):
    """No stock left in this round. Nothing was written."""


class LimitReached(FlashError):
    """The member already holds per_member_limit orders of this product (over all its rounds)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"limit of {limit} per member reached")
        self.limit = limit


InsufficientPoints = points.InsufficientPoints


@asynccontextmanager
async def _unit(session: AsyncSession) -> AsyncIterator[None]:
    """A unit that rolls back entirely on a refusal: its own transaction, or a savepoint in the caller's."""
    if session.in_transaction():
        async with session.begin_nested():
            yield
    else:
        async with session.begin():
            yield


def new_code() -> str:
    """An unguessable order code like FS-7KQM-X3PD (31**8, about 8.5e11 codes)."""
    body = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    return f"FS-{body[:4]}-{body[4:]}"


# -- catalog ---------------------------------------------------------------------------------------------------

EDITABLE = ("name", "price", "flash_price", "points_price", "stock", "per_member_limit", "photo_file_id", "active")


def _check_product(fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name not in EDITABLE:
            raise InvalidProduct(f"unknown field {name!r}")
        whole = isinstance(value, int) and not isinstance(value, bool)
        if name == "name" and (not isinstance(value, str) or not value.strip() or len(value) > 128):
            raise InvalidProduct("name must be 1..128 characters")
        if name in ("price", "stock") and (not whole or value < 0 or value > 10**9):
            raise InvalidProduct(f"{name} must be a whole number >= 0")
        if name in ("flash_price", "points_price", "per_member_limit") and value is not None:
            low = 1 if name != "flash_price" else 0
            if not whole or value < low or value > 10**9:
                raise InvalidProduct(f"{name} must be a whole number >= {low} or None")
        if name == "photo_file_id" and value is not None and (not isinstance(value, str) or not 0 < len(value) <= 256):
            raise InvalidProduct("photo_file_id must be a Telegram file id or None")
        if name == "active" and not isinstance(value, bool):
            raise InvalidProduct("active must be True or False")


async def add_product(
    session: AsyncSession,
    group_id: int,
    name: str,
    price: int,
    stock: int,
    *,
    flash_price: int | None = None,
    points_price: int | None = None,
    per_member_limit: int | None = None,
    photo_file_id: str | None = None,
    now: datetime | None = None,
) -> FlashProduct:
    """Create an active product. Prices in cents; at least one of flash_price and points_price. Raises
    InvalidProduct."""
    fields = {"name": name.strip(), "price": price, "stock": stock, "flash_price": flash_price}
    fields |= {"points_price": points_price, "per_member_limit": per_member_limit, "photo_file_id": photo_file_id}
    _check_product(fields)
    if flash_price is None and points_price is None:
        raise InvalidProduct("a flash price or a points price is required")
    now = now or utcnow()
    async with transaction(session):
        product = FlashProduct(group_id=group_id, created_at=now, updated_at=now, **fields)
        session.add(product)
        await session.flush()
        return product


async def get_product(
    session: AsyncSession, group_id: int, product_id: int, *, active_only: bool = False
) -> FlashProduct:
    """The product by id in this group. Raises ProductNotFound."""
    async with transaction(session):
        statement = select(FlashProduct).where(
            FlashProduct.id == product_id, FlashProduct.group_id == group_id  # type: ignore[arg-type]
        )
        if active_only:
            statement = statement.where(FlashProduct.active.is_(True))  # type: ignore[attr-defined]
        product = await session.scalar(statement.execution_options(populate_existing=True))
        if product is None:
            raise ProductNotFound(product_id)
        return product


async def list_products(session: AsyncSession, group_id: int, *, include_inactive: bool = False) -> list[FlashProduct]:
    async with transaction(session):
        statement = select(FlashProduct).where(FlashProduct.group_id == group_id)  # type: ignore[arg-type]
        if not include_inactive:
            statement = statement.where(FlashProduct.active.is_(True))  # type: ignore[attr-defined]
        return list((await session.scalars(statement.order_by(FlashProduct.id))).all())  # type: ignore[arg-type]


async def edit_product(
    session: AsyncSession, group_id: int, product_id: int, *, now: datetime | None = None, **fields: Any
) -> FlashProduct:
    """Change fields of a product (removed ones too). Rounds already running keep their snapshot. Raises
    ProductNotFound or InvalidProduct."""
    if not fields:
        raise InvalidProduct("nothing to change")
    if "name" in fields and isinstance(fields["name"], str):
        fields["name"] = fields["name"].strip()
    _check_product(fields)
    async with transaction(session):
        product = await get_product(session, group_id, product_id)
        flash = fields.get("flash_price", product.flash_price)
        prize = fields.get("points_price", product.points_price)
        if flash is None and prize is None:
            raise InvalidProduct("a flash price or a points price is required")
        for name, value in fields.items():
            setattr(product, name, value)
        product.updated_at = now or utcnow()
        await session.flush()
        return product


async def remove_product(session: AsyncSession, group_id: int, product_id: int) -> tuple[FlashProduct, list[int]]:
    """Take a product out of the catalog and cancel its sales (rounds running now end as planned). Returns the
    product and the ids of the sales cancelled. Raises ProductNotFound."""
    async with transaction(session):
        product = await get_product(session, group_id, product_id, active_only=True)
        product.active = False
        product.updated_at = utcnow()
        sales = (
            await session.scalars(
                select(FlashSale.id).where(  # type: ignore[call-overload]
                    FlashSale.product_id == product_id, FlashSale.active.is_(True)  # type: ignore[attr-defined]
                )
            )
        ).all()
        for sale_id in sales:
            await _deactivate_sale(session, group_id, sale_id)
        await session.flush()
        return product, list(sales)


# -- sales -----------------------------------------------------------------------------------------------------


def _normalize_weekdays(weekdays: str) -> str:
    digits = sorted(set(weekdays))
    if not digits or any(d not in "1234567" for d in digits):
        raise InvalidSchedule("weekdays are ISO digits 1 (Monday) .. 7 (Sunday)")
    return "".join(digits)


def notice_timing(at: str, weekdays: str, once_on: date | None, notice_minutes: int) -> tuple[str, str, date | None]:
    """When the notice for a sale at `at` goes out, `notice_minutes` earlier: (HH:MM, weekdays, once_on), with
    the days shifted back when the notice falls on the day before."""
    hour, minute = map(int, at.split(":"))
    total = hour * 60 + minute - notice_minutes
    shift = 0
    while total < 0:
        total += 24 * 60
        shift += 1
    new_days = "".join(sorted({str((int(d) - 1 - shift) % 7 + 1) for d in weekdays}))
    new_once = once_on - timedelta(days=shift) if once_on is not None else None
    return f"{total // 60:02d}:{total % 60:02d}", new_days, new_once


def sale_day_of_notice(notice_day: date, at: str, notice_minutes: int) -> date:
    """The local day of the round a notice posted on `notice_day` announces."""
    hour, minute = map(int, at.split(":"))
    shift = 0
    total = hour * 60 + minute - notice_minutes
    while total < 0:
        total += 24 * 60
        shift += 1
    return notice_day + timedelta(days=shift)


def local_start(day: date, at: str, zone: str) -> datetime:
    """The aware moment of HH:MM on a local day in `zone`."""
    hour, minute = map(int, at.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(zone))


def next_start(sale: FlashSale, zone: str, now: datetime) -> datetime | None:
    """The next start of `sale` at or after now (the current round's start if it is running), or None."""
    today = now.astimezone(ZoneInfo(zone)).date()
    for offset in range(-1, 9):
        day = today + timedelta(days=offset)
        if sale.once_on is not None and day != sale.once_on:
            continue
        if sale.once_on is None and str(day.isoweekday()) not in sale.weekdays:
            continue
        start = local_start(day, sale.at, zone)
        if start + timedelta(minutes=sale.duration_minutes) > now:
            return start
    return None


async def create_sale(
    session: AsyncSession,
    group_id: int,
    product_id: int,
    at: str,
    duration_minutes: int,
    *,
    weekdays: str = "1234567",
    once_on: date | None = None,
    notice_minutes: int | None = None,
    created_by: int | None = None,
    now: datetime | None = None,
) -> FlashSale:
    """Schedule an active product: every day (or the given ISO weekdays, or only `once_on`) at local HH:MM for
    `duration_minutes`, with an optional notice `notice_minutes` ahead. Writes the sale and its schedule rows
    in one transaction. Raises ProductNotFound or InvalidSchedule."""
    when = parse_hh_mm(at)
    if when is None:
        raise InvalidSchedule("time must be HH:MM")
    weekdays = _normalize_weekdays(weekdays)
    if not 0 < duration_minutes <= MAX_DURATION_MINUTES:
        raise InvalidSchedule(f"duration must be 1..{MAX_DURATION_MINUTES} minutes")
    if notice_minutes is not None and not 0 < notice_minutes <= MAX_NOTICE_MINUTES:
        raise InvalidSchedule(f"notice must be 1..{MAX_NOTICE_MINUTES} minutes")
    now = now or utcnow()
    async with transaction(session):
        await get_product(session, group_id, product_id, active_only=True)
        group = await points.load_group(session, group_id)
        if once_on is not None and local_start(once_on, when, group.timezone) <= now:
            raise InvalidSchedule("that date and time have passed")
        sale = FlashSale(
            group_id=group_id, product_id=product_id, at=when, weekdays=weekdays, once_on=once_on,
            duration_minutes=duration_minutes, notice_minutes=notice_minutes, active=True, created_by=created_by,
            created_at=now,
        )  # fmt: skip
        session.add(sale)
        await session.flush()
        assert sale.id is not None
        try:
            await schedules.set_schedule(
                session, group_id, SALE_KIND, when, weekdays=weekdays, ref_id=sale.id, once_on=once_on,
                duration_minutes=duration_minutes,
            )  # fmt: skip
            if notice_minutes:
                notice_at, notice_days, notice_once = notice_timing(when, weekdays, once_on, notice_minutes)
                await schedules.set_schedule(
                    session, group_id, NOTICE_KIND, notice_at, weekdays=notice_days, ref_id=sale.id,
                    once_on=notice_once,
                )  # fmt: skip
        except schedules.ScheduleError as error:
            raise InvalidSchedule(str(error)) from error
        return sale


async def _deactivate_sale(session: AsyncSession, group_id: int, sale_id: int) -> None:
    await session.execute(update(FlashSale).where(FlashSale.id == sale_id).values(active=False))  # type: ignore[arg-type]
    await schedules.delete_schedule(session, group_id, SALE_KIND, sale_id)
    await schedules.delete_schedule(session, group_id, NOTICE_KIND, sale_id)


async def get_sale(session: AsyncSession, group_id: int, sale_id: int) -> FlashSale:
    """The sale by id in this group (cancelled ones too). Raises SaleNotFound."""
    async with transaction(session):
        sale = await session.scalar(
            select(FlashSale)
            .where(FlashSale.id == sale_id, FlashSale.group_id == group_id)  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        )
        if sale is None:
            raise SaleNotFound(sale_id)
        return sale


async def cancel_sale(
    session: AsyncSession, group_id: int, sale_id: int, *, now: datetime | None = None
) -> tuple[FlashSale, list[FlashRound]]:
    """Stop a sale: no more rounds, and a round running now ends at once. Returns the sale and the rounds this
    call ended (to edit their posts). Raises SaleNotFound if there is no active sale with this id."""
    now = now or utcnow()
    async with transaction(session):
        sale = await get_sale(session, group_id, sale_id)
        if not sale.active:
            raise SaleNotFound(sale_id)
        await _deactivate_sale(session, group_id, sale_id)
        sale.active = False
        ended = await _end_rounds(session, now, FlashRound.sale_id == sale_id)  # type: ignore[arg-type]
        return sale, ended


@dataclass(frozen=True, slots=True)
class SaleLine:
    sale: FlashSale
    product: FlashProduct
    live: FlashRound | None  # the round running now, if any


async def list_sales(session: AsyncSession, group_id: int, *, now: datetime | None = None) -> list[SaleLine]:
    """The group's active sales with their products and any round running now, oldest first."""
    now = now or utcnow()
    async with transaction(session):
        rows = (
            await session.execute(
                select(FlashSale, FlashProduct)
                .join(FlashProduct, FlashProduct.id == FlashSale.product_id)  # type: ignore[arg-type]
                .where(FlashSale.group_id == group_id, FlashSale.active.is_(True))  # type: ignore[arg-type,attr-defined]
                .order_by(FlashSale.id)  # type: ignore[arg-type]
            )
        ).all()
        live = {
            r.sale_id: r
            for r in (
                await session.scalars(
                    select(FlashRound).where(
                        FlashRound.group_id == group_id,  # type: ignore[arg-type]
                        FlashRound.status == "live",  # type: ignore[arg-type]
                        FlashRound.ends_at > now,  # type: ignore[arg-type]
                    )
                )
            ).all()
        }
        return [SaleLine(sale, product, live.get(sale.id)) for sale, product in rows]


# -- rounds ----------------------------------------------------------------------------------------------------


async def open_round(
    session: AsyncSession, sale_id: int, day: date, *, now: datetime | None = None
) -> FlashRound | None:
    """The round of `sale_id` on local `day`, created now (stock copied from the product) if it does not exist.
    None when there is nothing to post: the sale or product is inactive, the round already has a post, or the
    round would already be over. A round without a post (an earlier send failed) is returned again."""
    now = now or utcnow()
    async with transaction(session):
        row = (
            await session.execute(
                select(FlashSale, FlashProduct, Group.timezone)
                .join(FlashProduct, FlashProduct.id == FlashSale.product_id)  # type: ignore[arg-type]
                .join(Group, Group.id == FlashSale.group_id)  # type: ignore[arg-type]
                .where(FlashSale.id == sale_id)  # type: ignore[arg-type]
            )
        ).first()
        if row is None:
            return None
        sale, product, zone = row
        if not sale.active or not product.active:
            return None
        starts_at = local_start(day, sale.at, zone)
        ends_at = starts_at + timedelta(minutes=sale.duration_minutes)
        if ends_at <= now:
            return None
        await session.execute(
            insert(session, FlashRound)
            .values(
                group_id=sale.group_id, sale_id=sale_id, product_id=product.id, day=day, starts_at=starts_at,
                ends_at=ends_at, name=product.name, price=product.price, flash_price=product.flash_price,
                points_price=product.points_price, per_member_limit=product.per_member_limit,
                stock_total=product.stock, stock=product.stock, status="live", photo_file_id=product.photo_file_id,
            )
            .on_conflict_do_nothing()
        )  # fmt: skip
        flash_round = await session.scalar(
            select(FlashRound)
            .where(FlashRound.sale_id == sale_id, FlashRound.day == day)  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        )
        if flash_round is None or flash_round.message_id is not None or flash_round.status != "live":
            return None
        return flash_round


async def set_round_message(session: AsyncSession, round_id: int, message_id: int) -> None:
    async with transaction(session):
        await session.execute(
            update(FlashRound).where(FlashRound.id == round_id).values(message_id=message_id)  # type: ignore[arg-type]
        )


async def get_round(session: AsyncSession, round_id: int) -> FlashRound:
    """The round as it is now. Raises RoundNotFound."""
    async with transaction(session):
        flash_round = await session.scalar(
            select(FlashRound).where(FlashRound.id == round_id).execution_options(populate_existing=True)  # type: ignore[arg-type]
        )
        if flash_round is None:
            raise RoundNotFound(round_id)
        return flash_round


async def _end_rounds(session: AsyncSession, now: datetime, *conditions: Any) -> list[FlashRound]:
    columns = FlashRound.__table__.c  # type: ignore[attr-defined]
    ended = (
        await session.scalars(
            update(FlashRound)
            .where(columns.status == "live", *conditions)
            .values(status="ended", ended_at=now)
            .returning(columns.id)
        )
    ).all()
    if not ended:
        return []
    rounds = await session.scalars(
        select(FlashRound).where(columns.id.in_(ended)).order_by(columns.id).execution_options(populate_existing=True)
    )
    return list(rounds.all())


async def end_due_rounds(session: AsyncSession, *, now: datetime | None = None) -> list[FlashRound]:
    """Mark live rounds whose time is over as ended, exactly once (a conditional UPDATE on status): returns the
    rounds this call ended, so their posts are edited once."""
    now = now or utcnow()
    async with transaction(session):
        return await _end_rounds(session, now, FlashRound.ends_at <= now)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class GrabResult:
    """A member's order in a round. already=True: they had it before this press (nothing changed now).
    stock_left: the round's stock after this grab (None for `already`)."""

    order: FlashOrder
    already: bool
    stock_left: int | None


async def _order_of(session: AsyncSession, round_id: int, user_id: int) -> FlashOrder | None:
    return await session.scalar(
        select(FlashOrder)
        .where(FlashOrder.round_id == round_id, FlashOrder.user_id == user_id)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )


def _refusal(row: Any, now: datetime) -> FlashError:
    if row.status != "live" or row.ends_at <= now:
        return RoundEnded(row.id)
    if row.starts_at > now:
        return NotStarted(row.id)
    return SoldOut(row.id)


async def grab(
    session: AsyncSession, group_id: int, round_id: int, user_id: int, *, now: datetime | None = None
) -> GrabResult:
    """One press of the grab button (抢购). Returns the member's order (made now, or the one they already have:
    already=True). Raises RoundNotFound, NotStarted, RoundEnded, SoldOut, LimitReached or InsufficientPoints,
    and then nothing was written. However many concurrent calls, one order per member and never oversold."""
    now = now or utcnow()
    rounds = FlashRound.__table__.c  # type: ignore[attr-defined]
    orders = FlashOrder.__table__.c  # type: ignore[attr-defined]
    async with _unit(session):
        # One read answers the common cases (a repeat press, sold out, ended) without writing anything.
        mine = select(orders.id).where(orders.round_id == round_id, orders.user_id == user_id).scalar_subquery()
        row = (
            await session.execute(
                select(rounds.id, rounds.status, rounds.stock, rounds.starts_at, rounds.ends_at, mine.label("mine"))
                .where(rounds.id == round_id, rounds.group_id == group_id)
            )
        ).first()
        if row is None:
            raise RoundNotFound(round_id)
        if row.mine is not None:
            order = await session.get(FlashOrder, row.mine, populate_existing=True)
            assert order is not None
            return GrabResult(order, True, None)
        starts_at, ends_at = row.starts_at, row.ends_at
        if row.status != "live" or row.stock <= 0 or not starts_at <= now < ends_at:
            raise _refusal(_Row(row.id, row.status, starts_at, ends_at), now)

        # The order first: a concurrent second press by the same member stops here and takes no stock.
        order_id = None
        for _ in range(5):
            order_id = await session.scalar(
                insert(session, FlashOrder)
                .values(
                    group_id=group_id, round_id=round_id, user_id=user_id, code=new_code(), created_at=now,
                    product_id=select(rounds.product_id).where(rounds.id == round_id).scalar_subquery(),
                    price=select(rounds.flash_price).where(rounds.id == round_id).scalar_subquery(),
                    points=func.coalesce(
                        select(rounds.points_price).where(rounds.id == round_id).scalar_subquery(), 0
                    ),
                )
                .on_conflict_do_nothing()
                .returning(orders.id)
            )  # fmt: skip
            if order_id is not None:
                break
            existing = await _order_of(session, round_id, user_id)
            if existing is not None:  # a concurrent press of the same member won
                return GrabResult(existing, True, None)
        if order_id is None:
            raise RuntimeError("could not store the order (code collisions)")

        taken = (
            await session.execute(
                update(FlashRound)
                .where(
                    rounds.id == round_id, rounds.stock > 0, rounds.status == "live",
                    rounds.starts_at <= now, rounds.ends_at > now,
                )
                .values(stock=rounds.stock - 1)
                .returning(rounds.stock, rounds.product_id, rounds.points_price, rounds.per_member_limit)
            )
        ).first()  # fmt: skip
        if taken is None:
            raise _refusal(_Row(row.id, row.status, starts_at, ends_at), now)  # raced to zero (or to the end)
        stock_left, product_id, points_price, limit = taken
        if limit is not None:
            held = await session.scalar(
                select(func.count())
                .select_from(FlashOrder)
                .where(orders.product_id == product_id, orders.user_id == user_id)
            )
            if (held or 0) > limit:
                raise LimitReached(limit)
        if points_price:
            key = f"flash:{round_id}:{user_id}"
            await points.spend(
                session, group_id, user_id, points_price, LEDGER_KIND, key, reference=f"flash_round:{round_id}",
                now=now,
            )  # fmt: skip
            await session.execute(update(FlashOrder).where(orders.id == order_id).values(ledger_key=key))
        order = await session.get(FlashOrder, order_id, populate_existing=True)
        assert order is not None
        return GrabResult(order, False, stock_left)


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    status: str
    starts_at: datetime
    ends_at: datetime


async def orders_of_member(session: AsyncSession, group_id: int, user_id: int, limit: int = 20) -> list[FlashOrder]:
    """The member's newest orders in the group."""
    async with transaction(session):
        result = await session.scalars(
            select(FlashOrder)
            .where(FlashOrder.group_id == group_id, FlashOrder.user_id == user_id)  # type: ignore[arg-type]
            .order_by(FlashOrder.id.desc())  # type: ignore[union-attr]
            .limit(limit)
        )
        return list(result.all())


async def round_orders(session: AsyncSession, round_id: int) -> list[FlashOrder]:
    """Every order of a round, oldest first."""
    async with transaction(session):
        result = await session.scalars(
            select(FlashOrder).where(FlashOrder.round_id == round_id).order_by(FlashOrder.id)  # type: ignore[arg-type]
        )
        return list(result.all())


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One line of the orders export."""

    code: str
    day: date
    round_id: int
    product: str
    user_id: int
    first_name: str | None
    username: str | None
    price: int | None
    points: int
    created_at: datetime


async def export_orders(
    session: AsyncSession, group_id: int, sale_id: int, day: date | None = None
) -> list[OrderRow]:
    """Every order of a sale (optionally one local day), oldest first, with the members' names. Raises
    SaleNotFound."""
    async with transaction(session):
        await get_sale(session, group_id, sale_id)
        statement = (
            select(
                FlashOrder.code, FlashRound.day, FlashRound.id, FlashRound.name, FlashOrder.user_id,  # type: ignore[call-overload]
                User.first_name, User.username, FlashOrder.price, FlashOrder.points, FlashOrder.created_at,
            )
            .join(FlashRound, FlashRound.id == FlashOrder.round_id)
            .join(User, User.user_id == FlashOrder.user_id, isouter=True)
            .where(FlashRound.sale_id == sale_id, FlashRound.group_id == group_id)
            .order_by(FlashOrder.id)
        )  # fmt: skip
        if day is not None:
            statement = statement.where(FlashRound.day == day)
        return await run_off_loop(session, partial(_order_rows, statement=statement))


def _order_rows(session: Session, statement: Any) -> list[OrderRow]:
    """The export's rows, read off the event loop (a week of daily sales holds thousands of orders)."""
    return [OrderRow(*row) for row in all_off_loop(session.execute(statement))]


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's orders (and the sales they scheduled as an admin)."""
    async with transaction(session):
        orders = await session.scalars(
            select(FlashOrder).where(FlashOrder.user_id == user_id).order_by(FlashOrder.id)  # type: ignore[arg-type]
        )
        sales = await session.scalars(
            select(FlashSale).where(FlashSale.created_by == user_id).order_by(FlashSale.id)  # type: ignore[arg-type]
        )
        return {
            "orders": [points.row_dict(row) for row in orders.all()],
            "sales_created": [points.row_dict(row) for row in sales.all()],
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Orders are shared records (stock, fulfilment): kept under `pseudonym`, their ledger keys (which embed
    the id) replaced by "erased:<order id>". The admin who created a sale is forgotten."""
    async with transaction(session):
        columns = FlashOrder.__table__.c  # type: ignore[attr-defined]
        await session.execute(
            update(FlashOrder)
            .where(columns.user_id == user_id, columns.ledger_key.is_not(None))
            .values(ledger_key=literal("erased:") + cast(columns.id, String))
        )
        await session.execute(update(FlashOrder).where(columns.user_id == user_id).values(user_id=pseudonym))
        await session.execute(
            update(FlashSale).where(FlashSale.created_by == user_id).values(created_by=None)  # type: ignore[arg-type]
        )
