"""Lotteries as members see them: /lottery new for admins, entry by button (private alerts) or by keyword reply,
the post edited in place, the draw published with the seed and the entrant list, claims, rerolls, cancels."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendDocument, SendMessage
from aiogram.types import Message, User
from sqlalchemy import func, select

from handlers.lottery import LotteryClaim, LotteryEnter
from models import groups, lottery, points
from models.lottery import LotteryEntry
from scheduler.lottery import draw_due_lotteries, reroll_unclaimed_prizes
from tests.factories import texts


class Room:
    """A group with an owner (admin) and helpers to read the database."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en")
        self.chat = world.group("Fans", owner=self.owner)
        self.gid = 0
        world.fast_live_posts(every=0.01)

    async def start(self) -> Room:
        await self.world.send(self.chat, self.owner, "hello")
        async with self.world.sessionmaker() as session:
            row = await groups.get_group(session, self.chat.id)
            assert row is not None and row.id is not None
            self.gid = row.id
        return self

    async def new(self, spec: str) -> tuple[int, SendMessage]:
        calls = await self.world.send(self.chat, self.owner, f"/lottery new {spec}")
        posts = [c for c in calls if isinstance(c, SendMessage)]
        assert len(posts) == 1 and "Lottery #" in posts[0].text, texts(calls)
        lottery_id = int(re.search(r"Lottery #(\d+)", posts[0].text)[1])  # type: ignore[index]
        return lottery_id, posts[0]

    async def post_id(self, lottery_id: int) -> int:
        async with self.world.sessionmaker() as session:
            place = await lottery.place_of(session, lottery_id)
        assert place.message_id is not None
        return place.message_id

    async def press_enter(self, user: User, lottery_id: int) -> str:
        calls = await self.world.press(self.chat, user, LotteryEnter(lottery_id=lottery_id).pack(),
                                       message_id=await self.post_id(lottery_id))
        return alert(calls)

    async def fund(self, user: User, amount: int) -> None:
        async with self.world.sessionmaker() as session:
            await points.award(session, self.gid, user.id, amount, "admin_give", f"fund:{user.id}:{amount}")

    async def balance(self, user: User) -> int:
        async with self.world.sessionmaker() as session:
            return (await points.get_balance(session, self.gid, user.id)).balance

    async def drain(self) -> None:
        await self.world.live_posts.drain()


def alert(calls: list[Any]) -> str:
    answers = [call for call in calls if isinstance(call, AnswerCallbackQuery)]
    assert len(answers) == 1, calls
    assert answers[0].show_alert is True and answers[0].text is not None and len(answers[0].text) <= 200
    return answers[0].text


async def count_entries(world: Any) -> int:
    async with world.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(LotteryEntry)) or 0)


def recompute(seed: str, list_text: str, winners: int) -> list[int]:
    """The README's algorithm again, from its description alone."""
    ids = [int(x) for x in list_text.split("\n")]
    digest = hashlib.sha256(list_text.encode()).hexdigest()
    out: list[int] = []
    counter = 0
    while len(out) < min(winners, len(ids)):
        h = int(hashlib.sha256(f"{seed}:{digest}:{counter}".encode()).hexdigest(), 16)
        counter += 1
        if h < 2**256 - 2**256 % len(ids) and ids[h % len(ids)] not in out:
            out.append(ids[h % len(ids)])
    return out


