"""Invite rewards through the real dispatcher: /invite (rights checks naming what to fix, one link per member,
sent privately), joins attributed from the chat_member update's invite_link, newcomers' messages counted, the
vesting job, /invites for members and admins, settings, and the warning when join updates do not arrive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiogram.methods import CreateChatInviteLink, GetChatMember, SendMessage
from aiogram.types import ChatInviteLink, ChatMemberLeft, ChatMemberMember, ChatMemberUpdated, Update, User

from models import groups, invites, points
from models.db import utcnow
from models.groups import Member
from scheduler.invites import vest_invitations
from tests.factories import BOT_USER, admin_member, texts


class Invites:
    """A group with an owner, the bot as an admin (by default with every right it needs), and members; the
    recording session also answers createChatInviteLink and the bot's own rights."""

    def __init__(self, world: Any, *, bot_admin: bool = True, **bot_rights: bool) -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en")
        self.alice = world.user("Alice", language_code="en")
        self.bob = world.user("Bob", language_code="en")
        self.carol = world.user("Carol", language_code="en")
        self.chat = world.group("Fans", owner=self.owner)
        self.bot_admin = bot_admin
        self.bot_rights = bot_rights
        self.links = 0
        self.gid = 0
        record = world.session.make_request

        async def make_request(bot: Any, method: Any, timeout: int | None = None) -> Any:  # noqa: ASYNC109
            if isinstance(method, CreateChatInviteLink):
                world.session.calls.append(method)
                self.links += 1
                return ChatInviteLink(invite_link=f"https://t.me/+fake{self.links}", creator=BOT_USER,
                                      creates_join_request=False, is_primary=False, is_revoked=False,
                                      name=method.name)
            if isinstance(method, GetChatMember) and method.user_id == bot.id:
                world.session.calls.append(method)
                if self.bot_admin:
                    return admin_member(BOT_USER, **self.bot_rights)
                return ChatMemberMember(user=BOT_USER)
            return await record(bot, method, timeout)

        world.session.make_request = make_request

    async def start(self) -> Invites:
        await self.world.send(self.chat, self.owner, "/lang en")  # the scheduler writes in the group's language
        for person in (self.alice, self.bob):
            await self.world.send(self.chat, person, "hi")
        async with self.world.sessionmaker() as session:
            row = await groups.get_group(session, self.chat.id)
            assert row is not None and row.id is not None
            self.gid = row.id
        return self

    async def link_of(self, user: User) -> str:
        said = texts(await self.world.send(self.chat, user, "/invite"))
        async with self.world.sessionmaker() as session:
            link = await invites.link_of(session, self.gid, user.id)
        assert link is not None, said
        return link

    def change(self, user: User, old: Any, new: Any, link: str | None = None) -> ChatMemberUpdated:
        invite_link = None
        if link is not None:
            invite_link = ChatInviteLink(invite_link=link, creator=BOT_USER, creates_join_request=False,
                                         is_primary=False, is_revoked=False)
        return ChatMemberUpdated(chat=self.chat, from_user=user, date=datetime.now(UTC), old_chat_member=old,
                                 new_chat_member=new, invite_link=invite_link)

    async def join(self, user: User, link: str | None = None, *, update_id: int | None = None) -> list[Any]:
        change = self.change(user, ChatMemberLeft(user=user), ChatMemberMember(user=user), link)
        update_id = update_id if update_id is not None else next(self.world.update_ids)
        return await self.world.feed(Update(update_id=update_id, chat_member=change))

    async def leave(self, user: User) -> list[Any]:
        change = self.change(user, ChatMemberMember(user=user), ChatMemberLeft(user=user))
        return await self.world.feed(Update(update_id=next(self.world.update_ids), chat_member=change))

    async def vest(self, now: datetime) -> list[Any]:
        start = len(self.world.session.calls)
        await vest_invitations(self.world.jobs(), now=now)
        return self.world.session.calls[start:]

    async def balance(self, user: User) -> int:
        async with self.world.sessionmaker() as session:
            return (await points.get_balance(session, self.gid, user.id)).balance

    async def invitation(self, user: User) -> invites.Invitation | None:
        async with self.world.sessionmaker() as session:
            rows = await invites.my_invitations(session, self.gid, self.alice.id)
            rows += await invites.my_invitations(session, self.gid, self.bob.id)
        return next((row for row in rows if row.invitee_id == user.id), None)

    async def start_private(self, user: User) -> None:
        await self.world.send(self.world.private(user), user, "/start")


