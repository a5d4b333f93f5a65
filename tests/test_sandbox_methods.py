"""Sandbox method results validate under aiogram and PTB; errors surface as aiogram's exception classes."""

from __future__ import annotations

import asyncio

import pytest
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
)
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, CallbackQuery, ChatPermissions, InlineKeyboardButton, Message
from aiogram.types import InlineKeyboardMarkup as Kb

from bot.limits import TelegramLimits
from bot.sandbox import Sandbox
from bot.sandbox.testing import api, ok, validate_result


@pytest.fixture
async def sb():
    async with Sandbox(limits=TelegramLimits().scaled(0.05)) as s:
        yield s


@pytest.fixture
async def bot(sb: Sandbox):
    b = Bot(sb.token, session=AiohttpSession(api=TelegramAPIServer.from_base(sb.base_url)))
    yield b
    await b.session.close()


async def test_method_results_validate_under_both_libraries(sb: Sandbox):
    alice, bob = sb.add_user("Alice", username="alice"), sb.add_user("Bob")
    g = sb.create_group("Brand Fans", owner=alice)
    await sb.add_bot(g, by=alice)
    await sb.promote(g, "bot", by=alice)
    await sb.join(g, bob)
    await sb.send(sb.private_chat(alice), alice, "/start")

    async def check(method: str, **params):
        result = await ok(sb, method, **params)
        validate_result(method, result, sb)
        return result

    me = await check("getMe")
    assert me["is_bot"] and me["username"] == "qunbot" and me["can_read_all_group_messages"] is False
    kb = {"inline_keyboard": [[{"text": "签到", "callback_data": "ci"}, {"text": "Shop", "url": "https://t.me/x"}]]}
    msg = await check(
        "sendMessage", chat_id=g.id, text="<b>Hello</b> & <i>welcome</i>", parse_mode="HTML", reply_markup=kb
    )
    assert msg["text"] == "Hello & welcome"
    assert [e["type"] for e in msg["entities"]] == ["bold", "italic"]
    reply = await check("sendMessage", chat_id=g.id, text="reply", reply_parameters={"message_id": msg["message_id"]})
    assert reply["reply_to_message"]["message_id"] == msg["message_id"]
    old_style = await check("sendMessage", chat_id=g.id, text="r2", reply_to_message_id=msg["message_id"])
    assert old_style["reply_to_message"]["message_id"] == msg["message_id"]
    photo = await check("sendPhoto", chat_id=g.id, photo="https://example.com/cat.jpg", caption="cat")
    assert photo["photo"][-1]["width"] > 0 and photo["caption"] == "cat"
    again = await check("sendPhoto", chat_id=g.id, photo=photo["photo"][-1]["file_id"])
    assert again["photo"][-1]["file_id"] == photo["photo"][-1]["file_id"]
    edited = await check("editMessageText", chat_id=g.id, message_id=msg["message_id"], text="Edited", reply_markup=kb)
    assert edited["edit_date"] and edited["text"] == "Edited"
    await check("editMessageReplyMarkup", chat_id=g.id, message_id=msg["message_id"])
    assert sb.messages(g)[0].reply_markup is None and sb.messages(g)[0].edited
    assert await check("deleteMessage", chat_id=g.id, message_id=reply["message_id"]) is True
    assert sb.messages(g)[1].deleted
    assert await check("pinChatMessage", chat_id=g.id, message_id=msg["message_id"]) is True
    full = await check("getChat", chat_id=g.id)
    assert full["pinned_message"]["message_id"] == msg["message_id"] and full["type"] == "supergroup"
    private_full = await check("getChat", chat_id=alice.id)
    assert private_full["first_name"] == "Alice"
    assert await check("unpinChatMessage", chat_id=g.id) is True

    owner = await check("getChatMember", chat_id=g.id, user_id=alice.id)
    assert owner["status"] == "creator"
    admin = await check("getChatMember", chat_id=g.id, user_id=sb.bot.id)
    assert admin["status"] == "administrator" and admin["can_restrict_members"]
    assert (
        await check(
            "restrictChatMember", chat_id=g.id, user_id=bob.id, permissions={"can_send_messages": False}, until_date=0
        )
        is True
    )
    restricted = await check("getChatMember", chat_id=g.id, user_id=bob.id)
    assert restricted["status"] == "restricted" and restricted["can_send_messages"] is False
    admins = await check("getChatAdministrators", chat_id=g.id)
    assert {a["user"]["id"] for a in admins} == {alice.id, sb.bot.id}
    assert await check("getChatMemberCount", chat_id=g.id) == 3
    assert await check("banChatMember", chat_id=g.id, user_id=bob.id, revoke_messages=True) is True
    kicked = await check("getChatMember", chat_id=g.id, user_id=bob.id)
    assert kicked["status"] == "kicked"
    assert await check("unbanChatMember", chat_id=g.id, user_id=bob.id, only_if_banned=True) is True
    assert (await check("getChatMember", chat_id=g.id, user_id=bob.id))["status"] == "left"
    channel = sb.create_channel("Spam channel")
    assert await check("banChatSenderChat", chat_id=g.id, sender_chat_id=channel.id) is True

    link = await check("createChatInviteLink", chat_id=g.id, name="vip", member_limit=5, expire_date=2_000_000_000)
    assert link["invite_link"].startswith("https://t.me/+") and link["member_limit"] == 5
    revoked = await check("revokeChatInviteLink", chat_id=g.id, invite_link=link["invite_link"])
    assert revoked["is_revoked"] is True

    poll = await check("sendPoll", chat_id=g.id, question="Pick", options=["a", "b", "c"])
    stopped = await check("stopPoll", chat_id=g.id, message_id=poll["message_id"])
    assert stopped["is_closed"] is True and len(stopped["options"]) == 3

    commands = [{"command": "checkin", "description": "签到"}, {"command": "top", "description": "排行"}]
    assert (
        await check("setMyCommands", commands=commands, scope={"type": "all_group_chats"}, language_code="zh") is True
    )
    assert await check("getMyCommands", scope={"type": "all_group_chats"}, language_code="zh") == commands
    assert await check("getMyCommands") == []
    assert await check("deleteMyCommands", scope={"type": "all_group_chats"}, language_code="zh") is True
    assert await check("getMyCommands", scope={"type": "all_group_chats"}, language_code="zh") == []

    info = await check("getWebhookInfo")
    assert info["url"] == "" and info["pending_update_count"] >= 0
    await sb.send(sb.private_chat(alice), alice, "hi")
    updates = await check("getUpdates")
    assert updates
    assert await check("leaveChat", chat_id=g.id) is True
    assert sb.member_status(g, "bot").status == "left"


