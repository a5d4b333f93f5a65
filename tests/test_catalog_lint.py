"""The catalogs read as a native speaker would write them (locales/STYLE.md says why each rule holds).

- Chinese strings use full-width punctuation: no half-width `: ; , ( ) ! ?` touching a Chinese character, a
  placeholder or an HTML tag. Exempt, because a person types them or the bot fills them in: `<code>…</code>`
  spans, HTML entities, links, the input formats in INPUT_FORMATS, and command examples. A command example runs
  from a `/command` to the end of its line, to ` — `, or to the first `(`, `)`, `;` or full-width punctuation
  mark.
- zh_Hant strings hold no Simplified-only character (SIMPLIFIED_ONLY; exceptions in ALLOWED_SIMPLIFIED), no
  mainland-only word where Taiwan says it otherwise (MAINLAND_WORDS), and quote with 「」, not “”.
- A number the bot fills in is followed by a Chinese unit (`{hours} 小時`), not `h`/`min`/`d`.
- A rank has no `#` in front of it in Chinese (`第 {rank} 名`); English keeps the natural `#1`.
- Every translation keeps the msgid's placeholders, HTML tags and entities, and the commands it names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from babel.messages.pofile import read_po

from locales.update import LOCALES, catalog_path

CHINESE = ("zh_Hans", "zh_Hant")
HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
FULL_WIDTH_PUNCTUATION = set("，。、；：？！（）「」『』“”‘’《》〈〉…—～·")
HALF_WIDTH = set(":;,()!?")

# Input formats a person types, shown with the ASCII colon the bot parses.
INPUT_FORMATS = (
    "人数:奖励", "人數:獎勵", "天数:奖励", "天數:獎勵", "key:门槛[:名称]", "re:正则", "re:正規表示式",
)
ENTITY = re.compile(r"&[a-z]+;|&#\d+;")  # &lt; ends in a semicolon
PROTECTED = (
    re.compile(r"<code>.*?</code>", re.S),  # code the reader copies
    re.compile(r"https?://[\w./?=&%#-]+"),
    re.compile(r"(?<![\w/<])/[a-z][a-z_]*(?:\{[a-z_]*\})?(?:&[a-z]+;|[^\n();—，。、；：？！（）「」])*"),  # a command
    ENTITY,
    *(re.compile(re.escape(form)) for form in INPUT_FORMATS),
)
FILLED = re.compile(r"\{[a-z_0-9]*\}|%\([a-z_]+\)[sd]|</?[a-z]+>")  # placeholders and tags: words of the sentence

PLACEHOLDER = re.compile(r"\{[a-z_0-9]*\}|%\([a-z_]+\)[sd]")
TAG = re.compile(r"</?[a-z]+>")
COMMAND = re.compile(r"(?<![\w/<])/[a-z][a-z_]*")
ASCII_UNIT_AFTER_NUMBER = re.compile(r"\{[a-z_]+\}\s?(?:h|hrs?|min|mins|s|sec|d|days?)\b")  # {hours} h, not 小時
RANK_WITH_HASH = re.compile(r"第\s*#|#\s*\{(?:rank|place)\}")  # 第 #1 名 reads as "number number 1"

# Every character that OpenCC's STCharacters maps to a different Traditional form, except the standard Taiwan
# forms (群 床 秘 …), among those the zh_Hans catalog used when this test was written, plus the common ones a
# translator reaches for in a group-commerce bot. Built-in so the test needs no converter package.
SIMPLIFIED_ONLY = frozenset(
    "与专业丛东丝两严丧个临为丽举义乌乐乔习乡书买乱争亏亚产亩亲亿仅从仑仓仪们众优会伞伟传伤伦伪体侠侣侦侧侨俩"
    "俭债倾偿储儿兑兰关兴兹养兽内冈册写军农冯冲决况冻净凉减凑凤凭凯击凿刘则刚创删别刹剂剑剥剧劝办务动励劲劳势"
    "勋匀区医华协单卖卢卫却厅历厉压厌厕厢厦厨县参双发变叙叠号叹吓吕吗吨听启吴员呜咏响哑哗唤啰喷团园围国图圆圣"
    "场坏块坚坛坟坠垄垒垦垫处备复够头夹夺奋奖妆妇妈娇娱婴孙学宁宝实宠审宪宫宽宾对寻导寿将尔尘尝尽层届属屡岁岂"
    "岗岛岭峡币帅师帐带帮并庄庆库应庙庞废开异弃张弹强归当录彻径忆忧怀态怜总恋恒恳恶悦惊惧惨惩惯愤懒戏战户扑执"
    "扩扫扬扰抚抛抢护报担拟拢拥拦择挡挣挤挥损捡换掷揽搁搂携摄摆摇撑敌敛数斋断无旧时旷昵昼显晋晒晓晕暂术机杀杂"
    "权条来杨构枪标栏树样桥梦检楼槛欢欧歼残毁毕毙气汇汉汤沟没沪泪泼泽洁洒浅浆测济浏浑浓涛涨渊渐渔温湾湿溃滚满"
    "滤滥滨灭灯灵灾灿炉点炼烂烟烦烧热焕爱爷牵犹独狭狮猎猪猫献环现玺琐电画畅疗疯痒瘾盏盐监盖盘睁矫矿码砖础硕碍"
    "礼祸离秃积称稳穷窃窍竞笋笔笼筛筹签简类粮紧纠红约级纪纯纲纳纵纷纸纹练组细织终绍经结绕绘给络绝统继绩续维综"
    "绿缓编缘缩网罗罚罢职联聪肃肠肤肿胀胁胆脉脏脑脚脱脸腾舰艺节芦苍苏荡荣药莱获萝营萧蓝虑虚虽虾蚁蛮补衬袜袭装"
    "见观规视览觉触誉计订认讨让训议讯记讲讳许论设访证评识诉词译试诗诚话询该详语误说请诸诺读课谁调谈谊谋谢谣谨"
    "谱贝贞负贡财责贤败账货质贩贪贫购贯贴贵贷贸费贺资赏赔赖赚赛赞赠赢赶趋跃践踪车轨转轮软轰轻载较辅辆辈辉辑输"
    "辞辩边达迁过迈运还这进远违连迟迹选逊递逻遗邮邻郑酱释鉴针钉钟钢钥钦钮钱钻铁铃铜铭银铺链销锁锅锋错锦键镇镜"
    "长门闪闭问闯闲间闷闹闻阀阁阅阈队阳阴阵阶际陆陈险随隐隶难雾静韩页顶项顺须顾顿预领频题颜额风飘飞饭饮饰饱饼"
    "馆马驱驳驶驻驾骂验骗骚骤鱼鲜鸟鸡鸣鸭鹅麦黄齐齿龄龙龟"
)
# Simplified characters a zh_Hant string may show, and why. Empty: every keyword the bot accepts has a
# Traditional form, so zh_Hant text never asks for Simplified input.
ALLOWED_SIMPLIFIED: frozenset[str] = frozenset()

# Mainland words and their Taiwan equivalents (locales/STYLE.md).
MAINLAND_WORDS = {
    "發送": "傳送", "用戶": "使用者", "發佈": "發布", "帖": "貼文", "視頻": "影片", "信息": "訊息", "默認": "預設",
    "鏈接": "連結", "設置": "設定", "點擊": "點選 / 按", "示例": "範例", "字符": "字元", "運行": "執行",
    "創建": "建立", "獲取": "取得", "登錄": "登入", "導出": "匯出", "質量": "品質", "菜單": "選單", "搜索": "搜尋",
}


def catalog(locale: str) -> Iterator[tuple[str, str]]:
    """(msgid, translation) for every translated string of `locale`, plural forms one by one."""
    with catalog_path(locale).open("rb") as handle:
        messages = read_po(handle)
    for message in messages:
        if not message.id:
            continue
        key = message.id if isinstance(message.id, str) else message.id[0]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for string in strings:
            if string:
                yield key, string


def prose_mask(text: str) -> list[str]:
    """A mark per character: "p" protected (code, command, link, entity, input format), "f" filled in by the bot
    (placeholder or tag: read as part of the sentence), "t" text."""
    mask = ["t"] * len(text)
    for found in FILLED.finditer(text):
        mask[found.start():found.end()] = ["f"] * (found.end() - found.start())
    for pattern in PROTECTED:
        for found in pattern.finditer(text):
            mask[found.start():found.end()] = ["p"] * (found.end() - found.start())
    return mask


def prose(text: str) -> str:
    """`text` without what is protected (commands, code, links, entities, input formats)."""
    return "".join(char for char, mark in zip(text, prose_mask(text), strict=True) if mark != "p")


def touches_chinese(text: str, mask: list[str], index: int) -> bool:
    for neighbour in (index - 1, index + 1):
        if not 0 <= neighbour < len(text) or mask[neighbour] == "p":
            continue
        char = text[neighbour]
        if mask[neighbour] == "f" or HAN.match(char) or char in FULL_WIDTH_PUNCTUATION:
            return True
    return False


def half_width_next_to_chinese(text: str) -> list[str]:
    """The half-width marks in `text` that touch Chinese, each shown with a little of its context."""
    mask = prose_mask(text)
    return [
        text[max(0, index - 6):index + 7]
        for index, char in enumerate(text)
        if char in HALF_WIDTH and mask[index] == "t" and touches_chinese(text, mask, index)
    ]


def report(problems: list[str]) -> str:
    return f"{len(problems)} problems:\n" + "\n".join(problems[:40])


@pytest.mark.parametrize("locale", CHINESE)
def test_chinese_strings_use_full_width_punctuation(locale: str) -> None:
    problems = [
        f"{key[:50]!r}: {found!r}" for key, text in catalog(locale) for found in half_width_next_to_chinese(text)
    ]
    assert not problems, report(problems)


def test_the_lint_knows_prose_from_what_a_person_types() -> None:
    assert half_width_next_to_chinese("投票人数:{voters}") == ["投票人数:{voter"]
    assert half_width_next_to_chinese("🗳 投票 #{id}:<b>{title}</b>") != []
    assert half_width_next_to_chinese("团购价 {price}(原价 <s>{original}</s>)") != []
    assert half_width_next_to_chinese("用法：/checkin keywords 签到, 打卡（1 到 10 个词）") == []
    assert half_width_next_to_chinese("示例：/vote new 下期团购选品 | 2d | 面膜 39.9") == []
    assert half_width_next_to_chinese("格式为 天数:奖励；用 <code>a,b</code> 或 &lt;值&gt;") == []
    assert half_width_next_to_chinese("每天 08:00 发布") == []
    assert half_width_next_to_chinese("用 /set &lt;规则&gt; &lt;值&gt; 修改") == []
    assert half_width_next_to_chinese("如 https://shop.example/1(2 到 10 个)") != []


def test_zh_hant_has_no_simplified_only_characters() -> None:
    problems = [
        f"{key[:50]!r}: {''.join(sorted(set(bad)))} in {text[:60]!r}"
        for key, text in catalog("zh_Hant")
        if (bad := [char for char in text if char in SIMPLIFIED_ONLY and char not in ALLOWED_SIMPLIFIED])
    ]
    assert not problems, report(problems)


def test_zh_hant_speaks_taiwan_usage_and_quotes_with_corner_brackets() -> None:
    problems = [
        f"{key[:50]!r}: {word!r} (say {MAINLAND_WORDS[word]!r})"
        for key, text in catalog("zh_Hant")
        for word in MAINLAND_WORDS
        if word in text
    ]
    problems += [f"{key[:50]!r}: “” quotes" for key, text in catalog("zh_Hant") if "“" in text or "”" in text]
    assert not problems, report(problems)


def test_simplified_only_list_holds_no_traditional_character() -> None:
    # A character in both scripts would flag good zh_Hant text.
    assert not SIMPLIFIED_ONLY & set("群床秘台只干面里后于系制范松谷丑回价周")


@pytest.mark.parametrize("locale", CHINESE)
def test_no_hash_before_a_rank(locale: str) -> None:
    problems = [f"{key[:60]!r}: {text!r}" for key, text in catalog(locale) if RANK_WITH_HASH.search(text)]
    assert not problems, report(problems)


@pytest.mark.parametrize("locale", CHINESE)
def test_chinese_units_are_words(locale: str) -> None:
    problems = [
        f"{key[:60]!r}: {found!r}"
        for key, text in catalog(locale)
        for found in ASCII_UNIT_AFTER_NUMBER.findall(prose(text))
    ]
    assert not problems, report(problems)


@pytest.mark.parametrize("locale", LOCALES)
def test_translations_keep_placeholders_tags_entities_and_commands(locale: str) -> None:
    problems = []
    for key, text in catalog(locale):
        for pattern in (PLACEHOLDER, TAG, ENTITY):
            if sorted(pattern.findall(text)) != sorted(pattern.findall(key)):
                problems.append(f"{key[:60]!r}: {pattern.pattern} differs in {text[:60]!r}")
        if missing := set(COMMAND.findall(key)) - set(COMMAND.findall(text)):
            problems.append(f"{key[:60]!r}: lost {sorted(missing)} in {text[:60]!r}")
    assert not problems, report(problems)
