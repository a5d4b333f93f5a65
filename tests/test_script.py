"""The folding helper (models.script) and what is compared through it: keywords, YES/NO words, banned words, the
switchboard's keyword index, and the command menus' languages."""

from __future__ import annotations

from typing import Any

import pytest

from bot.runner import menu_languages, set_commands
from handlers.kit import NO, NO_VALUE, YES, Words
from handlers.switchboard import KEYWORD, Keywords, index_key
from models.clock import parse_duration
from models.detection import compile_banned
from models.script import _T2S, fold, simplified


@pytest.mark.parametrize(("typed", "folded"), [
    ("簽到", "签到"), ("签到", "签到"),
    (" 簽到 ", "签到"), ("積分", "积分"), ("積分商城", "积分商城"),
    ("兌換", "兑换"), ("排行榜", "排行榜"), ("拼團", "拼团"),
    ("團購", "团购"), ("選品投票", "选品投票"), ("秒殺", "秒杀"),
    ("抽獎", "抽奖"), ("優惠券 #3", "优惠券 #3"), ("＃曬單", "#晒单"),
    ("日曆", "日历"), ("補簽", "补签"), ("關閉", "关闭"), ("無", "无"),
    ("小時", "小时"), ("分鐘", "分钟"), ("時", "时"), ("週", "周"),
    ("總", "总"), ("ＣＨＥＣＫ ＩＮ", "check in"), ("１０積分", "10积分"),
    ("開", "开"),
])
def test_fold_takes_both_scripts_and_full_width_forms_to_one(typed: str, folded: str) -> None:
    assert fold(typed) == folded


def test_the_map_is_one_way_and_leaves_simplified_alone() -> None:
    values = set(_T2S.values())
    assert not set(_T2S) & values  # no chain: a Simplified character is never a key
    assert all(len(key) == len(value) == 1 and key != value for key, value in _T2S.items())
    simplified_text = "签到积分商城兑换拼团团购选品投票秒杀抽奖优惠券晒单日历补签关闭无小时分钟"
    assert simplified(simplified_text) == simplified_text
    assert simplified("Hello, 世界!") == "Hello, 世界!"


def test_words_compare_folded_and_unions_stay_words() -> None:
    assert "無" in NO_VALUE and "无" in NO_VALUE and "不限" in NO_VALUE
    assert " Yes" in YES and "ＯＮ" in YES and "是" in YES and "否" in NO
    either = YES | NO
    assert isinstance(either, Words) and "ＯＦＦ" in either and "maybe" not in either
    assert 1 not in YES  # type: ignore[comparison-overlap]


async def test_keywords_and_the_switchboard_index_agree() -> None:
    from datetime import UTC, datetime

    from aiogram.types import Chat, Message

    from tests.factories import BOT_USER  # noqa: F401  (factories set up aiogram's types)

    def message(text: str) -> Message:
        return Message(message_id=1, date=datetime.now(UTC), chat=Chat(id=-1, type="group"), text=text)

    words = Keywords({"积分", "积分商城"})
    for text in ("積分", "积分", " 積分 ", "積分商城"):
        assert await words(message(text)), text
        assert index_key(message(text)) in {KEYWORD + word for word in words.words}
    assert not await words(message("積分 please"))


def test_banned_words_match_across_scripts() -> None:
    assert compile_banned(["代购"]).find("有人代購嗎") is not None
    assert compile_banned(["代購"]).find("有人代购吗") is not None
    assert compile_banned(["*代購*"]).find("代购面膜") is not None
    assert compile_banned(["re:刷單|兼職"]).find("在家兼职") is not None
    found = compile_banned(["代購"]).find("代购")
    assert found is not None and found.value == "代購"  # reported as the admin wrote it
    assert compile_banned(["代購"]).find("代理购物") is None


def test_traditional_units_in_the_duration_grammar() -> None:
    assert parse_duration("2分鐘") == 120 and parse_duration("3小時") == 10800 and parse_duration("1週") == 604800
    assert parse_duration("半小時") == 1800 and parse_duration("２小時") == 7200


def test_the_chinese_menu_follows_a_chinese_default_locale() -> None:
    assert menu_languages("zh_Hans") == {"zh": "zh_Hans", "en": "en"}
    assert menu_languages("zh_Hant") == {"zh": "zh_Hant", "en": "en"}
    assert menu_languages("en") == {"zh": "zh_Hans", "en": "en"}


async def test_a_traditional_deployment_registers_the_traditional_menu_under_zh() -> None:
    from bot.i18n import create_i18n

    class Recorder:
        def __init__(self) -> None:
            self.menus: dict[tuple[str, str | None], list[Any]] = {}

        async def set_my_commands(self, commands: list[Any], scope: Any, language_code: str | None) -> None:
            self.menus[scope.type, language_code] = commands

    bot = Recorder()
    await set_commands(bot, create_i18n("zh_Hant"))  # type: ignore[arg-type]
    zh = {c.command: c.description for c in bot.menus["all_group_chats", "zh"]}
    default = {c.command: c.description for c in bot.menus["all_group_chats", None]}
    en = {c.command: c.description for c in bot.menus["all_group_chats", "en"]}
    assert zh == default and "簽到" in zh["checkin"] and "签到" not in zh["checkin"]
    assert en["checkin"].startswith("Check in")
    simplified_bot = Recorder()
    await set_commands(simplified_bot, create_i18n("zh_Hans"))  # type: ignore[arg-type]
    assert "签到" in {c.command: c.description for c in simplified_bot.menus["all_group_chats", "zh"]}["checkin"]


def test_only_a_text_short_enough_to_be_a_keyword_is_folded() -> None:
    from handlers.switchboard import KEYWORD_TEXT_MAX, keyword_form

    assert keyword_form(" 積分 ") == "积分"
    long = "積分" + " " * KEYWORD_TEXT_MAX
    assert keyword_form(long) == long  # no keyword is that long: compared as it is, by filter and index alike
