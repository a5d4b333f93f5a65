"""Spam detection for moderation: links, traffic diversion (引流) and banned words, in pure Python.

No Telegram and no database here: the moderation handlers pass the text (message text or caption) and the URLs
Telegram gave separately (text_link / url entities, inline-button urls of via_bot messages), and act on the
returned `Finding`s. Everything works on `normalize`d text, so fullwidth letters and digits, zero-width
characters and dot substitutes ("example [dot] com", "shop。taobao。com") do not hide anything.

Every pattern here is written to run in linear time on any input: no nested quantifiers, possessive quantifiers
where a run is consumed, and lookbehinds so a failed match does not restart inside a run. Person-supplied regex
banned words are length-limited, refused when their worst case is too expensive, and matched against a bounded
prefix of the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

# The parser behind re.compile (Python 3.11+), used only to judge the cost of person-supplied patterns.
from re import _constants as _sre_const  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Literal

from models.script import TO_SIMPLIFIED, simplified

FindingKind = Literal["link", "invite", "channel", "wechat", "qq", "phone", "sharecode", "scam", "banned"]

MAX_SCAN_CHARS = 20_000  # Telegram messages are at most 4096 characters and captions 1024: more is never real
MAX_REGEX_ENTRY_CHARS = 200
MAX_REGEX_TEXT_CHARS = 4096
MAX_REGEX_COST = 20_000_000  # estimated worst-case steps of one person-supplied pattern on MAX_REGEX_TEXT_CHARS


@dataclass(frozen=True)
class Finding:
    """One thing found in a message.

    kind: "link" (value: host without "www."), "invite" (a Telegram invite: value the invite hash, case kept;
    or a group number after "进群"), "channel" (a public Telegram chat: value the username, lower-case),
    "wechat" (value: the WeChat id, or the cue itself when no id follows an unmistakable cue), "qq" (the
    number), "phone" (the 11-digit mobile number, or an international number after a messenger cue: its digits),
    "sharecode" (a shop share code such as 淘口令 ￥AbC123xyz￥: the code), "scam" (a scam phrase from
    SCAM_PHRASES: the phrase), "banned" (value: the banned-word entry as the admin wrote it).
    """

    kind: FindingKind
    value: str


# ---------------------------------------------------------------------------------------------------------------
# Normalization


def _invisible_table() -> dict[int, None]:
    """Format characters (category Cf: zero-width space and joiners, BOM, bidi controls, tags) plus the invisible
    fillers that are not Cf but pad or hide text (Hangul fillers, braille blank), all mapped to nothing."""
    ranges = (range(0x10000), range(0x11000, 0x1D200), range(0xE0000, 0xE1000))  # every plane that has Cf
    table: dict[int, None] = {cp: None for r in ranges for cp in r if unicodedata.category(chr(cp)) == "Cf"}
    table.update(dict.fromkeys(map(ord, "\u115f\u1160\u3164\uffa0\u2800")))
    return table


_INVISIBLE = _invisible_table()


def _char_class(code_points: Iterable[int]) -> re.Pattern[str]:
    """One regex character class matching exactly these code points (runs written as ranges)."""
    ranges: list[list[int]] = []
    for cp in sorted(code_points):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]")


_INVISIBLE_CUE = _char_class(_INVISIBLE)  # translating costs a lookup per character; most text has none of these

_DOT_WORD = r"(?:dot|\.|。|点|點)"
# A dot substitute between two domain-like labels. The left label is checked by the lookbehind, the right one by
# the lookahead, so "3点半" or "好的。" are left alone while "taobao点com" and "example [dot] com" become domains.
_DOT_SUBSTITUTE = re.compile(
    r"(?<=[a-z0-9])"
    r"(?:\s*+[\[({<【]\s*+" + _DOT_WORD + r"\s*+[\])}>】]\s*+"
    r"|\s*+[。·•・‧∙⋅]\s*+"
    r"|\s++(?:dot|\.)\s++"
    r"|\s*+[点點]\s*+)"
    r"(?=[a-z])",
    re.IGNORECASE | re.ASCII,
)


# Every dot substitute contains one of these (a cheap test that spares most chat the substitution's scan).
_DOT_CUE = re.compile(r"[.。·•・‧∙⋅点點]|dot", re.IGNORECASE)


def _fold(text: str) -> str:
    """normalize() without the final lower-casing (invite hashes are case-sensitive)."""
    text = unicodedata.normalize("NFKC", text[: MAX_SCAN_CHARS * 2])[: MAX_SCAN_CHARS * 2]  # "ﷺ" is 18 letters
    if _INVISIBLE_CUE.search(text):
        text = text.translate(_INVISIBLE)
    if not text.isascii():
        text = text.translate(TO_SIMPLIFIED)  # every cue matches in both scripts (models/script.py)
    return _DOT_SUBSTITUTE.sub(".", text) if _DOT_CUE.search(text) else text


def normalize(text: str) -> str:
    """Return `text` in the form every detector matches against.

    NFKC (fullwidth letters, digits and punctuation become ASCII; circled digits become digits), the Traditional
    form of every cue folded to Simplified (號 -> 号, 進群 -> 进群, 關注 -> 关注), format
    characters (category Cf: zero-width space/joiners, BOM, bidi controls) and invisible fillers removed, dot
    substitutes ("。", "·", "•", "[dot]", "(dot)", " dot ", " . ", "点" ...) turned into "." where they sit
    between domain-like labels, and lower-cased. Very long input is cut at twice MAX_SCAN_CHARS.
    """
    return _fold(text).lower()


# ---------------------------------------------------------------------------------------------------------------
# Links

# All two-letter country-code TLDs in use, common generic ones, and the ones popular with Chinese spam.
_CC_TLDS = frozenset(
    """ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bm bn bo bq br bs bt bw by
    bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg er es et eu fi fj fk fm
    fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it
    je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mg mh mk ml mm mn mo
    mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw
    py qa re ro rs ru rw sa sb sc sd se sg sh si sk sl sm sn so sr ss st su sv sx sy sz tc td tf tg th tj tk tl tm
    tn to tr tt tv tw tz ua ug uk us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw""".split()
)
_GENERIC_TLDS = frozenset(
    """com net org info biz name pro mobi asia tel travel jobs edu gov mil int aero coop museum cat post xxx
    top xyz vip club shop online site store app dev page blog cloud tech space website fun icu cyou live life link
    work world today news email group team ltd company games game bet win bid loan money cash art design studio
    media network digital agency center market best buzz guru ink kim red wang xin ren lol one plus run fit cool
    chat social zone fans love sex porn adult casino poker vin wiki host press rocks moe onion tk mom bond sbs
    click help io ooo men date trade review stream download racing party science accountant cricket faith
    lat autos quest cfd bar beauty hair skin makeup boats yachts motorcycles homes mba monster pics cam tokyo sexy
    tube hiphop""".split()
)
_TLDS = _CC_TLDS | _GENERIC_TLDS
_CJK_TLDS = "中国|中國|公司|网络|網絡|网址|在线|商城|网店|集团|手机|中文网|信息|游戏|购物|移动|商标|时尚|微博"
# Two-label "domains" that are really file names or sentences with a missing space.
_FILE_EXTENSION_TLDS = frozenset({"py", "md", "rs", "sh", "pl", "ps", "mk", "so", "am", "ac", "id"})
_WORD_TLDS = frozenset({"is", "it", "in", "at", "to", "no", "be", "by", "do", "us", "so", "am", "as", "my", "me"})
_HONORIFICS = frozenset({"mr", "mrs", "ms", "dr", "st", "no", "vs", "jr", "sr", "prof", "mt"})

_URL_STOP = r"\s<>\"'`,，、。！!？()（）\[\]{}|\\^《》「」【】“”‘’"
_SCHEME_URL = re.compile(
    r"(?<![a-z0-9])(?:https?|hxxps?|ftp)://(?P<host>[^" + _URL_STOP + r"/?#]++)(?P<path>[/?#][^" + _URL_STOP + r"]*+)?",
    re.IGNORECASE | re.ASCII,
)
_TG_URL = re.compile(r"(?<![a-z0-9])tg://(?P<action>[a-z_]++)(?:\?(?P<query>[^" + _URL_STOP + r"]*+))?", re.I | re.A)
_BARE_HOST = re.compile(
    r"(?<![a-z0-9_.\-])[a-z0-9_\-]++(?:\.[a-z0-9_\-]++)*+(?:\.(?:" + _CJK_TLDS + r"))?"
    r"(?P<path>[/?#][^" + _URL_STOP + r"]*+)?",
    re.IGNORECASE | re.ASCII,
)
_TELEGRAM_HOSTS = frozenset({"t.me", "telegram.me", "telegram.dog"})
_TG_USERNAME = re.compile(r"[a-z][a-z0-9_]{2,31}", re.IGNORECASE | re.ASCII)
_TG_SERVICE_PATHS = frozenset(
    {"share", "proxy", "socks", "setlanguage", "addstickers", "addemoji", "addtheme", "bg", "login", "confirmphone",
     "invoice", "iv", "contact", "m"}
)


def _idna_host(host: str) -> str:
    """Lower-case host without "www." and trailing dots; Unicode labels as xn-- when they can be encoded."""
    host = host.strip(".").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except (UnicodeError, ValueError):
            pass
    if host.startswith("www."):
        host = host[4:]
    return host


def _url_host(authority: str) -> str:
    """Host of a URL authority: userinfo and port removed."""
    authority = authority.rpartition("@")[2]
    if authority.startswith("["):  # IPv6 literal
        return authority.partition("]")[0].lstrip("[").lower()
    return _idna_host(authority.partition(":")[0])


def _query_params(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        params.setdefault(key.lower(), value)
    return params


def _telegram_finding(host: str, path: str) -> Finding | None:
    """Classify a t.me / telegram.me link (host already lower-case, path starting with "/" or empty)."""
    if host not in _TELEGRAM_HOSTS:  # username.t.me
        name = host.rsplit(".", 2)[0]
        return Finding("channel", name) if _TG_USERNAME.fullmatch(name) else Finding("link", host)
    segments = [s for s in re.split(r"[/?#]", path.lstrip("/")) if s] if path.startswith("/") else []
    if not segments:
        return Finding("link", host)
    first = segments[0]
    second = segments[1] if len(segments) > 1 else ""
    if first.startswith("+"):
        code = first[1:]
        return Finding("phone", code) if code.isdigit() else Finding("invite", code)
    if first.lower() in ("joinchat", "addlist"):
        return Finding("invite", second)
    if first.lower() in ("s", "boost") and second:
        return Finding("channel", second.lower())
    if first.lower() == "c" and second:
        return Finding("channel", "c/" + second)
    if first.lower() in _TG_SERVICE_PATHS:
        return Finding("link", host)
    if _TG_USERNAME.fullmatch(first):
        return Finding("channel", first.lower())
    return Finding("link", host)


def _tg_scheme_finding(action: str, query: str) -> Finding | None:
    """Classify a tg:// link; tg://user?id= (an inline mention) is not a link."""
    action = action.lower()
    params = _query_params(query)
    if action == "join":
        return Finding("invite", params.get("invite", ""))
    if action == "addlist":
        return Finding("invite", params.get("slug", ""))
    if action == "resolve":
        if params.get("domain"):
            return Finding("channel", params["domain"].lower())
        if params.get("phone"):
            return Finding("phone", params["phone"])
        return Finding("link", "tg://resolve")
    if action in ("user", "openmessage"):
        return None
    return Finding("link", "tg://" + action)


