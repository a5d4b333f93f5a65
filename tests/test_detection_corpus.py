"""The detection corpus: every trick a spammer uses is acted on, and ordinary group chat passes.

BAD: (sample, urls passed as entities/buttons, the kind of finding that must be reported). A link finding counts
only when its host is not on the brand's allow list, as the moderation handlers will judge it.
ORDINARY: messages members really write (prices, order numbers, times, decimals, versions, emoticons, the
brand's own shop link); none may produce a finding.
"""

from __future__ import annotations

import pytest

from models.detection import Finding, compile_banned, domain_allowed, scan

ALLOWED = ["brandshop.com", "brand.taobao.com"]
BANNED = compile_banned(
    ["代购", "*刷单*", "免费?送", r"re:兼职.{0,10}日结", "free money", r"re:earn\s*\$?\d+\s*(a|per)\s+day",
     "crypto*signal"]
)
ZW = "\u200b"  # zero-width space

BAD: list[tuple[str, list[str], str]] = [
    # links, written out, hidden and obfuscated
    ("看看这个 https://cheap-deals.shop/item/123", [], "link"),
    ("Best prices at www.cheapdeals.xyz !!!", [], "link"),
    ("example [dot] com 上有更便宜的", [], "link"),
    ("visit example (dot) com now", [], "link"),
    ("go to evil dot com for free gifts", [], "link"),
    ("Cheap bags at bags . cn", [], "link"),
    ("shop。taobao。com 搜店铺 好物", [], "link"),
    ("ｆａｋｅｓｈｏｐ．ｃｏｍ 全场一折", [], "link"),
    (f"c{ZW}heap{ZW}.{ZW}com/deal", [], "link"),
    ("taobao点com 搜 好物店", [], "link"),
    ("店铺地址 shop【dot】xyz", [], "link"),
    ("点这里领券", ["https://coupon-spam.top/r?id=1"], "link"),
    ("Click here", ["http://free-gift.win"], "link"),
    ("【新品】图片见 fake-brand.vip/p/88", [], "link"),
    ("Great deal!", ["https://bit.ly/3xYzAbC"], "link"),
    ("bit.ly/3abcDEF free stuff", [], "link"),
    ("活动页 http://例子.中国/promo", [], "link"),
    ("官网 shop123.中国", [], "link"),
    ("hxxp://evil-site.cn/a 自己复制打开", [], "link"),
    ("有事发邮件 seller@163.com", [], "link"),
    ("SALE AT CHEAP-SHOP.NET", [], "link"),
    ("下载 app：dl.xn--fiqs8s.cn", [], "link"),
    # other groups' invite links
    ("进群领福利 t.me/+AbCdEf12345", [], "invite"),
    ("Join us: https://t.me/joinchat/BbCdEf_12345", [], "invite"),
    ("telegram.me/+XyZ987654 more deals", [], "invite"),
    ("加入", ["tg://join?invite=HiddenHash"], "invite"),
    ("群链接 t。me/+abcDEF123", [], "invite"),
    ("t[.]me/joinchat/ABCdef", [], "invite"),
    ("all our groups: t.me/addlist/AbCdEf", [], "invite"),
    ("加群 123456789 领红包", [], "invite"),
    ("群号：987654321", [], "invite"),
    # channel promotion
    ("关注频道 @deal_channel 每天秒杀", [], "channel"),
    ("Subscribe to my channel @cheap_stuff_daily", [], "channel"),
    ("t.me/cheap_stuff_daily 每日好价", [], "channel"),
    ("daily deals", ["tg://resolve?domain=spam_channel"], "channel"),
    ("more at cheapdeals.t.me", [], "channel"),
    ("join our group @another_group_chat", [], "channel"),
    # WeChat
    ("加微信 shop_8888 领优惠券", [], "wechat"),
    ("vx：abc123456", [], "wechat"),
    ("V信 mm_2026", [], "wechat"),
    ("+V：girl_666 看朋友圈", [], "wechat"),
    ("威信 abc_987", [], "wechat"),
    ("薇信号 kk12345", [], "wechat"),
    ("有需要的加我微信", [], "wechat"),
    ("wx: tb_shop01", [], "wechat"),
    ("微信号：ｗｘｉｄ＿ａｂｃ１２３", [], "wechat"),
    ("Add me on WeChat: lucky_deals88", [], "wechat"),
    ("WeChat ID: cheap_goods_01", [], "wechat"),
    ("weixin abc_123456", [], "wechat"),
    (f"加{ZW}微{ZW}信 abc12345", [], "wechat"),
    ("➕V 同款低价", [], "wechat"),
    # QQ
    ("QQ：123456789 咨询", [], "qq"),
    ("扣扣 87654321", [], "qq"),
    ("企鹅号 1234567890", [], "qq"),
    ("Q群 12345678 欢迎", [], "qq"),
    ("进Q群 拿内部价", [], "qq"),
    ("my qq is 123456789", [], "qq"),
    # phone numbers
    ("电话 13812345678", [], "phone"),
    ("+86 138 1234 5678 随时联系", [], "phone"),
    ("联系：139-8765-4321", [], "phone"),
    ("手机 １５９１２３４５６７８", [], "phone"),
    ("call 1 3 8 1 2 3 4 5 6 7 8", [], "phone"),
    ("一五八 一二三四 五六七八", [], "phone"),
    ("tel: +86-186-0000-1111", [], "phone"),
    ("138.1234.5678 微信同号", [], "phone"),
    (f"1{ZW}3{ZW}9{ZW}1{ZW}2{ZW}3{ZW}4{ZW}5{ZW}6{ZW}7{ZW}8", [], "phone"),
    ("Call me at +8613912345678", [], "phone"),
    # banned words: plain, wildcard, regex, hidden
    ("专业代购 正品保证", [], "banned"),
    ("接刷单 日入500", [], "banned"),
    ("免费赠送iPhone", [], "banned"),
    ("招兼职，日结200", [], "banned"),
    (f"代{ZW}购 欧洲直邮", [], "banned"),
    ("ＦＲＥＥ ＭＯＮＥＹ for everyone", [], "banned"),
    ("Earn $500 per day from home", [], "banned"),
    ("Best crypto trading signals here", [], "banned"),
]

