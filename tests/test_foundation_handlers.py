"""The foundation's handlers through the real dispatcher: group state, membership, languages, time zones and
a member's data (export and erase)."""

from __future__ import annotations

import json

from aiogram.methods import SendDocument
from aiogram.types import ChatMemberBanned, ChatMemberLeft, ChatMemberMember
from sqlalchemy import BigInteger, select

from models import groups
from models.db import metadata
from models.groups import Group, Member
from tests.factories import BOT_USER, admin_member, texts


async def test_bot_added_as_member_asks_for_admin_rights(world, session) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="en")
    group = world.group("Fans", owner=owner)
    said = texts(await world.bot_status(group, owner, ChatMemberMember(user=BOT_USER)))
    assert "Make me an admin" in said[0] and "Delete messages" in said[0]
    row = await groups.get_group(session, group.id)
    assert row.active and row.bot_status == "member"


async def test_promotion_names_the_rights_still_missing(world, session) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="en")
    group = world.group("Fans", owner=owner)
    new = admin_member(BOT_USER, can_invite_users=False)
    said = texts(await world.bot_status(group, owner, new, old=ChatMemberMember(user=BOT_USER)))
    assert "Invite users via link" in said[0] and "Delete messages" not in said[0]
    row = await groups.get_group(session, group.id)
    assert row.bot_status == "administrator" and row.bot_rights["can_delete_messages"] is True


async def test_removed_bot_marks_group_inactive_and_says_nothing(world, session) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="en")
    group = world.group("Fans", owner=owner)
    await world.bot_status(group, owner, ChatMemberMember(user=BOT_USER))
    calls = await world.bot_status(group, owner, ChatMemberBanned(user=BOT_USER, until_date=0),
                                   old=ChatMemberMember(user=BOT_USER))
    assert texts(calls) == []
    row = await groups.get_group(session, group.id)
    assert not row.active and row.bot_status == "kicked"


async def test_join_and_leave_are_recorded(world, session) -> None:  # type: ignore[no-untyped-def]
    alice = world.user("Alice")
    group = world.group("Fans")
    await world.member_change(group, alice, ChatMemberLeft(user=alice), ChatMemberMember(user=alice))
    member = await groups.get_member(session, group.id, alice.id)
    assert member.role == "member"
    await world.member_change(group, alice, ChatMemberMember(user=alice), ChatMemberLeft(user=alice))
    session.expire_all()
    member = await groups.get_member(session, group.id, alice.id)
    assert member.role == "left"


async def test_group_upgrade_moves_the_group_to_its_new_id(world, session) -> None:  # type: ignore[no-untyped-def]
    alice = world.user("Alice")
    group = world.group("Fans")
    await world.send(group, alice, "hi")
    new_id = -1009876543210
    await world.send(group, None, "", migrate_to_chat_id=new_id)
    session.expire_all()
    assert await groups.get_group(session, group.id) is None
    moved = await groups.get_group(session, new_id)
    assert moved is not None and moved.chat_type == "supergroup"
    assert (await groups.get_member(session, new_id, alice.id)).user_id == alice.id


async def test_lang_switches_the_group_language(world, session) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="en")
    group = world.group("Fans", owner=owner)
    assert "Usage: /lang" in texts(await world.send(group, owner, "/lang klingon"))[0]
    assert texts(await world.send(group, owner, "/lang zh_Hant")) == ["本群語言已設為繁體中文。"]
    # Now everyone in the group is answered in Traditional Chinese, whatever their own language.
    assert texts(await world.send(group, owner, "/timezone Asia/Taipei")) == [
        "時區已設為 Asia/Taipei。日期與排程將按此時區計算。"
    ]
    row = await groups.get_group(session, group.id)
    assert row.locale == "zh_Hant" and row.timezone == "Asia/Taipei"


async def test_a_group_speaks_one_language_and_a_private_chat_the_persons(world) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="zh-hans")
    member = world.user("Bob", language_code="zh-hant")
    group = world.group("Fans", owner=owner)
    # No /lang choice: DEFAULT_LOCALE (English in the tests' settings), whoever writes.
    assert texts(await world.send(group, member, "/lang en")) == ["Only group admins can do that."]
    await world.send(group, owner, "/lang zh_Hans")
    assert texts(await world.send(group, member, "/lang en")) == ["只有群管理员可以这样做。"]
    assert texts(await world.send(group, owner, "/timezone Nowhere/Town"))[0].startswith("“Nowhere/Town”不是有效的时区")
    private = texts(await world.send(world.private(member), member, "/start"))
    assert private and private[0] != texts(await world.send(world.private(owner), owner, "/start"))[0]


async def test_mydata_exports_and_forgetme_erases_everywhere(world, session) -> None:  # type: ignore[no-untyped-def]
    alice = world.user("Alice", language_code="en")
    group = world.group("Fans")
    await world.send(group, alice, "hello everyone")
    private = world.private(alice)
    calls = await world.send(private, alice, "/mydata")
    document = next(c for c in calls if isinstance(c, SendDocument))
    exported = json.loads(document.document.data)
    assert exported["user_id"] == alice.id
    assert exported["groups"]["memberships"][0]["chat_id"] == group.id

    asked = texts(await world.send(private, alice, "/forgetme"))
    assert "cannot be undone" in asked[0]
    answer = texts(await world.press(private, alice, "forget:1"))
    assert "Your data has been erased." in answer

    # No column of any table still holds Alice's id.
    async with world.sessionmaker() as check:
        for table in metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, BigInteger) or column.name.endswith("user_id"):
                    hits = (await check.execute(select(table).where(column == alice.id))).all()
                    assert hits == [], f"{table.name}.{column.name} still holds the user"
        assert (await check.scalar(select(Group))).chat_id == group.id
        assert (await check.execute(select(Member))).all() == []


async def test_mydata_in_a_group_points_to_private_chat(world) -> None:  # type: ignore[no-untyped-def]
    alice = world.user("Alice", language_code="en")
    group = world.group("Fans")
    assert texts(await world.send(group, alice, "/mydata")) == [
        "For your privacy, send this command to me in a private chat."
    ]


async def test_help_shows_admin_commands_only_to_admins(world) -> None:  # type: ignore[no-untyped-def]
    owner, bob = world.user("Owner", language_code="en"), world.user("Bob", language_code="en")
    group = world.group("Fans", owner=owner)
    assert "/timezone" in texts(await world.send(group, owner, "/help"))[0]
    member_help = texts(await world.send(group, bob, "/help"))[0]
    assert "/timezone" not in member_help and "/help" in member_help
