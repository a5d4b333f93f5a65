"""The inbox: every update Telegram hands us is stored here before it is confirmed to Telegram, and stays
"pending" until it has been handled. A crash (kill -9, OOM, eviction) therefore loses nothing: what was pending is
replayed at the next start, or by another process's sweeper once its lease runs out.

Exactly once: the inbox gives at-least-once handling; every effect a replay could repeat is keyed in the
database (a check-in per member and day, an order per sale and member, a ledger entry per idempotency key, a post
per slot...), so a replay finds the effect applied and answers as a second press would. See docs/inbox.md.

The row keeps the update's JSON only while it is pending: marking it done clears it (no message text is kept).
A row set aside (a poison update) keeps it for `prune`'s `aside_for`, for an admin to look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models.db import UTCDateTime, insert, transaction, utcnow

PENDING, DONE, ASIDE = "pending", "done", "aside"


class InboxUpdate(SQLModel, table=True):
    """One update received from Telegram (getUpdates or the webhook), keyed by (bot, update_id)."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_state_stored_at", "state", "stored_at"),)

    bot_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    update_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    chat_id: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))  # the order key (0: none)
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    state: str = Field(default=PENDING, sa_column=Column(String(8), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    owner: str = Field(default="", sa_column=Column(String(40), nullable=False, default=""))  # the process on it
    stored_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    taken_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))  # lease
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))  # why set aside


class Received(NamedTuple):
    update_id: int
    chat_id: int
    payload: dict[str, Any]


class Pending(NamedTuple):
    update_id: int
    chat_id: int
    payload: dict[str, Any]
    attempts: int  # how many times a process has taken it (this time included)


@dataclass(frozen=True)
class InboxStats:
    depth: int  # pending updates
    oldest_age_s: float  # age of the oldest pending update (0 when none)
    set_aside: int  # poison updates set aside (kept for `prune`'s aside_for)


def chat_of(payload: dict[str, Any]) -> int:
    """The chat an update belongs to, which orders its handling (0: none, e.g. an inline query's sender-less
    kinds). A press counts in the chat of the message it is on; a private interaction in the person's chat."""
    for value in payload.values():
        if not isinstance(value, dict):
            continue
        chat = value.get("chat")
        if chat is None and isinstance(value.get("message"), dict):
            chat = value["message"].get("chat")
        if isinstance(chat, dict) and "id" in chat:
            return int(chat["id"])
        sender = value.get("from") or value.get("user")
        if isinstance(sender, dict) and "id" in sender:
            return int(sender["id"])
    return 0


def lane_of(payload: dict[str, Any]) -> tuple[int, int]:
    """The lane an update is handled in, in arrival order: its chat and the person behind it (0: none). One
    person's updates in a chat are handled one after another; different people's run side by side, so a group's
    burst of presses still reaches the batching desks together (models/batching.py)."""
    for value in payload.values():
        if isinstance(value, dict):
            sender = value.get("from") or value.get("user")
            if isinstance(sender, dict) and "id" in sender:
                return chat_of(payload), int(sender["id"])
    return chat_of(payload), 0


async def store(session: AsyncSession, bot_id: int, received: Sequence[Received], *, owner: str) -> set[int]:
    """Store these updates as pending, owned by `owner`; returns the update ids that were new (a redelivered
    update already stored is skipped: its first copy is, or was, handled)."""
    if not received:
        return set()
    now = utcnow()
    rows = [
        {"bot_id": bot_id, "update_id": r.update_id, "chat_id": r.chat_id, "payload": r.payload, "state": PENDING,
         "attempts": 0, "owner": owner, "stored_at": now, "taken_at": now}
        for r in received
    ]
    async with transaction(session):
        statement = insert(session, InboxUpdate).on_conflict_do_nothing().returning(InboxUpdate.update_id)  # type: ignore[arg-type]
        result = await session.execute(statement, rows)
        return {int(u) for u in result.scalars()}


async def mark_done(session: AsyncSession, bot_id: int, update_ids: Sequence[int]) -> None:
    """These updates were handled: they leave the pending set and their JSON is dropped."""
    if not update_ids:
        return
    async with transaction(session):
        await session.execute(
            update(InboxUpdate)
            .where(InboxUpdate.bot_id == bot_id, InboxUpdate.update_id.in_(list(update_ids)))  # type: ignore[attr-defined]
            .values(state=DONE, payload=None, finished_at=utcnow())
        )


