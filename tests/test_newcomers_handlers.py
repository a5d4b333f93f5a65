"""Newcomers as a group sees them, through the real dispatcher: captcha on join (pass, wrong answers, timeout,
rejoin, someone else's press), join requests answered in private chat, the welcome message, anti-raid under a
burst of 500 joins, and admin commands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.methods import (
    AnswerCallbackQuery,
    ApproveChatJoinRequest,
    BanChatMember,
    DeclineChatJoinRequest,
    DeleteMessage,
    EditMessageText,
    RestrictChatMember,
    SendMessage,
    UnbanChatMember,
)
from aiogram.types import ChatJoinRequest, ChatMemberLeft, ChatMemberMember, ChatMemberUpdated, Update
from sqlalchemy import update

from handlers.newcomers import Lobby
from models import groups, newcomers
from models.newcomers import NewcomerCheck
from scheduler.newcomers import expire_captchas, settle_raids
from tests.factories import BOT_USER, admin_member, texts


def calls_of(calls: list[Any], kind: type) -> list[Any]:
    return [call for call in calls if isinstance(call, kind)]


def muted(call: RestrictChatMember) -> bool:
    return call.permissions.can_send_messages is False and call.permissions.can_send_photos is False


async def setup(world, *commands: str):  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="en")
    group = world.group("Bloom Fans", owner=owner)
    for command in commands:
        await world.send(group, owner, command)
    return owner, group


async def join(world, group, user) -> list[Any]:  # type: ignore[no-untyped-def]
    return await world.member_change(group, user, ChatMemberLeft(user=user), ChatMemberMember(user=user))


async def leave(world, group, user) -> list[Any]:  # type: ignore[no-untyped-def]
    return await world.member_change(group, user, ChatMemberMember(user=user), ChatMemberLeft(user=user))


async def check_of(world, group, user) -> NewcomerCheck:  # type: ignore[no-untyped-def]
    async with world.sessionmaker() as session:
        row = await groups.get_group(session, group.id)
        check = await newcomers.find_check(session, row.id, user.id)
    assert check is not None
    return check


async def state_of(world, group, user) -> str | None:  # type: ignore[no-untyped-def]
    async with world.sessionmaker() as session:
        row = await groups.get_group(session, group.id)
        return await newcomers.captcha_state(session, row.id, user.id)


async def time_out(world) -> list[Any]:  # type: ignore[no-untyped-def]
    """Every open challenge's deadline passes; the scheduler job runs."""
    async with world.sessionmaker() as session, session.begin():
        await session.execute(
            update(NewcomerCheck)
            .where(NewcomerCheck.status == "pending")  # type: ignore[arg-type]
            .values(deadline=datetime.now(UTC) - timedelta(seconds=1))
        )
    start = len(world.session.calls)
    await expire_captchas(world.jobs())
    return world.session.calls[start:]


async def test_captcha_holds_a_newcomer_until_they_press_their_button(world) -> None:  # type: ignore[no-untyped-def]
    owner, group = await setup(world, "/captcha on", "/setwelcome Welcome {mention} to {group}!")
    alice, bob = world.user("Alice", language_code="en"), world.user("Bob", language_code="en")
    calls = await join(world, group, alice)
    [restrict] = calls_of(calls, RestrictChatMember)
    assert restrict.user_id == alice.id and muted(restrict)
    [challenge] = calls_of(calls, SendMessage)
    assert challenge.chat_id == group.id and "Alice" in challenge.text
    button = challenge.reply_markup.inline_keyboard[0][0]
    check = await check_of(world, group, alice)
    assert button.callback_data == f"nc:{check.id}:1:ok" and check.message_id is not None
    assert await state_of(world, group, alice) == "pending"

    refused = await world.press(group, bob, button.callback_data, message_id=check.message_id)
    [alert] = calls_of(refused, AnswerCallbackQuery)
    assert alert.show_alert and "not for you" in alert.text
    assert not calls_of(refused, RestrictChatMember) and await state_of(world, group, alice) == "pending"

    passed = await world.press(group, alice, button.callback_data, message_id=check.message_id)
    [lift] = calls_of(passed, RestrictChatMember)
    assert lift.user_id == alice.id and lift.permissions.can_send_messages and lift.permissions.can_invite_users
    assert [call.message_id for call in calls_of(passed, DeleteMessage)] == [check.message_id]
    [welcome] = calls_of(passed, SendMessage)
    assert f'<a href="tg://user?id={alice.id}">Alice</a>' in welcome.text and "Bloom Fans" in welcome.text
    assert await state_of(world, group, alice) == "passed"
    again = await world.press(group, alice, button.callback_data, message_id=check.message_id)
    assert "closed" in texts(again)[0] and not calls_of(again, RestrictChatMember)


