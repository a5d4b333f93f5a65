"""models.detection: what each function promises, and that no input makes it raise or hang."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models import detection
from models.detection import (
    MAX_SCAN_CHARS,
    BannedMatcher,
    Finding,
    compile_banned,
    domain_allowed,
    find_diversion,
    find_links,
    normalize,
    scan,
)

KINDS = {"link", "invite", "channel", "wechat", "qq", "phone", "banned"}


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("ＥＸＡＭＰＬＥ．ＣＯＭ", "example.com"),
        ("exa\u200bmp\u200dle\ufeff.com", "example.com"),
        ("example [dot] com", "example.com"),
        ("example (DOT) com", "example.com"),
        ("example dot com", "example.com"),
        ("shop。taobao。com", "shop.taobao.com"),
        ("shop｡taobao･com", "shop.taobao.com"),
        ("taobao点com", "taobao.com"),
        ("１３８①", "1381"),
        ("下午3点半", "下午3点半"),  # "点" between a digit and Chinese is a time, not a dot
        ("好的。明天见", "好的。明天见"),
        ("张三·李四", "张三·李四"),
    ],
)
def test_normalize_folds_width_invisible_characters_and_dot_substitutes(raw: str, normalized: str) -> None:
    assert normalize(raw) == normalized


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t.me/+AbC123", Finding("invite", "AbC123")),
        ("https://t.me/joinchat/AbC123", Finding("invite", "AbC123")),
        ("https://telegram.me/Some_Channel", Finding("channel", "some_channel")),
        ("t.me/s/news_chan", Finding("channel", "news_chan")),
        ("t.me/+8613812345678", Finding("phone", "8613812345678")),
        ("tg://join?invite=AbC", Finding("invite", "AbC")),
        ("tg://resolve?domain=Chan_Name&post=2", Finding("channel", "chan_name")),
        ("https://WWW.Example.COM:8080/path", Finding("link", "example.com")),
        ("https://user@shop.example.com/x", Finding("link", "shop.example.com")),
        ("看 m.jd.com，便宜", Finding("link", "m.jd.com")),
    ],
)
def test_find_links_classifies_telegram_and_web_links(text: str, expected: Finding) -> None:
    assert find_links(text) == [expected]


@pytest.mark.parametrize(
    "text",
    ["3.5", "v1.2.3", "e.g. i.e. a.m.", "photo.jpg readme.md main.py", "@some_channel", "Thanks.It works", "Mr.Li", ""],
)
def test_find_links_ignores_numbers_versions_abbreviations_files_and_mentions(text: str) -> None:
    assert find_links(text) == []


def test_find_links_takes_entity_and_button_urls_and_skips_inline_mentions() -> None:
    found = find_links("Click", ["https://Spam.Example.org/a", "tg://user?id=42", "mailto:a@b.cn", ""])
    assert found == [Finding("link", "spam.example.org"), Finding("link", "b.cn")]


def test_the_same_link_is_reported_once() -> None:
    assert find_links("example.com and https://example.com/x", ["http://www.example.com"]) == [
        Finding("link", "example.com")
    ]


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("brandshop.com", True),
        ("m.brandshop.com", True),
        ("BrandShop.COM.", True),
        ("www.brandshop.com", True),
        ("evilbrandshop.com", False),
        ("brandshop.com.evil.cn", False),
        ("", False),
    ],
)
def test_domain_allowed_accepts_the_domain_and_its_subdomains_only(host: str, allowed: bool) -> None:
    assert domain_allowed(host, ["https://www.brandshop.com/", "shop.tmall.com"]) is allowed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("加微信 abc12345", [Finding("wechat", "abc12345")]),
        ("微信 support 一下", []),  # after a plain "微信" only an id with a digit or "_" counts
        ("微信 support_01", [Finding("wechat", "support_01")]),
        ("qq 12345678", [Finding("qq", "12345678")]),
        ("qq音乐", []),
        ("电话 13812345678", [Finding("phone", "13812345678")]),
        ("订单号 13812345678", []),
        ("订单号 202611220012345678", []),
        ("价格 139 159 199 29", []),
        ("关注频道 @deal_chan", [Finding("channel", "deal_chan")]),
        ("进群 123456", [Finding("invite", "123456")]),
    ],
)
def test_find_diversion(text: str, expected: list[Finding]) -> None:
    assert find_diversion(text) == expected


def test_banned_entries_plain_wildcard_and_regex() -> None:
    matcher = compile_banned(["代购", "免费*送", "限?秒杀", "re:兼职\\s*日结", "  "])
    assert matcher.errors == []
    assert matcher.find("专业ＤＡＩ代\u200b购") == Finding("banned", "代购")
    assert matcher.find("免费的试用装明天送") == Finding("banned", "免费*送")
    assert matcher.find("免费\n送") is None  # a wildcard stays within one line
    assert matcher.find("限时秒杀") == Finding("banned", "限?秒杀")
    assert matcher.find("限秒杀") is None
    assert matcher.find("招 兼职 日结") == Finding("banned", "re:兼职\\s*日结")
    assert matcher.find("今天天气不错") is None


@pytest.mark.parametrize(
    "entry",
    [
        "re:(",  # invalid
        "re:(a+)+$",  # nested quantifier: exponential backtracking
        "re:(a|ab)*c",  # alternation under a quantifier
        "re:(a)\\1",  # backreference
        "re:.*.*.*x",  # polynomial blow-up
        "re:" + "a" * 300,  # too long
        "*",  # would match everything
    ],
)
def test_unsafe_or_invalid_banned_entries_are_reported_not_raised(entry: str) -> None:
    matcher = compile_banned([entry, "代购"])
    assert len(matcher.errors) == 1 and matcher.errors[0].startswith(entry[:20])
    assert matcher.find("代购") == Finding("banned", "代购")


def test_scan_combines_links_diversion_and_banned_words() -> None:
    found = scan("代购 加vx abc_123 看 example.com", ["https://t.me/+Hash"], banned=compile_banned(["代购"]))
    assert set(found) == {
        Finding("link", "example.com"),
        Finding("invite", "Hash"),
        Finding("wechat", "abc_123"),
        Finding("banned", "代购"),
    }


# Characters the detectors care about, so random strings land near real patterns, mixed with anything at all.
TRICKY = list("。．.·•\u200b\u200d\ufeff@/:+-_ 1386０１qvxQV微信加群点t.meMhttps[](dot)号进群频道\n\t")
PIECES = ["tg://join?invite=", "t.me/", "https://", "[dot]", "加微信", "+86", "qq", "re:", "*", "?"]
texts = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(TRICKY)),
    st.lists(st.one_of(st.sampled_from(TRICKY + PIECES), st.text(max_size=3)), max_size=60).map("".join),
    st.builds(lambda part, times: part * times, st.text(min_size=1, max_size=8), st.integers(1, 3000)),
)


@settings(max_examples=200, deadline=None)
@given(text=texts, urls=st.lists(texts, max_size=3), entries=st.lists(st.one_of(texts, texts.map("re:".__add__))))
def test_no_function_raises_on_arbitrary_input(text: str, urls: list[str], entries: list[str]) -> None:
    normalize(text)
    matcher = compile_banned(entries)
    assert isinstance(matcher, BannedMatcher)
    found = scan(text, urls, banned=matcher)
    assert {f.kind for f in found} <= KINDS
    assert all(isinstance(f.value, str) for f in found)
    for finding in find_links(text, urls):
        domain_allowed(finding.value, [text, *urls])


@pytest.mark.parametrize(
    "fragment",
    ["a", "a.", "1 ", "1-", "1.", "a-", "_a", "微信", "vx:", "qq ", "加群 ", "t.me/", "a[dot]", "a 。", "+", "@a ",
     "http://a", "1 3 ", "兼职", "\u200b", "tg://join?", "关注频道", "q群1", "+8", "ﷺ"],
)
def test_pathological_long_input_is_scanned_without_blowing_up(fragment: str) -> None:
    # Each of these would take minutes with a backtracking pattern; bench/detection_scan.py measures the cost.
    text = fragment * (MAX_SCAN_CHARS // len(fragment) + 10)
    matcher = compile_banned(["代购", "a*b*c*d", "re:兼职.*日结", "re:a\\s*\\d+\\s*x"])
    scan(text, [text], banned=matcher)


# -- the cheap tests that let most chat skip a detector ---------------------------------------------------------
# Each detector first asks whether the text holds something it cannot match without (a cue). These tests hold
# each cue list to the patterns it stands for: whenever the cue is absent, the patterns find nothing either.

NEAR_MISSES = list("abcdehijnoqstvwxy0123456789 :=#-_./@+")
NEAR_MISSES += list("号码是为进入加我们的本这个群聊关注订阅频道搜索微信威薇徽绿泡扣企鹅添一下")
TOKENS = ["a", "b1", "1", "12345", "1381234567", " ", ".", "[", "]", "(", ")", "dot", "。", "·", "点", "q", "qq"]
TOKENS += ["群", "号", "是", ":", "=", "v", "x", "w", "加", "微信", "威信", "绿泡泡", "扣扣", "企鹅", "join", "add"]
TOKENS += ["me", "on", "my", "wechat", "weixin", "id", "关注", "频道", "进", "我们的", "@abcd", "t.me/", "https://"]
TOKENS += ["tg://", "com"]
near_miss_texts = st.one_of(
    st.text(alphabet=st.sampled_from(NEAR_MISSES), max_size=40),
    st.lists(st.sampled_from(TOKENS), max_size=12).map("".join),
)


@example(text='qq12345')
@example(text='扣扣12345')
@example(text='企鹅号12345')
@example(text='q号12345')
@example(text='q群12345')
@example(text='加q群')
@example(text='进群123456')
@example(text='群号123456')
@example(text='join group 123456')
@example(text='join our group @abcd')
@example(text='关注频道@abcd')
@example(text='subscribe @abcd')
@example(text='v信')
@example(text='威信')
@example(text='绿泡泡')
@example(text='vx同号')
@example(text='add me on wechat')
@example(text='微信 abc123')
@example(text='vx abc123')
@example(text='wx abc123')
@example(text='weixin abc123')
@example(text='wechat abc123')
@example(text='v: abc123')
@example(text='v=abc123')
@example(text='加v abc123')
@example(text='+v')
@example(text='➕v')
@example(text='搜微信')
@settings(max_examples=3000, deadline=None)
@given(text=near_miss_texts)
def test_the_diversion_cue_is_present_whenever_a_diversion_pattern_matches(text: str) -> None:
    normalized = normalize(text)
    patterns = (detection._WECHAT_WITH_ID, detection._WECHAT_ALONE, detection._QQ, detection._QQ_GROUP_JOIN,
                detection._INVITE_NUMBER, detection._CHANNEL_PROMOTION)
    if any(p.search(normalized) for p in patterns):
        assert detection._DIVERSION_CUE.search(normalized)


@example(text='a . b')
@example(text='a [.] b')
@example(text='a (dot) b')
@example(text='a。b')
@example(text='a点b')
@example(text='a點b')
@example(text='a dot b')
@example(text='a·b')
@example(text='tg://join')
@example(text='http://a')
@example(text='a.com')
@settings(max_examples=3000, deadline=None)
@given(text=st.one_of(texts, near_miss_texts))
def test_every_link_form_and_dot_substitute_has_its_cue(text: str) -> None:
    folded = detection._fold(text)
    if detection._TG_URL.search(folded) or detection._SCHEME_URL.search(folded):
        assert "://" in folded
    if any("." in m.group(0) for m in detection._BARE_HOST.finditer(folded)):
        assert "." in folded
    unfolded = text.translate(detection._INVISIBLE)
    if detection._DOT_SUBSTITUTE.search(unfolded):
        assert detection._DOT_CUE.search(unfolded)


def test_the_invisible_character_class_is_exactly_the_translation_table() -> None:
    cue = detection._INVISIBLE_CUE
    matched = {cp for cp in range(0x110000) if 0xD800 > cp or cp > 0xDFFF if cue.match(chr(cp))}
    assert matched == set(detection._INVISIBLE)


@pytest.mark.parametrize("text", ["138 1234 5678", "一三八一二三四五六七八", "+86 138-1234-5678", "幺三八 1234 5678"])
def test_a_mobile_number_always_has_eleven_digit_like_characters(text: str) -> None:
    assert len(detection._DIGIT_LIKE.findall(normalize(text))) >= 11
    assert [f.kind for f in find_diversion(text)] == ["phone"]
