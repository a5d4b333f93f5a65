"""Schedules: what the bot posts in a group on the group's own clock (the check-in board, the daily topic,
flash sales ...). The rows are the truth; the scheduler reads them every minute and works out which slots are
due (`due_slots`).

A slot is one (group, kind, ref_id, local day): at most one post per schedule per local day, claimed in the
`posts` table (models.boards.claim_post) before it is sent. The time of day is local ("HH:MM" in
Group.timezone), so changing the group's zone moves every schedule with it.

Quiet hours (`/schedule quiet 23:00-08:00`) hold a scheduled post that falls inside them until they end, if
that is still the same local day; otherwise the post is skipped for that day. Kinds registered as exempt (e.g.
a flash sale announced for a fixed time) ignore quiet hours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Boolean, Column, Date, ForeignKey, Integer, String, UniqueConstraint, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models.boards import Post, board_settings, parse_hh_mm
from models.db import BigIntKey, UTCDateTime, insert, transaction, utcnow
from models.groups import Group

DEFAULT_GRACE = timedelta(minutes=10)
ALL_DAYS = "1234567"
CLAIM_KIND_MAX = 32  # posts.kind is String(32) and holds f"{kind}:{ref_id}"
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
DAY_ALIASES = {
    "daily": ALL_DAYS, "everyday": ALL_DAYS, "每天": ALL_DAYS, "每日": ALL_DAYS,
    "weekdays": "12345", "workdays": "12345", "工作日": "12345",
    "weekend": "67", "weekends": "67", "周末": "67", "週末": "67",
}


class Schedule(SQLModel, table=True):
    """One recurring (or one-off) post in a group: `kind` at `at` (local HH:MM) on `weekdays` (ISO digits)."""

    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("group_id", "kind", "ref_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    # 0 for group-level kinds; NOT NULL because NULLs never collide in a unique key.
    ref_id: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    at: str = Field(sa_column=Column(String(5), nullable=False))
    weekdays: str = Field(default=ALL_DAYS, sa_column=Column(String(7), nullable=False, default=ALL_DAYS))
    once_on: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    duration_minutes: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    enabled: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, default=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class ScheduleError(ValueError):
    """A schedule that cannot be: the message is a short English reason."""


# -- parsing ---------------------------------------------------------------------------------------------------


def parse_weekdays(text: str) -> str:
    """ISO weekday digits from '1-5', '135', '1,3,5', 'daily', 'weekdays', 'weekend' (and 每天/工作日/周末).
    Returns sorted unique digits; raises ScheduleError."""
    raw = text.strip().lower()
    if raw in DAY_ALIASES:
        return DAY_ALIASES[raw]
    days: set[int] = set()
    for part in re.split(r"[,，\s]+", raw):
        if not part:
            continue
        if re.fullmatch(r"[1-7]-[1-7]", part):
            first, last = int(part[0]), int(part[2])
            if first > last:
                raise ScheduleError(f"bad day range {part}")
            days.update(range(first, last + 1))
        elif re.fullmatch(r"[1-7]+", part):
            days.update(int(digit) for digit in part)
        else:
            raise ScheduleError(f"bad days {part[:16]}")
    if not days:
        raise ScheduleError("no days")
    return "".join(str(day) for day in sorted(days))


def parse_quiet_span(text: str) -> tuple[str, str]:
    """'23:00-08:00' -> ('23:00', '08:00'); raises ScheduleError."""
    start, sep, end = text.replace("–", "-").replace("~", "-").partition("-")
    first, last = parse_hh_mm(start), parse_hh_mm(end)
    if not sep or first is None or last is None:
        raise ScheduleError("quiet hours are HH:MM-HH:MM")
    if first == last:
        raise ScheduleError("quiet hours must not be empty")
    return first, last


def _check(kind: str, at: str, weekdays: str, ref_id: int, duration_minutes: int | None) -> tuple[str, str]:
    if not _KIND.match(kind) or len(f"{kind}:{ref_id}") > CLAIM_KIND_MAX or ref_id < 0:
        raise ScheduleError(f"bad kind {kind[:32]!r}")
    when = parse_hh_mm(at)
    if when is None:
        raise ScheduleError(f"bad time {at[:16]!r}, use HH:MM")
    if not weekdays or not re.fullmatch(r"[1-7]{1,7}", weekdays):
        raise ScheduleError(f"bad weekdays {weekdays[:16]!r}")
    if duration_minutes is not None and not 0 < duration_minutes <= 7 * 24 * 60:
        raise ScheduleError("duration must be 1 minute to 7 days")
    return when, "".join(sorted(set(weekdays)))


# -- rows ------------------------------------------------------------------------------------------------------


async def set_schedule(
    session: AsyncSession,
    group_id: int,
    kind: str,
    at: str,
    *,
    weekdays: str = ALL_DAYS,
    ref_id: int = 0,
    once_on: date | None = None,
    duration_minutes: int | None = None,
    enabled: bool = True,
) -> Schedule:
    """Create or replace the group's schedule for (kind, ref_id). Raises ScheduleError for bad values."""
    when, days = _check(kind, at, weekdays, ref_id, duration_minutes)
    values = dict(at=when, weekdays=days, once_on=once_on, duration_minutes=duration_minutes, enabled=enabled,
                  updated_at=utcnow())
    async with transaction(session):
        await session.execute(
            insert(session, Schedule)
            .values(group_id=group_id, kind=kind, ref_id=ref_id, **values)
            .on_conflict_do_update(index_elements=["group_id", "kind", "ref_id"], set_=values)
        )
        row = await _get(session, group_id, kind, ref_id, fresh=True)
        assert row is not None
        return row