async def test_admins_start_lotteries_members_cannot_and_bad_input_gets_usage(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    bob = world.user("Bob", language_code="en")
    said = texts(await world.send(room.chat, bob, "/lottery new 免单一份"))
    assert said == ["Only group admins can do that."]
    for bad in ("/lottery new", "/lottery new 免单 winners=0", "/lottery new 免单 end=yesterday",
                "/lottery new 免单 tier=platinum", "/lottery new 免单 winners=3 max=2", "/lottery new coupon #99"):
        said = texts(await world.send(room.chat, room.owner, bad))
        assert len(said) == 1 and ("Usage" in said[0] or "no active item" in said[0]), (bad, said)
    assert texts(await world.send(room.chat, bob, "/lottery")) == [
        "No lotteries yet. Admins start one with /lottery new (see /lottery help)."]
    assert "/lottery" in texts(await world.send(world.private(bob), bob, "/lottery"))[0]


async def test_button_entries_the_nth_entrant_draws_and_anyone_can_recompute(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    lottery_id, post = await room.new("免单一份 winners=1 max=3 tier=silver")
    commitment = re.search(r"<code>([0-9a-f]{64})</code>", post.text)[1]  # type: ignore[index]
    assert "Entrants: <b>0</b>" in post.text and post.reply_markup.inline_keyboard[0][0].text == "🎲 Enter"
    alice, bob, mei, dan = (world.user(n, language_code="en") for n in ("Alice", "Bob", "Mei", "Dan"))
    for member in (alice, bob, mei, dan):
        await world.send(room.chat, member, "hi")
    for member in (alice, bob, dan):
        await room.fund(member, 600)
    assert "for Silver and above; you are Member" in await room.press_enter(mei, lottery_id)  # told why, privately
    assert "You are in lottery" in await room.press_enter(alice, lottery_id)
    assert "already entered" in await room.press_enter(alice, lottery_id)
    assert "Entrants: 2" in await room.press_enter(bob, lottery_id)
    await room.drain()
    edits = [c for c in world.session.calls if isinstance(c, EditMessageText)]
    assert edits and "Entrants: <b>2</b>" in edits[-1].text, [e.text[:200] for e in edits]

    before = len(world.session.calls)
    assert "Entrants: 3" in await room.press_enter(dan, lottery_id)
    calls = world.session.calls[before:]
    result = [c for c in calls if isinstance(c, EditMessageText)][-1]
    document = [c for c in calls if isinstance(c, SendDocument)]
    assert len(document) == 1 and not [c for c in calls if isinstance(c, SendMessage)]
    seed = re.search(r"Seed: <code>([0-9a-f]{64})</code>", result.text)[1]  # type: ignore[index]
    list_text = document[0].document.data.decode()  # type: ignore[union-attr]
    assert hashlib.sha256(seed.encode()).hexdigest() == commitment
    assert hashlib.sha256(list_text.encode()).hexdigest() in result.text
    assert list_text == "\n".join(str(u.id) for u in sorted((alice, bob, dan), key=lambda u: u.id))
    winner = recompute(seed, list_text, 1)[0]
    name = {alice.id: "Alice", bob.id: "Bob", dan.id: "Dan"}[winner]
    assert f'1. <a href="tg://user?id={winner}">{name}</a>' in result.text
    assert f"tg://user?id={winner}" in document[0].caption and seed in document[0].caption  # type: ignore[operator]
    assert "This lottery is closed." in await room.press_enter(mei, lottery_id)
    assert await count_entries(world) == 3

    # The winner claims the prize by button; others are told it is not theirs.
    post_id = await room.post_id(lottery_id)
    loser = next(u for u in (alice, bob, dan) if u.id != winner)
    claim = LotteryClaim(lottery_id=lottery_id).pack()
    assert "Only this lottery's winners" in alert(await world.press(room.chat, loser, claim, message_id=post_id))
    who = next(u for u in (alice, bob, dan) if u.id == winner)
    assert "Claimed!" in alert(await world.press(room.chat, who, claim, message_id=post_id))
    assert "already claimed" in alert(await world.press(room.chat, who, claim, message_id=post_id))


async def test_a_redelivered_press_counts_once(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    lottery_id, _post = await room.new("Mug cost=5")
    alice = world.user("Alice", language_code="en")
    await room.fund(alice, 20)
    update_id = 77_777
    message = Message(message_id=await room.post_id(lottery_id), date=datetime.now(UTC), chat=room.chat,
                      from_user=User(id=world.bot.id, is_bot=True, first_name="qunbot"), text="…")
    from aiogram.types import CallbackQuery, Update

    query = CallbackQuery(id="q1", from_user=alice, chat_instance="x", message=message,
                          data=LotteryEnter(lottery_id=lottery_id).pack())
    first = await world.feed(Update(update_id=update_id, callback_query=query))
    again = await world.feed(Update(update_id=update_id, callback_query=query))
    assert "You are in lottery" in alert(first) and not [c for c in again if isinstance(c, AnswerCallbackQuery)]
    assert await count_entries(world) == 1 and await room.balance(alice) == 15


async def test_keyword_replies_enter_and_everything_else_passes_on(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    lottery_id, post = await room.new("免单一份 keyword=评论抽免单 checkin=yes")
    assert "reply to this post with “评论抽免单”" in post.text and post.reply_markup is None
    bot_user = User(id=world.bot.id, is_bot=True, first_name="qunbot")
    the_post = Message(message_id=await room.post_id(lottery_id), date=datetime.now(UTC), chat=room.chat,
                       from_user=bot_user, text="…")
    alice, bob = world.user("Alice", language_code="en"), world.user("Bob", language_code="en")
    await world.send(world.private(bob), bob, "/start")
    await world.send(room.chat, alice, "签到")  # Alice checked in today; Bob did not
    await room.drain()  # the day's check-in board goes up
    calls = await world.send(room.chat, alice, "我要 评论抽免单 !", reply_to_message=the_post)
    assert not [c for c in calls if isinstance(c, SendMessage)]  # entered quietly: the post's count shows it
    said = await world.send(room.chat, bob, "评论抽免单", reply_to_message=the_post)
    private = [c for c in said if isinstance(c, SendMessage) and c.chat_id == bob.id]
    assert len(private) == 1 and "Check in today first" in private[0].text
    await world.send(room.chat, bob, "just chatting", reply_to_message=the_post)
    assert await count_entries(world) == 1
    async with world.sessionmaker() as session:  # the replies went on to chat points (SkipHandler)
        assert (await points.get_balance(session, room.gid, bob.id)).balance > 0


async def test_scheduler_draws_at_the_end_time_once_and_passes_unclaimed_prizes_on(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    lottery_id, _post = await room.new("Lipstick winners=1 end=30m claim=1")
    members = [world.user(f"M{i}", language_code="en") for i in range(3)]
    for member in members:
        await room.press_enter(member, lottery_id)
    await room.drain()
    await world.send(room.chat, room.owner, "/lang en")  # the scheduler speaks the group's language
    ctx = world.jobs()
    assert await draw_due_lotteries(ctx, datetime.now(UTC)) == 0  # not yet
    later = datetime.now(UTC) + timedelta(minutes=31)
    assert await draw_due_lotteries(ctx, later) == 1
    assert await draw_due_lotteries(ctx, later) == 0  # a second scheduler finds it drawn
    documents = [c for c in world.session.calls if isinstance(c, SendDocument)]
    assert len(documents) == 1 and "Claim prize" in documents[0].caption  # type: ignore[operator]
    before = len(world.session.calls)
    assert await reroll_unclaimed_prizes(ctx, later + timedelta(hours=2)) == 1
    said = texts(world.session.calls[before:])
    assert any("did not claim in time" in text and "(#2)" in text for text in said), said
    async with world.sessionmaker() as session:
        picks = await lottery.winners_of(session, lottery_id)
    assert [p.status for p in picks] == ["expired", "pending"] and picks[0].user_id != picks[1].user_id


async def test_cancel_refunds_and_list_shows_it(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    lottery_id, _post = await room.new("100 points cost=10 winners=2")
    alice = world.user("Alice", language_code="en")
    await room.fund(alice, 30)
    await room.press_enter(alice, lottery_id)
    await room.drain()
    assert await room.balance(alice) == 20
    bob = world.user("Bob", language_code="en")
    refused = texts(await world.send(room.chat, bob, f"/lottery cancel {lottery_id}"))
    assert refused == ["Only group admins can do that."]
    assert f"#{lottery_id}" in texts(await world.send(room.chat, bob, "/lottery"))[0]
    said = texts(await world.send(room.chat, room.owner, f"/lottery cancel {lottery_id}"))
    assert any("cancelled" in text for text in said) and any("1 entry payments refunded" in t for t in said)
    assert await room.balance(alice) == 30
    assert "cancelled" in texts(await world.send(room.chat, bob, "/lottery"))[0]
    assert "is not open" in texts(await world.send(room.chat, room.owner, f"/lottery draw {lottery_id}"))[0]


async def test_admin_draws_early_and_rerolls_a_points_winner(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    lottery_id, _post = await room.new("50 points winners=1")
    members = [world.user(f"M{i}", language_code="en") for i in range(3)]
    for member in members:
        await room.press_enter(member, lottery_id)
    await room.drain()
    await world.send(room.chat, room.owner, f"/lottery draw {lottery_id}")
    async with world.sessionmaker() as session:
        first = (await lottery.winners_of(session, lottery_id))[0]
    assert first.status == "delivered"
    said = texts(await world.send(room.chat, room.owner, f"/lottery reroll {lottery_id} 1"))
    assert any("an admin replaced" in text for text in said), said
    async with world.sessionmaker() as session:
        picks = await lottery.winners_of(session, lottery_id)
        balances = {m.id: (await points.get_balance(session, room.gid, m.id)).balance for m in members}
    assert picks[0].status == "rerolled" and picks[1].user_id != first.user_id
    assert balances[first.user_id] == 0 and balances[picks[1].user_id] == 50
    assert "already replaced" in texts(await world.send(room.chat, room.owner, f"/lottery reroll {lottery_id} 1"))[0]
    assert "Usage" in texts(await world.send(room.chat, room.owner, "/lottery reroll x"))[0]


async def test_help_lists_lottery(world) -> None:  # type: ignore[no-untyped-def]
    alice = world.user("Alice", language_code="en")
    group = world.group("Fans")
    assert any("/lottery" in text for text in texts(await world.send(group, alice, "/help")))