def _host_finding(host: str, path: str) -> Finding:
    if host in _TELEGRAM_HOSTS or host.endswith(".t.me"):
        return _telegram_finding(host, path) or Finding("link", host)
    return Finding("link", host)


def _is_bare_domain(token: str) -> bool:
    """True when `token` (case kept) reads as a domain name rather than a number, version or file name."""
    labels = token.split(".")
    if len(labels) < 2:
        return False
    tld = labels[-1].lower()
    if not (tld in _TLDS or tld.startswith("xn--") or not tld.isascii()):
        return False
    for label in labels:
        if not label or len(label) > 63 or "_" in label or label[0] == "-" or label[-1] == "-":
            return False
    if all(label.isdigit() for label in labels[:-1]) and len(labels) == 2 and len(tld) == 2:
        return False  # "3.cn"-like fragments of numbers
    if len(labels) == 2:
        first = labels[0].lower()
        if tld in _FILE_EXTENSION_TLDS or first in _HONORIFICS:
            return False
        last = labels[-1]
        # "Thanks.It works": a sentence with a missing space, not the Italian domain thanks.it
        if tld in _WORD_TLDS and last[0].isupper() and last[1:].islower() and labels[0][-1].islower():
            return False
    return True


def _links_in(folded: str) -> list[Finding]:
    found: list[Finding] = []
    if "." not in folded and "://" not in folded:  # every link form has one: "tg://", "https://", a dot before a TLD
        return found
    rest = folded
    for match in _TG_URL.finditer(folded):
        finding = _tg_scheme_finding(match["action"], match["query"] or "")
        if finding:
            found.append(finding)
    rest = _TG_URL.sub(" ", rest)
    for match in _SCHEME_URL.finditer(rest):
        found.append(_host_finding(_url_host(match["host"]), match["path"] or ""))
    rest = _SCHEME_URL.sub(" ", rest)
    for match in _BARE_HOST.finditer(rest):
        token = match.group(0)
        path = match["path"] or ""
        host = token[: len(token) - len(path)] if path else token
        if "." not in host or not _is_bare_domain(host.strip(".")):
            continue
        found.append(_host_finding(_idna_host(host), path))
    return found


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def find_links(text: str, urls: Iterable[str] = ()) -> list[Finding]:
    """Links in `text` and in `urls` (from text_link/url entities and inline buttons), each reported once.

    t.me/+hash, t.me/joinchat/hash, t.me/addlist/slug, tg://join?invite= are "invite"; t.me/<name>,
    <name>.t.me, telegram.me/<name>, tg://resolve?domain= are "channel"; every other URL or bare domain
    (example.com, example [dot] com, shop。taobao。com, http://例子.中国) is "link" with the host as value.
    @mentions, numbers ("3.5"), versions ("v1.2"), abbreviations ("e.g.") and file names ("photo.jpg") are not
    links. Strings passed in `urls` are links even without a known TLD.
    """
    return _links_of(_fold(text[:MAX_SCAN_CHARS]), urls)


