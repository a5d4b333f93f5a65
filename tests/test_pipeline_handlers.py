"""The group-message pipeline (bot/pipeline.py): the moderation verdict comes first, and a message it removes
earns nothing and counts for nothing with any observer (invite activity, keyword check-in, topic replies,
showcase, chat points); the same observers still see a clean message. Fed through the real dispatcher."""

from __future__ import annotations

from typing import Any

from aiogram.methods import DeleteMessage, SendMessage
from aiogram.types import PhotoSize
from sqlalchemy import func, select

from models import groups, points
from models.checkin import Checkin
from models.points import PointsEntry
from tests.factories import texts
from tests.test_invites_handlers import Invites
from tests.test_topics_handlers import Pool

SPAM = "便宜代购 加微信 abc12345 私聊"  # traffic diversion: removed under the default rules
PHOTO = [PhotoSize(file_id="photo", file_unique_id="photo", width=640, height=480)]


def removed(calls: list[Any]) -> bool:
    return any(isinstance(call, DeleteMessage) for call in calls)


class Group:
    """An owner and members who have not spoken yet (so none of them is resting after chat points)."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en")
        self.chat = world.group("Fans", owner=self.owner)
        self.gid = 0

    async def start(self) -> Group:
        await self.world.send(self.chat, self.owner, "/lang en")
        async with self.world.sessionmaker() as session:
            row = await groups.get_group(session, self.chat.id)
            assert row is not None and row.id is not None
            self.gid = row.id
        return self

    async def say(self, user: Any, text: str, **fields: Any) -> list[Any]:
        return await self.world.send(self.chat, user, text, **fields)

    async def entries(self, user: Any, kind: str) -> int:
        async with self.world.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(PointsEntry).where(
                PointsEntry.group_id == self.gid, PointsEntry.user_id == user.id, PointsEntry.kind == kind)) or 0)

    async def balance(self, user: Any) -> int:
        async with self.world.sessionmaker() as session:
            return (await points.get_balance(session, self.gid, user.id)).balance

    async def checkins(self, user: Any) -> int:
        async with self.world.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(Checkin).where(
                Checkin.group_id == self.gid, Checkin.user_id == user.id)) or 0)


# -- topic replies ---------------------------------------------------------------------------------------------


async def test_a_removed_reply_to_the_topic_post_earns_no_topic_points(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    _text, post_id = await pool.post_now()
    calls = await pool.reply(pool.bob, post_id, SPAM)
    assert removed(calls)
    assert await pool.entries("topic") == []


async def test_a_clean_reply_to_the_topic_post_still_earns_topic_points(world) -> None:  # type: ignore[no-untyped-def]
    pool = await Pool(world).start()
    _text, post_id = await pool.post_now()
    calls = await pool.reply(pool.bob, post_id, "Summer, because of the long evenings")
    assert not removed(calls)
    assert [entry.user_id for entry in await pool.entries("topic")] == [pool.bob.id]


# -- invite activity -------------------------------------------------------------------------------------------


async def test_a_newcomers_removed_message_does_not_count_toward_vesting(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    await scene.join(scene.carol, await scene.link_of(scene.alice))
    assert removed(await world.send(scene.chat, scene.carol, SPAM))
    invitation = await scene.invitation(scene.carol)
    assert invitation is not None and invitation.messages == 0


async def test_a_newcomers_clean_message_counts_toward_vesting(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    await scene.join(scene.carol, await scene.link_of(scene.alice))
    assert not removed(await world.send(scene.chat, scene.carol, "大家好，很高兴认识大家"))
    invitation = await scene.invitation(scene.carol)
    assert invitation is not None and invitation.messages == 1


# -- keyword features ------------------------------------------------------------------------------------------


async def test_a_removed_check_in_keyword_checks_nothing_in(world) -> None:  # type: ignore[no-untyped-def]
    g = await Group(world).start()
    await g.say(g.owner, "/modset banned add 签到")  # 签到 itself breaks this group's rules
    bob = world.user("Bob", language_code="en")
    calls = await g.say(bob, "签到")
    assert removed(calls)
    assert await g.checkins(bob) == 0 and await g.balance(bob) == 0


async def test_a_clean_check_in_keyword_still_checks_in(world) -> None:  # type: ignore[no-untyped-def]
    g = await Group(world).start()
    await g.say(g.owner, "/modset banned add 代购")
    bob = world.user("Bob", language_code="en")
    calls = await g.say(bob, "签到")
    assert not removed(calls)
    assert await g.checkins(bob) == 1 and await g.balance(bob) > 0


# -- showcase --------------------------------------------------------------------------------------------------


async def test_a_removed_showcase_is_neither_paid_nor_put_to_the_moderators(world) -> None:  # type: ignore[no-untyped-def]
    g = await Group(world).start()
    await g.say(g.owner, "/set showcase_auto_approve on")
    bob = world.user("Bob", language_code="en")
    calls = await g.say(bob, "", photo=PHOTO, caption=f"#晒单 {SPAM}")
    assert removed(calls)
    assert not any("Thanks for sharing" in text or "Showcase by" in text for text in texts(calls))
    assert await g.entries(bob, "showcase") == 0 and await g.balance(bob) == 0


async def test_a_clean_showcase_is_still_paid(world) -> None:  # type: ignore[no-untyped-def]
    g = await Group(world).start()
    await g.say(g.owner, "/set showcase_auto_approve on")
    bob = world.user("Bob", language_code="en")
    calls = await g.say(bob, "", photo=PHOTO, caption="#晒单 my new lipstick")
    assert not removed(calls)
    assert any("Thanks for sharing" in text for text in texts(calls))
    assert await g.entries(bob, "showcase") == 1


# -- chat points -----------------------------------------------------------------------------------------------


async def test_a_removed_message_earns_no_chat_points(world) -> None:  # type: ignore[no-untyped-def]
    g = await Group(world).start()
    bob = world.user("Bob", language_code="en")
    assert removed(await g.say(bob, SPAM))
    assert await g.entries(bob, "chat") == 0 and await g.balance(bob) == 0


async def test_a_clean_message_still_earns_chat_points(world) -> None:  # type: ignore[no-untyped-def]
    g = await Group(world).start()
    bob = world.user("Bob", language_code="en")
    calls = await g.say(bob, "这个面霜真的很好用，推荐大家试试")
    assert not removed(calls) and not [call for call in calls if isinstance(call, SendMessage)]
    assert await g.entries(bob, "chat") == 1


# -- the order -------------------------------------------------------------------------------------------------


async def test_an_answered_keyword_ends_the_line_like_a_command(world) -> None:  # type: ignore[no-untyped-def]
    """A check-in keyword long enough to earn chat points earns the check-in only, as before the pipeline."""
    g = await Group(world).start()
    bob = world.user("Bob", language_code="en")
    await g.say(bob, "check in")  # a default check-in keyword, 8 characters
    assert await g.checkins(bob) == 1 and await g.entries(bob, "chat") == 0
