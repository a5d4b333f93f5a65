"""Both scripts everywhere: a group that chose `/lang zh_Hant` and types only Traditional Chinese (and full-width
forms) reaches every keyword, hashtag, sub-argument and unit, and is answered in Traditional. Through the real
dispatcher; asserts what people see and what the database holds."""

from __future__ import annotations

from typing import Any

from aiogram.methods import DeleteMessage
from aiogram.types import PhotoSize

from models import boards, groups, points
from tests.factories import texts

PHOTO = [PhotoSize(file_id="photo", file_unique_id="photo", width=640, height=480)]


class Room:
    """A zh_Hant group: its owner and members who write Traditional Chinese; flood limits off (one member sends
    many keywords in a row)."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.owner = world.user("Owner", language_code="zh-hant")
        self.amy = world.user("Amy", language_code="zh-hant")
        self.ben = world.user("Ben", language_code="zh-hant")
        self.chat = world.group("繁體群", owner=self.owner)

    async def start(self) -> Room:
        for person in (self.owner, self.amy, self.ben):
            await self.world.send(self.chat, person, "hi")
        assert await self.said(self.owner, "/lang zh_Hant") == "本群語言已設為繁體中文。"
        await self.said(self.owner, "/modset flood_messages 0")
        await self.said(self.owner, "/modset flood_repeat 0")
        return self

    async def say(self, user: Any, text: str, **fields: Any) -> list[Any]:
        return await self.world.send(self.chat, user, text, **fields)

    async def said(self, user: Any, text: str, **fields: Any) -> str:
        return "\n".join(texts(await self.say(user, text, **fields)))

    async def group(self) -> groups.Group:
        async with self.world.sessionmaker() as session:
            row = await groups.get_group(session, self.chat.id)
            assert row is not None
            return row

    async def balance(self, user: Any) -> int:
        async with self.world.sessionmaker() as session:
            group = await self.group()
            assert group.id is not None
            return (await points.get_balance(session, group.id, user.id)).balance


async def test_check_in_points_and_rank_in_traditional(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    assert await room.said(room.amy, "簽到") == ""  # answered on the day's board (coalesced)
    me = await room.said(room.amy, "積分")
    assert "按下按鈕，或傳送「簽到」或 /checkin" in me  # the board, in Traditional, asking for 簽到
    assert "<b>Amy</b> · 普通會員" in me and "💰 積分：15" in me and "今日已簽到 ✅" in me
    assert await room.balance(room.amy) == 15
    await room.say(room.ben, "打卡")  # the same in both scripts
    assert await room.balance(room.ben) == 15
    assert "🏆 <b>本週前 10 名</b>" in await room.said(room.amy, "排行榜")
    assert "🏆 <b>本週前 10 名</b>" in await room.said(room.amy, "排行")
    assert "🏆 <b>歷來前 10 名</b>" in await room.said(room.amy, "/rank 總")
    assert "🏆 <b>本週前 10 名</b>" in await room.said(room.amy, "/rank 本週")
    assert "簽到 1 次" in await room.said(room.amy, "/checkin 日曆")
    assert await room.said(room.amy, "/checkin 補簽") == "本群未開放補簽。"


async def test_the_groups_own_check_in_words_fold_both_scripts(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    assert await room.said(room.owner, "/checkin keywords 報到, 打咭") == "簽到關鍵字：報到, 打咭"
    await room.say(room.amy, "报到")  # the Simplified form of the group's Traditional word
    await room.say(room.ben, "打咭 ")  # trailing blank
    assert await room.balance(room.amy) == 15 and await room.balance(room.ben) == 15
    await room.said(room.owner, "/checkin keywords 报到")
    carol = world.user("Carol", language_code="zh-hant")
    await room.say(carol, "報到")  # and the other way round
    assert await room.balance(carol) == 15


async def test_shop_group_buy_vote_and_flash_sale_keywords(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    for word in ("積分商城", "兌換"):
        assert await room.said(room.amy, word) == "🛍 積分商城目前沒有商品。", word
    none_open = "目前沒有進行中的團購。管理員可用 /groupbuy new 開團（見 /groupbuy help）。"
    for word in ("拼團", "團購"):
        assert await room.said(room.amy, word) == none_open
    for word in ("投票", "選品投票"):
        assert await room.said(room.amy, word) == "目前沒有進行中的投票。管理員可用 /vote new 發起（見 /vote help）。"
    assert await room.said(room.amy, "秒殺") == "暫無秒殺安排。管理員：/flashsale help"


async def test_lottery_prizes_and_units_in_traditional(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    post = await room.said(room.owner, "/lottery new 100 積分 winners=1 end=2小時")
    assert post.startswith("🎁 <b>抽獎 #1</b>：100 積分") and "中獎人數：1" in post
    assert await room.said(room.owner, "/lottery new 優惠券 #1 end=２小時") == "/shop 中沒有可作為獎品的在售商品 #1。"
    keyword = await room.said(room.owner, "/lottery new 免單一份 keyword=評論抽免單")
    assert "「評論抽免單」" in keyword


async def test_showcase_hashtag_sub_arguments_and_units(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    assert await room.said(room.owner, "/set showcase_auto_approve 開") == "✅ showcase_auto_approve 已設為 on。"
    assert await room.said(room.amy, "", photo=PHOTO, caption="新包 ＃曬單") == "📸 感謝曬單！+20 積分。"
    assert await room.balance(room.amy) == 20
    assert await room.said(room.owner, "/setwelcome 關閉") == "歡迎語已關閉。"
    assert await room.said(room.owner, "/schedule quiet 關閉") == "已關閉勿擾時段。"
    assert "限時 2 分鐘" in await room.said(room.owner, "/captcha timeout 2分鐘")
    assert "限時 3 分鐘" in await room.said(room.owner, "/captcha timeout ３分鐘")


async def test_banned_words_match_across_scripts(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    assert await room.said(room.owner, "/modset banned add 代購") == "✅ banned_words 現在是 代購。"
    calls = await room.say(room.amy, "有人代购吗")
    assert [c for c in calls if isinstance(c, DeleteMessage)]
    assert "訊息已刪除（違禁詞）" in "\n".join(texts(calls))
    assert not [c for c in await room.say(room.ben, "代理購物") if isinstance(c, DeleteMessage)]


async def test_board_settings_keep_the_words_as_typed(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    await room.say(room.owner, "/checkin keywords 簽到, 打卡")
    assert boards.board_settings(await room.group()).keywords == ("簽到", "打卡")


async def test_lang_takes_the_language_names_in_either_script(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    assert await room.said(room.owner, "/lang 簡體中文") == "本群语言已设为简体中文。"
    assert await room.said(room.owner, "/lang 繁體中文") == "本群語言已設為繁體中文。"
    assert "<code>showcase_hashtag</code> = #曬單" in await room.said(room.owner, "/settings")


async def test_tier_names_in_either_script(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    post = await room.said(room.owner, "/lottery new 面膜 tier=鑽石")
    assert post.startswith("🎁 <b>抽獎 #1</b>：面膜") and "鑽石" in post
    post = await room.said(room.owner, "/lottery new 口紅 tier=钻石")
    assert post.startswith("🎁 <b>抽獎 #2</b>：口紅")
