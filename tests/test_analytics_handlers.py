"""Activity facts written from what people do, fed through the real dispatcher: messages that stay are counted
by kind (a removed one is not), a check-in by keyword counts, joins carry their source, /forgetme keeps the
counts without the person's id and /mydata shows the person's own."""

from __future__ import annotations

import json
from typing import Any

from aiogram.methods import SendDocument
from aiogram.types import BufferedInputFile, PhotoSize
from sqlalchemy import select

from handlers.privacy import ForgetMe
from models.analytics import MemberDay, MembershipEvent
from tests.test_invites_handlers import Invites
from tests.test_pipeline_handlers import SPAM, Group, removed

PHOTO = [PhotoSize(file_id="photo", file_unique_id="photo", width=640, height=480)]


async def member_days(world: Any, gid: int, user_id: int) -> list[MemberDay]:
    await world.runtime.activity.flush()
    async with world.sessionmaker() as session:
        return list((await session.scalars(select(MemberDay).where(  # type: ignore[call-overload]
            MemberDay.group_id == gid, MemberDay.user_id == user_id))).all())


async def events(world: Any, gid: int) -> list[tuple[int, str, str | None, int | None]]:
    async with world.sessionmaker() as session:
        rows = (await session.scalars(select(MembershipEvent).where(MembershipEvent.group_id == gid)  # type: ignore[call-overload]
                                      .order_by(MembershipEvent.id))).all()
    return [(row.user_id, row.kind, row.source, row.actor_id) for row in rows]


async def test_messages_that_stay_are_counted_by_kind_and_a_removed_one_is_not(world) -> None:  # type: ignore[no-untyped-def]
    group = await Group(world).start()
    dan = world.user("Dan", language_code="en")
    await group.say(dan, "hello there, how is everyone today?")
    await world.send(group.chat, dan, "", photo=PHOTO)
    assert removed(await group.say(dan, SPAM))

    [day] = await member_days(world, group.gid, dan.id)

    assert (day.text, day.photo, day.other, day.language) == (1, 1, 0, "en")


async def test_a_check_in_by_keyword_counts_a_check_in_and_a_message(world) -> None:  # type: ignore[no-untyped-def]
    group = await Group(world).start()
    erin = world.user("Erin")
    await group.say(erin, "签到")
    await group.say(erin, "签到")  # already checked in today: one check-in, two messages

    [day] = await member_days(world, group.gid, erin.id)

    assert (day.checkins, day.text) == (1, 2)


async def test_joins_carry_their_source_and_leaves_are_recorded(world) -> None:  # type: ignore[no-untyped-def]
    group = await Invites(world).start()
    link = await group.link_of(group.alice)
    await group.join(group.carol, link)  # a member's link
    newcomer = world.user("Nina")
    await group.join(newcomer, "https://t.me/+admins")  # a link no member owns: an admin's
    walk_in = world.user("Walt")
    await group.join(walk_in)  # no link, joined by themselves: public
    await group.leave(group.carol)

    assert await events(world, group.gid) == [
        (group.carol.id, "join", "member_link", group.alice.id),
        (newcomer.id, "join", "admin_link", None),
        (walk_in.id, "join", "public", None),
        (group.carol.id, "leave", None, None),
    ]


async def test_forgetme_keeps_the_counts_without_the_id_and_mydata_shows_them(world) -> None:  # type: ignore[no-untyped-def]
    group = await Group(world).start()
    fay = world.user("Fay", language_code="en")
    await group.say(fay, "good morning everyone, lovely day")
    private = world.private(fay)

    calls = await world.send(private, fay, "/mydata")
    [document] = [call for call in calls if isinstance(call, SendDocument)]
    assert isinstance(document.document, BufferedInputFile)
    exported = json.loads(document.document.data)
    assert [(d["user_id"], d["text"]) for d in exported["analytics"]["activity_days"]] == [(fay.id, 1)]

    await group.say(fay, "one more message before I go")  # counted, not yet written
    await world.press(private, fay, ForgetMe(confirm=True).pack())

    assert await member_days(world, group.gid, fay.id) == []
    await world.runtime.activity.flush()
    async with world.sessionmaker() as session:
        rows = (await session.scalars(select(MemberDay).where(MemberDay.group_id == group.gid))).all()  # type: ignore[call-overload]
    assert sorted((row.text, row.user_id < 0) for row in rows if row.user_id != group.owner.id) == [(2, True)]
