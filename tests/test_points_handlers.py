"""Points through the real dispatcher: /me, /rank, admins' /give /take /set /settings, chat points with tier-up
announcements, and showcase posts with moderator approval. Asserts what people see and what the database holds."""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from aiogram.types import PhotoSize
from sqlalchemy import func, select

from bot.factory import create_dispatcher, create_runtime
from handlers.points import ShowcaseReview, fingerprint
from models import checkin, groups, points
from models.db import transaction
from models.points import PointsEntry, PointsRules
from tests.factories import BOT_USER, texts

PHOTO = [PhotoSize(file_id="photo", file_unique_id="photo", width=640, height=480)]


class Scene:
    """An owner (admin), Alice and Bob in one group; everyone has spoken there once (so they are members)."""

    def __init__(self, world: Any, session: Any) -> None:
        self.world, self.session = world, session
        self.owner = world.user("Owner", language_code="en")
        self.alice = world.user("Alice", language_code="en")
        self.bob = world.user("Bob", language_code="en")
        self.chat = world.group("Fans", owner=self.owner)

    async def start(self) -> Scene:
        for person in (self.owner, self.alice, self.bob):
            await self.world.send(self.chat, person, "hi")
        row = await groups.get_group(self.session, self.chat.id)
        assert row is not None and row.id is not None
        self.group_id = row.id
        return self

    async def say(self, user: Any, text: str, **fields: Any) -> list[Any]:
        return await self.world.send(self.chat, user, text, **fields)

    async def balance(self, user: Any) -> int:
        return (await points.get_balance(self.session, self.group_id, user.id)).balance

    async def entries(self, kind: str | None = None) -> int:
        statement = select(func.count()).select_from(PointsEntry).where(PointsEntry.group_id == self.group_id)
        if kind:
            statement = statement.where(PointsEntry.kind == kind)
        async with transaction(self.session):
            return int(await self.session.scalar(statement) or 0)

    async def rules(self) -> PointsRules:
        self.session.expire_all()
        return await points.get_rules(self.session, self.group_id)


async def scene(world: Any, session: Any) -> Scene:
    return await Scene(world, session).start()


def said(calls: list[Any]) -> str:
    return "\n".join(texts(calls))


