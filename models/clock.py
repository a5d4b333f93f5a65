"""Time: stored in UTC, lived in each group's own time zone (IANA name)."""

from __future__ import annotations

import re
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


# -- durations: one grammar for every command and rule knob ----------------------------------------------------

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "秒": 1, "秒钟": 1, "秒鐘": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60, "分": 60, "分钟": 60, "分鐘": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "小时": 3600, "小時": 3600, "时": 3600, "時": 3600, "个小时": 3600, "個小時": 3600,
    "d": 86400, "day": 86400, "days": 86400, "天": 86400, "日": 86400,
    "w": 604800, "week": 604800, "weeks": 604800, "周": 604800, "週": 604800, "星期": 604800,
}
_HALF = {"半小时": 1800, "半小時": 1800, "半个小时": 1800, "半個小時": 1800, "半天": 43200}
_DURATION_PART = re.compile(r"(\d{1,6})(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True)) + r")")
_FULL_WIDTH = str.maketrans("０１２３４５６７８９", "0123456789")
DURATION_MAX_TEXT = 32
DURATION_CEILING = 100 * 366 * 86400  # past any bound a command sets, and far from datetime's year 9999


def parse_duration(text: str) -> int | None:
    """Seconds in a duration as people type it: 30s, 90s, 5m, 1h30m, 12h, 2d, 1d12h, 2w, 30秒, 5分钟, 5分鐘,
    3小时, 3小時, 2天, 1周, 1週, 半小时, 半小時 (full-width digits too); a bare number means minutes. None if it is
    not a duration, is zero or is over a century. Each command checks its own bounds."""
    raw = text.strip().lower().translate(_FULL_WIDTH).replace(" ", "")
    if not raw or len(raw) > DURATION_MAX_TEXT:
        return None
    if raw in _HALF:
        return _HALF[raw]
    if raw.isascii() and raw.isdigit():
        seconds = int(raw) * 60
    else:
        position, seconds = 0, 0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != position:
                return None
            seconds += int(match[1]) * _UNITS[match[2]]
            position = match.end()
        if position != len(raw):
            return None
    return seconds if 0 < seconds <= DURATION_CEILING else None
