"""Activity facts: what happened in a group, counted per local day, with no message text.

- `activity_member_days`: per (group, member, local day) messages by kind, replies, check-ins, topic replies,
  showcase posts, and the member's Telegram language that day.
- `activity_hours`: per (group, local day, hour) messages and speakers (members who posted in that hour).
- `membership_events`: every join (with its source), leave and removal.
- `activity_group_days`: the group's member count at the end of each local day a fact was written.

Moderation actions are already facts: the audit log (models/moderation.ModAction) counts them by kind, rule and
admin. `members.last_seen_at` is overwritten, so history comes from these tables only.

Messages are counted in memory (`ActivityDesk`, one per process, the Runtime's `activity`) and written once a
minute in one transaction of upserts, off the message path. A crash loses at most that minute of counts (they are
statistics; nothing else depends on them). Speakers per hour are counted by remembering who has posted in the
current hours; after a restart someone who already posted in that hour may count again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import Field, SQLModel

from models.db import BigIntKey, UTCDateTime, dialect_insert, is_postgres, transaction, utcnow
from models.groups import GONE_ROLES, Group, Member

log = logging.getLogger(__name__)

MESSAGE_KINDS = ("text", "photo", "video", "voice", "sticker", "other")
COUNTERS = (*MESSAGE_KINDS, "replies", "checkins", "topic_replies", "showcases")
_INDEX = {name: n for n, name in enumerate(COUNTERS)}
JOIN_SOURCES = ("member_link", "admin_link", "join_request", "added", "public")
EVENT_KINDS = ("join", "leave", "removed")


def _counter() -> Any:
    return Field(default=0, sa_column=Column(Integer, nullable=False, default=0))


class MemberDay(SQLModel, table=True):
    """One member's activity in one group on one local day (counts only)."""

    __tablename__ = "activity_member_days"
    __table_args__ = (
        PrimaryKeyConstraint("group_id", "day", "user_id"),
        Index("ix_activity_member_days_user", "user_id"),
        # SQLite: the rows stored in key order, so a period's rows are read in one range (10x faster KPIs)
        {"sqlite_with_rowid": False},
    )

    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    day: date = Field(sa_column=Column(Date, nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    text: int = _counter()
    photo: int = _counter()
    video: int = _counter()
    voice: int = _counter()
    sticker: int = _counter()
    other: int = _counter()
    replies: int = _counter()
    checkins: int = _counter()
    topic_replies: int = _counter()
    showcases: int = _counter()
    language: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))


class HourFact(SQLModel, table=True):
    """Messages and speakers in one group in one local hour."""

    __tablename__ = "activity_hours"
    __table_args__ = (PrimaryKeyConstraint("group_id", "day", "hour"), {"sqlite_with_rowid": False})

    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    day: date = Field(sa_column=Column(Date, nullable=False))
    hour: int = Field(sa_column=Column(Integer, nullable=False))  # 0..23, local
    messages: int = _counter()
    speakers: int = _counter()