async def test_send_document_keeps_bytes_and_name(sb: Sandbox, bot: Bot):
    alice = sb.add_user("Alice")
    await sb.send(sb.private_chat(alice), alice, "/report")
    data = b"name,points\nAlice,10\n"
    msg = await bot.send_document(alice.id, BufferedInputFile(data, filename="report.csv"), caption="Weekly")
    assert msg.document.file_name == "report.csv" and msg.caption == "Weekly"
    validate_result("sendDocument", msg.model_dump(mode="json", exclude_none=True, by_alias=True), sb)
    stored = sb.last_message(sb.private_chat(alice))
    assert stored.document.name == "report.csv" and stored.document.data == data
    assert stored.document.mime_type == "text/csv"
    file = await bot.get_file(msg.document.file_id)
    downloaded = await bot.download_file(file.file_path)
    assert downloaded.read() == data
    # sendPhoto with an uploaded file
    photo = await bot.send_photo(alice.id, BufferedInputFile(b"\xff\xd8fakejpeg", filename="p.jpg"))
    assert photo.photo[-1].file_size == len(b"\xff\xd8fakejpeg")


async def test_aiogram_error_classes(sb: Sandbox, bot: Bot):
    alice, bob, carol = sb.add_user("Alice"), sb.add_user("Bob"), sb.add_user("Carol")
    g = sb.create_group("G", owner=alice)
    await sb.add_bot(g, by=alice)  # plain member: no rights
    await sb.join(g, bob)

    with pytest.raises(TelegramBadRequest, match="not enough rights to restrict/unrestrict chat member"):
        await bot.restrict_chat_member(g.id, bob.id, ChatPermissions(can_send_messages=False))
    with pytest.raises(TelegramBadRequest, match="not enough rights to restrict/unrestrict chat member"):
        await bot.ban_chat_member(g.id, bob.id)
    with pytest.raises(TelegramBadRequest, match="not enough rights to manage chat invite link"):
        await bot.create_chat_invite_link(g.id)
    with pytest.raises(TelegramBadRequest, match="not enough rights to manage pinned messages"):
        await bot.pin_chat_message(g.id, 1)
    user_msg = await sb.send(g, alice, "/x")
    with pytest.raises(TelegramBadRequest, match="message can't be deleted"):
        await bot.delete_message(g.id, user_msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("nope", chat_id=g.id, message_id=user_msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("nope", chat_id=g.id, message_id=999)
    sent = await bot.send_message(g.id, "same")
    await asyncio.sleep(0.06)  # groups: one counted call per (scaled) second
    with pytest.raises(TelegramBadRequest, match="message is not modified: specified new message content"):
        await bot.edit_message_text("same", chat_id=g.id, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(-1009999999999, "hi")
    with pytest.raises(TelegramBadRequest, match="query is too old and response timeout expired or query ID"):
        await bot.answer_callback_query("12345")

    # private chats
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation with a user"):
        await bot.send_message(carol.id, "hi")
    await sb.send(sb.private_chat(carol), carol, "/start")
    assert (await bot.send_message(carol.id, "welcome")).text == "welcome"
    await sb.block_bot(carol)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(carol.id, "hi")

    # kicked from a supergroup / a basic group, left
    await sb.kick_bot(g, by=alice)
    with pytest.raises(TelegramForbiddenError, match="bot was kicked from the supergroup chat"):
        await bot.send_message(g.id, "hi")
    basic = sb.create_group("Basic", owner=alice, supergroup=False)
    await sb.add_bot(basic, by=alice)
    await sb.kick_bot(basic, by=alice)
    with pytest.raises(TelegramForbiddenError, match="bot was kicked from the group chat"):
        await bot.send_message(basic.id, "hi")
    never = sb.create_group("Never", owner=alice)
    with pytest.raises(TelegramForbiddenError, match="bot is not a member of the supergroup chat"):
        await bot.send_message(never.id, "hi")

    # migration
    old = sb.create_group("Old", owner=alice, supergroup=False)
    await sb.add_bot(old, by=alice)
    new = await sb.upgrade_to_supergroup(old)
    with pytest.raises(TelegramMigrateToChat) as exc:
        await bot.send_message(old.id, "hi")
    assert exc.value.migrate_to_chat_id == new.id
    assert (await bot.send_message(new.id, "hi again")).chat.id == new.id

    # webhook conflict
    await bot.set_webhook("http://127.0.0.1:9/hook")
    with pytest.raises(TelegramConflictError, match="can't use getUpdates method while webhook is active"):
        await bot.get_updates()
    await bot.delete_webhook()


async def test_retry_after_surfaces_in_aiogram(sb: Sandbox, bot: Bot):
    alice = sb.add_user("Alice")
    g = sb.create_group("G", owner=alice)
    await sb.add_bot(g, by=alice)
    await bot.send_message(g.id, "one")
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(g.id, "two")  # group chat: 1 message per `second` window
    assert exc.value.retry_after == 1
    assert [m.text for m in sb.messages(g)] == ["one"]


async def test_callback_answer_twice_is_rejected(sb: Sandbox, bot: Bot):
    alice = sb.add_user("Alice")
    p = sb.private_chat(alice)
    await sb.send(p, alice, "/start")
    kb = Kb(inline_keyboard=[[InlineKeyboardButton(text="Go", callback_data="go")]])
    await bot.send_message(alice.id, "menu", reply_markup=kb)
    press = asyncio.create_task(sb.press(alice, sb.last_message(p), "go", timeout=2))
    updates = await bot.get_updates(timeout=2, allowed_updates=["callback_query", "message"])
    query = next(u.callback_query for u in updates if u.callback_query)
    assert await bot.answer_callback_query(query.id, text="ok") is True
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)
    answer = await press
    assert answer.answered and answer.text == "ok" and not answer.show_alert
    assert sb.transcript[-1].render() == "[private Alice] Alice pressed [Go] -> toast to Alice: ok"


async def test_unmodified_aiogram_dispatcher_runs_against_sandbox(sb: Sandbox, bot: Bot):
    alice = sb.add_user("Alice", username="alice")
    g = sb.create_group("Brand Fans", owner=alice)
    await sb.add_bot(g, by=alice)
    dp = Dispatcher()

    @dp.message(Command("checkin"))
    async def checkin(message: Message) -> None:
        kb = Kb(
            inline_keyboard=[
                [
                    InlineKeyboardButton(text="签到", callback_data="ci"),
                    InlineKeyboardButton(text="排行", callback_data="top"),
                ]
            ]
        )
        await message.answer(f"✅ {message.from_user.first_name} checked in", reply_markup=kb)

    @dp.callback_query(F.data == "ci")
    async def pressed(query: CallbackQuery) -> None:
        await query.answer("Already checked in today", show_alert=True)
        await query.message.edit_text("✅ checked in (2)", reply_markup=query.message.reply_markup)

    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        mark = sb.mark()
        await sb.send(g, alice, "/checkin")
        call = await sb.wait_for(lambda c: c.method == "sendMessage", since=mark, timeout=5)
        assert call.ok and call.params["chat_id"] == g.id
        await sb.settle(timeout=5, quiet=0.2)
        msg = sb.last_message(g)
        assert sb.buttons(msg) == [("签到", "ci"), ("排行", "top")]
        await asyncio.sleep(0.05)  # the group's 1-per-second window (scaled) before the edit
        answer = await sb.press(alice, msg, "ci", timeout=5)
        assert answer.answered and answer.show_alert and answer.text == "Already checked in today"
        await sb.settle(timeout=5, quiet=0.2)
    finally:
        await dp.stop_polling()
        await polling
    lines = [e.render() for e in sb.transcript]
    assert "[Brand Fans] Alice: /checkin" in lines
    assert "[Brand Fans] 🤖 qunbot: ✅ Alice checked in  [签到] [排行]" in lines
    assert "[Brand Fans] Alice pressed [签到] -> alert to Alice: Already checked in today" in lines
    assert f"[Brand Fans] 🤖 edited #{msg.message_id}: ✅ checked in (2)  [签到] [排行]" in lines
    assert sb.stats.updates_delivered >= 3


async def test_json_error_body_shape(sb: Sandbox):
    status, body = await api(sb, "sendMessage", chat_id=42, text="x")
    assert status == 400
    assert body == {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}


async def test_python_telegram_bot_client_against_sandbox(sb: Sandbox):
    import telegram
    from telegram.error import Forbidden

    alice = sb.add_user("Alice")
    await sb.send(sb.private_chat(alice), alice, "/start")
    ptb = telegram.Bot(sb.token, base_url=f"{sb.base_url}/bot", base_file_url=f"{sb.base_url}/file/bot")
    async with ptb:
        assert ptb.username == "qunbot"
        msg = await ptb.send_message(
            alice.id,
            "hi <b>there</b>",
            parse_mode="HTML",
            reply_markup=telegram.InlineKeyboardMarkup([[telegram.InlineKeyboardButton("A", callback_data="a")]]),
        )
        assert msg.text == "hi there" and msg.reply_markup.inline_keyboard[0][0].callback_data == "a"
        doc = await ptb.send_document(alice.id, document=b"hello", filename="h.txt")
        assert doc.document.file_name == "h.txt"
        assert sb.last_message(sb.private_chat(alice)).document.data == b"hello"
        updates = await ptb.get_updates()
        assert updates[0].message.text == "/start"
        bob = sb.add_user("Bob")
        with pytest.raises(Forbidden):
            await ptb.send_message(bob.id, "hi")