def _links_of(text: str, urls: Iterable[str]) -> list[Finding]:
    """find_links on `text` already folded."""
    found = _links_in(text)
    for url in urls:
        folded = _fold(url[:MAX_SCAN_CHARS]).strip()
        if not folded:
            continue
        in_url = _links_in(folded)
        if in_url:
            found.extend(in_url)
        elif folded.lower().startswith(("tg://user", "tg://openmessage")):
            continue
        elif "://" in folded:
            found.append(_host_finding(_url_host(re.split(r"[/?#]", folded.split("://", 1)[1])[0]), ""))
        else:  # mailto:, tel: or a bare word the caller still calls a URL
            found.append(Finding("link", folded.lower()[:200]))
    return _dedupe(found)


def domain_allowed(host: str, allowed: Iterable[str]) -> bool:
    """True when `host` is one of the `allowed` domains or a subdomain of one (m.shop.example.com under
    example.com). Entries may be written as hosts, with "www." or as URLs; comparison ignores case."""
    host = _idna_host(_fold(host).strip())
    if not host:
        return False
    for entry in allowed:
        entry = _fold(entry).strip()
        if "://" in entry:
            entry = re.split(r"[/?#]", entry.split("://", 1)[1])[0]
        else:
            entry = re.split(r"[/?#]", entry)[0]
        domain = _url_host(entry)
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


# ---------------------------------------------------------------------------------------------------------------
# Traffic diversion (引流)

_SEP = r"[\s:=#/~\-]"
_WECHAT_ID = r"(?P<id>[a-z][a-z0-9_\-]{5,19}+|[1-9][0-9]{4,11}+)(?![a-z0-9_\-])"
# Cues nobody uses in ordinary shop chat: adding someone on WeChat, or spelling it to dodge filters.
_WECHAT_STRONG = (
    r"(?:(?:加|\+|➕|添加|搜)\s*+(?:我\s*+|一下\s*+)?(?:的\s*+)?"
    r"(?:微信|微(?![博商店笑波软])|vx|wx|v(?!会员|认证)|威信|薇信|徽信|卫星|绿泡泡|weixin|wechat)(?![a-z])"
    r"|(?<![a-z])v信|威信|薇信|徽信|绿泡泡|vx同号|微信同号"
    r"|(?<![a-z])add\s++(?:me\s++)?(?:on\s++)?(?:my\s++)?(?:wechat|weixin)(?![a-z]))"
)
# Cues that only count when an id-like token follows.
_WECHAT_WEAK = r"(?:微信号?|(?<![a-z])(?:vx|wx|weixin|wechat(?:\s*+id)?)(?![a-z])|(?<![a-z0-9])v(?=\s*+[:=]))"
_WECHAT_WITH_ID = re.compile(
    r"(?P<cue>" + _WECHAT_STRONG + "|" + _WECHAT_WEAK + r")"
    r"(?:" + _SEP + r"|号码|号|是|为|id|is|:){0,6}+" + _WECHAT_ID
)
_WECHAT_ALONE = re.compile(_WECHAT_STRONG)

