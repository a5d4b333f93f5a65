"""A period of local days in a group's time zone, and the period before it (what every KPI is compared with)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

KINDS = ("day", "week", "month", "custom")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")


def _zone(zone: ZoneInfo | str) -> ZoneInfo:
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)


def _today(zone: ZoneInfo, now: datetime | None) -> date:
    return (now or datetime.now(UTC)).astimezone(zone).date()


@dataclass(frozen=True)
class Period:
    """Local days `start`..`end` (both included) in `zone`. `kind` decides only what `previous` is."""

    start: date
    end: date
    zone: ZoneInfo
    kind: str = "custom"

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("a period ends on or after its start")
        if self.kind not in KINDS:
            raise ValueError(f"unknown period kind {self.kind!r}")

    @classmethod
    def today(cls, zone: ZoneInfo | str, now: datetime | None = None) -> Period:
        zone = _zone(zone)
        day = _today(zone, now)
        return cls(day, day, zone, "day")

    @classmethod
    def week(cls, zone: ZoneInfo | str, now: datetime | None = None) -> Period:
        """This ISO week so far: Monday .. today."""
        zone = _zone(zone)
        day = _today(zone, now)
        return cls(day - timedelta(days=day.weekday()), day, zone, "week")

    @classmethod
    def last_week(cls, zone: ZoneInfo | str, now: datetime | None = None) -> Period:
        """The previous whole Monday..Sunday week (the weekly report's)."""
        zone = _zone(zone)
        monday = _today(zone, now) - timedelta(days=_today(zone, now).weekday() + 7)
        return cls(monday, monday + timedelta(days=6), zone, "week")

    @classmethod
    def month(cls, zone: ZoneInfo | str, now: datetime | None = None) -> Period:
        """This calendar month so far: the 1st .. today."""
        zone = _zone(zone)
        day = _today(zone, now)
        return cls(day.replace(day=1), day, zone, "month")

    @classmethod
    def of_month(cls, year: int, month: int, zone: ZoneInfo | str) -> Period:
        """A whole calendar month."""
        last = calendar.monthrange(year, month)[1]
        return cls(date(year, month, 1), date(year, month, last), _zone(zone), "month")

    @classmethod
    def custom(cls, start: date, end: date, zone: ZoneInfo | str) -> Period:
        return cls(start, end, _zone(zone), "custom")

    @classmethod
    def parse(cls, arg: str | None, zone: ZoneInfo | str, now: datetime | None = None) -> Period:
        """"today" (also empty), "week", "month", "YYYY-MM" or "YYYY-MM-DD..YYYY-MM-DD"; ValueError otherwise."""
        text = (arg or "").strip().lower()
        if text in ("", "today", "day"):
            return cls.today(zone, now)
        if text == "week":
            return cls.week(zone, now)
        if text == "month":
            return cls.month(zone, now)
        if match := _MONTH.match(text):
            year, month = int(match[1]), int(match[2])
            if not 1 <= month <= 12:
                raise ValueError(f"no month {text!r}")
            return cls.of_month(year, month, zone)
        if match := _RANGE.match(text):
            return cls.custom(date.fromisoformat(match[1]), date.fromisoformat(match[2]), zone)
        raise ValueError(f"not a period: {arg!r}")

    def previous(self) -> Period:
        """day: the day before; week: the same weekdays a week earlier; month: the previous calendar month from
        its 1st, as many days as this period has (clipped to that month; a whole month gives the whole previous
        month); custom: as many days just before `start`."""
        if self.kind == "week":
            return Period(self.start - timedelta(days=7), self.end - timedelta(days=7), self.zone, "week")
        if self.kind == "month" and self.start.day == 1:
            last_of_previous = self.start - timedelta(days=1)
            first = last_of_previous.replace(day=1)
            whole = self.end.day == calendar.monthrange(self.end.year, self.end.month)[1]
            end = last_of_previous if whole else min(first + timedelta(days=self.days - 1), last_of_previous)
            return Period(first, end, self.zone, "month")
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1), self.zone, self.kind)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def each_day(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range(self.days)]

    def utc_bounds(self) -> tuple[datetime, datetime]:
        """[start 00:00 local, the day after end 00:00 local) in UTC."""
        start = datetime.combine(self.start, time(), self.zone).astimezone(UTC)
        stop = datetime.combine(self.end + timedelta(days=1), time(), self.zone).astimezone(UTC)
        return start, stop

    def label(self) -> str:
        if self.start == self.end:
            return self.start.isoformat()
        if self.kind == "month" and self.start.day == 1 and self.end.day == calendar.monthrange(
                self.end.year, self.end.month)[1] and self.start.month == self.end.month:
            return f"{self.start:%Y-%m}"
        return f"{self.start.isoformat()}..{self.end.isoformat()}"