def private_texts(calls: list[Any], user: User) -> list[str]:
    return [call.text for call in calls if isinstance(call, SendMessage) and call.chat_id == user.id]


LATER = timedelta(hours=25)


async def test_invite_without_admin_rights_names_what_to_fix(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world, bot_admin=False).start()
    said = texts(await world.send(scene.chat, scene.alice, "/invite"))
    assert "make me an administrator" in said[0] and "Invite users via link" in said[0]
    scene.bot_admin, scene.bot_rights = True, {"can_invite_users": False}
    said = texts(await world.send(scene.chat, scene.alice, "/invite"))
    assert "give me the administrator right “Invite users via link”" in said[0]
    assert scene.links == 0


async def test_invite_creates_one_link_and_reuses_it(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    calls = await world.send(scene.chat, scene.alice, "/invite")
    created = [call for call in calls if isinstance(call, CreateChatInviteLink)]
    assert len(created) == 1 and created[0].name == f"qunbot:{scene.alice.id}"
    assert "https://t.me/+fake1" in texts(calls)[-1]  # not started privately: answered in the group
    await scene.start_private(scene.alice)
    calls = await world.send(scene.chat, scene.alice, "/invite")
    assert not [call for call in calls if isinstance(call, CreateChatInviteLink)]
    assert any("https://t.me/+fake1" in text for text in private_texts(calls, scene.alice))
    assert not [call for call in calls if isinstance(call, SendMessage) and call.chat_id == scene.chat.id]
    assert texts(await world.send(world.private(scene.alice), scene.alice, "/invite"))[0].startswith(
        "Invite links belong to a group"
    )


async def test_join_by_link_message_and_vesting_rewards_the_inviter(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    await scene.start_private(scene.alice)
    link = await scene.link_of(scene.alice)
    calls = await scene.join(scene.carol, link)
    assert any("Carol joined Fans through your invite link" in text for text in private_texts(calls, scene.alice))
    assert not [call for call in calls if isinstance(call, SendMessage) and call.chat_id == scene.chat.id]
    async with world.sessionmaker() as session:  # membership still saw the join (the listener let it pass)
        member = await session.get(Member, (await groups.get_member(session, scene.chat.id, scene.carol.id)).id)  # type: ignore[union-attr]
        assert member is not None and member.role == "member"

    assert await scene.vest(utcnow() + LATER) == []  # no message from Carol yet
    await world.send(scene.chat, scene.carol, "大家好!")
    assert (await scene.invitation(scene.carol)).messages == 1  # type: ignore[union-attr]
    assert await scene.balance(scene.alice) == 0
    calls = await scene.vest(utcnow() + LATER)
    assert any("Your invitation of Carol to Fans counts now: +50 points" in text
               for text in private_texts(calls, scene.alice))
    assert await scene.balance(scene.alice) == 50
    said = texts(await world.send(scene.chat, scene.alice, "/invites"))[0]
    assert "0 pending · 1 rewarded · 0 not counted" in said and "Carol — rewarded +50" in said
    assert "1. Alice — 1" in said


async def test_redelivered_and_repeated_join_updates_count_once(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    link = await scene.link_of(scene.alice)
    await scene.join(scene.carol, link, update_id=777)
    await scene.join(scene.carol, link, update_id=777)  # the same update again
    await scene.join(scene.carol, link)  # a second delivery with a new id
    async with world.sessionmaker() as session:
        stats = await invites.inviter_stats(session, scene.gid, scene.alice.id)
    assert stats.total == 1


async def test_two_inviters_the_link_used_wins(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    await scene.link_of(scene.alice)
    bobs = await scene.link_of(scene.bob)
    await scene.join(scene.carol, bobs)
    row = await scene.invitation(scene.carol)
    assert row is not None and row.inviter_id == scene.bob.id


async def test_leaving_before_vesting_voids_and_rejoining_pays_nothing(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    link = await scene.link_of(scene.alice)
    await scene.join(scene.carol, link)
    await world.send(scene.chat, scene.carol, "hello")
    await scene.leave(scene.carol)
    await scene.join(scene.carol, link)
    await world.send(scene.chat, scene.carol, "I'm back")
    await scene.vest(utcnow() + LATER)
    assert await scene.balance(scene.alice) == 0
    said = texts(await world.send(scene.chat, scene.alice, "/invites"))[0]
    assert "Carol — did not count: left before it counted" in said
    # A member who leaves and comes back through Alice's link earns her nothing (a rejoin).
    await scene.leave(scene.bob)
    await scene.join(scene.bob, link)
    assert (await scene.invitation(scene.bob)).reason == "rejoin"  # type: ignore[union-attr]


async def test_clawback_when_the_newcomer_leaves_soon_after(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    await scene.start_private(scene.alice)
    link = await scene.link_of(scene.alice)
    await scene.join(scene.carol, link)
    await world.send(scene.chat, scene.carol, "hello")
    await scene.vest(utcnow() + LATER)
    assert await scene.balance(scene.alice) == 50
    calls = await scene.leave(scene.carol)
    assert any("reward was taken back (−50 points)" in text for text in private_texts(calls, scene.alice))
    assert await scene.balance(scene.alice) == 0


async def test_admins_see_void_rates_members_are_refused(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    link = await scene.link_of(scene.alice)
    await scene.join(scene.carol, link)
    await scene.leave(scene.carol)
    assert texts(await world.send(scene.chat, scene.alice, "/invites top")) == ["Only group admins can do that."]
    said = texts(await world.send(scene.chat, scene.owner, "/invites top"))[0]
    assert "1. Alice: 0 / 0 / 1 · 100%" in said


async def test_admins_change_rules_with_usage_on_mistakes(world) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world).start()
    assert texts(await world.send(scene.chat, scene.alice, "/invites set reward 5")) == [
        "Only group admins can do that."
    ]
    assert texts(await world.send(scene.chat, scene.owner, "/invites set reward 80")) == ["✅ reward is now 80."]
    said = texts(await world.send(scene.chat, scene.owner, "/invites set reward lots"))[0]
    assert said.startswith("Cannot set reward: expected a whole number")
    assert texts(await world.send(scene.chat, scene.owner, "/invites set"))[0].startswith("Usage: /invites set")
    said = texts(await world.send(scene.chat, scene.owner, "/invites settings"))[0]
    assert "<code>reward</code> = 80" in said and "I can create invite links here" in said
    assert "Telegram has not told me of anyone joining" in said
    assert texts(await world.send(scene.chat, scene.alice, "/invites what"))[0].startswith("<b>Invite rewards</b>")


@pytest.mark.parametrize("bot_admin", [False, True])
async def test_admins_are_warned_when_joins_arrive_without_member_updates(world, bot_admin) -> None:  # type: ignore[no-untyped-def]
    scene = await Invites(world, bot_admin=bot_admin).start()
    warnings = []
    for index in range(4):
        newcomer = world.user(f"New{index}", language_code="en")
        warnings += [text for text in texts(await world.send(scene.chat, newcomer, "", new_chat_members=[newcomer]))
                     if "Telegram does not tell me" in text]
    assert len(warnings) == 1
    assert ("make me an administrator" in warnings[0]) is not bot_admin
    assert ("ask Telegram for chat_member updates" in warnings[0]) is bot_admin