class MembershipEvent(SQLModel, table=True):
    """A join (with its source), a leave or a removal. `actor_id`: who added the member, or whose link they used."""

    __tablename__ = "membership_events"
    __table_args__ = (Index("ix_membership_events_group_day", "group_id", "day"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    kind: str = Field(sa_column=Column(String(8), nullable=False))
    source: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    actor_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    day: date = Field(sa_column=Column(Date, nullable=False))  # local day in the group's zone
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class GroupDay(SQLModel, table=True):
    """A group's local day in totals: its member count at the end of the day (None: not recorded that day) and
    the day's activity summed over its members (kept equal to activity_member_days by `refresh_day_totals`), so
    a period's daily figures read one row a day."""

    __tablename__ = "activity_group_days"
    __table_args__ = (PrimaryKeyConstraint("group_id", "day"), {"sqlite_with_rowid": False})

    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    day: date = Field(sa_column=Column(Date, nullable=False))
    members: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    actives: int = _counter()  # members with a fact that day
    text: int = _counter()
    photo: int = _counter()
    video: int = _counter()
    voice: int = _counter()
    sticker: int = _counter()
    other: int = _counter()
    replies: int = _counter()
    checkins: int = _counter()
    topic_replies: int = _counter()
    showcases: int = _counter()


@functools.cache
def zone_of(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# -- the desk: counts in memory, written once a minute ---------------------------------------------------------


class ActivityDesk:
    """Counts activity in memory and writes it in one transaction (`flush`) every `flush_s` seconds, started
    from the next note after that time has passed (so the message path only adds to dicts). `retention_days`:
    facts older than that many days are deleted (at most once a day, during a flush; 0 keeps them forever)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, flush_s: float = 60.0,
                 retention_days: int = 400) -> None:
        self.sessionmaker = sessionmaker
        self.flush_s, self.retention_days = flush_s, retention_days
        self.days: dict[tuple[int, int, date], list[int]] = {}
        self.languages: dict[tuple[int, int, date], str] = {}
        self.hours: dict[tuple[int, date, int], list[int]] = {}  # [messages, new speakers]
        self.speakers: dict[tuple[int, date, int], set[int]] = {}  # who posted in the current hours
        self.touched: dict[int, date] = {}  # group -> the latest local day noted (for the member count)
        self.last_flush = time.monotonic()
        self.last_prune: date | None = None
        self.lock = asyncio.Lock()
        self.pending: asyncio.Task[None] | None = None

    def note_message(self, group_id: int, timezone: str, user_id: int, at: datetime, kind: str, *,
                     reply: bool = False, topic_reply: bool = False, showcase: bool = False,
                     language: str | None = None) -> None:
        """Count one message that stayed (after moderation). `kind`: one of MESSAGE_KINDS."""
        local = at.astimezone(zone_of(timezone))
        day = local.date()
        counts = self.days.get((group_id, user_id, day))
        if counts is None:
            counts = self.days[group_id, user_id, day] = [0] * len(COUNTERS)
        counts[_INDEX.get(kind, 5)] += 1
        if reply:
            counts[6] += 1
        if topic_reply:
            counts[8] += 1
        if showcase:
            counts[9] += 1
        if language:
            self.languages[group_id, user_id, day] = language
        hour_key = (group_id, day, local.hour)
        hour = self.hours.get(hour_key)
        if hour is None:
            hour = self.hours[hour_key] = [0, 0]
        hour[0] += 1
        seen = self.speakers.get(hour_key)
        if seen is None:
            seen = self.speakers[hour_key] = set()
        if user_id not in seen:
            seen.add(user_id)
            hour[1] += 1
        self.touched[group_id] = day
        self._maybe_flush()

    def note(self, group_id: int, user_id: int, day: date, counter: str) -> None:
        """Count one event of `counter` (e.g. "checkins", "topic_replies") for a member on a local day."""
        counts = self.days.get((group_id, user_id, day))
        if counts is None:
            counts = self.days[group_id, user_id, day] = [0] * len(COUNTERS)
        counts[_INDEX[counter]] += 1
        self.touched[group_id] = max(day, self.touched.get(group_id, day))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self.last_flush >= self.flush_s and (self.pending is None or self.pending.done()):
            self.last_flush = time.monotonic()
            self.pending = asyncio.get_running_loop().create_task(self._flush_logged())

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception:
            log.exception("activity facts: flush failed; the counts are kept for the next one")

    async def flush(self, session: AsyncSession | None = None) -> None:
        """Write what was counted since the last flush (one transaction; in `session`'s if given). On failure
        the counts are put back for the next flush."""
        async with self.lock:
            days, languages, hours, touched = self.days, self.languages, self.hours, self.touched
            self.days, self.languages, self.hours, self.touched = {}, {}, {}, {}
            self.last_flush = time.monotonic()
            self._forget_old_hours()
            if not (days or hours or touched):
                return
            try:
                if session is not None:
                    await write_facts(session, days, languages, hours, touched)
                else:
                    async with self.sessionmaker() as own:
                        await write_facts(own, days, languages, hours, touched)
                        await self._prune(own, max(touched.values(), default=None))
            except BaseException:
                self._put_back(days, languages, hours, touched)
                raise

    def _put_back(self, days: dict[tuple[int, int, date], list[int]], languages: dict[tuple[int, int, date], str],
                  hours: dict[tuple[int, date, int], list[int]], touched: dict[int, date]) -> None:
        for key, counts in days.items():
            mine = self.days.setdefault(key, [0] * len(COUNTERS))
            for n, value in enumerate(counts):
                mine[n] += value
        for lkey, language in languages.items():
            self.languages.setdefault(lkey, language)
        for hkey, (messages, speakers) in hours.items():
            hour = self.hours.setdefault(hkey, [0, 0])
            hour[0] += messages
            hour[1] += speakers
        for group_id, day in touched.items():
            self.touched[group_id] = max(day, self.touched.get(group_id, day))

    def _forget_old_hours(self) -> None:
        """Keep the speaker sets of the last few hours only (memory stays bounded)."""
        if len(self.speakers) > 10_000:
            self.speakers.clear()
            return
        newest: dict[int, tuple[date, int]] = {}
        for group_id, day, hour in self.speakers:
            if (day, hour) > newest.get(group_id, (date.min, 0)):
                newest[group_id] = (day, hour)
        for key in list(self.speakers):
            group_id, day, hour = key
            if (day, hour) != newest[group_id]:
                del self.speakers[key]

    async def _prune(self, session: AsyncSession, today: date | None) -> None:
        if not self.retention_days or today is None or self.last_prune == today:
            return
        self.last_prune = today
        await prune_facts(session, today - timedelta(days=self.retention_days))


def _member_day_upsert(postgres: bool) -> Any:
    stmt = dialect_insert(postgres, MemberDay)
    table = MemberDay.__table__  # type: ignore[attr-defined]
    return stmt.on_conflict_do_update(
        index_elements=["group_id", "day", "user_id"],
        set_={**{name: table.c[name] + stmt.excluded[name] for name in COUNTERS},
              "language": func.coalesce(stmt.excluded.language, table.c.language)},
    )


def _hour_upsert(postgres: bool) -> Any:
    stmt = dialect_insert(postgres, HourFact)
    table = HourFact.__table__  # type: ignore[attr-defined]
    return stmt.on_conflict_do_update(
        index_elements=["group_id", "day", "hour"],
        set_={"messages": table.c.messages + stmt.excluded.messages,
              "speakers": table.c.speakers + stmt.excluded.speakers},
    )


def _group_day_upsert(postgres: bool) -> Any:
    stmt = dialect_insert(postgres, GroupDay)
    return stmt.on_conflict_do_update(index_elements=["group_id", "day"], set_={"members": stmt.excluded.members})


def _day_totals_upsert(postgres: bool) -> Any:
    """Recompute the totals of one group's days in [lo, hi] from the member days."""
    m = MemberDay.__table__.c  # type: ignore[attr-defined]
    query = (
        select(m.group_id, m.day, func.count(), *(func.sum(m[name]) for name in COUNTERS))
        .where(m.group_id == bindparam("g"), m.day >= bindparam("lo"), m.day <= bindparam("hi"))
        .group_by(m.group_id, m.day)
    )
    stmt = dialect_insert(postgres, GroupDay).from_select(["group_id", "day", "actives", *COUNTERS], query)
    return stmt.on_conflict_do_update(
        index_elements=["group_id", "day"],
        set_={name: stmt.excluded[name] for name in ("actives", *COUNTERS)},
    )


_UPSERTS = {kind: {postgres: build(postgres) for postgres in (False, True)}
            for kind, build in (("day", _member_day_upsert), ("hour", _hour_upsert), ("group", _group_day_upsert),
                                ("totals", _day_totals_upsert))}


async def write_facts(session: AsyncSession, days: dict[tuple[int, int, date], Sequence[int]],
                      languages: dict[tuple[int, int, date], str], hours: dict[tuple[int, date, int], Sequence[int]],
                      touched: dict[int, date]) -> None:
    """Add counts to the facts (upserts), refresh the day totals of the days written, and record each touched
    group's member count for its latest day."""
    postgres = is_postgres(session)
    async with transaction(session):
        if days:
            await session.execute(_UPSERTS["day"][postgres], [
                {"group_id": g, "user_id": u, "day": d, **dict(zip(COUNTERS, counts, strict=True)),
                 "language": languages.get((g, u, d))}
                for (g, u, d), counts in sorted(days.items())  # one lock order in every process: no deadlock
            ])
        if hours:
            await session.execute(_UPSERTS["hour"][postgres], [
                {"group_id": g, "day": d, "hour": h, "messages": m, "speakers": n}
                for (g, d, h), (m, n) in sorted(hours.items())
            ])
        spans: dict[int, tuple[date, date]] = {}
        for g, _, d in days:
            lo, hi = spans.get(g, (d, d))
            spans[g] = (min(lo, d), max(hi, d))
        for g, (lo, hi) in sorted(spans.items()):
            await refresh_day_totals(session, g, lo, hi)
        if touched:
            counts = dict((await session.execute(
                select(Member.group_id, func.count()).where(  # type: ignore[call-overload]
                    Member.group_id.in_(list(touched)), Member.role.not_in(GONE_ROLES)  # type: ignore[attr-defined]
                ).group_by(Member.group_id)
            )).all())
            await session.execute(_UPSERTS["group"][postgres], [
                {"group_id": g, "day": d, "members": counts.get(g, 0)} for g, d in sorted(touched.items())
            ])


async def refresh_day_totals(session: AsyncSession, group_id: int, start: date, end: date) -> None:
    """Make the group's day totals for [start, end] equal to the sums of its member days (one statement)."""
    async with transaction(session):
        await session.execute(_UPSERTS["totals"][is_postgres(session)], {"g": group_id, "lo": start, "hi": end})


async def prune_facts(session: AsyncSession, before: date) -> None:
    """Delete facts of local days before `before` (the retention setting)."""
    async with transaction(session):
        for table in (MemberDay, HourFact, GroupDay, MembershipEvent):
            await session.execute(delete(table).where(table.day < before))  # type: ignore[attr-defined]


# -- membership events ----------------------------------------------------------------------------------------


async def record_membership(session: AsyncSession, group: Group, user_id: int, kind: str, *,
                            source: str | None = None, actor_id: int | None = None,
                            at: datetime | None = None) -> None:
    """Record a join (`source` one of JOIN_SOURCES), a leave or a removal ("removed") of a member."""
    if kind not in EVENT_KINDS or (source is not None and source not in JOIN_SOURCES):
        raise ValueError(f"unknown membership event {kind!r}/{source!r}")
    assert group.id is not None
    at = at or utcnow()
    async with transaction(session):
        session.add(MembershipEvent(group_id=group.id, user_id=user_id, kind=kind, source=source, actor_id=actor_id,
                                    day=at.astimezone(zone_of(group.timezone)).date(), at=at))
        await session.flush()


# -- the person's own facts (/mydata, /forgetme) ---------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's daily activity counts and their joins and departures."""
    async with transaction(session):
        days = (await session.scalars(
            select(MemberDay).where(MemberDay.user_id == user_id).order_by(MemberDay.group_id, MemberDay.day)  # type: ignore[arg-type]
        )).all()
        events = (await session.scalars(
            select(MembershipEvent).where(MembershipEvent.user_id == user_id).order_by(MembershipEvent.id)  # type: ignore[arg-type]
        )).all()
    return {"activity_days": [_row(row) for row in days], "membership_events": [_row(row) for row in events]}


def _row(row: SQLModel) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, date | datetime) else value
            for key, value in row.model_dump().items()}


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Keep the counts (the group's KPIs rely on them) under `pseudonym`: the person's id goes, the totals stay."""
    async with transaction(session):
        await session.execute(update(MemberDay).where(MemberDay.user_id == user_id).values(user_id=pseudonym))  # type: ignore[arg-type]
        await session.execute(
            update(MembershipEvent).where(MembershipEvent.user_id == user_id).values(user_id=pseudonym)  # type: ignore[arg-type]
        )
        await session.execute(
            update(MembershipEvent).where(MembershipEvent.actor_id == user_id).values(actor_id=pseudonym)  # type: ignore[arg-type]
        )
