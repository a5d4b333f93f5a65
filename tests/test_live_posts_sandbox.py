"""The check-in board as members see it against a faithful Telegram (the sandbox, the real `qunbot run` path): a
burst before the board exists, a board an admin deleted, a group that became a supergroup. Each ends with ONE
board showing the right count; a second check-in the same day is answered."""

from __future__ import annotations

from typing import Any

import pytest

import handlers.checkin
from bot.sandbox import Sandbox
from handlers.live_posts import PostKind
from models import boards, groups
from models.clock import local_day
from models.db import create_engine, create_sessionmaker, utcnow
from tests.test_end_to_end import running_bot

BOARD_TITLE = "Check-in board"


@pytest.fixture(autouse=True)
def quick_board(monkeypatch: pytest.MonkeyPatch) -> None:
    """The board at a test's pace: a burst is still coalesced, into edits a fraction of a second apart."""
    monkeypatch.setattr(handlers.checkin, "BOARD", PostKind(handlers.checkin.BOARD_KIND, 0.3))


def boards_in(sb: Sandbox, chat: Any) -> list[Any]:
    """The board messages in a chat that are still there."""
    return [m for m in sb.messages(chat) if not m.deleted and BOARD_TITLE in (m.text or "")]


def failed_edits(sb: Sandbox, since: int = 0) -> list[str]:
    return [f"{c.chat_id}: {c.description}" for c in sb.calls[since:] if c.method.startswith("edit") and not c.ok]


async def stored_board_id(url: str, chat_id: int) -> int | None:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            group = await groups.get_group(session, chat_id)
            assert group is not None and group.id is not None
            day = local_day(utcnow(), group.timezone)
            post = await boards.get_post(session, group.id, boards.CHECKIN_BOARD, day.isoformat())
            return None if post is None else post.message_id
    finally:
        await engine.dispose()


async def group_with_members(sb: Sandbox, count: int, *, supergroup: bool = True) -> tuple[Any, Any, list[Any]]:
    owner = sb.add_user("Lin", username="lin", language_code="en")
    group = sb.create_group("Fans", owner=owner, supergroup=supergroup)
    await sb.add_bot(group, by=owner, admin=True)
    members = []
    for n in range(count):
        member = sb.add_user(f"M{n}", language_code="en")
        sb.add_member(group, member)
        members.append(member)
    return owner, group, members


async def test_a_burst_before_the_board_ends_on_one_board_showing_everyone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb, running_bot(sb, tmp_path, default_locale="en") as ctx:
        _owner, group, members = await group_with_members(sb, 5)
        for member in members:  # back to back, before any board exists today
            await sb.send(group, member, "签到")
        await sb.settle(timeout=20, quiet=2.5)
        shown = boards_in(sb, group)
        assert len(shown) == 1 and "Checked in today: 5" in shown[0].text, [m.text for m in shown]
        assert not failed_edits(sb)
        assert await stored_board_id(ctx["url"], group.id) == shown[0].message_id

        # The same member again: the board does not change, and they are answered (with their streak).
        mark = sb.mark()
        again = await sb.send(group, members[0], "签到")
        await sb.settle(timeout=20, quiet=2.5)
        replies = [c for c in sb.calls[mark:] if c.method == "sendMessage" and c.ok]
        assert len(replies) == 1 and "already checked in today" in replies[0].params["text"]
        assert "1-day streak" in replies[0].params["text"]
        assert sb.messages(group)[-1].reply_to is again
        assert len(boards_in(sb, group)) == 1 and "Checked in today: 5" in boards_in(sb, group)[0].text


async def test_a_deleted_board_is_posted_again_and_kept_up_to_date(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb, running_bot(sb, tmp_path, default_locale="en") as ctx:
        _owner, group, members = await group_with_members(sb, 4)
        await sb.send(group, members[0], "签到")
        await sb.settle(timeout=20, quiet=2.5)
        (first,) = boards_in(sb, group)
        first.deleted = True  # an admin deletes today's board

        await sb.send(group, members[1], "签到")
        await sb.settle(timeout=20, quiet=2.5)
        (second,) = boards_in(sb, group)
        assert second.message_id != first.message_id and "Checked in today: 2" in second.text
        assert await stored_board_id(ctx["url"], group.id) == second.message_id

        mark = len(sb.calls)
        for member in members[2:]:
            await sb.send(group, member, "签到")
        await sb.settle(timeout=20, quiet=2.5)
        assert boards_in(sb, group) == [second] and "Checked in today: 4" in second.text
        assert not failed_edits(sb, mark)


async def test_after_a_migration_the_board_lives_in_the_supergroup(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb, running_bot(sb, tmp_path, default_locale="en") as ctx:
        owner, old, members = await group_with_members(sb, 3, supergroup=False)
        await sb.send(old, members[0], "签到")
        await sb.settle(timeout=20, quiet=2.5)
        assert len(boards_in(sb, old)) == 1
        # The supergroup's first messages reuse small ids, so the old board's id may name someone else's message.
        new = await sb.upgrade_to_supergroup(old)
        await sb.settle(timeout=20, quiet=2.5)
        await sb.send(new, owner, "hello")

        mark = len(sb.calls)
        await sb.send(new, members[1], "签到")
        await sb.send(new, members[2], "签到")
        await sb.settle(timeout=20, quiet=2.5)
        shown = boards_in(sb, new)
        assert len(shown) == 1 and "Checked in today: 3" in shown[0].text, [m.text for m in shown]
        assert not failed_edits(sb, mark)
        assert await stored_board_id(ctx["url"], new.id) == shown[0].message_id