async def test_membership_still_records_the_join(world) -> None:  # type: ignore[no-untyped-def]
    _owner, group = await setup(world, "/captcha on")
    alice = world.user("Alice")
    await join(world, group, alice)
    async with world.sessionmaker() as session:
        member = await groups.get_member(session, group.id, alice.id)
    assert member is not None and member.role == "member"


async def test_wrong_answers_remove_the_newcomer(world) -> None:  # type: ignore[no-untyped-def]
    _owner, group = await setup(world, "/captcha sum")
    alice = world.user("Alice", language_code="en")
    calls = await join(world, group, alice)
    [challenge] = calls_of(calls, SendMessage)
    options = [button.callback_data for row in challenge.reply_markup.inline_keyboard for button in row]
    assert len(options) == 4 and "what" not in challenge.text.lower() or "+" in challenge.text
    check = await check_of(world, group, alice)
    right = newcomers.challenge_of(check).answer
    wrong = next(data for data in options if not data.endswith(f":{right}"))
    first = await world.press(group, alice, wrong, message_id=check.message_id)
    assert "Wrong answer" in texts(first)[0] and "2" in texts(first)[0]
    await world.press(group, alice, wrong, message_id=check.message_id)
    last = await world.press(group, alice, wrong, message_id=check.message_id)
    assert "Too many wrong answers" in texts(last)[0]
    assert [c.user_id for c in calls_of(last, BanChatMember)] == [alice.id]
    assert [c.user_id for c in calls_of(last, UnbanChatMember)] == [alice.id]
    assert check.message_id in [c.message_id for c in calls_of(last, DeleteMessage)]
    assert await state_of(world, group, alice) == "failed"


async def test_timeout_removes_cleans_up_and_a_rejoin_is_challenged_again(world) -> None:  # type: ignore[no-untyped-def]
    _owner, group = await setup(world, "/captcha emoji")
    alice = world.user("Alice", language_code="en")
    await join(world, group, alice)
    service = world.message(group, alice, "", new_chat_members=[alice])
    echo = await world.feed(Update(update_id=next(world.update_ids), message=service))
    assert not calls_of(echo, SendMessage) and not calls_of(echo, RestrictChatMember)  # the same join, once
    check = await check_of(world, group, alice)

    removed = await time_out(world)
    assert [c.user_id for c in calls_of(removed, BanChatMember)] == [alice.id]
    [unban] = calls_of(removed, UnbanChatMember)
    assert unban.user_id == alice.id and unban.only_if_banned
    cleaned = sorted(c.message_id for c in calls_of(removed, DeleteMessage))
    assert cleaned == sorted([check.message_id, service.message_id])
    assert await state_of(world, group, alice) == "failed"
    assert await time_out(world) == []  # claimed once

    await world.member_change(group, alice, ChatMemberMember(user=alice), ChatMemberLeft(user=alice))
    rejoin = await join(world, group, alice)
    assert muted(calls_of(rejoin, RestrictChatMember)[0]) and len(calls_of(rejoin, SendMessage)) == 1
    assert await state_of(world, group, alice) == "pending"


async def test_leaving_before_answering_does_not_skip_the_captcha(world) -> None:  # type: ignore[no-untyped-def]
    _owner, group = await setup(world, "/captcha on")
    alice = world.user("Alice", language_code="en")
    await join(world, group, alice)
    first = await check_of(world, group, alice)
    gone = await leave(world, group, alice)
    assert [c.message_id for c in calls_of(gone, DeleteMessage)] == [first.message_id]
    back = await join(world, group, alice)
    assert muted(calls_of(back, RestrictChatMember)[0])
    [challenge] = calls_of(back, SendMessage)
    assert challenge.reply_markup.inline_keyboard[0][0].callback_data.endswith(":2:ok")


