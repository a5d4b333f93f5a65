"""The region's money: a group's /currency, prices written with Babel's locale data for the group's language and
currency (one way in every answer), and prices typed the way the region writes them."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.methods import SendMessage

from bot.i18n import create_i18n
from handlers.kit import CURRENCIES, money, parse_money, use_currency
from models import groups
from tests.factories import texts

I18N = create_i18n("en")

# What Babel's locale data (CLDR) gives for 1,280.00 and 59.90 in each language, in the currency's home region where
# Babel knows that language there (zh_Hant_TW, en_MY, ...), else in the language itself (en + CNY: "CN¥").
# TWD: CLDR's cash digits are 0, so a whole amount drops its decimals, as Taiwan writes prices.
EXPECTED = {
    ("CNY", "en"): ("CN¥1,280.00", "CN¥59.90"),
    ("CNY", "zh_Hans"): ("¥1,280.00", "¥59.90"),
    ("CNY", "zh_Hant"): ("CN¥1,280.00", "CN¥59.90"),
    ("TWD", "en"): ("NT$1,280", "NT$59.90"),
    ("TWD", "zh_Hans"): ("NT$1,280", "NT$59.90"),
    ("TWD", "zh_Hant"): ("$1,280", "$59.90"),
    ("HKD", "en"): ("HK$1,280.00", "HK$59.90"),
    ("HKD", "zh_Hans"): ("HK$1,280.00", "HK$59.90"),
    ("HKD", "zh_Hant"): ("HK$1,280.00", "HK$59.90"),
    ("MOP", "en"): ("MOP$1,280.00", "MOP$59.90"),
    ("MOP", "zh_Hans"): ("MOP$1,280.00", "MOP$59.90"),
    ("MOP", "zh_Hant"): ("MOP$1,280.00", "MOP$59.90"),
    ("SGD", "en"): ("$1,280.00", "$59.90"),
    ("SGD", "zh_Hans"): ("$1,280.00", "$59.90"),
    ("SGD", "zh_Hant"): ("SGD1,280.00", "SGD59.90"),
    ("MYR", "en"): ("RM1,280.00", "RM59.90"),
    ("MYR", "zh_Hans"): ("MYR1,280.00", "MYR59.90"),
    ("MYR", "zh_Hant"): ("MYR1,280.00", "MYR59.90"),
    ("USD", "en"): ("$1,280.00", "$59.90"),
    ("USD", "zh_Hans"): ("US$1,280.00", "US$59.90"),
    ("USD", "zh_Hant"): ("US$1,280.00", "US$59.90"),
}


def test_every_currency_is_expected_in_every_language() -> None:
    assert {currency for currency, _ in EXPECTED} == set(CURRENCIES)
    assert {language for _, language in EXPECTED} == {"en", "zh_Hans", "zh_Hant"}


@pytest.mark.parametrize(("currency", "language"), sorted(EXPECTED))
def test_money_follows_babel_for_the_language_and_currency(currency: str, language: str) -> None:
    whole, cents = EXPECTED[currency, language]
    assert (money(128000, currency=currency, locale=language), money(5990, currency=currency, locale=language)) == (
        whole, cents)
    # the same from the context an answer is written in: the group's language (i18n) and currency (use_currency)
    with I18N.context(), I18N.use_locale(language), use_currency(currency):
        assert money(128000) == whole and money(5990) == cents


def test_money_keeps_small_and_odd_amounts() -> None:
    assert money(5, currency="CNY", locale="zh_Hans") == "¥0.05"
    assert money(128050, currency="TWD", locale="en") == "NT$1,280.50"  # cents are never dropped
    assert money(0, currency="HKD", locale="en") == "HK$0.00"
    assert money(123456789, currency="CNY", locale="zh_Hans") == "¥1,234,567.89"
    with use_currency("XYZ"):  # an unknown code (a hand-edited row) falls back to the default
        assert money(100, locale="zh_Hans") == "¥1.00"


@pytest.mark.parametrize(("raw", "cents"), [
    ("39.9", 3990), ("99", 9900), ("¥12.05", 1205), ("￥12.05", 1205), ("12.5元", 1250), ("1,280", 128000),
    ("59.90", 5990), ("１２８０", 128000), ("１，２８０．５", 128050), ("NT$1,280", 128000), ("HK$59.90", 5990),
    ("RM 59.90", 5990), ("MOP$20", 2000), ("S$5", 500), ("US$9.99", 999), ("1280 TWD", 128000), ("3塊", 300),
    ("1.234", None), ("abc", None), ("12,80", None), ("-3", None), ("", None), ("1e5", None), ("1,2345", None),
    ("99999999999", None), ("²", None), ("٣", None),
])
def test_prices_are_read_as_the_region_writes_them(raw: str, cents: int | None) -> None:
    assert parse_money(raw) == cents


async def _group_with_admin(world: Any, language: str = "en") -> tuple[Any, Any]:
    owner = world.user("Olga", language_code="en")
    chat = world.group("Fans", owner=owner)
    await world.send(chat, owner, "hello")
    if language != "en":
        await world.send(chat, owner, f"/lang {language}")
    return owner, chat


async def test_currency_command_sets_and_shows(world) -> None:  # type: ignore[no-untyped-def]
    owner, chat = await _group_with_admin(world)
    member = world.user("Bob", language_code="en")
    usage = texts(await world.send(chat, owner, "/currency"))[0]
    assert "/currency TWD" in usage and "CNY TWD HKD MOP SGD MYR USD" in usage and "Now: CNY (CN¥1,280.00)" in usage
    wrong = texts(await world.send(chat, owner, "/currency EUR"))[0]
    assert "“EUR” is not a currency" in wrong and "/currency TWD" in wrong
    assert "Only group admins" in texts(await world.send(chat, member, "/currency TWD"))[0]
    done = texts(await world.send(chat, owner, "/currency 新台幣"))[0]
    assert done == "Prices in this group are now shown in TWD, e.g. NT$1,280."
    async with world.sessionmaker() as session:
        row = await groups.get_group(session, chat.id)
        assert row is not None and row.currency == "TWD"
    assert "Now: TWD (NT$1,280)" in texts(await world.send(chat, owner, "/currency"))[0]
    shown = texts(await world.send(chat, owner, "/settings"))[0]
    assert "Prices are shown in TWD, e.g. NT$1,280; change with /currency CODE." in shown


async def test_a_groupbuy_and_a_vote_show_the_groups_currency(world) -> None:  # type: ignore[no-untyped-def]
    owner, chat = await _group_with_admin(world, "zh_Hant")
    world.fast_live_posts(every=0.01)
    await world.send(chat, owner, "/currency TWD")
    calls = await world.send(chat, owner, "/groupbuy new 保濕面膜 | 1,580 | 1,280 | 2 | 5 | 3 | 48h")
    post = [c for c in calls if isinstance(c, SendMessage)][-1].text
    assert "$1,280" in post and "$1,580" in post and ".00" not in post
    calls = await world.send(chat, owner, "/vote new 下期選品 | 1d | 面膜 59.90 | 精華 1,299")
    shown = "\n".join(texts(calls))
    assert "面膜 $59.90" in shown and "精華 $1,299" in shown, shown


async def test_exports_name_the_currency(world) -> None:  # type: ignore[no-untyped-def]
    owner, chat = await _group_with_admin(world)
    await world.send(chat, owner, "/currency MYR")
    calls = await world.send(chat, owner, "/groupbuy new Mask | 59.90 | 49.90 | 1 | 5 | 3 | 48h")
    post = [c for c in calls if isinstance(c, SendMessage)][-1].text
    assert "RM49.90" in post and "RM59.90" in post
    listed = "\n".join(texts(await world.send(chat, owner, "/groupbuy list")))
    assert "RM49.90" in listed
