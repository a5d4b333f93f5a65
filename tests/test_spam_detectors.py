"""Issue 20's detectors: each miss and the false positive it quoted, Traditional cues, Telegram's own entities."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models import detection
from models.detection import Finding, find_diversion, normalize, scan
from models.moderation import ModerationRules
from models.moderation_policy import CompiledRules, MessageFacts, Violation, entity_facts, find_violation

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def compiled(**knobs: Any) -> CompiledRules:
    rules = ModerationRules(**knobs)
    return CompiledRules(NOW, rules, detection.compile_banned(rules.banned_words) if rules.banned_words else None)


def said(text: str = "", **facts: Any) -> MessageFacts:
    return MessageFacts(chat_id=-100, sender_id=42, text=text, **facts)


# -- the false positive: a Chinese numeral after digits starts a word, it does not extend the number -----------

@pytest.mark.parametrize("text", [
    "跟1615726686一样", "这批1388888888一个不剩", "1615726686一样的时间戳", "价格1388888888一口价",
    "跟1615726686一樣",
])
def test_a_numeral_word_after_ten_digits_is_not_a_phone_number(text: str) -> None:
    assert scan(text) == []


@pytest.mark.parametrize(("text", "phone"), [
    ("一五八 一二三四 五六七八", "15812345678"),
    ("幺三八 1234 5678", "13812345678"),
    ("138八1234567", "13881234567"),  # one numeral between digits is still a digit
    ("电话138一二三四五六七八", "13812345678"),
])
def test_spelled_out_mobile_numbers_are_still_phones(text: str, phone: str) -> None:
    assert find_diversion(text) == [Finding("phone", phone)]


# -- the misses ------------------------------------------------------------------------------------------------

MISSES = [
    ("外部2群:279314535", Finding("qq", "279314535")),
    ("火速加675899789获取", Finding("qq", "675899789")),
    ("购买联系2858819642", Finding("qq", "2858819642")),
    ("加好友 12345678 拉你进群", Finding("qq", "12345678")),
    ("私聊 87654321", Finding("qq", "87654321")),
    ("購買聯繫2858819642", Finding("qq", "2858819642")),
    ("群號：987654321", Finding("invite", "987654321")),
    ("進群 123456 領紅包", Finding("invite", "123456")),
    ("加入我們的電報群 123456789", Finding("invite", "123456789")),
    ("关注 @best_deals_channel 每天秒杀", Finding("channel", "best_deals_channel")),
    ("關注 @best_deals_channel 每天秒殺", Finding("channel", "best_deals_channel")),
    ("訂閱 @cheap_stuff_daily", Finding("channel", "cheap_stuff_daily")),
    ("follow us @cheap_stuff_daily", Finding("channel", "cheap_stuff_daily")),
    ("WhatsApp +1 415 555 0199", Finding("phone", "+14155550199")),
    ("Telegram: +44 7700 900123 DM for price", Finding("phone", "+447700900123")),
    ("line +66 81 234 5678", Finding("phone", "+66812345678")),
    ("飞机 +852 6123 4567", Finding("phone", "+85261234567")),
    ("復制这段描述￥ZJb9cmlbbcl￥后打开手机淘宝", Finding("sharecode", "zjb9cmlbbcl")),
    ("€AbC123xyzQ€ 打开闲鱼", Finding("sharecode", "abc123xyzq")),
    ("cheap bags at cheapbags.lat", Finding("link", "cheapbags.lat")),
    ("go shopping.autos now", Finding("link", "shopping.autos")),
    ("微信號：kk12345", Finding("wechat", "kk12345")),
    ("加我薇信 abc_987", Finding("wechat", "abc_987")),
]


@pytest.mark.parametrize(("text", "finding"), MISSES, ids=[m[0] for m in MISSES])
def test_each_miss_in_the_issue_is_found(text: str, finding: Finding) -> None:
    assert finding in scan(text)


SCAMS = ["招兼职，日结200", "刷单返利", "有意者私聊我", "诚招代理 零门槛", "在家躺赚", "兼職日結", "DM me for details",
         "I got $18,500 after investing $600", "Зарабатывай из дома", "oбyчeниe бесплатное"]


@pytest.mark.parametrize("text", SCAMS)
def test_scam_phrases_are_found_only_when_switched_on(text: str) -> None:
    assert [f.kind for f in scan(text, scam_phrases=True)] == ["scam"]
    assert scan(text) == []


@pytest.mark.parametrize("text", [
    "专业代购 正品保证", "拼团价 ¥199，原价 ¥299.00", "今晚拼团，三人成团", "加群三天了，第一次抢到",
    "增加100000件库存",
    "加100000积分", "群里有 100000 人", "Please follow the rules, thanks @admin_bob", "请看公告 @brand_admin 发的",
    "手机尾号 5678 的朋友请私聊群主领奖", "line 12345678", "the line is busy, 02 1234 5678", "¥12345678¥",
    "联系客服处理退款", "复制链接打开淘宝就能看到", "一三五有货，二四六没货", "五元无门槛优惠券", "this method works",
])
def test_shoppers_chat_stays_clean_even_with_every_option_on(text: str) -> None:
    assert scan(text, scam_phrases=True) == []


def test_a_brand_can_switch_share_codes_off() -> None:
    code = "复制￥ZJb9cmlbbcl￥打开淘宝"
    assert find_violation(said(code), compiled(), new_member=False, pace=None) == Violation(
        "links", "sharecode:zjb9cmlbbcl")
    assert find_violation(said(code), compiled(share_codes=False), new_member=False, pace=None) is None
    assert find_violation(said(code), compiled(links=False), new_member=False, pace=None) is not None


def test_scam_phrases_are_off_in_the_relaxed_preset_only() -> None:
    from models.moderation import PRESETS
    assert {name: preset["scam_phrases"] for name, preset in PRESETS.items()} == {
        "relaxed": False, "standard": True, "strict": True}
    assert find_violation(said("招兼职，日结200"), compiled(), new_member=False, pace=None) == \
        Violation("banned", "scam:兼职")
    assert find_violation(said("招兼职，日结200"), compiled(scam_phrases=False), new_member=False, pace=None) is None


def test_traditional_cues_fold_to_simplified() -> None:
    assert normalize("群號 進群 電報群 關注 訂閱 聯繫 購買") == "群号 进群 电报群 关注 订阅 联系 购买"


# -- Telegram's entities first -----------------------------------------------------------------------------------

ENTITY_CASES = [
    ("a url entity on an ending no list knows", said("best deals: bestdeals.quest", entities=(
        ("url", "bestdeals.quest"),)), Violation("links", "link:bestdeals.quest")),
    ("an email entity", said("write to sales@deals.example", entities=(("email", "sales@deals.example"),)),
     Violation("links", "link:deals.example")),
    ("an international phone entity", said("call +1 415 555 0199", entities=(("phone_number", "+1 415 555 0199"),)),
     Violation("diversion", "phone:+14155550199")),
    ("a bot command in a forward", said("/start@free_money_bot", forwarded=True, entities=(
        ("bot_command", "/start@free_money_bot"),)), Violation("diversion", "channel:/start@free_money_bot")),
    ("a bot command typed by a member", said("/start", entities=(("bot_command", "/start"),)), None),
    ("a member mentioning another", said("@alice_w 你的快递到了", entities=(("mention", "@alice_w"),)), None),
    ("a local phone entity is left to the patterns", said("客服 400-123-4567", entities=(
        ("phone_number", "400-123-4567"),)), None),
]


@pytest.mark.parametrize(("facts", "expected"), [c[1:] for c in ENTITY_CASES], ids=[c[0] for c in ENTITY_CASES])
def test_telegrams_entities_decide_first(facts: MessageFacts, expected: Violation | None) -> None:
    assert find_violation(facts, compiled(), new_member=False, pace=None) == expected


def test_a_newcomers_mention_or_cashtag_is_held() -> None:
    mention = said("hi @deals_4u", entities=(("mention", "@deals_4u"),))
    assert find_violation(mention, compiled(), new_member=True, pace=None) == Violation("newcomer", "mention")
    assert find_violation(said("hi @deals_4u"), compiled(), new_member=True, pace=None) == Violation(
        "newcomer", "mention")
    cashtag = said("$BTC to the moon", entities=(("cashtag", "$BTC"),))
    assert find_violation(cashtag, compiled(), new_member=True, pace=None) == Violation("newcomer", "mention")
    assert find_violation(cashtag, compiled(), new_member=False, pace=None) is None
    assert find_violation(said("mail me a@b.com"), compiled(links=False), new_member=True, pace=None) == Violation(
        "newcomer", "link")


def test_entity_facts_reads_each_type_once() -> None:
    facts = said("x", forwarded=True, entities=(
        ("url", "a.lat"), ("mention", "@Bob_Shop"), ("text_mention", "123"), ("cashtag", "$eth"),
        ("email", "x@Y.com"), ("phone_number", "+86 138 1234 5678"), ("bot_command", "/go")))
    marked = entity_facts(facts)
    assert marked.urls == ("a.lat",)
    assert marked.mentions == ("bob_shop", "123")
    assert marked.cashtags == ("$ETH",)
    assert marked.findings == (Finding("link", "y.com"), Finding("phone", "+8613812345678"),
                               Finding("channel", "/go"))


# -- the cheap cue that lets most chat skip the new patterns -------------------------------------------------------

ALPHABET = list("abdeghilnopqrstwy0123456789 :=#-_+@.()")
ALPHABET += list("群号码加联系购买私聊好友关注订阅搜围观电报飞机纸我是为")
TOKENS = ["whatsapp", "telegram", "signal", "line", "wa", "tg", "+1", "4155550199", "123456", "@abcde", "join",
          "follow", "us", "关注", "加", "群", "联系", "购买", "飞机", ":", " ", "好友"]
texts = st.one_of(st.text(alphabet=st.sampled_from(ALPHABET), max_size=40),
                  st.lists(st.sampled_from(TOKENS), max_size=12).map("".join))


@example(text="加123456")
@example(text="follow @abcde")
@example(text="wa +14155550199")
@settings(max_examples=2000, deadline=None)
@given(text=texts)
def test_the_promotion_cue_is_present_whenever_a_promotion_pattern_matches(text: str) -> None:
    normalized = normalize(text)
    patterns = (detection._QQ_AFTER_CUE, detection._AT_PROMOTION, detection._MESSENGER_PHONE)
    if any(p.search(normalized) for p in patterns):
        assert detection._PROMOTION_CUE.search(normalized)


def test_message_facts_reads_telegrams_entities() -> None:
    from aiogram.types import Chat, Message, MessageEntity, User

    from handlers.moderation import message_facts

    text = "📦 关注 @deals_4u 或 bestdeals.quest 或 +1 415 555 0199"
    def at(part: str) -> tuple[int, int]:  # UTF-16 offsets, as Telegram counts them
        start = text.index(part)
        return len(text[:start].encode("utf-16-le")) // 2, len(part.encode("utf-16-le")) // 2

    entities = [MessageEntity(type=kind, offset=at(part)[0], length=at(part)[1])
                for kind, part in (("mention", "@deals_4u"), ("url", "bestdeals.quest"),
                                   ("phone_number", "+1 415 555 0199"))]
    entities.append(MessageEntity(type="text_mention", offset=0, length=2, user=User(id=7, is_bot=False,
                                                                                     first_name="x")))
    message = Message(message_id=1, date=NOW, chat=Chat(id=-100, type="supergroup"),
                      from_user=User(id=42, is_bot=False, first_name="a"), text=text, entities=entities)
    assert message_facts(message).entities == (
        ("mention", "@deals_4u"), ("url", "bestdeals.quest"), ("phone_number", "+1 415 555 0199"),
        ("text_mention", "7"))
