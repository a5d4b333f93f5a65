"""handlers/kit.py and what leans on it: one duration grammar read the same by every command that takes a
duration, bounded numbers, the guard against control characters, the answer to a button nobody owns, and a
/mydata export that names nobody else."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from aiogram.methods import AnswerCallbackQuery, SendDocument
from sqlalchemy import select

from bot.i18n import create_i18n
from handlers.kit import INT32_MAX, UsageError, has_control, local_time, money, parse_row_id, parse_whole, whole_number
from models.clock import parse_duration
from models.flashsale import FlashSale
from models.groupbuy import GroupBuy
from models.lottery import Lottery
from models.votes import Vote
from tests.factories import texts

I18N = create_i18n("en")
GRAMMAR = [
    ("30s", 30), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("12h", 43_200), ("2d", 172_800), ("1d12h", 129_600),
    ("2w", 1_209_600), ("30秒", 30), ("5分钟", 300), ("5分鐘", 300), ("3小时", 10_800), ("3小時", 10_800),
    ("2天", 172_800), ("1周", 604_800), ("1週", 604_800), ("半小时", 1800), ("半小時", 1800), ("１０m", 600),
    ("90min", 5400), ("10", 600), ("1H", 3600),
]


@pytest.mark.parametrize(("text", "seconds"), GRAMMAR)
def test_one_duration_grammar(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "-5m", "1e9s", "soon", "1h30", "5\x00m", "9" * 40, "m10", "10ｍ"])
def test_what_is_not_a_duration(text: str) -> None:
    assert parse_duration(text) is None


def test_numbers_stay_within_their_columns() -> None:
    assert [whole_number(raw) for raw in ("42", "４２", "1,000", "-1", "²", "0x10", "1" + "0" * 30)] == [
        42, 42, 1000, None, None, None, None]
    assert parse_row_id("#12") == 12 and parse_row_id("9223372036854775808") is None and parse_row_id("0") is None
    with I18N.context(), I18N.use_locale("en"):
        assert parse_whole(str(INT32_MAX), "x") == INT32_MAX
        with pytest.raises(UsageError, match="whole number of at least 0"):
            parse_whole(str(INT32_MAX + 1), "x")


def test_text_and_showing() -> None:
    assert has_control("a\x00b") and has_control("\x1b[31m") and has_control("\x85")
    assert not has_control("第一行\n第二行\tok")
    with I18N.context(), I18N.use_locale("zh_Hans"):
        assert money(3990) == "¥39.90" and money(9900) == "¥99.00" and money(9900, bare_whole=True) == "¥99.00"


def test_local_time_survives_an_unknown_zone() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert local_time(moment, "Asia/Shanghai") == "2026-12-01 20:00"
    assert local_time(moment, "Mars/Olympus") == "2026-12-01 12:00 UTC"


async def test_every_duration_command_reads_the_one_grammar(world) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Olga", language_code="en")
    bob = world.user("Bob", language_code="en", username="bobby")
    chat = world.group("Fans", owner=owner)
    await world.send(chat, bob, "hello everyone")

    said = texts(await world.send(chat, owner, "/mute @bobby 半小时 calm down"))
    assert "muted for 30m" in said[0], said
    texts(await world.send(chat, owner, "/vote new 选品 | 1d12h | 面膜 39.9 | 精华 129"))
    texts(await world.send(chat, owner, "/groupbuy new 面膜 | 59 | 39.9 | 5 | 100 | 2 | 2w"))
    texts(await world.send(chat, owner, "/lottery new 免单一份 end=3小時"))
    assert "90 s" in texts(await world.send(chat, owner, "/captcha timeout 90s"))[0]
    assert "90 min" in texts(await world.send(chat, owner, "/antiraid duration 1h30m"))[0]
    texts(await world.send(chat, owner, "/product add 面膜 | 99 | 39.9 | 10"))
    said = texts(await world.send(chat, owner, "/flashsale new 1 10:00 1h30m daily notice=半小时"))
    assert said and "not a duration" not in said[0], said
    async with world.sessionmaker() as session:
        vote = await session.scalar(select(Vote))
        assert vote is not None and vote.closes_at - vote.created_at == timedelta(hours=36)
        buy = await session.scalar(select(GroupBuy))
        assert buy is not None and buy.deadline - buy.created_at == timedelta(weeks=2)
        lot = await session.scalar(select(Lottery))
        assert lot is not None and abs(lot.ends_at - lot.created_at - timedelta(hours=3)) < timedelta(minutes=1)
        sale = await session.scalar(select(FlashSale))
        assert sale is not None and (sale.duration_minutes, sale.notice_minutes) == (90, 30)


async def test_usage_lines_show_the_grammar(world) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Olga", language_code="en")
    chat = world.group("Fans", owner=owner)
    for command in ("/vote new x", "/lottery new x end=soon", "/flashsale new 1 10:00 soon", "/mute @nobody 10x"):
        said = texts(await world.send(chat, owner, command))
        assert any("半小时" in text for text in said), (command, said)


async def test_a_command_holding_control_characters_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Olga", language_code="en")
    chat = world.group("Fans", owner=owner)
    said = texts(await world.send(chat, owner, "/shop add 面\x00膜 | 10 | 5"))
    assert said == ["That command contains control characters (such as a NUL byte). Send it again without them."]


@pytest.mark.parametrize("data", ["fs:abc", "fs:", "vp:1", "ci:extra", "showcase:1:1", "forget:1", f"fs:{'9' * 30}"])
async def test_a_malformed_press_gets_a_short_alert(world, data: str) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Olga", language_code="en")
    chat = world.group("Fans", owner=owner)
    answers = [c for c in await world.press(chat, owner, data) if isinstance(c, AnswerCallbackQuery)]
    assert [(a.text, a.show_alert) for a in answers] == [("This button does not work (any more).", True)]


async def test_mydata_holds_no_other_persons_id(world) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Olga", language_code="en")
    bob = world.user("Bob", language_code="en", username="bobby")
    chat = world.group("Fans", owner=owner)
    await world.send(chat, bob, "hello everyone")
    assert "Bob received 25 points" in texts(await world.send(chat, owner, "/give @bobby 25 thanks"))[0]
    calls = await world.send(world.private(bob), bob, "/mydata")
    document = next(c for c in calls if isinstance(c, SendDocument))
    payload = document.document.data.decode()
    exported = json.loads(payload)
    assert exported["user_id"] == bob.id
    assert str(owner.id) not in payload
    assert "someone else" in payload  # the admin who gave the points, named as nobody in particular


def test_a_topic_file_with_control_characters_is_not_plain_text() -> None:
    from models.topics import TopicError, decode_topic_file

    assert decode_topic_file("今天买了什么？\r\n\t晒一晒".encode()) == "今天买了什么？\r\n\t晒一晒"
    with pytest.raises(TopicError):
        decode_topic_file("今天\x00买了什么？".encode())