async def test_a_redelivered_join_update_counts_once(world) -> None:  # type: ignore[no-untyped-def]
    _owner, group = await setup(world, "/captcha on")
    alice = world.user("Alice", language_code="en")
    change = await join(world, group, alice)
    update_id = next(world.update_ids)
    payload = ChatMemberUpdated(chat=group, from_user=alice, date=datetime.now(UTC),
                                old_chat_member=ChatMemberLeft(user=alice),
                                new_chat_member=ChatMemberMember(user=alice))
    first = await world.feed(Update(update_id=update_id, chat_member=payload))
    second = await world.feed(Update(update_id=update_id, chat_member=payload))
    assert len(calls_of(change, SendMessage)) == 1
    assert not calls_of(first, SendMessage) and not calls_of(second, SendMessage)  # already in: the same join
    assert (await check_of(world, group, alice)).round == 1


async def test_join_request_is_verified_in_private_then_approved(world) -> None:  # type: ignore[no-untyped-def]
    _owner, group = await setup(world, "/captcha on")
    alice, bob = world.user("Alice", language_code="en"), world.user("Bob", language_code="en")
    private = world.private(alice)

    async def request(user):  # type: ignore[no-untyped-def]
        asked = ChatJoinRequest(chat=group, from_user=user, user_chat_id=user.id, date=datetime.now(UTC))
        return await world.feed(Update(update_id=next(world.update_ids), chat_join_request=asked))

    calls = await request(alice)
    [challenge] = calls_of(calls, SendMessage)
    assert challenge.chat_id == alice.id and "Bloom Fans" in challenge.text
    data = challenge.reply_markup.inline_keyboard[0][0].callback_data
    passed = await world.press(private, alice, data)
    [approve] = calls_of(passed, ApproveChatJoinRequest)
    assert approve.chat_id == group.id and approve.user_id == alice.id
    assert "approved" in calls_of(passed, EditMessageText)[0].text
    # the join that follows is already verified: no restriction, no second challenge
    joined = await world.member_change(group, alice, ChatMemberLeft(user=alice), ChatMemberMember(user=alice))
    assert not calls_of(joined, RestrictChatMember) and not calls_of(joined, SendMessage)

    await request(bob)
    declined = await time_out(world)
    assert [(c.chat_id, c.user_id) for c in calls_of(declined, DeclineChatJoinRequest)] == [(group.id, bob.id)]
    assert not calls_of(declined, BanChatMember)


async def test_missing_ban_right_is_told_to_admins_once(world) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="en")
    group = world.group("Bloom Fans", owner=owner)
    await world.bot_status(group, owner, admin_member(BOT_USER, can_restrict_members=False))
    setting = await world.send(group, owner, "/captcha on")
    assert "need the right to ban users" in texts(setting)[-1]
    calls = []
    for name in ("Alice", "Bob"):
        calls += await join(world, group, world.user(name, language_code="en"))
    assert not calls_of(calls, RestrictChatMember)
    told = [text for text in texts(world.session.calls) if "give me the admin right" in text]
    assert len(told) == 1 and "Ban users" in told[0]


async def test_500_joins_in_a_minute_start_raid_mode_within_the_group_limit(world) -> None:  # type: ignore[no-untyped-def]
    owner, group = await setup(world, "/captcha on", "/setwelcome Welcome {name}!")
    clock = [0.0]
    lobby = world.runtime.lobby = Lobby(world.sessionmaker, world.runtime.i18n, clock=lambda: clock[0])
    start = len(world.session.calls)
    people = [world.user(f"Bot{i}", language_code="en") for i in range(500)]
    for first in range(0, len(people), 10):  # Telegram delivers them concurrently; aiogram handles them as tasks
        await asyncio.gather(*(join(world, group, person) for person in people[first:first + 10]))
        clock[0] += 1.2  # 500 joins in 60 seconds
    await lobby.flush()
    calls = world.session.calls[start:]

    restricted = {call.user_id for call in calls_of(calls, RestrictChatMember) if muted(call)}
    assert restricted == {person.id for person in people}
    to_group = [c for c in calls if isinstance(c, SendMessage | EditMessageText) and c.chat_id == group.id]
    assert len(to_group) <= 20, len(to_group)
    assert len([c for c in calls_of(calls, SendMessage) if c.chat_id == group.id]) <= 10
    assert len([text for text in texts(calls) if "Raid detected" in text]) == 1
    async with world.sessionmaker() as session:
        row = await groups.get_group(session, group.id)
        assert await newcomers.raid_until(session, row.id) is not None
        held = await newcomers.held_count(session, row.id)
    assert held >= 450  # the first ~20 joins (before the threshold was crossed) got a challenge instead
    assert "Raid mode" in to_group[-1].text and f"{held} newcomers restricted" in to_group[-1].text

    released = await world.send(group, owner, "/antiraid off")
    lifted = {call.user_id for call in calls_of(released, RestrictChatMember) if not muted(call)}
    assert len(lifted) == held and str(held) in texts(released)[-1]