async def _get(session: AsyncSession, group_id: int, kind: str, ref_id: int, *, fresh: bool = False) -> Schedule | None:
    statement = select(Schedule).where(
        Schedule.group_id == group_id, Schedule.kind == kind, Schedule.ref_id == ref_id  # type: ignore[arg-type]
    )
    if fresh:
        statement = statement.execution_options(populate_existing=True)
    return await session.scalar(statement)


async def get_schedule(session: AsyncSession, group_id: int, kind: str, ref_id: int = 0) -> Schedule | None:
    async with transaction(session):
        return await _get(session, group_id, kind, ref_id)


async def disable_schedule(session: AsyncSession, group_id: int, kind: str, ref_id: int = 0) -> bool:
    """Turn a schedule off, keeping its time. A kind with a built-in default (the check-in board) gets an
    explicit off row. True if something was on before."""
    async with transaction(session):
        row = await _get(session, group_id, kind, ref_id)
        if row is None:
            default = IMPLICIT_DEFAULTS.get(kind)
            group = await session.get(Group, group_id)
            at = default(group) if default is not None and group is not None and ref_id == 0 else None
            if at is None:
                return False
            await set_schedule(session, group_id, kind, at, ref_id=ref_id, enabled=False)
            return True
        was_on = row.enabled
        row.enabled, row.updated_at = False, utcnow()
        return was_on


async def delete_schedule(session: AsyncSession, group_id: int, kind: str, ref_id: int = 0) -> bool:
    async with transaction(session):
        result = await session.execute(
            delete(Schedule).where(
                Schedule.group_id == group_id, Schedule.kind == kind, Schedule.ref_id == ref_id  # type: ignore[arg-type]
            )
        )
        return bool(result.rowcount)


async def list_schedules(session: AsyncSession, group_id: int) -> list[Schedule]:
    """The group's schedule rows (enabled or not), by kind and ref_id. Built-in defaults are not rows; see
    `effective_schedules`."""
    async with transaction(session):
        rows = await session.scalars(
            select(Schedule).where(Schedule.group_id == group_id).order_by(Schedule.kind, Schedule.ref_id)  # type: ignore[arg-type]
        )
        return list(rows.all())


# -- built-in defaults -----------------------------------------------------------------------------------------

