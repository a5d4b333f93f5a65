"""Group buys through the real dispatcher: /groupbuy new (admins, usage help), joining and leaving by button
(alerts with the order code, a private copy), double taps making one entry, success announced once, sold out and
the deadline closing it once, and /groupbuy export sending the CSV privately."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendDocument, SendMessage
from sqlalchemy import func, select

from handlers.groupbuy import LEAVE, GroupBuyPress
from models import groupbuy, groups
from models.groupbuy import GroupBuy, GroupBuyEntry
from scheduler.groupbuy import close_due_groupbuys
from tests.factories import texts

COMMAND = "/groupbuy new 补水面膜 10片 | 59 | 39.9 | 2 | 5 | 3 | 2d"


def sent(calls: list[Any]) -> list[SendMessage]:
    return [call for call in calls if isinstance(call, SendMessage)]


def alert(calls: list[Any]) -> str:
    answers = [call for call in calls if isinstance(call, AnswerCallbackQuery)]
    assert len(answers) == 1, calls
    assert answers[0].show_alert and answers[0].text is not None and len(answers[0].text) <= 200
    return answers[0].text


class Room:
    def __init__(self, world: Any) -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en")
        self.alice = world.user("Alice", language_code="en")
        self.bob = world.user("Bob", language_code="en")
        self.mei = world.user("美玲", language_code="en", username="meiling")
        self.chat = world.group("Fans", owner=self.owner)
        self.gid = 0
        self.editor = world.fast_live_posts(every=0.01)

    async def start(self) -> Room:
        await self.world.send(self.chat, self.owner, "hello")
        async with self.world.sessionmaker() as session:
            row = await groups.get_group(session, self.chat.id)
            assert row is not None and row.id is not None
            self.gid = row.id
        return self

    async def new(self, command: str = COMMAND) -> tuple[GroupBuy, SendMessage]:
        calls = await self.world.send(self.chat, self.owner, command)
        posts = sent(calls)
        assert len(posts) == 1, texts(calls)
        async with self.world.sessionmaker() as session:
            rows = await groupbuy.open_groupbuys(session, self.gid)
        assert rows, posts[0].text
        return rows[-1], posts[0]

    async def press(self, user: Any, row: GroupBuy, quantity: int) -> list[Any]:
        assert row.id is not None
        return await self.world.press(self.chat, user, GroupBuyPress(groupbuy_id=row.id, quantity=quantity).pack(),
                                      message_id=2000)

    async def row(self, row: GroupBuy) -> GroupBuy:
        async with self.world.sessionmaker() as session:
            return await groupbuy.get_groupbuy(session, row.id or 0)


async def test_admin_opens_a_groupbuy_members_cannot_and_bad_input_gets_usage(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    row, post = await room.new()
    assert (row.product, row.price_cents, row.group_price_cents, row.min_participants, row.total_quantity,
            row.per_member_limit) == ("补水面膜 10片", 5900, 3990, 2, 5, 3)
    assert row.deadline - row.created_at == timedelta(days=2)
    assert "Group price CN¥39.90 (was <s>CN¥59.00</s>)" in post.text and "0/2 people joined" in post.text
    buttons = [button.text for line in post.reply_markup.inline_keyboard for button in line]
    assert buttons == ["Join ×1", "Join ×2", "Join ×3", "Leave"]

    assert texts(await world.send(room.chat, room.bob, COMMAND)) == ["Only group admins can do that."]
    for bad in ("/groupbuy new", "/groupbuy new 面膜 | 59 | 39.9", "/groupbuy new 面膜 | lots | 39.9 | 2 | 5",
                "/groupbuy new 面膜 | 59 | 39.9 | 9 | 5", "/groupbuy new 面膜 | 59 | 39.9 | 2 | 5 | 0",
                "/groupbuy new 面膜 | 59 | 39.9 | 2 | 5 | 1 | someday"):
        said = texts(await world.send(room.chat, room.owner, bad))
        assert len(said) == 1 and "Usage: /groupbuy new product" in said[0] and "Example:" in said[0], bad
    assert "Usage: /groupbuy new" in texts(await world.send(room.chat, room.bob, "/groupbuy"))[0]
    listed = texts(await world.send(room.chat, room.bob, "拼团"))[0]
    assert f"#{row.id} 补水面膜 10片 CN¥39.90 — 0/2 people" in listed


async def test_join_double_taps_change_leave_success_once(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    await world.send(world.private(room.alice), room.alice, "/start")
    row, _post = await room.new()
    first = await room.press(room.alice, row, 1)
    said = alert(first)
    assert said.startswith("✅ You joined: 1 × 补水面膜 10片\nOrder code: GB-") and "private chat" in said
    code = said.split("Order code: ")[1].split("\n")[0]
    private = [call for call in sent(first) if call.chat_id == room.alice.id]
    assert len(private) == 1 and f"<code>{code}</code>" in private[0].text
    for _ in range(2):  # double taps and redeliveries, each with a new update id
        assert alert(await room.press(room.alice, row, 1)) == (
            f"You are already in with 1 × 补水面膜 10片.\nOrder code: {code}")
    assert alert(await room.press(room.alice, row, 2)).startswith(f"🔁 Now 2 × 补水面膜 10片\nOrder code: {code}")
    assert alert(await room.press(room.alice, row, 9)) == "At most 3 per member."

    calls = await room.press(room.bob, row, 1)
    success = [call for call in sent(calls) if "succeeds (成团)" in call.text]
    assert len(success) == 1 and success[0].chat_id == room.chat.id
    assert "Start a private chat with me" in alert(calls)
    assert alert(await room.press(room.bob, row, LEAVE)) == "You left the group buy. Your order code is void."
    assert alert(await room.press(room.bob, row, LEAVE)) == "You have not joined this group buy."
    calls = await room.press(room.bob, row, 1)  # back again: no second success announcement
    assert not [call for call in sent(calls) if "succeeds" in call.text]
    fresh = await room.row(row)
    assert (fresh.sold, fresh.participants, fresh.succeeded_at is not None) == (3, 2, True)
    async with world.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(GroupBuyEntry)) == 2
    await room.editor.drain()
    edits = [call for call in world.session.calls if isinstance(call, EditMessageText)]
    assert edits and edits[-1].message_id == fresh.message_id and "3/5 units taken" in edits[-1].text
    assert "2 joined — the group buy succeeds (成团)!" in edits[-1].text


async def test_sold_out_closes_and_announces_once(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    row, _post = await room.new("/groupbuy new 口红 | 89 | 69 | 2 | 4 | 3 | 1d")
    await room.press(room.alice, row, 3)
    assert alert(await room.press(room.bob, row, 2)) == "Only 1 left: choose a smaller quantity."
    calls = await room.press(room.bob, row, 1)
    closing = [call for call in sent(calls) if "has closed" in call.text]
    assert len(closing) == 1 and "2 people, 4 units" in closing[0].text
    final = [call for call in calls if isinstance(call, EditMessageText) and call.reply_markup is None]
    assert final and "✅ Succeeded (成团) with 2 people and 4 units." in final[0].text
    assert alert(await room.press(room.mei, row, 1)) == "This group buy has ended."
    said = texts(await world.send(room.chat, room.owner, f"/groupbuy close {row.id}"))
    assert said == [f"Group buy #{row.id} is already closed."]


async def test_deadline_failure_announced_once_by_the_scheduler(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    row, _post = await room.new("/groupbuy new 精华 | 129 | 99 | 3 | 10 | 2 | 30m")
    await room.press(room.alice, row, 1)
    await world.send(room.chat, room.owner, "/lang en")  # the scheduler speaks the group's language
    ctx = world.jobs()
    start = len(world.session.calls)
    assert await close_due_groupbuys(ctx, now=datetime.now(UTC)) == 0
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await close_due_groupbuys(ctx, now=later) == 1
    assert await close_due_groupbuys(ctx, now=later) == 0
    failed = [call for call in sent(world.session.calls[start:]) if "did not succeed" in call.text]
    assert len(failed) == 1 and "1 of the 3 people needed" in failed[0].text
    assert (await room.row(row)).status == "failed"


async def test_admin_closes_and_exports_privately(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    row, _post = await room.new()
    await world.send(world.private(room.mei), room.mei, "/start")
    await room.press(room.mei, row, 2)
    await room.press(room.alice, row, 1)
    await room.editor.drain()

    assert texts(await world.send(room.chat, room.bob, f"/groupbuy export {row.id}")) == [
        "Only group admins can do that."]
    calls = await world.send(room.chat, room.owner, f"/groupbuy export {row.id}")
    [document] = [call for call in calls if isinstance(call, SendDocument)]
    assert document.chat_id == room.owner.id and document.document.filename == f"groupbuy-{row.id}.csv"
    content = document.document.data.decode("utf-8-sig").splitlines()
    assert content[0] == "No.,User ID,Name,Username,Quantity,Order code,Joined at"
    assert content[1].startswith(f"1,{room.mei.id},美玲,meiling,2,GB-")
    assert content[2].startswith(f"2,{room.alice.id},Alice,alice,1,GB-")
    assert texts(calls)[-1] == f"I sent you the list of group buy #{row.id} privately."
    assert "Usage: /groupbuy" in texts(await world.send(room.chat, room.owner, "/groupbuy export"))[0]
    assert texts(await world.send(room.chat, room.owner, "/groupbuy export 999999")) == [
        "There is no group buy #999999 in this group."]

    calls = await world.send(room.chat, room.owner, f"/groupbuy close {row.id}")
    assert any("has closed: 2 people, 3 units" in text for text in texts(calls))
    assert (await room.row(row)).status == "succeeded"
