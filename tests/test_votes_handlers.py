"""Votes through the real dispatcher: /vote new (admins, usage help), presses answered privately with one ballot
per member whatever the taps, the tally edited in place (coalesced), closing by /vote close or the scheduler
announced once, and the winner's group-buy button (admins only, one group buy)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from aiogram.types import Message, MessageEntity, PhotoSize, Update
from sqlalchemy import func, select

from handlers.live_posts import LivePosts
from handlers.votes import VoteGroupBuy, VotePick
from models import groupbuy, groups, votes
from models.groupbuy import GroupBuy
from models.votes import VoteBallot
from scheduler.votes import close_due_votes
from tests.factories import texts

COMMAND = "/vote new 下期团购选品 | 2d | 面膜 39.9 | 精华 129 https://shop.example/serum | 口红 89"


def fast_edits(world: Any) -> LivePosts:
    editor: LivePosts = world.fast_live_posts(every=0.01)
    return editor


def sent(calls: list[Any]) -> list[SendMessage]:
    return [call for call in calls if isinstance(call, SendMessage)]


def alert(calls: list[Any]) -> str:
    answers = [call for call in calls if isinstance(call, AnswerCallbackQuery)]
    assert len(answers) == 1, calls
    assert answers[0].text is not None and len(answers[0].text) <= 200
    return answers[0].text


class Room:
    def __init__(self, world: Any) -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en")
        self.alice = world.user("Alice", language_code="en")
        self.bob = world.user("Bob", language_code="en")
        self.chat = world.group("Fans", owner=self.owner)
        self.gid = 0

    async def start(self) -> Room:
        await self.world.send(self.chat, self.owner, "hello")
        async with self.world.sessionmaker() as session:
            row = await groups.get_group(session, self.chat.id)
            assert row is not None and row.id is not None
            self.gid = row.id
        return self

    async def new_vote(self, command: str = COMMAND) -> tuple[votes.Vote, SendMessage]:
        calls = await self.world.send(self.chat, self.owner, command)
        posts = sent(calls)
        assert len(posts) == 1, texts(calls)
        async with self.world.sessionmaker() as session:
            open_votes = await votes.open_votes(session, self.gid)
        assert open_votes, posts[0].text
        return open_votes[-1], posts[0]

    async def ballots(self) -> int:
        async with self.world.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(VoteBallot)) or 0)


async def test_admin_opens_a_vote_members_cannot_and_bad_input_gets_usage(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    vote, post = await room.new_vote()
    assert "下期团购选品" in post.text and "面膜 CN¥39.90" in post.text and "CN¥129.00" in post.text
    assert '<a href="https://shop.example/serum">精华</a>' in post.text
    buttons = [row[0] for row in post.reply_markup.inline_keyboard]
    assert [button.text for button in buttons] == ["1. 面膜 · 0", "2. 精华 · 0", "3. 口红 · 0"]
    assert VotePick.unpack(buttons[0].callback_data).vote_id == vote.id
    assert vote.closes_at - vote.created_at == timedelta(days=2)

    assert texts(await world.send(room.chat, room.bob, COMMAND)) == ["Only group admins can do that."]
    for bad in ("/vote new", "/vote new Title | 2d | 面膜 39.9", "/vote new Title | soon | A 1 | B 2",
                "/vote new Title | 2d | A | B 2", "/vote new Title | 2d | A 1 | B 2 | min_tier=platinum",
                "/vote new Title | 45d | A 1 | B 2", "/vote new Title | 2d | A 1 | B 2 | colour=red"):
        said = texts(await world.send(room.chat, room.owner, bad))
        assert len(said) == 1 and "Usage: /vote new title | duration" in said[0] and "Example:" in said[0], bad
    said = texts(await world.send(room.chat, room.bob, "/vote"))
    assert "Usage: /vote new" in said[0]
    async with world.sessionmaker() as session:
        assert len(await votes.open_votes(session, room.gid)) == 1


async def test_options_and_photo_caption(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    command = "/vote new 新品 | 12h | A 1 | B 2 | min_hours=24 min_tier=银卡 weights=silver:2,gold:3"
    photo = [PhotoSize(file_id="p1", file_unique_id="u1", width=90, height=90)]
    message = Message(message_id=777, date=datetime.now(UTC), chat=room.chat, from_user=room.owner, caption=command,
                      caption_entities=[MessageEntity(type="bot_command", offset=0, length=5)], photo=photo)
    calls = await world.feed(Update(update_id=next(world.update_ids), message=message))
    post = sent(calls)[0]
    assert post.reply_parameters is not None and post.reply_parameters.message_id == 777
    assert "Who votes: in the group for 24 h+; Silver and above; extra weight: Silver ×2, Gold ×3" in post.text
    async with world.sessionmaker() as session:
        vote = (await votes.open_votes(session, room.gid))[0]
    assert (vote.min_hours, vote.min_tier, vote.weights, vote.photo_message_id) == (
        24, "silver", {"silver": 2, "gold": 3}, 777)
    options = [o.id for o in await votes_options(world, vote.id)]
    said = alert(await world.press(room.chat, room.alice, VotePick(vote_id=vote.id, option_id=options[0]).pack()))
    assert said == "Only members who have been in the group for 24 hours can vote here."


async def votes_options(world: Any, vote_id: int) -> list[votes.VoteOption]:
    async with world.sessionmaker() as session:
        return await votes.get_options(session, vote_id)


async def test_presses_make_one_ballot_each_and_the_tally_is_edited(world) -> None:  # type: ignore[no-untyped-def]
    editor = fast_edits(world)
    room = await Room(world).start()
    vote, _post = await room.new_vote()
    mask, serum, _lipstick = [o.id for o in await votes_options(world, vote.id)]
    press = VotePick(vote_id=vote.id, option_id=mask).pack()
    # Double taps and redelivered presses (each a new update id and callback id): one ballot.
    answers = [alert(await world.press(room.chat, room.alice, press, message_id=1000))
               for _ in range(3)]
    assert answers[0] == "✅ You voted for 面膜. Tap another candidate to change your vote."
    assert answers[1:] == ["You already voted for 面膜."] * 2
    changed = alert(await world.press(room.chat, room.alice, VotePick(vote_id=vote.id, option_id=serum).pack(),
                                      message_id=1000))
    assert changed == "🔁 Your vote is now for 精华."
    await world.press(room.chat, room.bob, VotePick(vote_id=vote.id, option_id=serum).pack(), message_id=1000)
    assert await room.ballots() == 2
    await editor.drain()
    edits = [call for call in world.session.calls if isinstance(call, EditMessageText)]
    assert edits and edits[-1].message_id == 1000
    assert "精华</a> CN¥129.00 — votes: 2" in edits[-1].text and "Voters: 2" in edits[-1].text
    assert len(edits) < 5  # coalesced: fewer edits than presses


async def test_close_announces_the_winner_once_and_admins_open_a_groupbuy(world) -> None:  # type: ignore[no-untyped-def]
    editor = fast_edits(world)
    room = await Room(world).start()
    vote, _post = await room.new_vote()
    mask, serum, _lipstick = [o.id for o in await votes_options(world, vote.id)]
    await world.press(room.chat, room.alice, VotePick(vote_id=vote.id, option_id=serum).pack())
    await world.press(room.chat, room.bob, VotePick(vote_id=vote.id, option_id=mask).pack())
    await editor.drain()  # the tally's edit lands now, not in the middle of the next step

    assert texts(await world.send(room.chat, room.bob, f"/vote close {vote.id}")) == ["Only group admins can do that."]
    calls = await world.send(room.chat, room.owner, f"/vote close {vote.id}")
    final = [call for call in calls if isinstance(call, EditMessageText)]
    assert final and final[0].reply_markup is None and "closed" in final[0].text and "🏆 Winner" in final[0].text
    announcement = sent(calls)[0]
    # A tie (1 vote each, same voters): the candidate listed first wins, and the rule is said.
    assert "Winner: 面膜 CN¥39.90 — votes: 1, voters: 1." in announcement.text
    assert "tie rule" in announcement.text
    assert "/groupbuy new 面膜 | 39.90 | 39.90 | 3 | 100 | 5 | 48h" in announcement.text
    button = announcement.reply_markup.inline_keyboard[0][0]
    assert VoteGroupBuy.unpack(button.callback_data).vote_id == vote.id
    assert texts(await world.send(room.chat, room.owner, f"/vote close {vote.id}")) == [
        f"Vote #{vote.id} is already closed."]
    said = alert(await world.press(room.chat, room.alice, VotePick(vote_id=vote.id, option_id=serum).pack()))
    assert said == "This vote is closed."

    assert alert(await world.press(room.chat, room.bob, button.callback_data)) == "Only group admins can do that."
    calls = await world.press(room.chat, room.owner, button.callback_data)
    answer = [call for call in calls if isinstance(call, AnswerCallbackQuery)][0]
    assert answer.text.startswith("Group buy #") and "面膜" in answer.text
    gb_post = sent(calls)[0]
    assert "Group buy #" in gb_post.text and "面膜" in gb_post.text and "0/3 people" in gb_post.text
    again = alert(await world.press(room.chat, room.owner, button.callback_data))
    assert again.endswith("for this vote is already open.")
    async with world.sessionmaker() as session:
        rows = (await session.scalars(select(GroupBuy))).all()
        assert len(rows) == 1 and rows[0].vote_id == vote.id and rows[0].group_price_cents == 3990
        assert (await groupbuy.get_groupbuy(session, rows[0].id)).message_id is not None


async def test_scheduler_closes_due_votes_once(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    vote, _post = await room.new_vote("/vote new Quick | 1m | A 1 | B 2")
    a, _b = [o.id for o in await votes_options(world, vote.id)]
    await world.press(room.chat, room.alice, VotePick(vote_id=vote.id, option_id=a).pack())
    await world.send(room.chat, room.owner, "/lang en")  # the scheduler speaks the group's language
    ctx = world.jobs()
    start = len(world.session.calls)
    assert await close_due_votes(ctx, now=datetime.now(UTC)) == 0
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert await close_due_votes(ctx, now=later) == 1
    assert await close_due_votes(ctx, now=later) == 0
    announcements = [call for call in sent(world.session.calls[start:]) if "Vote closed" in call.text]
    assert len(announcements) == 1 and "Winner: A CN¥1.00" in announcements[0].text
    assert announcements[0].chat_id == room.chat.id