# A kind listed here runs for a group with no row of that kind, at the time the function gives (None = off).
# The check-in board: 08:00, or the time an older version kept in Group.settings["checkin"]["board_time"].
IMPLICIT_DEFAULTS: dict[str, Callable[[Group], str | None]] = {
    "checkin_board": lambda group: board_settings(group).time,
}


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """A schedule as /schedule shows it; `default` when it comes from a built-in default, not a row."""

    kind: str
    ref_id: int
    at: str
    weekdays: str
    enabled: bool
    once_on: date | None = None
    default: bool = False


async def effective_schedules(session: AsyncSession, group: Group) -> list[ScheduleView]:
    """The group's rows plus the built-in defaults it has no row for."""
    assert group.id is not None
    rows = await list_schedules(session, group.id)
    views = [ScheduleView(r.kind, r.ref_id, r.at, r.weekdays, r.enabled, r.once_on) for r in rows]
    have = {(r.kind, r.ref_id) for r in rows}
    for kind, default in IMPLICIT_DEFAULTS.items():
        at = default(group)
        if (kind, 0) not in have and at is not None:
            views.append(ScheduleView(kind, 0, at, ALL_DAYS, True, default=True))
    return sorted(views, key=lambda view: (view.kind, view.ref_id))


# -- quiet hours -----------------------------------------------------------------------------------------------


def quiet_hours_of(group: Group) -> tuple[str, str] | None:
    raw = (group.settings or {}).get("quiet_hours")
    if not raw:
        return None
    try:
        return parse_quiet_span(str(raw))
    except ScheduleError:
        return None


async def set_quiet_hours(session: AsyncSession, group_id: int, span: tuple[str, str] | None) -> None:
    """Set (or with None clear) the group's quiet hours, local HH:MM to HH:MM (may cross midnight)."""
    if span is not None:
        span = parse_quiet_span(f"{span[0]}-{span[1]}")
    async with transaction(session):
        group = await session.get(Group, group_id, with_for_update=True)
        if group is None:
            raise ScheduleError("no such group")
        settings = dict(group.settings or {})
        if span is None:
            settings.pop("quiet_hours", None)
        else:
            settings["quiet_hours"] = f"{span[0]}-{span[1]}"
        group.settings, group.updated_at = settings, utcnow()


def _minutes(hh_mm: str) -> int:
    hour, minute = hh_mm.split(":")
    return int(hour) * 60 + int(minute)


def in_quiet_hours(at: str, span: tuple[str, str] | None) -> bool:
    """True if local time `at` falls inside quiet hours [start, end) (which may cross midnight)."""
    if span is None:
        return False
    moment, start, end = _minutes(at), _minutes(span[0]), _minutes(span[1])
    return start <= moment < end if start < end else moment >= start or moment < end


def quiet_release(at: str, span: tuple[str, str] | None) -> str | None:
    """When a post due at `at` goes out under quiet hours `span`: `at` itself if outside them, the end of
    quiet hours if that is later the same day, or None (skipped for the day)."""
    if not in_quiet_hours(at, span):
        return at
    assert span is not None
    return span[1] if _minutes(span[1]) > _minutes(at) else None


