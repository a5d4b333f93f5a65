"""What points keep about a person, for /mydata and /forgetme."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import String, cast, delete, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from models.db import transaction
from models.points.earning import ChatAwardState, PointsDailyCounter, ShowcaseDecision
from models.points.ledger import PointsBalance, PointsEntry
from models.points.ranking import Badge


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