ORDINARY: list[str] = [
    # Chinese: prices, order numbers, times, dates, decimals
    "这个39.9元，明天还有吗？",
    "拼团价 ¥199，原价 ¥299.00",
    "订单号 202611220012345678，什么时候发货？",
    "订单号13812345678 怎么还没到",
    "我的单号是 SF1234567890123",
    "快递单号 773012345678901 查不到",
    "11月22日 20:00 开抢",
    "今晚8点30分准时秒杀",
    "下午3点半到",
    "尾号1234的那位中奖了",
    "手机尾号 5678 的朋友请私聊群主领奖",
    "2026-11-22 发货",
    "2026.11.22 活动结束",
    "满300减50，叠加券再减20",
    "买2件打8.5折",
    "重量 1.25kg，尺寸 30*40*50cm",
    "库存还有 1,280 件",
    "第3.5版的说明书在哪",
    "我用的是 iOS 17.2 版本",
    "v1 版本和 v2 有什么区别",
    "我 VIP 等级是 V3",
    "积分 12345 可以换什么",
    "签到第 365 天！",
    "已付款 88.88",
    "qq音乐里有这首歌",
    "QQ空间看到了你们的广告",
    "我在微信小程序下的单",
    "微信支付可以吗？",
    "用微信扫码付的",
    "加群三天了，第一次抢到",
    "我进群好久了哈哈",
    "群主什么时候发红包",
    "频道里的视频看过了",
    "谢谢老板😊👍",
    "哈哈哈哈 (^_^) 好的",
    "[微笑][玫瑰] 收到",
    "……好吧。。。",
    "一三五有货，二四六没货",
    "一二三四五六七八九十，大家报数",
    "价格 139 159 199 29 四档可选",
    "团购价 13.9 15.8 16.5 19.9",
    "颜色：1号色 3号色 8号色",
    "电话费充了100",
    "明天 10:30-12:00 直播",
    "身高 165 体重 50 穿什么码",
    "第一批 50 件已售罄，第二批 100 件 12 月 1 日到",
    "我老公说点个赞",
    "这个点com不了",
    "刷了好几次没刷出来",
    "免费的东西我们明天一早送过去",
    "代金券怎么用",
    "官方店铺 brandshop.com/item/88 可以下单",
    "https://brandshop.com/sale 今天打折",
    "淘宝店 brand.taobao.com 也有",
    "请看公告 @brand_admin 发的",
    "@小美 你的快递到了",
    "大家晚安～明天见",
    "这款是 2026 新款吗",
    "88.8% 的好评率",
    "3.15 消费者权益日活动",
    "第1.5期团购开始",
    "加V会员可以打折吗",
    "请拨打客服热线 400-123-4567",
    "共 3 件，合计 ¥ 1,299.00",
    "2026年11月22日 20:00:00 截止",
    "单价 13.8 元/斤 共 12.5 斤",
    "14:00-16:00 16:00-18:00 两个时段",
    "12.12 大促，双11 11.11 也有",
    "商品编号 A13812345678",
    "我的微信昵称叫小美",
    "下单备注：wx",
    "1 2 3 4 5 6 7 8 9 10 11 报数",
    # English
    "Is this still available? $39.99 right?",
    "Order #202611220012345678 hasn't shipped yet",
    "See you at 8:30 pm, e.g. after dinner",
    "Version 3.5.1 fixed the bug, i.e. the app works now",
    "I sent photo.jpg and receipt.pdf to the admin",
    "Thanks.It works now",
    "Got it.Is there a bigger size?",
    "Mr.Wang said the parcel is on the way",
    "The price went from 12.5 to 10.99",
    "wxyz is not a word :)",
    "I use QQ Music sometimes",
    "Meet at 10.30 tomorrow",
    "My v1 order arrived, v2 next week",
    "Lol 😂 that's great",
    "Can I pay by WeChat Pay?",
    "I joined the group last week",
    "Please follow the rules, thanks @admin_bob",
    "Score: 98.5/100",
    "Delivery in 3-5 days",
    "Call the store if you need help",
    "Free shipping over $50",
    "The dot pattern dress is cute",
    "Item no. 13812 is out of stock",
    "Shop opens at 9.30am",
    "Works with 2.4GHz wifi, U.S. version",
    "Join our group buy tomorrow!",
    "Subscribe to get notified when it's back",
]