# -- which slots are due ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One due post: a schedule's occurrence on one local day in one group. `starts_at` is the local HH:MM of
    that day in UTC (quiet hours may hold the post past it); schedule_id is 0 for a built-in default."""

    schedule_id: int
    group_id: int
    chat_id: int
    kind: str
    ref_id: int
    local_day: date
    starts_at: datetime
    timezone: str
    locale: str | None
    duration_minutes: int | None
    currency: str = "CNY"  # the group's (/currency), for the prices the post shows

    @property
    def claim_kind(self) -> str:
        return f"{self.kind}:{self.ref_id}"

    @property
    def claim_slot(self) -> str:
        return self.local_day.isoformat()


def local_moment(day: date, hh_mm: str, zone: ZoneInfo) -> datetime:
    """`day` at local `hh_mm` in `zone`, as aware UTC. A time skipped by a DST jump maps past the jump."""
    hour, minute = map(int, hh_mm.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(ZoneInfo("UTC"))


@dataclass(frozen=True, slots=True)
class _Plan:
    schedule_id: int
    kind: str
    ref_id: int
    at: str
    weekdays: str
    once_on: date | None
    duration_minutes: int | None


def _slots_of(group: Group, plan: _Plan, now: datetime, grace: timedelta, quiet: bool) -> list[Slot]:
    zone = ZoneInfo(group.timezone)
    span = quiet_hours_of(group) if quiet else None
    release = quiet_release(plan.at, span)
    if release is None:
        return []
    out = []
    # The grace window may reach back into yesterday (a 23:55 post caught up at 00:03).
    for day in sorted({now.astimezone(zone).date(), (now - grace).astimezone(zone).date()}):
        if str(day.isoweekday()) not in plan.weekdays or (plan.once_on is not None and plan.once_on != day):
            continue
        goes_out = local_moment(day, release, zone)
        if goes_out <= now < goes_out + grace:
            assert group.id is not None
            out.append(Slot(plan.schedule_id, group.id, group.chat_id, plan.kind, plan.ref_id, day,
                            local_moment(day, plan.at, zone), group.timezone, group.locale, plan.duration_minutes,
                            group.currency))
    return out


async def due_slots(
    session: AsyncSession,
    now: datetime | None = None,
    *,
    grace: timedelta = DEFAULT_GRACE,
    kinds: Collection[str] | None = None,
    quiet_exempt: Collection[str] = (),
) -> list[Slot]:
    """Slots of active groups that went out less than `grace` ago (by the group's clock, after quiet hours)
    and are not claimed yet. `kinds` limits the kinds considered (None = all)."""
    now = now or utcnow()
    async with transaction(session):
        group_rows = (await session.scalars(select(Group).where(Group.active.is_(True)))).all()  # type: ignore[attr-defined]
        schedule_query = select(Schedule).join(Group, Group.id == Schedule.group_id).where(Group.active.is_(True))  # type: ignore[arg-type,attr-defined]
        if kinds is not None:
            schedule_query = schedule_query.where(Schedule.kind.in_(list(kinds)))  # type: ignore[attr-defined]
        rows = (await session.scalars(schedule_query)).all()
        since = (now - grace - timedelta(days=1)).date().isoformat()
        claimed = {
            tuple(row)
            for row in (
                await session.execute(select(Post.group_id, Post.kind, Post.slot).where(Post.slot >= since))  # type: ignore[arg-type]
            ).all()
        }
    by_group: dict[int, list[_Plan]] = {}
    explicit: set[tuple[int, str, int]] = set()
    for row in rows:
        explicit.add((row.group_id, row.kind, row.ref_id))
        if row.enabled:
            assert row.id is not None
            by_group.setdefault(row.group_id, []).append(
                _Plan(row.id, row.kind, row.ref_id, row.at, row.weekdays, row.once_on, row.duration_minutes)
            )
    due: list[Slot] = []
    for group in group_rows:
        assert group.id is not None
        plans = list(by_group.get(group.id, []))
        for kind, default in IMPLICIT_DEFAULTS.items():
            if (kinds is None or kind in kinds) and (group.id, kind, 0) not in explicit:
                at = default(group)
                if at is not None:
                    plans.append(_Plan(0, kind, 0, at, ALL_DAYS, None, None))
        for plan in plans:
            for slot in _slots_of(group, plan, now, grace, quiet=plan.kind not in quiet_exempt):
                if (slot.group_id, slot.claim_kind, slot.claim_slot) not in claimed:
                    due.append(slot)
    return due


def next_run(view: ScheduleView, group: Group, now: datetime | None = None) -> datetime | None:
    """The next local moment this schedule posts (quiet hours not applied), or None if it never will again."""
    now = now or utcnow()
    zone = ZoneInfo(group.timezone)
    today = now.astimezone(zone).date()
    days = [view.once_on] if view.once_on is not None else [today + timedelta(days=n) for n in range(8)]
    for day in days:
        if str(day.isoweekday()) not in view.weekdays or (view.once_on is not None and view.once_on != day):
            continue
        moment = local_moment(day, view.at, zone)
        if moment > now:
            return moment.astimezone(zone)
    return None
