"""Sandbox updates: every kind validates under aiogram and PTB; getUpdates semantics; privacy mode."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from bot.limits import TelegramLimits
from bot.sandbox import Sandbox
from bot.sandbox.testing import api, ok, validate_update

ALL_UPDATES = [
    "message",
    "edited_message",
    "callback_query",
    "chat_member",
    "my_chat_member",
    "poll",
    "poll_answer",
    "chat_join_request",
]


@pytest.fixture
async def sb():
    async with Sandbox(limits=TelegramLimits().scaled(0.05)) as s:
        yield s


def kind_of(update: dict) -> str:
    return next(k for k in update if k != "update_id")


async def fetch(sb: Sandbox, **kw) -> list[dict]:
    """Fetch and confirm everything queued."""
    updates = await ok(sb, "getUpdates", timeout=0, **kw)
    if updates:
        await ok(sb, "getUpdates", offset=updates[-1]["update_id"] + 1, timeout=0)
    for u in updates:
        validate_update(u, sb)
    return updates


async def test_every_update_kind_validates_under_aiogram_and_ptb(sb: Sandbox):
    await ok(sb, "getUpdates", allowed_updates=ALL_UPDATES, timeout=0)
    alice = sb.add_user("Alice", username="alice", language_code="zh-hans")
    bob = sb.add_user("Bob", username="bobby")
    g = sb.create_group("Brand Fans", owner=alice)
    channel = sb.create_channel("Brand News", username="brandnews")

    await sb.add_bot(g, by=alice)
    ups = await fetch(sb)
    assert [kind_of(u) for u in ups] == ["my_chat_member", "message"]
    mcm = ups[0]["my_chat_member"]
    assert mcm["old_chat_member"]["status"] == "left" and mcm["new_chat_member"]["status"] == "member"
    assert ups[1]["message"]["new_chat_members"][0]["id"] == sb.bot.id

    await sb.promote(g, "bot", by=alice)
    (u,) = await fetch(sb)
    a, p = validate_update(u, sb)
    assert a.my_chat_member.new_chat_member.status == "administrator"
    assert a.my_chat_member.new_chat_member.can_restrict_members is True
    assert p.my_chat_member.new_chat_member.can_delete_messages is True

    # text, command, photo, forwards, channel posts, anonymous admin
    m1 = await sb.send(g, alice, "签到 #daily https://shop.example.com @bobby")
    await sb.send(g, alice, "/checkin@qunbot now")
    await sb.send_photo(g, alice, caption="my haul")
    await sb.forward(g, alice, "deal!", from_user=bob)
    await sb.forward(g, alice, "news", from_chat=channel)
    await sb.forward(g, alice, "secret")
    await sb.send_as_channel(g, channel, "promo")
    await sb.send_as_channel(g, g, "admin notice")
    await sb.edit(m1, "签到 again")
    ups = await fetch(sb)
    kinds = [kind_of(u) for u in ups]
    assert kinds == ["message"] * 8 + ["edited_message"]
    text = ups[0]["message"]
    assert {e["type"] for e in text["entities"]} == {"hashtag", "url", "mention"}
    cmd = ups[1]["message"]
    assert cmd["entities"][0] == {"type": "bot_command", "offset": 0, "length": len("/checkin@qunbot")}
    a, _ = validate_update(ups[1], sb)
    assert a.message.text.startswith("/checkin")
    photo = ups[2]["message"]
    assert photo["caption"] == "my haul" and len(photo["photo"]) == 2
    assert ups[3]["message"]["forward_origin"]["type"] == "user"
    assert ups[4]["message"]["forward_origin"]["type"] == "channel"
    assert ups[5]["message"]["forward_origin"]["type"] == "hidden_user"
    assert ups[6]["message"]["sender_chat"]["id"] == channel.id
    assert ups[6]["message"]["from"]["username"] == "Channel_Bot"
    assert ups[7]["message"]["sender_chat"]["id"] == g.id
    assert ups[7]["message"]["from"]["username"] == "GroupAnonymousBot"
    edited = ups[8]["edited_message"]
    assert edited["text"] == "签到 again" and edited["edit_date"] >= edited["date"]

    # callback query
    sent = await ok(
        sb,
        "sendMessage",
        chat_id=g.id,
        text="Check in",
        reply_markup={"inline_keyboard": [[{"text": "签到", "callback_data": "checkin"}]]},
    )
    bot_msg = sb.last_message(g)
    assert bot_msg.message_id == sent["message_id"]
    press = asyncio.create_task(sb.press(alice, bot_msg, "checkin", timeout=3))
    (u,) = await ok(sb, "getUpdates", timeout=2)
    a, p = validate_update(u, sb)
    cq = u["callback_query"]
    assert cq["data"] == "checkin" and cq["from"]["id"] == alice.id
    assert cq["message"]["message_id"] == bot_msg.message_id and cq["chat_instance"] == g.chat_instance
    await ok(sb, "answerCallbackQuery", callback_query_id=cq["id"], text="Done", show_alert=True)
    answer = await press
    assert answer.answered and answer.text == "Done" and answer.show_alert
    await fetch(sb)

    # chat_member via invite link (bot is admin, chat_member allowed) + service message
    link = await ok(sb, "createChatInviteLink", chat_id=g.id, name="spring")
    await sb.join(g, bob, invite_link=link["invite_link"])
    ups = await fetch(sb)
    assert [kind_of(u) for u in ups] == ["chat_member", "message"]
    cm = ups[0]["chat_member"]
    assert cm["invite_link"]["name"] == "spring" and cm["invite_link"]["creator"]["id"] == sb.bot.id
    assert cm["old_chat_member"]["status"] == "left" and cm["new_chat_member"]["status"] == "member"
    assert ups[1]["message"]["new_chat_members"][0]["id"] == bob.id

    # leave
    await sb.leave(g, bob)
    ups = await fetch(sb)
    assert [kind_of(u) for u in ups] == ["chat_member", "message"]
    assert ups[0]["chat_member"]["new_chat_member"]["status"] == "left"
    assert ups[1]["message"]["left_chat_member"]["id"] == bob.id

    # join request
    req_link = await ok(sb, "createChatInviteLink", chat_id=g.id, creates_join_request=True)
    assert await sb.join(g, bob, invite_link=req_link["invite_link"]) is None
    (u,) = await fetch(sb)
    a, p = validate_update(u, sb)
    assert u["chat_join_request"]["user_chat_id"] == bob.id
    assert p.chat_join_request.invite_link.creates_join_request is True
    assert await ok(sb, "approveChatJoinRequest", chat_id=g.id, user_id=bob.id) is True
    assert sb.member_status(g, bob).status == "member"
    await fetch(sb)

    # poll answer
    await ok(sb, "sendPoll", chat_id=g.id, question="Best?", options=["A", {"text": "B"}], is_anonymous=False)
    poll_msg = sb.last_message(g)
    await sb.answer_poll(alice, poll_msg, [1])
    ups = await fetch(sb)
    assert [kind_of(u) for u in ups] == ["poll_answer", "poll"]
    assert ups[0]["poll_answer"]["option_ids"] == [1] and ups[0]["poll_answer"]["user"]["id"] == alice.id
    assert ups[1]["poll"]["options"][1]["voter_count"] == 1

    # kick: my_chat_member -> kicked
    await sb.kick_bot(g, by=alice)
    (u,) = await fetch(sb)
    assert u["my_chat_member"]["new_chat_member"]["status"] == "kicked"

    # private chat block / unblock
    await sb.send(sb.private_chat(bob), bob, "/start")
    await sb.block_bot(bob)
    ups = await fetch(sb)
    assert [kind_of(u) for u in ups] == ["message", "my_chat_member"]
    assert ups[1]["my_chat_member"]["chat"]["type"] == "private"
    assert ups[1]["my_chat_member"]["new_chat_member"]["status"] == "kicked"


async def test_upgrade_to_supergroup_service_messages(sb: Sandbox):
    alice = sb.add_user("Alice")
    g = sb.create_group("Old Group", owner=alice, supergroup=False)
    assert g.type == "group" and -(10**10) < g.id < 0
    await sb.add_bot(g, by=alice)
    await fetch(sb)
    new = await sb.upgrade_to_supergroup(g)
    assert new.type == "supergroup" and str(new.id).startswith("-100")
    ups = await fetch(sb)
    assert ups[0]["message"]["migrate_to_chat_id"] == new.id and ups[0]["message"]["chat"]["id"] == g.id
    assert ups[1]["message"]["migrate_from_chat_id"] == g.id and ups[1]["message"]["chat"]["id"] == new.id
    assert sb.member_status(new, "bot").status == "member"
    status, body = await api(sb, "sendMessage", chat_id=g.id, text="hi")
    assert status == 400 and body["parameters"] == {"migrate_to_chat_id": new.id}
    assert body["description"] == "Bad Request: group chat was upgraded to a supergroup chat"


async def test_get_updates_offset_limit_and_negative_offset(sb: Sandbox):
    alice = sb.add_user("Alice")
    p = sb.private_chat(alice)
    for i in range(5):
        await sb.send(p, alice, f"m{i}")
    first = await ok(sb, "getUpdates", limit=2)
    assert [u["message"]["text"] for u in first] == ["m0", "m1"]
    again = await ok(sb, "getUpdates", limit=2)
    assert again == first  # not confirmed yet
    nxt = await ok(sb, "getUpdates", offset=first[-1]["update_id"] + 1, limit=100)
    assert [u["message"]["text"] for u in nxt] == ["m2", "m3", "m4"]
    last = await ok(sb, "getUpdates", offset=-1)
    assert [u["message"]["text"] for u in last] == ["m4"]
    assert await ok(sb, "getUpdates", offset=last[0]["update_id"] + 1) == []
    # limit is clamped to 1..100
    await sb.send(p, alice, "x")
    assert len(await ok(sb, "getUpdates", limit=0)) == 1


async def test_long_poll_returns_as_soon_as_update_arrives(sb: Sandbox):
    alice = sb.add_user("Alice")
    p = sb.private_chat(alice)
    started = time.monotonic()
    task = asyncio.create_task(api(sb, "getUpdates", timeout=5))
    await asyncio.sleep(0.1)
    assert not task.done()
    await sb.send(p, alice, "wake up")
    status, body = await task
    assert status == 200 and body["result"][0]["message"]["text"] == "wake up"
    assert time.monotonic() - started < 2
    # an empty long poll waits for its timeout
    await ok(sb, "getUpdates", offset=body["result"][0]["update_id"] + 1)
    t0 = time.monotonic()
    assert await ok(sb, "getUpdates", timeout=1) == []
    assert time.monotonic() - t0 >= 0.9


async def test_allowed_updates_default_excludes_chat_member_and_is_remembered(sb: Sandbox):
    alice, bob, carol = sb.add_user("Alice"), sb.add_user("Bob"), sb.add_user("Carol")
    g = sb.create_group("G", owner=alice)
    await sb.add_bot(g, by=alice, admin=True)
    await sb.join(g, bob)
    kinds = [kind_of(u) for u in await fetch(sb)]
    assert "chat_member" not in kinds and kinds.count("message") == 2
    assert sb.stats.updates_filtered["chat_member"] == 1
    await fetch(sb, allowed_updates=["message", "chat_member"])
    await sb.leave(g, bob)
    kinds = [kind_of(u) for u in await fetch(sb)]  # no allowed_updates now: the list is remembered
    assert kinds == ["chat_member", "message"]
    await fetch(sb, allowed_updates=["chat_member"])
    await sb.join(g, carol)
    assert [kind_of(u) for u in await fetch(sb)] == ["chat_member"]
    await fetch(sb, allowed_updates=[])  # empty list = back to the default
    await sb.leave(g, carol)
    assert [kind_of(u) for u in await fetch(sb)] == ["message"]


async def test_privacy_mode_filters_group_messages(sb: Sandbox):
    alice = sb.add_user("Alice")
    g = sb.create_group("G", owner=alice)
    await sb.add_bot(g, by=alice)
    await fetch(sb)
    await sb.send(g, alice, "hello everyone")
    await sb.send(g, alice, "/start")
    await sb.send(g, alice, "/start@otherbot")
    await sb.send(g, alice, "/help@QunBot")
    await sb.send(g, alice, "@qunbot are you there?")
    await ok(sb, "sendMessage", chat_id=g.id, text="I am the bot")
    await sb.send(g, alice, "replying", reply_to=sb.last_message(g))
    got = [u["message"]["text"] for u in await fetch(sb)]
    assert got == ["/start", "/help@QunBot", "replying"]
    assert sb.stats.updates_filtered["privacy"] == 3
    await sb.promote(g, "bot", by=alice)
    await sb.send(g, alice, "now I see all")
    ups = await fetch(sb)
    assert ups[-1]["message"]["text"] == "now I see all"


async def test_privacy_mode_off_sees_everything():
    async with Sandbox(privacy_mode=False) as sb:
        alice = sb.add_user("Alice")
        g = sb.create_group("G", owner=alice)
        await sb.add_bot(g, by=alice)
        await sb.send(g, alice, "plain chatter")
        ups = await fetch(sb)
        assert ups[-1]["message"]["text"] == "plain chatter"
        me = await ok(sb, "getMe")
        assert me["can_read_all_group_messages"] is True


async def test_transport_variants_and_auth(sb: Sandbox):
    alice = sb.add_user("Alice")
    await sb.send(sb.private_chat(alice), alice, "/start")
    status, body = await api(sb, "sendMessage", _http="form", chat_id=alice.id, text="form")
    assert status == 200 and body["result"]["text"] == "form"
    status, body = await api(sb, "getMe", _http="get")
    assert status == 200 and body["result"]["username"] == "qunbot"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sb.base_url}/bot999:other/getMe") as resp:
            assert resp.status == 401
            assert await resp.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    status, body = await api(sb, "noSuchMethod")
    assert status == 404 and body["description"] == "Not Found"
