"""What the handlers share when they read what a person typed and write it back: whole numbers and row ids
within what the database columns hold, text without control characters, one duration grammar, a moment in the
group's time zone, money, and the `UsageError` every command turns into its usage answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from copy import copy
from datetime import datetime
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from babel import Locale, localedata
from babel.core import get_global
from pydantic import Field

from handlers.common import esc
from models.clock import parse_duration
from models.script import fold

__all__ = [
    "ALERT_MAX", "CAPTION_MAX", "CURRENCIES", "Count", "DEFAULT_CURRENCY", "DATE", "DATE_TIME", "DURATION_FORMS",
    "HOUR_MINUTE", "INT32_MAX", "INT64_MAX", "MONTH_DAY_TIME", "NO", "NO_VALUE", "RowId", "TelegramId",
    "UsageError", "Words", "YES", "clip", "current_currency", "fold", "has_control", "local_time", "money",
    "parse_duration", "parse_money", "parse_row_id", "parse_whole", "split_parts", "use_currency", "whole_number",
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


# -- money ---------------------------------------------------------------------------------------------------
#
# Prices are stored in minor units (`price_cents` columns: 1/100 of the currency). Every currency a group may
# choose has two minor digits in ISO 4217, so the storage is the same for all of them. A price is written with
# Babel's locale data for the group's language in the currency's home region (zh_Hans + MYR -> zh_Hans_MY; a
# language without that region falls back to the language itself: en + CNY -> en, "CN¥"). A whole amount in a
# currency whose cash has no minor unit (CLDR cashDigits 0: TWD) is shown without decimals ("NT$1,280"), as in
# Taiwan; an amount with cents still shows them.

CURRENCIES: dict[str, str] = {  # the currencies a group may choose (/currency), with their home region
    "CNY": "CN", "TWD": "TW", "HKD": "HK", "MOP": "MO", "SGD": "SG", "MYR": "MY", "USD": "US",
}
DEFAULT_CURRENCY = "CNY"
_currency: ContextVar[str] = ContextVar("qunbot_currency", default=DEFAULT_CURRENCY)
_LANGUAGES = {"en": "en", "zh_Hans": "zh_Hans", "zh_Hant": "zh_Hant", "zh": "zh_Hans"}


def current_currency() -> str:
    """The currency of the group being answered (set by the update pipeline, live posts and scheduled jobs)."""
    return _currency.get()


@contextmanager
def use_currency(currency: str | None) -> Iterator[None]:
    """Write money in `currency` (None or an unknown code: the default, CNY) inside the block."""
    token = _currency.set(currency if currency in CURRENCIES else DEFAULT_CURRENCY)
    try:
        yield
    finally:
        _currency.reset(token)


def _money_locale(locale: str, currency: str) -> Locale:
    language = _LANGUAGES.get(locale, "en")
    region = CURRENCIES.get(currency)
    if region and localedata.exists(f"{language}_{region}"):
        return Locale.parse(f"{language}_{region}")
    return Locale.parse(language)


def _current_locale() -> str:
    i18n = I18n.get_current(no_error=True)
    return i18n.current_locale if i18n is not None else "en"


def money(cents: int, *, bare_whole: bool = False, currency: str | None = None, locale: str | None = None) -> str:
    """An amount in minor units, written one way everywhere for the group's language and currency:
    128000 -> '¥1,280.00' (zh_Hans, CNY), 'NT$1,280' (en, TWD), 'HK$59.90', 'RM59.90' (en, MYR).
    `bare_whole` is kept for callers written before there was one way; it changes nothing."""
    del bare_whole
    code = currency or _currency.get()
    where = _money_locale(locale or _current_locale(), code)
    amount = Decimal(cents) / 100
    pattern = where.currency_formats["standard"]
    if cents % 100 == 0 and get_global("currency_fractions").get(code, (2, 0, 2, 0))[2] == 0:
        pattern = copy(pattern)  # the locale's own pattern, without its decimals
        pattern.frac_prec = (0, 0)
        text: str = pattern.apply(amount, where, currency=code, currency_digits=False)
        return text
    return str(pattern.apply(amount, where, currency=code))


_AMOUNT = re.compile(
    r"^(?:[¥$]|RMB|CNY|NT\$|NTD|TWD|HK\$|HKD|MOP\$?|S\$|SGD|RM|MYR|US\$|USD)?\s*"
    r"([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.([0-9]{1,2}))?\s*(?:元|块|塊|圓|RMB|CNY|NTD|TWD|HKD|MOP|SGD|MYR|USD)?$",
    re.IGNORECASE)


_HALF_WIDTH = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20, 0xFFE5: 0xA5}  # full-width forms, ￥


def parse_money(raw: str, *, max_cents: int = INT32_MAX) -> int | None:
    """A price as a member or admin types it, in minor units: '39.9' -> 3990, '¥99' -> 9900, '12.05元' -> 1205,
    '1,280' -> 128000, 'NT$1,280' / 'RM 59.90' / full-width '１２８０' likewise; None if it is not an amount with at
    most two decimals, or is larger than `max_cents`. Any of the group currencies' signs and codes is accepted."""
    text = raw.translate(_HALF_WIDTH).strip()
    match = _AMOUNT.match(text)
    if not match:
        return None
    cents = int(match[1].replace(",", "")) * 100 + int((match[2] or "0").ljust(2, "0"))
    return cents if cents <= max_cents else None