def _acted_on(findings: list[Finding], kind: str) -> bool:
    return any(f.kind == kind and not (f.kind == "link" and domain_allowed(f.value, ALLOWED)) for f in findings)


def _false_positives(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not (f.kind == "link" and domain_allowed(f.value, ALLOWED))]


def test_corpus_banned_entries_all_compile() -> None:
    assert BANNED.errors == []


@pytest.mark.parametrize(("text", "urls", "kind"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_spam_trick_is_acted_on(text: str, urls: list[str], kind: str) -> None:
    findings = scan(text, urls, banned=BANNED)
    assert _acted_on(findings, kind), (text, findings)


@pytest.mark.parametrize("text", ORDINARY, ids=[f"ok{i}" for i in range(len(ORDINARY))])
def test_ordinary_chat_passes(text: str) -> None:
    assert _false_positives(scan(text, banned=BANNED)) == [], text


def test_corpus_summary(capsys: pytest.CaptureFixture[str]) -> None:
    detected = sum(_acted_on(scan(text, urls, banned=BANNED), kind) for text, urls, kind in BAD)
    false_positives = [text for text in ORDINARY if _false_positives(scan(text, banned=BANNED))]
    kinds = sorted({kind for _, _, kind in BAD})
    with capsys.disabled():
        print(
            f"\ndetection corpus: {detected}/{len(BAD)} spam samples acted on ({', '.join(kinds)}); "
            f"{len(false_positives)}/{len(ORDINARY)} ordinary messages flagged"
        )
    assert detected == len(BAD)
    assert false_positives == []
