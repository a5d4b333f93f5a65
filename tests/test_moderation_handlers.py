"""Moderation through the real dispatcher: the rules listener (diversion, links, flood, edits, dry run), identity
cases (admins, anonymous admins, channels, automatic forwards, a demotion inside the cache window), the ladder,
manual commands, /report buttons, /modset, /setlog, /modlog, and the bot telling admins about a missing right."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import (
    AnswerCallbackQuery,
    BanChatMember,
    BanChatSenderChat,
    DeleteMessage,
    GetChatMember,
    RestrictChatMember,
    SendMessage,
    UnbanChatMember,
)
from aiogram.types import CallbackQuery, Chat, ChatMemberLeft, ChatMemberMember, Message, Update, User
from sqlalchemy import func, select

from handlers.common import GROUP_ANONYMOUS_BOT, TELEGRAM_SERVICE_USER
from handlers.moderation import ModButton
from models import groups, moderation, points
from models.moderation import ModAction, ModWarning
from tests.factories import BOT_USER, admin_member, texts

LINK = "great deals at http://spam-shop.example.com/buy"
WECHAT = "便宜代购 加微信 abc12345 私聊"


def of(calls: list[Any], kind: type) -> list[Any]:
    return [call for call in calls if isinstance(call, kind)]


class Room:
    """A group with an owner (admin), an admin, members Bob and Carol, and database readers."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en", username="olga")
        self.admin = world.user("Adam", language_code="en", username="adam")
        self.bob = world.user("Bob", language_code="en", username="bobby")
        self.carol = world.user("Carol", language_code="en", username="carol")
        self.chat = world.group("Fans", owner=self.owner)
        world.admins[self.chat.id].add(self.admin.id)
        self.gid = 0

    async def start(self) -> Room:
        for person in (self.owner, self.admin, self.bob, self.carol):
            await self.world.send(self.chat, person, "hello")
        async with self.world.sessionmaker() as session:
            row = await groups.get_group(session, self.chat.id)
            assert row is not None and row.id is not None
            self.gid = row.id
        return self

    async def say(self, user: User | None, text: str, **fields: Any) -> list[Any]:
        return await self.world.send(self.chat, user, text, **fields)

    async def actions(self) -> list[ModAction]:
        async with self.world.sessionmaker() as session:
            return list(reversed(await moderation.recent_actions(session, self.gid, 100)))

    async def warnings(self, user: User) -> int:
        async with self.world.sessionmaker() as session:
            return await moderation.count_warnings(session, self.gid, user.id)

    def reply_to(self, user: User | None, text: str, message_id: int = 77, **fields: Any) -> Message:
        return Message(message_id=message_id, date=datetime.now(UTC), chat=self.chat, from_user=user, text=text,
                       **fields)


# -- the listener ----------------------------------------------------------------------------------------------