async def test_me_shows_balance_tier_and_rank_after_give(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    alice_message = s.world.message(s.chat, s.alice, "look at my haul")
    answer = said(await s.say(s.owner, "/give 50 great review", reply_to_message=alice_message))
    assert "Alice received 50 points. Balance: 50." in answer and "Reason: great review" in answer
    assert await s.balance(s.alice) == 50

    me = said(await s.say(s.alice, "/me"))
    assert "<b>Alice</b> · Member" in me
    assert "Points: 50 · lifetime 50 · 450 more to Silver" in me
    assert "🔥 Streak: 0 days · not checked in today — /checkin" in me
    assert "This week: #1 with 50 points" in me
    assert "Unused coupons: 0" in me
    assert said(await s.say(s.alice, "积分")) == me  # the keyword is the same command

    private = said(await s.world.send(s.world.private(s.alice), s.alice, "/me"))
    assert "Fans: 50 points · Member" in private
    entry = (await points.history(session, s.group_id, s.alice.id))[0]
    assert (entry.kind, entry.reference, entry.actor_id) == ("admin_give", "great review", s.owner.id)

    await checkin.check_in(session, s.group_id, s.alice.id)
    assert "🔥 Streak: 1 day · checked in today ✅" in said(await s.say(s.alice, "/me"))


async def test_give_redelivered_update_pays_once(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    first = said(await s.world.send(s.chat, s.owner, "/give @alice 30 welcome", update_id=5000))
    again = await s.world.send(s.chat, s.owner, "/give @alice 30 welcome", update_id=5000)
    assert "Balance: 30." in first and texts(again) == []
    assert await s.balance(s.alice) == 30
    assert await s.entries("admin_give") == 1


async def test_give_by_non_admin_is_refused_and_pays_nothing(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    assert said(await s.say(s.bob, "/give @bob 1000")) == "Only group admins can do that."
    alice_message = s.world.message(s.chat, s.alice, "hey")
    assert said(await s.say(s.bob, "/take 5", reply_to_message=alice_message)) == "Only group admins can do that."
    assert await s.balance(s.bob) == 0 and await s.entries() == 0


async def test_take_more_than_the_balance_is_refused(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    await s.say(s.owner, "/give @alice 20")
    refused = said(await s.say(s.owner, "/take @alice 50 spam"))
    assert refused == "Alice has only 20 points, so 50 cannot be taken."
    assert await s.balance(s.alice) == 20
    taken = said(await s.say(s.owner, "/take @Alice 5 flooding"))
    assert "5 points taken from Alice. Balance: 15." in taken
    assert await s.balance(s.alice) == 15 and await s.entries("admin_take") == 1


async def test_give_bad_input_gets_usage_or_errors(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    unknown = said(await s.say(s.owner, "/give @nobody 5"))
    assert "I don't know @nobody in this group yet" in unknown and "Reply to their message" in unknown
    for text in ("/give", "/give @alice", "/give @alice abc", "/give @alice 0", "/give @alice 100001",
                 "/give @alice -5", "/take 3"):
        assert said(await s.say(s.owner, text)).startswith("Usage: reply to a member's message"), text
    bot_message = s.world.message(s.chat, BOT_USER, "a bot's message")
    refused = said(await s.say(s.owner, "/give 5", reply_to_message=bot_message))
    assert refused == "Bots and channels don't collect points."
    too_long = said(await s.say(s.owner, "/give @alice 100000 maximum " + "x" * 100))
    assert too_long == "The reason is at most 64 characters."  # refused, not cut: nothing given
    assert await s.balance(s.alice) == 0
    await s.say(s.owner, "/give @alice 100000 maximum " + "x" * 56)
    assert await s.balance(s.alice) == 100000
    entry = (await points.history(session, s.group_id, s.alice.id))[0]
    assert entry.reference is not None and len(entry.reference) == 64
    assert await s.entries() == 1


async def test_rank_lists_the_top_in_order_with_the_callers_place(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    carol = s.world.user("Carol", language_code="en")
    await s.say(carol, "hey")
    await s.say(s.owner, "/give @alice 50")
    await s.say(s.owner, "/give @bob 30")
    await s.say(s.owner, "/give @carol 10")
    board = said(await s.say(carol, "/rank week"))
    assert board.splitlines()[:4] == [
        "🏆 <b>Top 10 this week</b>", "1. Alice — 50", "2. Bob — 30", "3. Carol — 10"
    ]
    assert board.endswith("You: #3 with 10 points")
    assert said(await s.say(carol, "排行")) == board
    assert said(await s.say(carol, "/rank")) == board
    assert "Top 10 of all time" in said(await s.say(s.owner, "/rank all"))
    assert "You are not on the board yet." in said(await s.say(s.owner, "/rank month"))
    assert said(await s.say(carol, "/rank yesterday")).startswith("Usage: /rank week | month | all (default: week)")


async def test_set_changes_rules_and_rejects_bad_values(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    assert said(await s.say(s.owner, "/set checkin_base 15")) == "✅ checkin_base is now 15."
    assert (await s.rules()).checkin_base == 15

    unknown = said(await s.say(s.owner, "/set bogus 1"))
    assert unknown.startswith("There is no rule “bogus”. Rules:") and "checkin_base" in unknown
    assert said(await s.say(s.owner, "/set checkin_base -3")).startswith("Cannot set checkin_base: ")
    assert said(await s.say(s.owner, "/set tiers silver:5")).startswith("Cannot set tiers: ")
    assert said(await s.say(s.owner, "/set")).startswith("Change one with /set &lt;rule&gt; &lt;value&gt;")
    assert "checkin_base is 15" in said(await s.say(s.owner, "/set checkin_base"))
    assert said(await s.say(s.bob, "/set checkin_base 99")) == "Only group admins can do that."
    assert (await s.rules()).checkin_base == 15

    shown = said(await s.say(s.owner, "/settings"))
    assert "<code>checkin_base</code> = 15" in shown and "<code>showcase_auto_approve</code> = off" in shown
    assert "<code>tiers</code> = normal:0,silver:500,gold:2000,diamond:10000" in shown
    assert said(await s.say(s.alice, "/settings")) == "Only group admins can do that."


async def test_chat_points_earn_once_per_cooldown_and_never_for_commands(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)  # the greetings were too short to earn
    assert await s.balance(s.alice) == 0
    assert texts(await s.say(s.alice, "These sneakers are really comfortable")) == []
    assert await s.balance(s.alice) == 1
    assert texts(await s.say(s.alice, "And the price was great as well")) == []
    assert await s.balance(s.alice) == 1  # within the cooldown
    await s.say(s.bob, "/rank with a long tail of words")
    await s.say(s.bob, "/nonexistent command that is long enough")
    assert await s.balance(s.bob) == 0
    assert await s.entries("chat") == 1
    async with transaction(session):
        state = (await session.execute(select(points.ChatAwardState))).scalars().all()
    assert [row.last_fingerprint for row in state] == [fingerprint("these  sneakers are REALLY comfortable")[1]]


async def test_tier_ups_are_announced_coalesced(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    announcer = world.runtime.tiers
    announcer.window, announcer.clock = 1.0, lambda: 0.0  # time stands still: every tier-up is in one window
    await s.say(s.owner, "/set tiers normal:0,silver:1:VIP Club")
    first = said(await s.say(s.alice, "I love this group so much"))
    assert first == "🎉 <b>Tier up!</b>\nAlice is now VIP Club!"
    # Within the window: Bob's and Carol's tier-ups wait for the next announcement, which lists both.
    carol = world.user("Carol", language_code="en")
    assert texts(await s.say(s.bob, "Me too, the deals are great")) == []
    assert texts(await s.say(carol, "Count me in as well please")) == []
    start = len(world.session.calls)
    await asyncio.sleep(1.3)
    sent = [c.text for c in world.session.calls[start:] if isinstance(c, SendMessage)]
    assert sent == ["🎉 <b>Tier up!</b>\nBob is now VIP Club!\nCarol is now VIP Club!"]
    assert await s.balance(s.bob) == 1
    announcer.close()


def buttons(calls: list[Any]) -> dict[str, str]:
    for call in calls:
        if isinstance(call, SendMessage) and call.reply_markup is not None:
            return {button.text: button.callback_data for row in call.reply_markup.inline_keyboard for button in row}
    raise AssertionError("no keyboard sent")


async def test_showcase_approval_pays_once_and_only_admins_decide(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    calls = await s.say(s.alice, "", photo=PHOTO, caption="My new bag #晒单 so happy")
    assert "Showcase by Alice. Moderators: approve to award 20 points." in said(calls)
    keyboard = buttons(calls)
    approve, reject = keyboard["✅ Approve"], keyboard["❌ Reject"]
    assert ShowcaseReview.unpack(approve).user_id == s.alice.id

    refused = await s.world.press(s.chat, s.bob, approve, message_id=900)
    assert said(refused) == "Only group admins can do that."
    assert await s.balance(s.alice) == 0

    done = await s.world.press(s.chat, s.owner, approve, message_id=900)
    edits = [c for c in done if isinstance(c, EditMessageText)]
    assert len(edits) == 1 and edits[0].text == "📸 Showcase by Alice: approved by Owner, +20 points."
    assert edits[0].reply_markup is None
    assert await s.balance(s.alice) == 20

    for data in (approve, reject):
        again = await s.world.press(s.chat, s.owner, data, message_id=900)
        answers = [c for c in again if isinstance(c, AnswerCallbackQuery)]
        assert answers[0].text == "This showcase has already been decided." and answers[0].show_alert
        assert not any(isinstance(c, EditMessageText) for c in again)
    assert await s.balance(s.alice) == 20 and await s.entries("showcase") == 1


async def test_showcase_rejected_then_approve_has_no_effect(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    keyboard = buttons(await s.say(s.bob, "", photo=PHOTO, caption="#晒单"))
    rejected = said(await s.world.press(s.chat, s.owner, keyboard["❌ Reject"], message_id=901))
    assert "Showcase by Bob: rejected by Owner." in rejected
    late = said(await s.world.press(s.chat, s.owner, keyboard["✅ Approve"], message_id=901))
    assert late == "This showcase has already been decided."
    # The decision is kept in the database: a restarted bot (a fresh dispatcher) still refuses to pay.
    s.world.runtime = create_runtime(s.world.settings, s.world.sessionmaker)
    s.world.dp = create_dispatcher(s.world.runtime)
    after_restart = said(await s.world.press(s.chat, s.owner, keyboard["✅ Approve"], message_id=901))
    assert after_restart == "This showcase has already been decided."
    assert await s.balance(s.bob) == 0
    async with transaction(session):
        decision = await session.scalar(select(points.ShowcaseDecision))
    assert decision is not None and not decision.approved and decision.moderator_id == s.owner.id
    # A photo without the hashtag is just chat (and too short to earn).
    assert texts(await s.say(s.bob, "", photo=PHOTO, caption="nice")) == []


async def test_showcase_auto_approve_awards_at_once(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    await s.say(s.owner, "/set showcase_auto_approve on")
    assert said(await s.say(s.alice, "", photo=PHOTO, caption="#晒单 lipstick")) == (
        "📸 Thanks for sharing! +20 points."
    )
    assert await s.balance(s.alice) == 20
    await s.say(s.owner, "/set showcase_daily_cap 20")
    capped = said(await s.say(s.alice, "", photo=PHOTO, caption="#晒单 another"))
    assert "reached today's showcase points limit" in capped
    assert await s.balance(s.alice) == 20


async def test_a_pinned_leaderboard_is_kept_up_to_date_in_place(world, session) -> None:  # type: ignore[no-untyped-def]
    from aiogram.methods import PinChatMessage, UnpinChatMessage

    from scheduler.points import refresh_pinned_boards

    s = await scene(world, session)
    assert said(await s.say(s.alice, "/rank pin")) == "Only group admins can do that."
    calls = await s.say(s.owner, "/rank pin all")
    posted = [c for c in calls if isinstance(c, SendMessage)]
    pins = [c for c in calls if isinstance(c, PinChatMessage)]
    assert len(posted) == 1 and "Top 10 of all time" in posted[0].text and len(pins) == 1
    assert "Usage: /rank pin" in said(await s.say(s.owner, "/rank pin forever"))
    [board] = await points.pinned_boards(session)
    assert board.period == "all" and board.message_id == pins[0].message_id

    await s.say(s.owner, "/give @alice 300 welcome")
    context = world.jobs()
    start = len(world.session.calls)
    assert await refresh_pinned_boards(context) == 1
    edits = [c for c in world.session.calls[start:] if isinstance(c, EditMessageText)]
    assert len(edits) == 1 and edits[0].message_id == board.message_id and "Alice — 300" in edits[0].text

    calls = await s.say(s.owner, "/rank unpin")
    assert "no longer updated" in said(calls) and any(isinstance(c, UnpinChatMessage) for c in calls)
    assert await points.pinned_boards(session) == []


async def test_settings_menu_buttons_change_rules_for_admins_only(world, session) -> None:  # type: ignore[no-untyped-def]
    s = await scene(world, session)
    [menu] = [c.reply_markup for c in await s.say(s.owner, "/settings") if isinstance(c, SendMessage)]
    pairs = [(b.text, b.callback_data) for row in menu.inline_keyboard for b in row]
    plus = next(data for label, data in pairs if label == "＋" and "checkin_base" in data)
    flip = dict(pairs)["makeup_enabled: ⬜"]
    refused = await world.press(s.chat, s.alice, plus, message_id=77)
    assert said(refused) == "Only group admins can do that."
    pressed = await world.press(s.chat, s.owner, plus, message_id=77)
    answers = [c for c in pressed if isinstance(c, AnswerCallbackQuery)]
    edits = [c for c in pressed if isinstance(c, EditMessageText)]
    assert answers[0].text == "checkin_base = 15" and "<code>checkin_base</code> = 15" in edits[0].text
    await world.press(s.chat, s.owner, flip, message_id=77)
    rules = await points.get_rules(session, s.group_id)
    assert rules.checkin_base == 15 and rules.makeup_enabled is True
