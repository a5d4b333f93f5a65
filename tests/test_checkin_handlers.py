"""Check-ins as members see them: one board a day per group, private alerts for presses, coalesced edits,
and the scheduler posting the board once on the group's own clock."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from sqlalchemy import func, select

from models import groups
from models.checkin import Checkin
from scheduler.runner import post_checkin_boards
from tests.factories import texts


def fast_board_edits(world):  # type: ignore[no-untyped-def]
    return world.fast_live_posts(every=0.01)


async def count_checkins(world) -> int:  # type: ignore[no-untyped-def]
    async with world.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Checkin)))


async def test_keyword_checkins_share_one_board_edited_in_place(world) -> None:  # type: ignore[no-untyped-def]
    editor = fast_board_edits(world)
    alice, bob = world.user("Alice", language_code="en"), world.user("Bob", language_code="en")
    group = world.group("Fans")
    await world.send(group, alice, "签到")
    await editor.drain()
    board = [c for c in world.session.calls if isinstance(c, SendMessage)]
    assert len(board) == 1 and "Checked in today: <b>1</b>" in board[0].text and "Alice +" in board[0].text
    assert board[0].reply_markup.inline_keyboard[0][0].callback_data == "ci"

    start = len(world.session.calls)
    await world.send(group, bob, "check in")
    again = await world.send(group, alice, "签到")  # again: the board does not change, Alice is answered
    await editor.drain()
    calls = world.session.calls[start:]
    assert [c for c in calls if isinstance(c, SendMessage)] == [c for c in again if isinstance(c, SendMessage)]
    reply = [c for c in again if isinstance(c, SendMessage)]
    assert len(reply) == 1 and "already checked in today" in reply[0].text and "1-day streak" in reply[0].text
    edits = [c for c in world.session.calls if isinstance(c, EditMessageText)]
    assert edits and "Checked in today: <b>2</b>" in edits[-1].text and "Bob +" in edits[-1].text
    assert await count_checkins(world) == 2


async def test_a_press_is_answered_privately_and_only_once(world) -> None:  # type: ignore[no-untyped-def]
    fast_board_edits(world)
    alice = world.user("Alice", language_code="en")
    group = world.group("Fans")
    await world.send(group, alice, "hello")  # the group exists
    answer = [c for c in await world.press(group, alice, "ci") if isinstance(c, AnswerCallbackQuery)][0]
    assert answer.show_alert and "Checked in: +" in answer.text and "1-day streak" in answer.text
    again = [c for c in await world.press(group, alice, "ci") if isinstance(c, AnswerCallbackQuery)][0]
    assert "already checked in today" in again.text
    assert await count_checkins(world) == 1


async def test_scheduler_posts_the_board_once_at_the_groups_time(world) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="en")
    group = world.group("Fans", owner=owner)
    await world.send(group, owner, "/checkin board 08:00")
    ctx = world.jobs()
    before = len(world.session.calls)
    # 07:59 in Shanghai is 23:59 UTC the day before: not yet.
    assert await post_checkin_boards(ctx, datetime(2026, 11, 21, 23, 59, tzinfo=UTC)) == 0
    at_eight = datetime(2026, 11, 22, 0, 0, 30, tzinfo=UTC)
    assert await post_checkin_boards(ctx, at_eight) == 1
    assert await post_checkin_boards(ctx, at_eight) == 0  # a second scheduler finds it claimed
    posts = [c for c in world.session.calls[before:] if isinstance(c, SendMessage)]
    assert len(posts) == 1 and "Check-in board · 2026-11-22" in posts[0].text  # DEFAULT_LOCALE (en in tests)
    # Twenty minutes late (after a long outage) is past the grace window: no stale board the next day either.
    assert await post_checkin_boards(ctx, datetime(2026, 11, 23, 0, 20, tzinfo=UTC)) == 0


async def test_inactive_groups_get_no_board(world) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="en")
    group = world.group("Fans", owner=owner)
    await world.send(group, owner, "hi")
    async with world.sessionmaker() as session:
        await groups.set_group_active(session, group.id, False)
    ctx = world.jobs()
    assert await post_checkin_boards(ctx, datetime(2026, 11, 22, 0, 1, tzinfo=UTC)) == 0


async def test_board_settings_are_for_admins_and_validated(world) -> None:  # type: ignore[no-untyped-def]
    owner, bob = world.user("Owner", language_code="en"), world.user("Bob", language_code="en")
    group = world.group("Fans", owner=owner)
    assert texts(await world.send(group, bob, "/checkin board 09:00")) == ["Only group admins can do that."]
    assert "is not a time" in texts(await world.send(group, owner, "/checkin board 25:00"))[0]
    assert "every day at 21:30 (Asia/Shanghai)" in texts(await world.send(group, owner, "/checkin board 21:30"))[0]
    assert "Check-in keywords: 冒泡, hi" in texts(await world.send(group, owner, "/checkin keywords 冒泡，hi"))[0]
    editor = fast_board_edits(world)
    start = len(world.session.calls)
    await world.send(group, bob, "冒泡")
    await editor.drain()
    assert any(isinstance(c, SendMessage) and "Bob +" in c.text for c in world.session.calls[start:])
    assert "Usage:" in texts(await world.send(group, bob, "/checkin whatever"))[0]


async def test_checkin_info_shows_the_month(world) -> None:  # type: ignore[no-untyped-def]
    editor = fast_board_edits(world)
    alice = world.user("Alice", language_code="en")
    group = world.group("Fans")
    await world.send(group, alice, "/checkin")
    await editor.drain()  # the day's board goes up
    info = texts(await world.send(group, alice, "/checkin info"))[0]
    assert "1 check-ins, streak 1 (best 1), today: done" in info and "✅" in info
    refused = texts(await world.send(group, alice, "/checkin makeup"))[0]
    assert refused == "Make-up check-ins are off in this group."


async def test_every_scheduled_job_runs_cleanly(world) -> None:  # type: ignore[no-untyped-def]
    from scheduler.runner import JOBS

    ctx = world.jobs()
    for job, _trigger in JOBS:
        await job(ctx)