async def test_wechat_diversion_is_deleted_warned_and_evidence_kept(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    calls = await r.say(r.bob, WECHAT)
    assert len(of(calls, DeleteMessage)) == 1
    assert any("Bob: message removed (traffic diversion" in t and "Warning 1" in t for t in texts(calls))
    assert await r.warnings(r.bob) == 1
    rows = await r.actions()
    assert [(a.action, a.rule, a.target_id, a.actor_id) for a in rows] == [
        ("delete", "diversion", r.bob.id, None), ("warn", "diversion", r.bob.id, None)
    ]
    assert rows[0].evidence == WECHAT and rows[0].evidence_until is not None


async def test_clean_message_passes_to_chat_points_without_any_moderation_row(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    calls = await r.say(r.bob, "这个面霜真的很好用，推荐大家试试")
    assert of(calls, DeleteMessage) == [] and await r.actions() == []
    async with world.sessionmaker() as session:
        assert (await points.get_balance(session, r.gid, r.bob.id)).balance > 0


async def test_ladder_mutes_at_three_and_bans_at_five(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    for _n in range(2):
        await r.say(r.bob, LINK)
    third = await r.say(r.bob, LINK)
    mute = of(third, RestrictChatMember)
    assert len(mute) == 1 and mute[0].user_id == r.bob.id and mute[0].permissions.can_send_messages is False
    assert 3500 < (mute[0].until_date - datetime.now(UTC)).total_seconds() <= 3600
    assert any("3 warnings: muted for 1h" in t for t in texts(third))
    await r.say(r.bob, LINK)
    fifth = await r.say(r.bob, LINK)
    assert [call.user_id for call in of(fifth, BanChatMember)] == [r.bob.id]
    assert any("5 warnings: banned" in t for t in texts(fifth))


async def test_admins_and_anonymous_admins_are_exempt(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    assert of(await r.say(r.admin, LINK), DeleteMessage) == []
    anonymous = User(id=GROUP_ANONYMOUS_BOT, is_bot=True, first_name="Group", language_code="en")
    assert of(await r.say(anonymous, LINK, sender_chat=r.chat), DeleteMessage) == []
    # An anonymous admin may use the commands too.
    reply = r.reply_to(r.bob, "spam")
    said = texts(await r.say(anonymous, "/warn be nice", sender_chat=r.chat, reply_to_message=reply))
    assert said and "Bob is warned (be nice). Warnings: 1." in said[0]
    assert await r.warnings(r.bob) == 1


async def test_message_sent_as_a_channel_is_deleted_and_the_channel_banned(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    channel = Chat(id=-1009999000111, type="channel", title="Spam Channel")
    bot_user = User(id=136817688, is_bot=True, first_name="Channel")
    calls = await r.say(bot_user, LINK, sender_chat=channel)
    assert len(of(calls, DeleteMessage)) == 1
    assert [call.sender_chat_id for call in of(calls, BanChatSenderChat)] == [channel.id]
    assert [a.action for a in await r.actions()] == ["delete", "ban_sender_chat"]


async def test_linked_channel_automatic_forward_is_never_deleted(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    channel = Chat(id=-1009999000222, type="channel", title="Our Brand Channel")
    service = User(id=TELEGRAM_SERVICE_USER, is_bot=False, first_name="Telegram")
    calls = await r.say(service, "New drop! " + LINK + " " + WECHAT, sender_chat=channel, is_automatic_forward=True)
    assert of(calls, DeleteMessage) == [] and await r.actions() == []


async def test_clean_message_edited_into_a_link_is_deleted_once(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    original = await r.say(r.bob, "nice product")
    assert of(original, DeleteMessage) == []
    message_id = world.message_ids.__next__() - 1
    edited = Message(message_id=message_id, date=datetime.now(UTC), edit_date=1, chat=r.chat, from_user=r.bob,
                     text="nice product " + LINK)
    calls = await world.feed(Update(update_id=next(world.update_ids), edited_message=edited))
    assert [call.message_id for call in of(calls, DeleteMessage)] == [message_id]
    again = await world.feed(Update(update_id=next(world.update_ids), edited_message=edited))
    assert await r.warnings(r.bob) == 1 and not any("Warning 2" in t for t in texts(again))


async def test_flooding_and_repeating_are_caught(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    dave = world.user("Dave", language_code="en")
    deleted = [len(of(await r.say(dave, f"message number {n}"), DeleteMessage)) for n in range(6)]
    assert deleted == [0, 0, 0, 0, 0, 1]
    assert (await r.actions())[0].rule == "flood"
    repeated = [len(of(await r.say(r.bob, "买买买"), DeleteMessage)) for _n in range(4)]
    assert repeated == [0, 0, 0, 1]
    assert (await r.actions())[-1].rule == "repeat"


async def test_dry_run_records_without_acting(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    assert "dry_run is now on" in texts(await r.say(r.owner, "/modset dry_run on"))[0]
    calls = await r.say(r.bob, WECHAT)
    assert of(calls, DeleteMessage) == [] and await r.warnings(r.bob) == 0
    rows = await r.actions()
    assert [(a.action, a.dry_run) for a in rows] == [("delete", True), ("warn", True)]


async def test_rules_cache_follows_modset_and_presets(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    assert of(await r.say(r.bob, LINK), DeleteMessage)
    assert "links is now off" in texts(await r.say(r.owner, "/modset links off"))[0]
    assert of(await r.say(r.bob, LINK), DeleteMessage) == []
    await r.say(r.owner, "/modset links on")
    await r.say(r.owner, "/modset domains add example.com")
    assert of(await r.say(r.bob, LINK), DeleteMessage) == []  # spam-shop.example.com is under example.com
    await r.say(r.owner, "/modset banned add 代购")
    assert of(await r.say(r.carol, "有人代购吗"), DeleteMessage)
    said = texts(await r.say(r.owner, "/modset preset strict"))[0]
    assert "Preset strict applied" in said
    shown = texts(await r.say(r.owner, "/modset"))[0]
    assert "flood_messages</code> = 5" in shown and "example.com" in shown and "2:mute1d,3:ban" in shown
    bad = texts(await r.say(r.owner, "/modset flood_messages lots"))[0]
    assert "Cannot set flood_messages" in bad and "Usage: /modset" in bad
    assert texts(await r.say(r.bob, "/modset links off")) == ["Only group admins and moderators can do that."]


async def test_locks_delete_without_warning(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    await r.say(r.owner, "/modset forwards on")
    from aiogram.types import MessageOriginUser

    origin = MessageOriginUser(date=datetime.now(UTC), sender_user=r.carol)
    calls = await r.say(r.bob, "look at this", forward_origin=origin)
    assert len(of(calls, DeleteMessage)) == 1 and await r.warnings(r.bob) == 0


# -- roles -----------------------------------------------------------------------------------------------------


async def test_demotion_update_inside_the_cache_window_removes_power_at_once(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    reply = r.reply_to(r.bob, "spam")
    assert "Bob is warned" in texts(await r.say(r.admin, "/warn", reply_to_message=reply))[0]
    # Telegram's list still says admin (the cache would trust it for minutes); the chat_member update wins.
    await world.member_change(r.chat, r.admin, admin_member(r.admin), ChatMemberMember(user=r.admin))
    said = texts(await r.say(r.admin, "/warn", reply_to_message=reply))
    assert said == ["Only group admins and moderators can do that."]
    assert of(await r.say(r.admin, LINK), DeleteMessage)  # and is no longer exempt


async def test_admin_list_is_cached_between_checks(world) -> None:  # type: ignore[no-untyped-def]
    from aiogram.methods import GetChatAdministrators

    r = await Room(world).start()
    reply = r.reply_to(r.bob, "spam")
    before = len(of(world.session.calls, GetChatAdministrators))
    for _n in range(3):
        await r.say(r.admin, "/warns", reply_to_message=reply)
    assert len(of(world.session.calls, GetChatAdministrators)) - before <= 1


async def test_owner_appoints_bot_moderators_who_may_moderate(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    assert texts(await r.say(r.admin, "/mod add @carol")) == [
        "Only the group's owner can appoint or dismiss bot moderators."]
    assert "Carol is now a bot moderator" in texts(await r.say(r.owner, "/mod add @carol"))[0]
    assert "Carol" in texts(await r.say(r.owner, "/mod list"))[0]
    assert of(await r.say(r.carol, LINK), DeleteMessage) == []  # moderators are exempt
    said = texts(await r.say(r.carol, "/mute @bobby 10m calm down"))[0]
    assert "Bob is muted for 10m" in said and "calm down" in said
    assert "no longer a bot moderator" in texts(await r.say(r.owner, f"/mod remove {r.carol.id}"))[0]
    assert texts(await r.say(r.carol, "/mute @bobby")) == ["Only group admins and moderators can do that."]
    assert "Usage: /mod add" in texts(await r.say(r.owner, "/mod"))[0]


async def test_bot_moderator_posting_spam_leaves_no_warning_and_no_record(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    await r.say(r.owner, "/mod add @carol")
    calls = await r.say(r.carol, WECHAT)
    assert of(calls, DeleteMessage) == [] and texts(calls) == []
    assert await r.warnings(r.carol) == 0
    assert [a.action for a in await r.actions()] == ["mod_add"]


# -- commands --------------------------------------------------------------------------------------------------


async def test_mute_ban_kick_unban_by_reply_username_and_id(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    reply = r.reply_to(r.bob, "rude words")
    calls = await r.say(r.admin, "/mute 2h be polite", reply_to_message=reply)
    mute = of(calls, RestrictChatMember)[0]
    assert mute.user_id == r.bob.id and 7100 < (mute.until_date - datetime.now(UTC)).total_seconds() <= 7200
    assert "Bob is muted for 2h" in texts(calls)[0] and "be polite" in texts(calls)[0]
    unmute = of(await r.say(r.admin, "/unmute @bobby"), RestrictChatMember)[0]
    assert unmute.permissions.can_send_messages is True
    ban = of(await r.say(r.admin, f"/ban {r.bob.id} 1d scam"), BanChatMember)[0]
    assert ban.user_id == r.bob.id and ban.until_date is not None
    assert of(await r.say(r.admin, f"/unban {r.bob.id}"), UnbanChatMember)[0].only_if_banned is True
    kick = await r.say(r.admin, "/kick @carol")
    assert of(kick, BanChatMember) and of(kick, UnbanChatMember)
    assert [a.action for a in await r.actions()] == ["mute", "unmute", "ban", "unban", "kick"]
    assert (await r.actions())[0].evidence == "rude words"


async def test_bad_arguments_get_the_usage_and_admins_are_protected(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    said = texts(await r.say(r.admin, "/mute @bobby 10x"))[0]
    assert "is not a duration" in said and "Usage: /mute" in said
    assert "Usage: /ban" in texts(await r.say(r.admin, "/ban"))[0]
    assert "Usage: /kick" in texts(await r.say(r.admin, "/kick @nobody_here"))[0]
    assert texts(await r.say(r.admin, "/ban @olga")) == ["I won't do that to an admin, to myself or to you."]
    assert texts(await r.say(r.bob, "/ban @carol")) == ["Only group admins and moderators can do that."]


async def test_warns_unwarn_and_expiry_shown(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    await r.say(r.admin, "/warn @bobby spam")
    await r.say(r.admin, "/warn @bobby spam again")
    own = texts(await r.say(r.bob, "/warns"))[0]
    assert "Bob: 2 active warnings (each counts for 30 days)" in own and "At 3: muted for 1h" in own
    assert "Warnings left: 1" in texts(await r.say(r.admin, "/unwarn @bobby"))[0]
    assert texts(await r.say(r.bob, "/warns @carol")) == ["Only group admins and moderators can do that."]
    assert "Carol has no active warnings" in texts(await r.say(r.admin, "/unwarn @carol"))[0]


async def test_report_alerts_admins_and_only_moderators_may_press(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    await world.send(world.private(r.owner), r.owner, "/start")
    reported = r.reply_to(r.bob, "buy followers cheap", message_id=88)
    calls = await r.say(r.carol, "/report", reply_to_message=reported)
    alert = [c for c in of(calls, SendMessage) if c.chat_id == r.owner.id]
    assert len(alert) == 1 and "buy followers cheap" in alert[0].text and alert[0].reply_markup is not None
    assert "Thanks, the admins have been told." in texts(calls)
    data = ModButton(action="ban", chat_id=r.chat.id, user_id=r.bob.id, message_id=88).pack()

    async def press(user: User) -> list[Any]:
        message = Message(message_id=5, date=datetime.now(UTC), chat=world.private(user), from_user=BOT_USER,
                          text="🚩 Report")
        query = CallbackQuery(id=str(next(world.update_ids)), from_user=user, chat_instance="x", message=message,
                              data=data)
        return await world.feed(Update(update_id=next(world.update_ids), callback_query=query))

    refused = await press(r.carol)
    assert of(refused, BanChatMember) == []
    assert [c.text for c in of(refused, AnswerCallbackQuery)] == ["Only group admins and moderators can do that."]
    done = await press(r.owner)
    assert [c.user_id for c in of(done, BanChatMember)] == [r.bob.id]
    assert [c.message_id for c in of(done, DeleteMessage)] == [88]


async def test_rules_setrules_setlog_and_modlog(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    assert "no written rules" in texts(await r.say(r.bob, "/rules"))[0]
    await r.say(r.owner, "/setrules 1. Be kind\n2. No ads")
    assert "No ads" in texts(await r.say(r.bob, "/rules"))[0]
    log_chat = world.group("Mod Log", owner=r.owner)
    assert "Usage: /setlog" in texts(await r.say(r.owner, "/setlog somewhere"))[0]
    calls = await r.say(r.owner, f"/setlog {log_chat.id}")
    assert any(c.chat_id == log_chat.id for c in of(calls, SendMessage))
    await r.say(r.bob, WECHAT)
    report = await r.say(r.carol, "/report", reply_to_message=r.reply_to(r.bob, "spam"))
    assert any(c.chat_id == log_chat.id and "Report in Fans" in c.text for c in of(report, SendMessage))
    shown = texts(await r.say(r.admin, "/modlog"))[0]
    assert "Recent moderation" in shown and "bot → Bob: deleted (traffic diversion" in shown and "加微信" in shown


async def test_missing_right_is_told_to_admins_once(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    original = world.session.make_request

    async def refusing(bot, method, timeout=None):  # type: ignore[no-untyped-def]  # noqa: ASYNC109
        if isinstance(method, DeleteMessage):
            world.session.calls.append(method)
            raise TelegramBadRequest(method=method, message="Bad Request: message can't be deleted")
        if isinstance(method, GetChatMember) and method.user_id == BOT_USER.id:
            world.session.calls.append(method)
            return admin_member(BOT_USER, can_delete_messages=False)
        return await original(bot, method, timeout)

    world.session.make_request = refusing
    first = await r.say(r.bob, WECHAT)
    assert sum("Delete messages" in t for t in texts(first)) == 1
    second = await r.say(r.carol, WECHAT)
    assert not any("Delete messages" in t for t in texts(second))


async def test_leaving_member_update_still_passes_to_membership(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    await world.member_change(r.chat, r.bob, ChatMemberMember(user=r.bob), ChatMemberLeft(user=r.bob))
    async with world.sessionmaker() as session:
        member = await groups.get_member(session, r.chat.id, r.bob.id)
        assert member is not None and member.role == "left"
        count = await session.scalar(select(func.count()).select_from(ModWarning))
        assert count == 0


async def test_odd_command_input_always_gets_one_answer_never_a_traceback(world) -> None:  # type: ignore[no-untyped-def]
    r = await Room(world).start()
    odd = ["/mute @bobby 10x", "/mute @bobby 99999999d", "/ban @ 1h", "/warn 12", "/kick \u202e\u200b@bobby",
           "/mute " + "长" * 3000, "/ban tg://user?id=abc", "/unmute @@@", "/modset ladder 3:mute1h,3:ban",
           "/modset banned add re:(a+)+$", "/setlog -", "/mod add @nobody_at_all", "/warns @x"]
    for text in odd:
        said = texts(await r.say(r.owner, text))
        assert len(said) == 1, (text, said)
        assert "Sorry, something went wrong" not in said[0], text