async def set_aside(session: AsyncSession, bot_id: int, update_id: int, error: str) -> None:
    """A poison update: no more attempts; it stays (with its JSON) until `prune` removes it."""
    async with transaction(session):
        await session.execute(
            update(InboxUpdate)
            .where(InboxUpdate.bot_id == bot_id, InboxUpdate.update_id == update_id)  # type: ignore[arg-type]
            .values(state=ASIDE, finished_at=utcnow(), error=error[:200])
        )


async def take_pending(
    session: AsyncSession, bot_id: int, *, owner: str, lease: timedelta | None, limit: int = 500,
    exclude: Sequence[int] = (),
) -> list[Pending]:
    """Take up to `limit` pending updates, oldest first, that no live process holds: with `lease`, those whose
    owner has not renewed its hold (`renew`) for that long; with None, all of them (the only process that may
    handle them is starting). Each taken update counts one attempt more. Conditional, so two processes never
    take the same update at once."""
    now = utcnow()
    free = InboxUpdate.state == PENDING
    if lease is not None:
        free = and_(free, InboxUpdate.taken_at < now - lease)  # type: ignore[assignment, operator]
    async with transaction(session):
        ids = select(InboxUpdate.update_id).where(InboxUpdate.bot_id == bot_id, free)  # type: ignore[arg-type]
        if exclude:
            ids = ids.where(InboxUpdate.update_id.not_in(list(exclude)))  # type: ignore[attr-defined]
        chosen = list((await session.scalars(ids.order_by(InboxUpdate.update_id).limit(limit))).all())  # type: ignore[arg-type]
        if not chosen:
            return []
        result = await session.execute(
            update(InboxUpdate)
            .where(InboxUpdate.bot_id == bot_id, InboxUpdate.update_id.in_(chosen), free)  # type: ignore[attr-defined]
            .values(attempts=InboxUpdate.attempts + 1, owner=owner, taken_at=now)
            .returning(InboxUpdate.update_id, InboxUpdate.chat_id, InboxUpdate.payload, InboxUpdate.attempts)
        )
        taken = [Pending(int(u), int(c), p or {}, int(a)) for u, c, p, a in result.all()]
    return sorted(taken, key=lambda p: p.update_id)


async def renew(session: AsyncSession, bot_id: int, *, owner: str) -> None:
    """The process `owner` is alive and still holds its pending updates (other sweepers leave them alone)."""
    async with transaction(session):
        await session.execute(
            update(InboxUpdate)
            .where(InboxUpdate.bot_id == bot_id, InboxUpdate.owner == owner, InboxUpdate.state == PENDING)  # type: ignore[arg-type]
            .values(taken_at=utcnow())
        )


async def prune(
    session: AsyncSession, *, done_for: timedelta = timedelta(days=2), aside_for: timedelta = timedelta(days=7)
) -> int:
    """Delete handled rows older than `done_for` (they only keep a redelivered copy from being handled again;
    Telegram redelivers for at most 24 h) and set-aside rows older than `aside_for`."""
    now = utcnow()
    async with transaction(session):
        result = await session.execute(
            delete(InboxUpdate).where(
                ((InboxUpdate.state == DONE) & (InboxUpdate.finished_at < now - done_for))  # type: ignore[operator]
                | ((InboxUpdate.state == ASIDE) & (InboxUpdate.finished_at < now - aside_for))  # type: ignore[operator]
            )
        )
        return result.rowcount or 0


async def stats(session: AsyncSession, bot_id: int | None = None) -> InboxStats:
    """Inbox depth, the age of its oldest pending update and how many updates were set aside (for /readyz,
    /metrics and admins). All bots when `bot_id` is None."""
    where = [] if bot_id is None else [InboxUpdate.bot_id == bot_id]
    async with transaction(session):
        pending = (
            await session.execute(
                select(func.count(), func.min(InboxUpdate.stored_at)).where(InboxUpdate.state == PENDING, *where)  # type: ignore[arg-type]
            )
        ).one()
        aside = await session.scalar(select(func.count()).where(InboxUpdate.state == ASIDE, *where))  # type: ignore[arg-type]
    oldest = pending[1]
    if oldest is not None and oldest.tzinfo is None:
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0
    return InboxStats(depth=int(pending[0]), oldest_age_s=age, set_aside=int(aside or 0))