_QQ = re.compile(
    r"(?P<cue>(?<![a-z])qq(?:号码?|群)?|扣扣(?:号|群)?|企鹅(?:号|群)?|(?<![a-z])q(?:号|群))"
    r"(?:" + _SEP + r"|号码|号|是|为|is|number|no\.?|:){0,6}+(?P<number>[1-9][0-9]{4,10}+)(?![0-9])"
)
_QQ_GROUP_JOIN = re.compile(r"(?:加|进|入)\s*+q{1,2}群")

_INVITE_NUMBER = re.compile(
    r"(?:(?:进|加|入|加入)\s*+(?:我们的?|本|这个|我的)?\s*+(?:群聊|群|微信群|tg群|电报群)|群号码?"
    r"|(?<![a-z])join\s++(?:(?:my|our)\s++)?group)"
    r"(?:" + _SEP + r"|号码|号|是|为|:){0,6}+(?P<target>[0-9]{5,12}+|@[a-z][a-z0-9_]{3,31}+)(?![0-9a-z_])"
)
_CHANNEL_PROMOTION = re.compile(
    r"(?:(?:关注|订阅|加入|进|搜索?)\s*+(?:我的|我们的|本|这个)?\s*+(?:频道|頻道|群|channel)"
    r"|(?<![a-z])(?:join|subscribe(?:\s++to)?|follow)\s++(?:(?:my|our|the)\s++)?(?:channel|group)"
    r"|(?<![a-z])subscribe(?:\s++to)?)"
    r"[^\n@]{0,20}+@(?P<name>[a-z][a-z0-9_]{3,31}+)(?![a-z0-9_])"
)

# A QQ or group number after a cue that is not QQ's own name: 外部2群:279314535, 火速加675899789, 购买联系2858819642,
# 加好友 12345678. Six digits or more, not inside a longer number, not a count of something (加100000积分).
_QQ_AFTER_CUE = re.compile(
    r"(?:群号码?|群|(?<![参增追更附叠])加|联系|购买|私聊|好友|添加)"
    r"(?:[\s:=#\-~]|号码|号|是|为|我|qq|q){0,4}+(?P<number>[1-9][0-9]{5,10}+)"
    r"(?![0-9]|\s*+(?:元|块|积分|分|个|件|份|人|次|天|号|万|w|k|%|点|米|斤|克|g|ml|位|名|单|条|年|月|日|秒))"
)
# A promoted @username: right after a promotion cue (关注 @best_deals_channel, follow us @name, join: @name).
_AT_PROMOTION = re.compile(
    r"(?:(?:关注|订阅|加入|搜索?|围观)[^\n@]{0,12}+"
    r"|(?<![a-z])(?:join|follow|subscribe)(?:\s++(?:to|us|me|my|our|the))?(?:\s++(?:channel|group|on|at))?"
    r"\s*+:?\s*+)"
    r"@(?P<name>[a-z][a-z0-9_]{4,31}+)(?![a-z0-9_])"
)
# An international number after a messenger's name: WhatsApp +1 415 555 0199, 电报 +44 7700 900123. After the
# short names that are also words (wa, line, tg) the number must be written with its "+".
_MESSENGER_PHONE = re.compile(
    r"(?<![a-z])(?P<cue>whats\s?app|telegram|signal|viber|skype|wa|line|tg|电报|纸飞机|飞机)(?![a-z])"
    r"[^\n0-9+]{0,12}+(?P<number>\+?[0-9][0-9 \-().]{6,22}+)"
)
_WEAK_MESSENGERS = frozenset({"wa", "line", "tg"})
# What every pattern above needs (most chat has none of these and skips the three).
_PROMOTION_CUE = re.compile(r"[群加联购私好关订搜围电飞@]|whats|telegram|signal|viber|skype|wa|line|tg")


def _promotion_in(normalized: str) -> list[Finding]:
    """QQ/group numbers after a cue, promoted @usernames and messenger numbers in `normalized` text."""
    found: list[Finding] = []
    if not _PROMOTION_CUE.search(normalized):
        return found
    for match in _QQ_AFTER_CUE.finditer(normalized):
        found.append(Finding("qq", match["number"]))
    for match in _AT_PROMOTION.finditer(normalized):
        found.append(Finding("channel", match["name"]))
    for match in _MESSENGER_PHONE.finditer(normalized):
        number = match["number"].rstrip(" -(.")
        digits = "".join(ch for ch in number if ch.isdigit())
        if 8 <= len(digits) <= 15 and (number.startswith("+") or match["cue"] not in _WEAK_MESSENGERS):
            found.append(Finding("phone", "+" + digits if number.startswith("+") else digits))
    return found


_MENTION = re.compile(r"(?<![a-z0-9_.])@[a-z][a-z0-9_]{4,31}+(?![a-z0-9_@.])", re.IGNORECASE | re.ASCII)


