"""Daily topics (互动话题): a pool of questions per group, posted one a day, rotating without repeats until the
pool is used up, and the topic posts members answer by replying (points: models.points.award_topic).

An empty pool is filled with the built-in starter pack for the group's language (topics_starter.json) the first
time a topic is needed. Each round marks topics used; when none is left, a new round starts (the topic just
posted is not picked first again). Nothing about people is stored here: reply points live in the ledger.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models.db import BigIntKey, UTCDateTime, insert, long_running, transaction, utcnow

TOPIC_MAX_LENGTH = 200  # characters in one topic
POOL_MAX = 500  # topics in one group's pool
IMPORT_MAX_BYTES = 64 * 1024  # a /topic import file
IMPORT_MAX_LINES = 200  # topics taken from one file
STARTER_FILE = Path(__file__).with_name("topics_starter.json")
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,3}\s*[.、)）:：]|[-*•·])\s*")


class Topic(SQLModel, table=True):
    """A question in a group's pool. `used`: already posted in the current round."""

    __tablename__ = "topics"
    __table_args__ = (UniqueConstraint("group_id", "text"), Index("ix_topics_group_used", "group_id", "used"))

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    text: str = Field(sa_column=Column(String(TOPIC_MAX_LENGTH), nullable=False))
    used: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class TopicPost(SQLModel, table=True):
    """A topic posted in a group: replies to `message_id` earn topic points."""

    __tablename__ = "topic_posts"
    __table_args__ = (UniqueConstraint("group_id", "message_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    topic_id: int | None = Field(
        default=None, sa_column=Column(BigIntKey, ForeignKey("topics.id", ondelete="SET NULL"), nullable=True)
    )
    message_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    day: date = Field(sa_column=Column(Date, nullable=False))
    posted_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False, index=True))


class TopicError(ValueError):
    """A topic that cannot be added; the message is a short English reason."""


# -- texts -----------------------------------------------------------------------------------------------------


def clean_topic(text: str) -> str:
    """One line, whitespace collapsed, list markers ("1.", "-", "•") dropped. Raises TopicError if empty or
    longer than TOPIC_MAX_LENGTH."""
    cleaned = " ".join(_LIST_MARKER.sub("", text, count=1).split())
    if not cleaned:
        raise TopicError("empty")
    if len(cleaned) > TOPIC_MAX_LENGTH:
        raise TopicError("too long")
    return cleaned


def decode_topic_file(data: bytes) -> str:
    """A text file's content: UTF-8 (with or without BOM), else GB18030 (Chinese Windows). Raises TopicError,
    also for control characters (a NUL byte would not even reach PostgreSQL)."""
    if len(data) > IMPORT_MAX_BYTES:
        raise TopicError("file too large")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if any(char < " " and char not in "\t\n\r\f" for char in text):  # NUL and the like: not plain text
            raise TopicError("not a text file")
        return text
    raise TopicError("not a text file")


