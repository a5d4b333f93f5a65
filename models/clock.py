"""Time: stored in UTC, lived in each group's own time zone (IANA name)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def is_time_zone(name: str) -> bool:
    """True for a valid IANA zone name such as Asia/Shanghai."""
    if not name or name.startswith("/") or ".." in name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def local_day(moment: datetime, zone: str) -> date:
    """The calendar day `moment` (aware) falls on in `zone`."""
    return moment.astimezone(ZoneInfo(zone)).date()