def mentions_someone(text: str) -> bool:
    """True when `text` names a Telegram username (@name, five characters or more; e-mail addresses are not)."""
    return "@" in text and _MENTION.search(text) is not None


# ---------------------------------------------------------------------------------------------------------------
# Shop share codes (淘口令) and scam phrases

_CODE_SIGNS = "¥$€£₤₳¢₴₰₵₲₱₭₩₮"
# ￥AbC123xyz￥ (NFKC turns the fullwidth ￥ into ¥): a Taobao/Tmall/Xianyu share code, or any shop's in its style.
_SHARE_CODE = re.compile(r"[" + _CODE_SIGNS + r"](?P<code>[a-z0-9]{8,14}+)[" + _CODE_SIGNS + r"]")
_SHARE_CODE_CUE = re.compile("[" + _CODE_SIGNS + "]")


def find_share_codes(normalized: str) -> list[Finding]:
    """Shop share codes (淘口令 ￥AbC123xyz￥, €…€, $…$) in `normalized` text; prices (¥199) are not codes."""
    if not _SHARE_CODE_CUE.search(normalized):
        return []
    return [Finding("sharecode", m["code"]) for m in _SHARE_CODE.finditer(normalized)
            if not m["code"].isdigit()]


# Job, investment and "DM me" pitches that carry no contact at all (the `scam_phrases` knob: on in the standard and
# strict presets, off in relaxed). Never 代购, 拼团 or 无门槛 (券), which are how shopping groups talk. Chinese
# phrases match anywhere; Latin and Cyrillic ones at the start of a word (so "eth" is not found in "method").
SCAM_PHRASES = (
    "兼职", "日结", "刷单", "私聊我", "私信我", "代理招募", "招募代理", "诚招代理", "招代理", "躺赚", "稳赚", "日赚",
    "日入", "月入过万", "月入上万", "带你赚钱", "网赚", "手机赚钱", "在家赚钱", "足不出户", "零门槛",
    "跑分", "菠菜", "博彩", "彩票计划", "返佣", "高佣", "打字员", "拉人头", "裸聊", "约炮", "看片", "福利姬",
    "稳定收益", "高收益", "内部渠道", "招聘宝妈", "宝妈", "学生党",
    "dm me", "pm me", "inbox me", "invest", "profit", "withdrawal", "trading platform", "crypto", "bitcoin",
    "forex", "airdrop", "drop your wallet", "passive income", "financial freedom", "make money", "earn $",
    "earning", "work from home", "legit", "giveaway",
    "зараб", "доход", "прибыл", "пиши в", "пишите в", "напиши в", "удалённ", "удаленн", "без опыта",
    "в команду", "набор в", "обучение", "инвест",
)

def _scam_alternative(phrase: str) -> str:
    """One phrase of the alternation. Each starts with its literal first character (then re looks for those
    characters alone before trying any phrase); a word's start is checked by a lookbehind after that character."""
    if not phrase[0].isascii() and not "а" <= phrase[0] <= "я":
        return re.escape(phrase)
    return re.escape(phrase[0]) + "(?<![a-zа-яё0-9].)" + re.escape(phrase[1:])


_SCAM = re.compile("|".join(map(_scam_alternative, SCAM_PHRASES)))
# Latin letters that look like Cyrillic ones ("oбyчeниe" is written with Latin o, y, e): read as Cyrillic inside a
# word that has Cyrillic letters.
_LOOKALIKES = str.maketrans("aceopxykmthb", "асеорхукмтнв")
_MIXED_WORD = re.compile(r"\w*[а-яё]\w*")


def find_scam_phrase(normalized: str) -> Finding | None:
    """The first of SCAM_PHRASES in `normalized` text, as Finding("scam", phrase), or None."""
    if not normalized.isascii() and _MIXED_WORD.search(normalized):
        normalized = _MIXED_WORD.sub(lambda m: m.group(0).translate(_LOOKALIKES), normalized)
    match = _SCAM.search(normalized)
    return Finding("scam", match.group(0).strip()) if match else None


_CN_DIGITS = str.maketrans("零〇一二三四五六七八九幺壹贰叁肆伍陆柒捌玖", "001234567891123456789")
_PHONE_RUN = re.compile(r"(?<![0-9a-z])(?:\+\s*+)?[0-9]++(?:(?:[ \t]{1,3}+|[ \t]*+-[ \t]*+|\.)[0-9]++)*+")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_PHONE_GROUPS = frozenset({(11,), (3, 4, 4), (3, 8), (7, 4), (4, 4, 3), (3, 3, 5), (4, 3, 4)})
# A number right after these is an order, parcel or account number, not a phone.
_NOT_PHONE_CONTEXT = re.compile(r"(?:订单|单号|运单|快递|物流|编号|尾号|卡号|账号|order|sku|no\.?|#)[\s:#号是为]*+$")


def _phone_in_run(run: str, before: str) -> str | None:
    """The mobile number a run of digit groups spells, if any (`before`: the text just before the run)."""
    if _NOT_PHONE_CONTEXT.search(before):
        return None
    pieces = re.split(r"([0-9]+)", run.lstrip("+ \t"))
    groups, separators = pieces[1::2], pieces[2:-1:2]
    if len(groups) > 1 and groups[0] in ("86", "0086"):
        groups, separators = groups[1:], separators[1:]
    elif len(groups) == 1 and len(groups[0]) in (13, 15) and groups[0].startswith(("86", "0086")):
        groups = [groups[0][-11:]]
    kinds = {"-" if "-" in sep else "." if "." in sep else " " for sep in separators}
    sizes = tuple(len(g) for g in groups)
    digits = "".join(groups)
    if len(digits) == 11 and len(kinds) <= 1 and (sizes in _PHONE_GROUPS or set(sizes) == {1}):
        if _MOBILE.fullmatch(digits):
            return digits
    for group in groups:  # "2026 13812345678": a whole mobile number among other numbers
        if len(group) == 11 and _MOBILE.fullmatch(group):
            return group
    return None