def topic_lines(content: str) -> list[str]:
    """The non-empty lines of an import file that are not comments (#)."""
    return [line for line in content.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@cache
def _starters() -> dict[str, tuple[str, ...]]:
    raw = json.loads(STARTER_FILE.read_text(encoding="utf-8"))
    return {locale: tuple(texts) for locale, texts in raw.items()}


def starter_topics(locale: str | None) -> tuple[str, ...]:
    """The built-in starter pack for a locale (zh_Hans when there is none for it)."""
    packs = _starters()
    return packs.get(locale or "", packs["zh_Hans"])


# -- the pool --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddResult:
    added: int
    duplicates: int  # already in the pool (or twice in the input)
    invalid: int  # empty or too long
    over_limit: int  # not added because the pool is full


async def _pool_size(session: AsyncSession, group_id: int) -> int:
    return int(await session.scalar(select(func.count()).select_from(Topic).where(Topic.group_id == group_id)) or 0)  # type: ignore[arg-type]


async def add_topics(session: AsyncSession, group_id: int, texts: list[str]) -> AddResult:
    """Add topics to the pool, skipping duplicates and invalid lines, up to POOL_MAX topics in all."""
    duplicates = invalid = over = added = 0
    seen: set[str] = set()
    async with transaction(session):
        room = POOL_MAX - await _pool_size(session, group_id)
        for raw in texts:
            try:
                text = clean_topic(raw)
            except TopicError:
                invalid += 1
                continue
            if text in seen:
                duplicates += 1
                continue
            seen.add(text)
            if added >= room:
                over += 1
                continue
            result = await session.execute(
                insert(session, Topic)
                .values(group_id=group_id, text=text, used=False, created_at=utcnow())
                .on_conflict_do_nothing()
            )
            if result.rowcount == 1:
                added += 1
            else:
                duplicates += 1
    return AddResult(added, duplicates, invalid, over)


async def list_topics(session: AsyncSession, group_id: int) -> list[Topic]:
    async with transaction(session):
        rows = await session.scalars(select(Topic).where(Topic.group_id == group_id).order_by(Topic.id))  # type: ignore[arg-type]
        return list(rows.all())


async def remove_topic(session: AsyncSession, group_id: int, topic_id: int) -> bool:
    async with transaction(session):
        result = await session.execute(
            delete(Topic).where(Topic.group_id == group_id, Topic.id == topic_id)  # type: ignore[arg-type]
        )
        return bool(result.rowcount)


async def next_topic(session: AsyncSession, group_id: int, locale: str | None) -> Topic:
    """Take the next topic of the round (random among those not used yet) and mark it used. An empty pool
    gets the starter pack for `locale` first; a used-up pool starts a new round, which does not open with the
    topic posted last (so no topic runs twice in a row)."""
    async with transaction(session):
        if await _pool_size(session, group_id) == 0:
            await add_topics(session, group_id, list(starter_topics(locale)))
        last = await session.scalar(
            select(TopicPost.topic_id)
            .where(TopicPost.group_id == group_id, TopicPost.topic_id.is_not(None))  # type: ignore[arg-type,union-attr]
            .order_by(TopicPost.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
        for _attempt in range(5):
            topic_id = await session.scalar(
                select(Topic.id)
                .where(Topic.group_id == group_id, Topic.used.is_(False))  # type: ignore[arg-type,attr-defined]
                .order_by(case((Topic.id == last, 1), else_=0), func.random())  # type: ignore[arg-type]
                .limit(1)
            )
            if topic_id is None:  # the round is over: every topic is available again
                await session.execute(update(Topic).where(Topic.group_id == group_id).values(used=False))  # type: ignore[arg-type]
                continue
            taken = await session.execute(
                update(Topic)
                .where(Topic.id == topic_id, Topic.used.is_(False))  # type: ignore[arg-type,attr-defined]
                .values(used=True)
            )
            if taken.rowcount == 1:
                topic = await session.get(Topic, topic_id, populate_existing=True)
                assert topic is not None
                return topic
        raise TopicError("no topic could be taken")


async def release_topic(session: AsyncSession, topic_id: int) -> None:
    """Put a taken topic back into the round (its post could not be sent)."""
    async with transaction(session):
        await session.execute(update(Topic).where(Topic.id == topic_id).values(used=False))  # type: ignore[arg-type]


async def round_progress(session: AsyncSession, group_id: int) -> tuple[int, int]:
    """(topics used in this round, pool size)."""
    async with transaction(session):
        used = await session.scalar(
            select(func.count()).select_from(Topic).where(Topic.group_id == group_id, Topic.used.is_(True))  # type: ignore[arg-type,attr-defined]
        )
        return int(used or 0), await _pool_size(session, group_id)


# -- posts and replies -----------------------------------------------------------------------------------------


async def record_post(session: AsyncSession, group_id: int, topic_id: int | None, message_id: int, day: date) -> int:
    """Remember a topic post so replies to it earn points. Returns its id."""
    async with transaction(session):
        await session.execute(
            insert(session, TopicPost)
            .values(group_id=group_id, topic_id=topic_id, message_id=message_id, day=day, posted_at=utcnow())
            .on_conflict_do_nothing()
        )
        post_id = await session.scalar(
            select(TopicPost.id).where(TopicPost.group_id == group_id, TopicPost.message_id == message_id)  # type: ignore[arg-type,call-overload]
        )
        assert post_id is not None
        return int(post_id)


async def find_post(session: AsyncSession, group_id: int, message_id: int, *, since: datetime) -> TopicPost | None:
    """The topic post with this message id in the group, if it was posted after `since`."""
    async with transaction(session):
        return await session.scalar(
            select(TopicPost).where(
                TopicPost.group_id == group_id,  # type: ignore[arg-type]
                TopicPost.message_id == message_id,  # type: ignore[arg-type]
                TopicPost.posted_at >= since,  # type: ignore[arg-type]
            )
            .execution_options(populate_existing=True)
        )


@long_running
async def prune_posts(session: AsyncSession, before: datetime) -> int:
    """Forget topic posts older than `before` (replies to them no longer earn). Returns rows removed."""
    async with transaction(session):
        result = await session.execute(delete(TopicPost).where(TopicPost.posted_at < before))  # type: ignore[arg-type]
        return result.rowcount or 0
