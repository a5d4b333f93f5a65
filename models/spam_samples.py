"""Confirmed spam and ham samples, per group: what the group's classifier (models/spam_classifier.py) learns from.

An admin's `/spam` reply stores the message as a spam sample. These are ads, not members' chat: a sample holds the
advertisement's text (at most SAMPLE_MAX characters), the group and the time, and no sender. The owner removes
them all with `/spamsamples clear`; they go with the group.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, Index, Text, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel

from models.db import BigIntKey, UTCDateTime, run_in_transaction, transaction, utcnow

SAMPLE_MAX = 1000  # characters of a sample kept
SAMPLES_USED = 500  # the newest samples of each kind the classifier learns from


class SpamSample(SQLModel, table=True):
    """One confirmed sample: `spam` true for an ad an admin removed, false for a message they confirmed was fine."""

    __tablename__ = "spam_samples"
    __table_args__ = (Index("ix_spam_samples_group_kind_time", "group_id", "spam", "created_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    spam: bool = Field(sa_column=Column(Boolean, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


async def add_sample(session: AsyncSession, group_id: int, text: str, *, spam: bool = True) -> bool:
    """Store `text` as a confirmed sample of the group; False (nothing stored) for empty text."""
    text = text.strip()[:SAMPLE_MAX]
    if not text:
        return False
    async with transaction(session):
        session.add(SpamSample(group_id=group_id, spam=spam, text=text))
    return True


async def samples_of(session: AsyncSession, group_id: int) -> tuple[list[str], list[str]]:
    """The group's newest SAMPLES_USED spam samples and newest SAMPLES_USED ham samples, texts only."""

    def work(sync_session: Session) -> tuple[list[str], list[str]]:
        found: dict[bool, list[str]] = {}
        for spam in (True, False):
            rows = sync_session.execute(
                select(SpamSample.text).where(SpamSample.group_id == group_id, SpamSample.spam == spam)
                .order_by(SpamSample.created_at.desc(), SpamSample.id.desc())  # type: ignore[union-attr]
                .limit(SAMPLES_USED)
            )
            found[spam] = list(rows.scalars())
        return found[True], found[False]

    return await run_in_transaction(session, work)


async def count_samples(session: AsyncSession, group_id: int) -> int:
    return int(await session.scalar(select(func.count()).where(SpamSample.group_id == group_id)) or 0)


async def clear_samples(session: AsyncSession, group_id: int) -> int:
    """Remove every sample of the group; how many there were."""
    async with transaction(session):
        result = await session.execute(delete(SpamSample).where(SpamSample.group_id == group_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