# A mobile number is 11 digits (ASCII, or Chinese numerals before _CN_DIGITS turns them into ASCII).
_DIGIT_LIKE = re.compile("[0-9零〇一二三四五六七八九幺壹贰叁肆伍陆柒捌玖]")


_CN_NUMERALS = re.compile("[零〇一二三四五六七八九幺壹贰叁肆伍陆柒捌玖]++")


def _spell_numerals(text: str) -> str:
    """Chinese numerals as ASCII digits where they spell a number: a run of two or more (一三八, 幺三八), or one
    between two digits (138八1234); a lone numeral after digits starts a word (跟1615726686一样, 1388888888一个)."""

    def spelled(match: re.Match[str]) -> str:
        run = match.group(0)
        start, end = match.span()
        if len(run) >= 2 or (0 < start and end < len(text) and text[start - 1].isdigit() and text[end].isdigit()):
            return run.translate(_CN_DIGITS)
        return run

    return _CN_NUMERALS.sub(spelled, text)


def _phones(normalized: str) -> list[Finding]:
    found: list[Finding] = []
    if len(_DIGIT_LIKE.findall(normalized)) < 11:
        return found
    text = _spell_numerals(normalized) if not normalized.isascii() else normalized
    for match in _PHONE_RUN.finditer(text):
        if match.end() - match.start() < 11:  # fewer than 11 digits: no mobile number (prices, times, counts)
            continue
        phone = _phone_in_run(match.group(0), text[max(0, match.start() - 12) : match.start()])
        if phone:
            found.append(Finding("phone", phone))
    return found


def find_diversion(text: str) -> list[Finding]:
    """Traffic diversion in `text`: WeChat ids and WeChat cues ("加微信", "+V", "v信", "vx: abc123"), QQ numbers
    ("qq 12345678", "扣扣", "Q群"), mainland mobile numbers (1[3-9] + 9 digits, with +86, spaces, dashes,
    fullwidth or Chinese-numeral digits; not inside a longer number nor right after "订单号"/"尾号"), group
    numbers ("进群 123456") and channel promotion ("关注频道 @name"). Prices, dates, times, order numbers and
    words that merely contain "wx"/"qq"/"v" are not diversion.
    """
    return _diversion_in(normalize(text[:MAX_SCAN_CHARS]))


# What the diversion patterns cannot match without. _WECHAT_STRONG: 加 + ➕ 搜 (before any spelling), 信 (v信 威信
# 薇信 徽信), 绿 (绿泡泡), vx, add; _WECHAT_WEAK: 微 (微信), vx wx weixin wechat, ":" or "=" (after a lone v);
# _QQ and _QQ_GROUP_JOIN: qq q号 q群 扣 企; _INVITE_NUMBER: 群 or join; _CHANNEL_PROMOTION: @. Most chat has none
# of them and skips the six patterns (tests/test_detection.py holds this list to the patterns themselves).
_DIVERSION_CUE = re.compile(r"[加+➕搜信绿微扣企群@]|v\s*+[:=]|vx|wx|weixin|wechat|add|join|q[q号群]")


def _diversion_in(normalized: str) -> list[Finding]:
    """find_diversion on `normalized` text."""
    found = _known_diversion_in(normalized)
    seen = {f.value for f in found}
    promoted = [f for f in _promotion_in(normalized) if f.value not in seen]  # 群号 123456 is one finding
    return _dedupe(found + promoted) if promoted else found


def _known_diversion_in(normalized: str) -> list[Finding]:
    found: list[Finding] = []
    if not _DIVERSION_CUE.search(normalized):
        return _phones(normalized)
    for match in _WECHAT_WITH_ID.finditer(normalized):
        token = match["id"]
        strong = _WECHAT_ALONE.fullmatch(match["cue"]) is not None
        # after a weak cue ("微信 support"), only an id with a digit or "_" counts
        if strong or any(ch.isdigit() or ch in "_-" for ch in token):
            found.append(Finding("wechat", token))
    for match in _WECHAT_ALONE.finditer(normalized):
        if not any(f.kind == "wechat" for f in found):
            found.append(Finding("wechat", match.group(0)))
    for match in _QQ.finditer(normalized):
        found.append(Finding("qq", match["number"]))
    for match in _QQ_GROUP_JOIN.finditer(normalized):
        found.append(Finding("qq", match.group(0)))
    for match in _INVITE_NUMBER.finditer(normalized):
        target = match["target"]
        found.append(Finding("channel", target[1:]) if target.startswith("@") else Finding("invite", target))
    for match in _CHANNEL_PROMOTION.finditer(normalized):
        found.append(Finding("channel", match["name"]))
    found.extend(_phones(normalized))
    return _dedupe(found)


# ---------------------------------------------------------------------------------------------------------------
# Banned words

_REPEATS = {_sre_const.MAX_REPEAT, _sre_const.MIN_REPEAT, getattr(_sre_const, "POSSESSIVE_REPEAT", None)}
_SUBPATTERN_OPS = {_sre_const.SUBPATTERN, _sre_const.ASSERT, _sre_const.ASSERT_NOT}
_ATOMIC_GROUP = getattr(_sre_const, "ATOMIC_GROUP", None)


class _TooCostly(ValueError):
    pass


