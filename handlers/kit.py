"""What the handlers share when they read what a person typed and write it back: whole numbers and row ids
within what the database columns hold, text without control characters, one duration grammar, a moment in the
group's time zone, money, and the `UsageError` every command turns into its usage answer."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from pydantic import Field

from handlers.common import esc
from models.clock import parse_duration
from models.script import fold

__all__ = [
    "ALERT_MAX", "CAPTION_MAX", "Count", "DATE", "DATE_TIME", "DURATION_FORMS", "HOUR_MINUTE", "INT32_MAX",
    "INT64_MAX", "MONTH_DAY_TIME", "NO", "NO_VALUE", "RowId", "TelegramId", "UsageError", "Words", "YES", "clip",
    "fold", "has_control", "local_time", "money", "parse_duration", "parse_row_id", "parse_whole", "split_parts",
    "whole_number",
]

INT32_MAX = 2**31 - 1  # an Integer column (PostgreSQL int: costs, stock, limits, counts, days)
INT64_MAX = 2**63 - 1  # a BigInteger column (Telegram ids, row ids); SQLite's integers overflow past it too
ALERT_MAX = 200  # answerCallbackQuery text limit (Bot API: 0-200 characters)
CAPTION_MAX = 1024  # a photo's or document's caption limit (sendPhoto, sendDocument)


class Words(frozenset[str]):
    """Words a person types, written here in Simplified lower case and compared folded (models.script.fold):
    `raw in YES` holds for "是", " Yes", "ＯＮ"; `raw in NO_VALUE` for "無" as for "无". Unions stay Words."""

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and frozenset.__contains__(self, fold(item))

    def __or__(self, other: frozenset[str]) -> Words:  # type: ignore[override]
        return Words(frozenset.__or__(self, other))


YES = Words({"1", "yes", "y", "true", "on", "是"})
NO = Words({"0", "no", "n", "false", "off", "否"})
NO_VALUE = Words({"-", "", "none", "no", "all", "无", "不限"})  # "no limit", "everyone", "no picture"
# Shown in usage lines, in the reader's script (the grammar takes both: models.clock.parse_duration).
DURATION_FORMS = __("30s, 5m, 1h30m, 12h, 2d, 1w, 30秒, 5分钟, 3小时, 2天, 1周, 半小时")

# Numbers in callback data, bounded like the columns they are looked up in: a forged or stale button whose data
# does not fit fails to unpack (and is answered by handlers/unhandled.py) instead of reaching the database.
RowId = Annotated[int, Field(ge=0, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
TelegramId = Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX)]

DATE_TIME = "%Y-%m-%d %H:%M"
DATE = "%Y-%m-%d"
MONTH_DAY_TIME = "%m-%d %H:%M"
HOUR_MINUTE = "%H:%M"
_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９，", "0123456789,")
_WHOLE = re.compile(r"[0-9]{1,20}")


class UsageError(Exception):
    """Bad input to a command; the message says what was wrong (already localized)."""


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut (for echoing what a person typed)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- numbers ---------------------------------------------------------------------------------------------------


def whole_number(raw: str) -> int | None:
    """'42', '４２', '1,000' -> the number; None for anything else (signs, decimals, '²', 30 digits)."""
    value = raw.strip().translate(_FULL_WIDTH_DIGITS).replace(",", "")
    return int(value) if _WHOLE.fullmatch(value) else None


def parse_whole(raw: str, what: str, *, minimum: int = 0, maximum: int = INT32_MAX) -> int:
    """A whole number from `minimum` to `maximum` (by default what an Integer column holds), or a UsageError
    that names `what` and the range."""
    value = whole_number(raw)
    if value is not None and minimum <= value <= maximum:
        return value
    shown = esc(clip(raw.strip(), 32))
    if maximum >= INT32_MAX:
        raise UsageError(_("{what} must be a whole number of at least {minimum}, not “{raw}”.").format(
            what=what, minimum=minimum, raw=shown))
    raise UsageError(_("{what} must be a whole number from {minimum} to {maximum}, not “{raw}”.").format(
        what=what, minimum=minimum, maximum=maximum, raw=shown))


def parse_row_id(raw: str) -> int | None:
    """'#12' or '12' -> 12: a row's id as people see it in lists; None if it cannot be one."""
    value = whole_number(raw.strip().lstrip("#"))
    return value if value is not None and 0 < value <= INT64_MAX else None


def split_parts(args: str) -> list[str]:
    """The fields of `a | b | c` (a full-width ｜ too), each stripped."""
    return [part.strip() for part in args.replace("｜", "|").split("|")]


# -- text ------------------------------------------------------------------------------------------------------

_ALLOWED_CONTROLS = frozenset("\n\t\r")


def has_control(text: str) -> bool:
    """True if `text` holds a NUL byte, another control character (other than line breaks and tabs) or a lone
    surrogate: nothing a person means to type, and PostgreSQL refuses NUL in text."""
    return any(
        (char < " " or "\x7f" <= char <= "\x9f" or "\ud800" <= char <= "\udfff") and char not in _ALLOWED_CONTROLS
        for char in text
    )


# -- showing ---------------------------------------------------------------------------------------------------


def local_time(moment: datetime | None, zone: str, fmt: str = DATE_TIME) -> str:
    """`moment` in the group's zone (e.g. '2026-12-01 20:00'); UTC, marked so, if the zone name is unknown."""
    if moment is None:
        return "?"
    try:
        return moment.astimezone(ZoneInfo(zone)).strftime(fmt)
    except Exception:  # an unknown zone name must not break a reply
        return moment.strftime(fmt) + " UTC"


def money(cents: int, *, bare_whole: bool = False) -> str:
    """3990 -> '¥39.90', 9900 -> '¥99.00' ('¥99' with bare_whole, as flash sales show prices)."""
    whole, part = divmod(cents, 100)
    if bare_whole and part == 0:
        return f"¥{whole}"
    return f"¥{whole}.{part:02d}"


