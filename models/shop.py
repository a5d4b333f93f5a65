"""The points shop: items bought with points, the coupons they give, and staff verification (核销).

A redemption is one unit of work: the member's row is locked, tier and per-member limit checked, points spent
through the ledger (key f"redeem:{key}"), one unit taken from stock by a conditional UPDATE, a pre-made code
claimed (or a fresh unguessable one made), and the coupon inserted. Any refusal leaves nothing behind, and a
redelivered `key` returns the coupon it already produced. Invariant per item:
stock + coupons not cancelled == all stock ever added.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    cast,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models import points
from models.db import BigIntKey, UTCDateTime, insert, transaction, utcnow

COUPON_STATUSES = ("issued", "used", "cancelled", "expired")
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud and typed by staff


class ShopItem(SQLModel, table=True):
    """Something members can buy with points. Items are deactivated, never deleted (coupons refer to them)."""

    __tablename__ = "shop_items"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("cost >= 0", name="cost_not_negative"),
        CheckConstraint("valid_days > 0", name="valid_days_positive"),
        Index("ix_shop_items_group_active", "group_id", "active"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    name: str = Field(sa_column=Column(String(128), nullable=False))
    description: str = Field(default="", sa_column=Column(String(512), nullable=False, default=""))
    cost: int = Field(sa_column=Column(Integer, nullable=False))
    stock: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    per_member_limit: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))  # None = no limit
    min_tier: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))  # a tier key
    valid_days: int = Field(default=30, sa_column=Column(Integer, nullable=False, default=30))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, default=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class Coupon(SQLModel, table=True):
    """A coupon a member bought. `code` is what staff verify; `ledger_key` is the redemption's idempotency key."""

    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_coupons_member", "group_id", "user_id"),
        Index("ix_coupons_item_member", "item_id", "user_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    item_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("shop_items.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    code: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    status: str = Field(default="issued", sa_column=Column(String(16), nullable=False, default="issued"))
    cost: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    issued_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    used_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    cancelled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    cancelled_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    ledger_key: str = Field(sa_column=Column(String(points.KEY_MAX), nullable=False, unique=True))


class ShopCode(SQLModel, table=True):
    """A pre-made code for an item (e.g. from the merchant's system), handed out once with a coupon."""

    __tablename__ = "shop_codes"
    __table_args__ = (Index("ix_shop_codes_item_free", "item_id", "claimed_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    item_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("shop_items.id", ondelete="CASCADE"), nullable=False))
    code: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    claimed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    coupon_id: int | None = Field(
        default=None, sa_column=Column(BigIntKey, ForeignKey("coupons.id", ondelete="SET NULL"), nullable=True)
    )


# -- errors ----------------------------------------------------------------------------------------------------


class ShopError(Exception):
    """Base of the shop refusals."""


class ItemNotFound(ShopError, LookupError):
    """No active item with this id in this group."""


class OutOfStock(ShopError):
    """The item's stock is 0. Nothing was spent."""


class TierTooLow(ShopError):
    """The member's tier is below the item's min_tier."""

    def __init__(self, tier: str, required: str) -> None:
        super().__init__(f"tier {tier} is below {required}")
        self.tier = tier
        self.required = required


class LimitReached(ShopError):
    """The member already holds per_member_limit coupons (not cancelled) of this item."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"limit of {limit} per member reached")
        self.limit = limit


class CouponNotFound(ShopError, LookupError):
    """No coupon with this code in this group."""


class CouponNotCancellable(ShopError):
    """Only issued (unused) coupons can be cancelled; `status` is the coupon's."""

    def __init__(self, status: str) -> None:
        super().__init__(f"coupon is {status}")
        self.status = status


class InvalidItem(ShopError, ValueError):
    """add_item/edit_item got a field it does not know or a value out of range."""


InsufficientPoints = points.InsufficientPoints


# -- items -----------------------------------------------------------------------------------------------------

EDITABLE = ("name", "description", "cost", "stock", "per_member_limit", "min_tier", "valid_days", "active")


def _check_fields(fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name not in EDITABLE:
            raise InvalidItem(f"unknown field {name!r}")
        if name in ("name",) and (not isinstance(value, str) or not value.strip() or len(value) > 128):
            raise InvalidItem("name must be 1..128 characters")
        if name == "description" and (not isinstance(value, str) or len(value) > 512):
            raise InvalidItem("description must be at most 512 characters")
        if name in ("cost", "stock") and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise InvalidItem(f"{name} must be a whole number >= 0")
        if name == "valid_days" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidItem("valid_days must be >= 1")
        if name == "per_member_limit" and value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidItem("per_member_limit must be >= 1 or None")
        if name == "min_tier" and value is not None and (not isinstance(value, str) or not 0 < len(value) <= 16):
            raise InvalidItem("min_tier must be a tier key or None")
        if name == "active" and not isinstance(value, bool):
            raise InvalidItem("active must be True or False")


async def add_item(
    session: AsyncSession,
    group_id: int,
    name: str,
    cost: int,
    stock: int,
    *,
    per_member_limit: int | None = None,
    min_tier: str | None = None,
    valid_days: int = 30,
    description: str = "",
    now: datetime | None = None,
) -> ShopItem:
    """Create an active item. Raises InvalidItem for out-of-range values."""
    fields = {"name": name, "description": description, "cost": cost, "stock": stock}
    fields |= {"per_member_limit": per_member_limit, "min_tier": min_tier, "valid_days": valid_days}
    _check_fields(fields)
    now = now or utcnow()
    async with transaction(session):
        await points.load_group(session, group_id)
        item = ShopItem(group_id=group_id, active=True, created_at=now, updated_at=now, **fields)
        session.add(item)
        await session.flush()
        return item


async def get_item(session: AsyncSession, group_id: int, item_id: int) -> ShopItem:
    """The group's item (active or not). Raises ItemNotFound."""
    async with transaction(session):
        item = await session.scalar(
            select(ShopItem)
            .where(ShopItem.id == item_id, ShopItem.group_id == group_id)  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        )
        if item is None:
            raise ItemNotFound(item_id)
        return item


async def edit_item(session: AsyncSession, item_id: int, group_id: int, **fields: Any) -> ShopItem:
    """Change fields of the group's item (name, description, cost, stock, per_member_limit, min_tier,
    valid_days, active). `stock` sets the absolute count. Raises ItemNotFound, InvalidItem."""
    _check_fields(fields)
    async with transaction(session):
        item = await get_item(session, group_id, item_id)
        for name, value in fields.items():
            setattr(item, name, value)
        item.updated_at = utcnow()
        await session.flush()
        return item


async def remove_item(session: AsyncSession, item_id: int, group_id: int) -> ShopItem:
    """Deactivate the item (it leaves the shop; its coupons stay valid). Raises ItemNotFound."""
    return await edit_item(session, item_id, group_id, active=False)


async def list_items(session: AsyncSession, group_id: int, *, include_inactive: bool = False) -> list[ShopItem]:
    """The group's items, cheapest first (active only unless include_inactive)."""
    async with transaction(session):
        statement = select(ShopItem).where(ShopItem.group_id == group_id)  # type: ignore[arg-type]
        if not include_inactive:
            statement = statement.where(ShopItem.active.is_(True))  # type: ignore[attr-defined]
        result = await session.scalars(statement.order_by(ShopItem.cost, ShopItem.id))  # type: ignore[arg-type]
        return list(result.all())


async def add_codes(session: AsyncSession, group_id: int, item_id: int, codes: list[str]) -> int:
    """Add pre-made codes to an item; each adds one to its stock. Codes already known are skipped.
    Returns how many were added."""
    cleaned = list(dict.fromkeys(code.strip() for code in codes if code.strip()))
    if any(len(code) > 64 for code in cleaned):
        raise InvalidItem("codes are at most 64 characters")
    async with transaction(session):
        await get_item(session, group_id, item_id)
        added = 0
        for code in cleaned:
            result = await session.execute(
                insert(session, ShopCode).values(item_id=item_id, code=code, claimed_at=None).on_conflict_do_nothing()
            )
            added += result.rowcount or 0
        if added:
            await session.execute(
                update(ShopItem).where(ShopItem.id == item_id).values(stock=ShopItem.stock + added)  # type: ignore[arg-type]
            )
        return added


async def free_codes(session: AsyncSession, item_id: int) -> int:
    """How many pre-made codes of the item are still unclaimed."""
    async with transaction(session):
        count = await session.scalar(
            select(func.count()).select_from(ShopCode).where(ShopCode.item_id == item_id, ShopCode.claimed_at.is_(None))  # type: ignore[arg-type,union-attr]
        )
        return int(count or 0)


# -- redeeming -------------------------------------------------------------------------------------------------


def new_code() -> str:
    """An unguessable coupon code like QB-7KQM-X3PD (8 symbols of 31: about 40 bits from `secrets`)."""
    symbols = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    return f"QB-{symbols[:4]}-{symbols[4:]}"


def normalize_code(code: str) -> str:
    """Codes as staff type them: trimmed; generated QB- codes are case-insensitive."""
    code = code.strip()
    return code.upper() if code.upper().startswith("QB-") else code


async def _by_ledger_key(session: AsyncSession, ledger_key: str) -> Coupon | None:
    return await session.scalar(
        select(Coupon).where(Coupon.ledger_key == ledger_key).execution_options(populate_existing=True)  # type: ignore[arg-type]
    )


async def _claim_code(session: AsyncSession, item_id: int, now: datetime) -> tuple[int, str] | None:
    codes = ShopCode.__table__.c  # type: ignore[attr-defined]
    for _ in range(20):
        candidate = await session.scalar(
            select(codes.id).where(codes.item_id == item_id, codes.claimed_at.is_(None)).order_by(codes.id).limit(1)
        )
        if candidate is None:
            return None
        row = (
            await session.execute(
                update(ShopCode)
                .where(codes.id == candidate, codes.claimed_at.is_(None))
                .values(claimed_at=now)
                .returning(codes.id, codes.code)
            )
        ).first()
        if row is not None:
            return row[0], row[1]
    return None


async def redeem(
    session: AsyncSession, group_id: int, user_id: int, item_id: int, *, key: str, now: datetime | None = None
) -> Coupon:
    """Buy one unit of the item with points and return the coupon (see the module docstring).

    `key` identifies this purchase and is global across groups (e.g. the callback query id): a redelivery
    returns the same coupon; the same key for a different member, group or item raises ValueError.
    Raises ItemNotFound (missing or inactive), TierTooLow, LimitReached, InsufficientPoints, OutOfStock;
    nothing is written then.
    """
    now = now or utcnow()
    ledger_key = f"redeem:{key}"
    async with transaction(session), session.begin_nested():
        # Serialize this member's purchases, so the limit count below sees their earlier coupons.
        await points.lock_member(session, group_id, user_id, now=now)
        existing = await _by_ledger_key(session, ledger_key)
        if existing is not None:
            if (existing.group_id, existing.user_id, existing.item_id) != (group_id, user_id, item_id):
                raise ValueError(f"redemption key {key!r} was used for another purchase")
            return existing
        item = await session.scalar(
            select(ShopItem)
            .where(ShopItem.id == item_id, ShopItem.group_id == group_id, ShopItem.active.is_(True))  # type: ignore[arg-type,attr-defined]
            .execution_options(populate_existing=True)
        )
        if item is None:
            raise ItemNotFound(item_id)
        if item.min_tier is not None:
            rules = points.rules_of(await points.load_group(session, group_id))
            view = await points.get_balance(session, group_id, user_id)
            required, have = rules.tier_rank(item.min_tier), rules.tier_rank(view.tier)
            if required is None or have is None or have < required:
                raise TierTooLow(view.tier, item.min_tier)
        if item.per_member_limit is not None:
            held = await session.scalar(
                select(func.count())
                .select_from(Coupon)
                .where(Coupon.item_id == item_id, Coupon.user_id == user_id, Coupon.status != "cancelled")  # type: ignore[arg-type]
            )
            if (held or 0) >= item.per_member_limit:
                raise LimitReached(item.per_member_limit)
        if item.cost > 0:
            await points.spend(
                session, group_id, user_id, item.cost, "redeem", ledger_key, reference=f"item:{item_id}", now=now
            )
        taken = (
            await session.execute(
                update(ShopItem)
                .where(ShopItem.id == item_id, ShopItem.stock > 0)  # type: ignore[arg-type,operator]
                .values(stock=ShopItem.stock - 1)
                .returning(ShopItem.stock)  # type: ignore[arg-type]
            )
        ).first()
        if taken is None:
            raise OutOfStock(item_id)
        claimed = await _claim_code(session, item_id, now)
        values = {
            "group_id": group_id,
            "item_id": item_id,
            "user_id": user_id,
            "status": "issued",
            "cost": item.cost,
            "issued_at": now,
            "expires_at": now + timedelta(days=item.valid_days),
            "ledger_key": ledger_key,
        }
        coupon_id = None
        for _ in range(5):
            coupon_id = await session.scalar(
                insert(session, Coupon)
                .values(code=claimed[1] if claimed else new_code(), **values)
                .on_conflict_do_nothing()
                .returning(Coupon.id)  # type: ignore[arg-type]
            )
            if coupon_id is not None or claimed:
                break
        if coupon_id is None:
            raise RuntimeError("could not store the coupon (code collision)")
        if claimed:
            await session.execute(update(ShopCode).where(ShopCode.id == claimed[0]).values(coupon_id=coupon_id))  # type: ignore[arg-type]
        coupon = await _by_ledger_key(session, ledger_key)
        assert coupon is not None
        return coupon


async def grant_coupon(
    session: AsyncSession, group_id: int, user_id: int, item_id: int, *, key: str, now: datetime | None = None
) -> Coupon:
    """Give one unit of the item as a prize (lotteries): no points spent, no tier or per-member limit (the
    giver decided), one unit of stock taken. The coupon's ledger_key is f"grant:{key}"; a redelivered `key`
    returns the same coupon. Raises ItemNotFound (missing or inactive), OutOfStock; nothing is written then."""
    now = now or utcnow()
    ledger_key = f"grant:{key}"
    async with transaction(session), session.begin_nested():
        existing = await _by_ledger_key(session, ledger_key)
        if existing is not None:
            return existing
        item = await session.scalar(
            select(ShopItem).where(ShopItem.id == item_id, ShopItem.group_id == group_id, ShopItem.active.is_(True))  # type: ignore[arg-type,attr-defined]
        )
        if item is None:
            raise ItemNotFound(item_id)
        taken = await session.scalar(
            update(ShopItem).where(ShopItem.id == item_id, ShopItem.stock > 0).values(stock=ShopItem.stock - 1)  # type: ignore[arg-type,operator]
            .returning(ShopItem.stock)  # type: ignore[arg-type]
        )
        if taken is None:
            raise OutOfStock(item_id)
        claimed = await _claim_code(session, item_id, now)
        coupon = Coupon(group_id=group_id, item_id=item_id, user_id=user_id, code=claimed[1] if claimed else new_code(),
                        status="issued", cost=0, issued_at=now, expires_at=now + timedelta(days=item.valid_days),
                        ledger_key=ledger_key)
        session.add(coupon)
        await session.flush()
        if claimed:
            await session.execute(update(ShopCode).where(ShopCode.id == claimed[0]).values(coupon_id=coupon.id))  # type: ignore[arg-type]
        return coupon


# -- coupons ---------------------------------------------------------------------------------------------------


async def my_coupons(
    session: AsyncSession, group_id: int | None, user_id: int, *, statuses: tuple[str, ...] | None = None
) -> list[Coupon]:
    """The member's coupons (in one group, or all groups when group_id is None), newest first, optionally only
    those with the given statuses."""
    async with transaction(session):
        statement = select(Coupon).where(Coupon.user_id == user_id)  # type: ignore[arg-type]
        if group_id is not None:
            statement = statement.where(Coupon.group_id == group_id)  # type: ignore[arg-type]
        if statuses:
            statement = statement.where(Coupon.status.in_(statuses))  # type: ignore[attr-defined]
        result = await session.scalars(statement.order_by(Coupon.id.desc()))  # type: ignore[union-attr]
        return list(result.all())


VerifyStatus = Literal["used_now", "already_used", "expired", "cancelled", "not_found"]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of verify. status "used_now" means this call marked it used; "already_used" carries when
    (used_at) and by whom (used_by) it was used before."""

    status: VerifyStatus
    coupon: Coupon | None
    used_at: datetime | None = None
    used_by: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "used_now"


async def _coupon_by_code(session: AsyncSession, group_id: int, code: str) -> Coupon | None:
    return await session.scalar(
        select(Coupon)
        .where(Coupon.group_id == group_id, Coupon.code == code)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )


async def verify(
    session: AsyncSession, group_id: int, code: str, staff_id: int, *, now: datetime | None = None
) -> VerifyResult:
    """Staff redeem (核销) a coupon: marks it used exactly once, by a conditional UPDATE on status 'issued' and
    not expired. Otherwise reports already_used (with when/by whom), expired (and marks it so), cancelled, or
    not_found. Whether `staff_id` is staff is the caller's check."""
    now = now or utcnow()
    code = normalize_code(code)
    async with transaction(session):
        columns = Coupon.__table__.c  # type: ignore[attr-defined]
        marked = (
            await session.execute(
                update(Coupon)
                .where(
                    columns.group_id == group_id,
                    columns.code == code,
                    columns.status == "issued",
                    columns.expires_at > now,
                )
                .values(status="used", used_at=now, used_by=staff_id)
                .returning(columns.id)
            )
        ).first()
        coupon = await _coupon_by_code(session, group_id, code)
        if marked is not None:
            return VerifyResult("used_now", coupon, now, staff_id)
        if coupon is None:
            return VerifyResult("not_found", None)
        if coupon.status == "used":
            return VerifyResult("already_used", coupon, coupon.used_at, coupon.used_by)
        if coupon.status == "cancelled":
            return VerifyResult("cancelled", coupon)
        if coupon.status == "issued":  # past expires_at
            await session.execute(
                update(Coupon).where(columns.id == coupon.id, columns.status == "issued").values(status="expired")
            )
            coupon.status = "expired"
        return VerifyResult("expired", coupon)


async def cancel_coupon(
    session: AsyncSession, group_id: int, code: str, actor_id: int, *, now: datetime | None = None
) -> Coupon:
    """Cancel an issued (unused) coupon: refund its points through the ledger (key f"refund:{coupon.id}") and
    return one unit to the item's stock. Raises CouponNotFound, or CouponNotCancellable (used, cancelled,
    expired). Exactly once, even when called concurrently."""
    now = now or utcnow()
    code = normalize_code(code)
    async with transaction(session), session.begin_nested():
        columns = Coupon.__table__.c  # type: ignore[attr-defined]
        row = (
            await session.execute(
                update(Coupon)
                .where(columns.group_id == group_id, columns.code == code, columns.status == "issued")
                .values(status="cancelled", cancelled_at=now, cancelled_by=actor_id)
                .returning(columns.id)
            )
        ).first()
        coupon = await _coupon_by_code(session, group_id, code)
        if coupon is None:
            raise CouponNotFound(code)
        if row is None:
            raise CouponNotCancellable(coupon.status)
        if coupon.cost > 0:
            await points.award(
                session, group_id, coupon.user_id, coupon.cost, "refund", f"refund:{coupon.id}",
                reference=f"coupon:{coupon.id}", actor_id=actor_id, now=now,
            )  # fmt: skip
        await session.execute(
            update(ShopItem).where(ShopItem.id == coupon.item_id).values(stock=ShopItem.stock + 1)  # type: ignore[arg-type]
        )
        return coupon


async def expire_coupons(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Mark issued coupons past their expiry as expired (for the scheduler). Returns how many."""
    async with transaction(session):
        columns = Coupon.__table__.c  # type: ignore[attr-defined]
        result = await session.execute(
            update(Coupon)
            .where(columns.status == "issued", columns.expires_at <= (now or utcnow()))
            .values(status="expired")
        )
        return result.rowcount or 0


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's coupons (and those they verified or cancelled as staff)."""
    async with transaction(session):
        columns = Coupon.__table__.c  # type: ignore[attr-defined]
        coupons = await session.scalars(
            select(Coupon)
            .where((columns.user_id == user_id) | (columns.used_by == user_id) | (columns.cancelled_by == user_id))
            .order_by(columns.id)
        )
        return {"coupons": [points.row_dict(row) for row in coupons.all()]}


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Coupons are shared records (stock, staff verification): keep them under `pseudonym`, with their
    idempotency keys (which may embed the id) replaced by "erased:<coupon id>"."""
    async with transaction(session):
        columns = Coupon.__table__.c  # type: ignore[attr-defined]
        await session.execute(
            update(Coupon)
            .where(columns.user_id == user_id)
            .values(user_id=pseudonym, ledger_key=literal("erased:") + cast(columns.id, String))
        )
        await session.execute(update(Coupon).where(columns.used_by == user_id).values(used_by=pseudonym))
        await session.execute(update(Coupon).where(columns.cancelled_by == user_id).values(cancelled_by=pseudonym))