_SINGLE_CHAR_OPS = {_sre_const.LITERAL, _sre_const.NOT_LITERAL, _sre_const.IN, _sre_const.ANY}
_CATEGORY_TESTS = {
    _sre_const.CATEGORY_DIGIT: str.isdecimal,
    _sre_const.CATEGORY_NOT_DIGIT: lambda ch: not ch.isdecimal(),
    _sre_const.CATEGORY_SPACE: str.isspace,
    _sre_const.CATEGORY_NOT_SPACE: lambda ch: not ch.isspace(),
    _sre_const.CATEGORY_WORD: lambda ch: ch.isalnum() or ch == "_",
    _sre_const.CATEGORY_NOT_WORD: lambda ch: not (ch.isalnum() or ch == "_"),
}
# Characters tried when deciding whether two character sets overlap, besides the sets' own literals and bounds.
_PROBE = "".join(map(chr, range(0x250))) + "\u3000\u3001\u3002\u4e00\u4e2d\u597d\u9fa5\uff01\uff0c\u2028\u00a0"


def _char_in(item: tuple[object, object], ch: str) -> bool:
    """Whether the single-character item (LITERAL, NOT_LITERAL, IN or ANY; case-insensitive) matches `ch`."""
    op, av = item
    variants = {v for v in (ch, ch.lower(), ch.upper()) if len(v) == 1}
    if op == _sre_const.LITERAL:
        return chr(av) in variants  # type: ignore[arg-type]
    if op == _sre_const.NOT_LITERAL:
        return chr(av) not in variants  # type: ignore[arg-type]
    if op == _sre_const.ANY:
        return ch != "\n"
    negate, hit = False, False
    for kind, value in av:  # type: ignore[attr-defined]
        if kind == _sre_const.NEGATE:
            negate = True
        elif kind == _sre_const.LITERAL:
            hit = hit or chr(value) in variants
        elif kind == _sre_const.RANGE:
            hit = hit or any(value[0] <= ord(v) <= value[1] for v in variants)
        elif kind == _sre_const.CATEGORY:
            hit = hit or _CATEGORY_TESTS.get(value, lambda _: True)(ch)
        else:
            hit = True  # unknown member: assume it matches, which only makes the estimate more cautious
    return hit != negate


def _char_points(item: tuple[object, object]) -> str:
    """The literals and range bounds of a single-character item: where two sets can first overlap."""
    op, av = item
    if op in (_sre_const.LITERAL, _sre_const.NOT_LITERAL):
        return chr(av)  # type: ignore[arg-type]
    if op == _sre_const.IN:
        points = []
        for kind, value in av:  # type: ignore[attr-defined]
            if kind == _sre_const.LITERAL:
                points.append(chr(value))
            elif kind == _sre_const.RANGE:
                points.extend((chr(value[0]), chr(value[1])))
        return "".join(points)
    return ""


def _first_chars(items: list[tuple[object, object]], start: int, *, at_end_ok: bool) -> list | None:
    """Single-character items one of which the text must match at `start` of `items`; [] when the pattern may
    end there (only at the top level), None when unknown."""
    firsts: list[tuple[object, object]] = []
    for op, av in items[start:]:
        if op in _SINGLE_CHAR_OPS:
            return [*firsts, (op, av)]
        if op in _REPEATS and len(av[2]) == 1 and av[2][0][0] in _SINGLE_CHAR_OPS:  # type: ignore[index]
            firsts.append(av[2][0])  # type: ignore[index]
            if av[0] >= 1:  # type: ignore[index]
                return firsts
            continue
        if op == _sre_const.SUBPATTERN:
            inner = _first_chars(list(av[-1]), 0, at_end_ok=False)  # type: ignore[index]
            return None if inner is None else firsts + inner
        if op == _sre_const.BRANCH:
            for branch in av[1]:  # type: ignore[index]
                inner = _first_chars(list(branch), 0, at_end_ok=False)
                if inner is None:
                    return None
                firsts.extend(inner)
            return firsts
        return None
    return firsts if at_end_ok else None


def _disjoint(item: tuple[object, object], others: list[tuple[object, object]]) -> bool:
    probe = _PROBE + _char_points(item) + "".join(_char_points(o) for o in others)
    return not any(_char_in(item, ch) and any(_char_in(o, ch) for o in others) for ch in probe)


def _pattern_cost(items: object, *, inside_repeat: bool, top_level: bool = False) -> int:
    """Worst-case backtracking multiplier of a parsed pattern: the product of the upper bounds of its repeats,
    except repeats of one character set that the next item cannot start with (they give back at most their own
    width once). Raises _TooCostly for shapes that backtrack exponentially: a variable repeat inside a repeat,
    alternation inside a repeat, backreferences."""
    sequence = list(items)  # type: ignore[call-overload]
    cost = 1
    for index, (op, av) in enumerate(sequence):
        if op in _REPEATS:
            low, high, sub = av
            width = min(high, MAX_REGEX_TEXT_CHARS) if high != _sre_const.MAXREPEAT else MAX_REGEX_TEXT_CHARS
            variable = high > low
            if inside_repeat and variable:
                raise _TooCostly("nested quantifier")
            inner = _pattern_cost(sub, inside_repeat=inside_repeat or high > 1)
            if variable and len(sub) == 1 and sub[0][0] in _SINGLE_CHAR_OPS:
                following = _first_chars(sequence, index + 1, at_end_ok=top_level)
                if following is not None and _disjoint(sub[0], following):
                    width = 1
            cost *= max(width, 1) * inner
        elif op == _sre_const.BRANCH:
            if inside_repeat:
                raise _TooCostly("alternation inside a quantifier")
            cost *= max(_pattern_cost(branch, inside_repeat=False) for branch in av[1])
        elif op == _ATOMIC_GROUP:
            cost *= _pattern_cost(av, inside_repeat=inside_repeat)
        elif op in _SUBPATTERN_OPS:
            cost *= _pattern_cost(av[-1], inside_repeat=inside_repeat)
        elif op in (_sre_const.GROUPREF, getattr(_sre_const, "GROUPREF_EXISTS", None)):
            raise _TooCostly("backreference")
        if cost > MAX_REGEX_COST:
            raise _TooCostly("too slow in the worst case")
    return cost