async def raid_ends(world) -> list[Any]:  # type: ignore[no-untyped-def]
    """Raid mode's time runs out; the scheduler job that settles ended raids runs."""
    start = len(world.session.calls)
    later = datetime.now(UTC) + timedelta(hours=25)
    await settle_raids(world.jobs(), now=later)
    return world.session.calls[start:]


async def test_a_raid_that_ends_by_itself_challenges_the_held_and_removes_the_bots(world) -> None:  # type: ignore[no-untyped-def]
    owner, group = await setup(world, "/captcha on", "/antiraid threshold 3")
    people = [world.user(f"P{i}", language_code="en") for i in range(8)]
    for person in people:
        await join(world, group, person)
    held = [p for p in people if (await check_of(world, group, p)).status == "held"]
    assert len(held) == 5  # the 4th join crossed the threshold

    calls = await raid_ends(world)
    post = [c for c in calls_of(calls, SendMessage) if c.chat_id == group.id]
    assert len(post) == 1 and "Raid mode is over. 5 newcomers" in post[0].text and "3 min" in post[0].text
    button = post[0].reply_markup.inline_keyboard[0][0]
    assert all([await state_of(world, group, p) == "pending" for p in held])
    assert await raid_ends(world) == []  # settled once

    human = held[0]
    pressed = await world.press(group, human, button.callback_data)
    assert [c.user_id for c in calls_of(pressed, RestrictChatMember) if not muted(c)] == [human.id]
    assert await state_of(world, group, human) == "passed"
    removed = await time_out(world)  # nobody else answered (held or challenged before the raid): removed
    assert {c.user_id for c in calls_of(removed, BanChatMember)} == {p.id for p in people if p is not human}
    assert "raid_off" in " ".join(texts(await world.send(group, owner, "/modlog")))


async def test_with_captcha_off_a_raid_that_ends_releases_the_held(world) -> None:  # type: ignore[no-untyped-def]
    _owner, group = await setup(world, "/antiraid threshold 3")
    people = [world.user(f"Q{i}", language_code="en") for i in range(6)]
    for person in people:
        await join(world, group, person)
    held = {p.id for p in people if (await check_of(world, group, p)).status == "held"}
    assert len(held) == 3
    calls = await raid_ends(world)
    assert {c.user_id for c in calls_of(calls, RestrictChatMember) if not muted(c)} == held
    assert not [c for c in calls_of(calls, SendMessage) if c.chat_id == group.id]  # a release needs no post
    assert await raid_ends(world) == []


async def test_admin_commands_are_checked_and_explained(world) -> None:  # type: ignore[no-untyped-def]
    owner, group = await setup(world)
    bob = world.user("Bob", language_code="en")
    await world.send(group, bob, "hi")
    assert "Only group admins" in texts(await world.send(group, bob, "/captcha on"))[0]
    assert "Usage" in texts(await world.send(group, owner, "/captcha"))[0]
    assert "between 30s and 60m" in texts(await world.send(group, owner, "/captcha timeout 2s"))[0]
    assert "4 min" in texts(await world.send(group, owner, "/captcha timeout 4m"))[0]
    assert "Usage" in texts(await world.send(group, owner, "/antiraid"))[0]
    assert "from 3 up" in texts(await world.send(group, owner, "/antiraid threshold lots"))[0]
    assert "more than 50 joins" in texts(await world.send(group, owner, "/antiraid threshold 50"))[0]
    assert "30 min" in texts(await world.send(group, owner, "/antiraid duration 30m"))[0]
    assert "{mention}" in texts(await world.send(group, owner, "/setwelcome"))[0]
    saved = texts(await world.send(group, owner, "/setwelcome <b>Hi</b> {name}"))[0]
    assert "&lt;b&gt;Hi&lt;/b&gt; Owner" in saved
    assert "turned off" in texts(await world.send(group, owner, "/setwelcome off"))[0]
    on = texts(await world.send(group, owner, "/antiraid on"))[0]
    assert "Raid mode is on" in on
    alice = world.user("Alice", language_code="en")
    held = await join(world, group, alice)
    assert muted(calls_of(held, RestrictChatMember)[0])
    assert "Send this command in your group" in texts(await world.send(world.private(bob), bob, "/captcha on"))[0]
