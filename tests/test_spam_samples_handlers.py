"""Learning from admins through the real dispatcher: /spam removes an ad and keeps it as a confirmed sample; a
newcomer's copy of it is removed with the classifier's score and nearest sample in the log; the owner clears the
samples."""

from __future__ import annotations

from datetime import timedelta

from aiogram.methods import DeleteMessage
from sqlalchemy import update

from models import spam_samples
from models.db import utcnow
from models.groups import Group
from tests.factories import texts
from tests.test_moderation_handlers import Room, of

AD = "低价出售各平台会员，质量保证量大从优，一单一结，需要的老板找我"  # no contact, no scam phrase: only learning
COPY = "低价出售各平台会员，质量保证量大从优，一单一结，需要的老板快找我"


async def test_spam_reply_teaches_the_group_and_a_newcomers_copy_is_removed(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    async with world.sessionmaker() as session, session.begin():  # the bot has been here a month
        await session.execute(update(Group).where(Group.id == r.gid).values(created_at=utcnow() - timedelta(days=30)))
    refused = await r.say(r.bob, "/spam", reply_to_message=r.reply_to(r.carol, AD, message_id=88))
    assert texts(refused) == ["Only group admins and moderators can do that."]
    calls = await r.say(r.admin, "/spam", reply_to_message=r.reply_to(r.carol, AD, message_id=88))
    assert [c.message_id for c in of(calls, DeleteMessage)] == [88]
    assert any("1 confirmed spam samples" in t for t in texts(calls))
    async with world.sessionmaker() as session:
        assert await spam_samples.samples_of(session, r.gid) == ([AD], [])

    dan = world.user("Dan", language_code="en", username="dan_new")
    assert of(await r.say(dan, "大家好，第一次来"), DeleteMessage) == []
    removed = await r.say(dan, COPY)
    assert len(of(removed, DeleteMessage)) == 1
    last = (await r.actions())[-1]
    assert (last.action, last.rule, last.target_id) == ("delete", "newcomer", dan.id)
    assert last.reason is not None and last.reason.startswith("learned: score") and "低价出售" in last.reason

    assert "1 confirmed spam samples" in texts(await r.say(r.admin, "/spamsamples"))[0]
    assert texts(await r.say(r.admin, "/spamsamples clear")) == ["Only the group's owner can delete the spam samples."]
    assert texts(await r.say(r.owner, "/spamsamples clear")) == ["Deleted 1 spam samples."]
    async with world.sessionmaker() as session:
        assert await spam_samples.samples_of(session, r.gid) == ([], [])
    assert of(await r.say(dan, COPY), DeleteMessage) == []  # nothing learned any more