def _compile_regex_entry(pattern: str) -> re.Pattern[str]:
    """Compile a person-supplied regex, refusing ones that could backtrack catastrophically."""
    if len(pattern) > MAX_REGEX_ENTRY_CHARS:
        raise _TooCostly(f"longer than {MAX_REGEX_ENTRY_CHARS} characters")
    compiled = re.compile(pattern, re.IGNORECASE)
    parsed = _sre_parse.parse(pattern, re.IGNORECASE)
    if MAX_REGEX_TEXT_CHARS * _pattern_cost(parsed, inside_repeat=False, top_level=True) > MAX_REGEX_COST:
        raise _TooCostly("too slow in the worst case")
    return compiled


def _wildcard_parts(entry: str) -> tuple[re.Pattern[str], ...]:
    """A wildcard entry as its "*"-separated parts, each a pattern where "?" is one character."""
    parts = [p for p in entry.split("*") if p]
    return tuple(re.compile(".".join(re.escape(s) for s in part.split("?")), re.DOTALL) for part in parts)


@dataclass(frozen=True)
class _BannedEntry:
    entry: str
    plain: str | None = None
    parts: tuple[re.Pattern[str], ...] = ()
    regex: re.Pattern[str] | None = None

    def matches(self, text: str) -> bool:
        if self.plain is not None:
            return self.plain in text
        if self.regex is not None:
            return self.regex.search(text[:MAX_REGEX_TEXT_CHARS]) is not None
        # "*" matches any run within one line: place each part at its earliest position after the previous one
        for line in text.split("\n"):
            pos = 0
            for part in self.parts:
                match = part.search(line, pos)
                if match is None:
                    break
                pos = match.end()
            else:
                return bool(self.parts)
        return False


@dataclass(frozen=True)
class BannedMatcher:
    """Compiled banned-word entries. `errors` lists entries that were refused (invalid or too costly regex),
    one human-readable line each; the other entries still work."""

    entries: tuple[_BannedEntry, ...] = ()
    errors: list[str] = field(default_factory=list, hash=False, compare=False)

    def find(self, text: str) -> Finding | None:
        """The first entry found in the normalized `text`, as Finding("banned", entry), or None."""
        return self.find_normalized(normalize(text[:MAX_SCAN_CHARS]))

    def find_normalized(self, normalized: str) -> Finding | None:
        """find on `normalized` text (scan normalizes once for every detector)."""
        if self.entries:
            normalized = _one_script(normalized)
        for entry in self.entries:
            if entry.matches(normalized):
                return Finding("banned", entry.entry)
        return None


def _one_script(text: str) -> str:
    """Banned words match across scripts: entries and text alike are compared with Traditional characters written
    in Simplified (models.script), so 代购 catches 代購 and 代購 catches 代购."""
    return simplified(text)


def compile_banned(entries: Iterable[str]) -> BannedMatcher:
    """Compile banned-word entries: plain ("代购": contained anywhere), wildcard ("*代购*", "免费?送": "*" any run
    of characters within a line, "?" exactly one character) or regex ("re:刷单|兼职", case-insensitive, at most
    MAX_REGEX_ENTRY_CHARS, no nested quantifiers or backreferences, matched against the first
    MAX_REGEX_TEXT_CHARS characters). Plain and wildcard entries are normalized like the text."""
    compiled: list[_BannedEntry] = []
    errors: list[str] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        if entry[:3].lower() == "re:":
            try:
                compiled.append(_BannedEntry(entry, regex=_compile_regex_entry(_one_script(entry[3:]))))
            except _TooCostly as exc:
                errors.append(f"{entry[:60]}: refused: {exc}")
            except (re.error, RecursionError, OverflowError, ValueError, TypeError) as exc:
                errors.append(f"{entry[:60]}: invalid regex: {exc}")
            continue
        text = _one_script(normalize(entry))
        if not text.strip("*?"):
            errors.append(f"{entry[:60]}: matches everything")
        elif "*" in text or "?" in text:
            compiled.append(_BannedEntry(entry, parts=_wildcard_parts(text)))
        else:
            compiled.append(_BannedEntry(entry, plain=text))
    return BannedMatcher(tuple(compiled), errors)


def scan(
    text: str, urls: Iterable[str] = (), *, banned: BannedMatcher | None = None, share_codes: bool = True,
    scam_phrases: bool = False,
) -> list[Finding]:
    """Everything the moderation handlers act on: find_links + find_diversion + shop share codes (unless
    `share_codes` is off) + the first scam phrase (when `scam_phrases` is on) + the first banned word."""
    folded = _fold(text[:MAX_SCAN_CHARS])  # once for every detector
    normalized = folded.lower()
    found = _links_of(folded, urls) + _diversion_in(normalized)
    if share_codes:
        found += find_share_codes(normalized)
    if scam_phrases:
        scam = find_scam_phrase(normalized)
        if scam:
            found.append(scam)
    if banned is not None:
        hit = banned.find_normalized(normalized)
        if hit:
            found.append(hit)
    return _dedupe(found)
