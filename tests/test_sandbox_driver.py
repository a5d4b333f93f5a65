"""Sandbox driver: HTTP /sandbox routes, transcript rendering, wait_for/mark, stats, lifecycle."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.sandbox import Sandbox, SandboxError
from bot.sandbox.testing import ok


async def _post(sb: Sandbox, path: str, body: dict) -> dict:
    async with aiohttp.ClientSession() as http, http.post(f"{sb.base_url}/sandbox/{path}", json=body) as resp:
        data = await resp.json()
        assert resp.status == 200, data
        return data["result"]


async def _get(sb: Sandbox, path: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{sb.base_url}/sandbox/{path}") as resp:
        data = await resp.json()
        assert resp.status == 200, data
        return data["result"]


async def test_http_driver_routes():
    async with Sandbox() as sb:
        alice = await _post(sb, "users", {"first_name": "Alice", "username": "alice", "language_code": "zh-hans"})
        bob = await _post(sb, "users", {"first_name": "Bob"})
        g = await _post(sb, "groups", {"title": "Brand Fans", "owner_id": alice["id"], "add_bot": True})
        assert g["type"] == "supergroup"
        await _post(sb, "promote", {"chat_id": g["id"], "who": "bot", "by_id": alice["id"]})
        joined = await _post(sb, "join", {"chat_id": g["id"], "user_id": bob["id"]})
        assert joined["new_chat_members"][0]["id"] == bob["id"]
        sent = await _post(sb, "send", {"chat_id": g["id"], "user_id": alice["id"], "text": "/checkin"})
        assert sent["entities"][0]["type"] == "bot_command"
        await ok(
            sb,
            "sendMessage",
            chat_id=g["id"],
            text="Hi",
            reply_markup={"inline_keyboard": [[{"text": "签到", "callback_data": "ci"}]]},
        )
        bot_msgs = await _get(sb, f"messages?chat_id={g['id']}")
        assert [m["text"] for m in bot_msgs] == ["Hi"]

        async def answer_soon():
            call_updates = await ok(sb, "getUpdates", timeout=2, allowed_updates=["callback_query"])
            while not any("callback_query" in u for u in call_updates):
                call_updates = await ok(sb, "getUpdates", timeout=2, offset=call_updates[-1]["update_id"] + 1)
            cq = next(u["callback_query"] for u in call_updates if "callback_query" in u)
            await ok(sb, "answerCallbackQuery", callback_query_id=cq["id"], text="ok!")

        helper = asyncio.create_task(answer_soon())
        ans = await _post(
            sb,
            "press",
            {"chat_id": g["id"], "user_id": bob["id"], "message_id": bot_msgs[0]["message_id"], "callback_data": "ci"},
        )
        await helper
        assert ans == {"text": "ok!", "show_alert": False, "answered": True, "url": None}
        await _post(sb, "leave", {"chat_id": g["id"], "user_id": bob["id"]})
        transcript = await _get(sb, "transcript")
        assert "[Brand Fans] Alice: /checkin" in transcript["lines"]
        assert "[Brand Fans] 🤖 qunbot: Hi  [签到]" in transcript["lines"]
        assert "[Brand Fans] Bob pressed [签到] -> toast to Bob: ok!" in transcript["lines"]
        assert "[Brand Fans] Bob left" in transcript["lines"]
        calls = await _get(sb, "calls")
        assert [c["method"] for c in calls if c["method"] == "sendMessage"] == ["sendMessage"]
        stats = await _get(sb, "stats")
        assert stats["calls"]["sendMessage"] == 1
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{sb.base_url}/sandbox/send", json={"chat_id": g["id"], "user_id": 1}) as resp:
                assert resp.status == 400 and (await resp.json())["ok"] is False


async def test_python_driver_contract_details():
    sb = Sandbox(bot_username="qunbot")
    await sb.start(host="127.0.0.1", port=0)
    try:
        assert sb.base_url.startswith("http://127.0.0.1:") and sb.token == "123456:SANDBOX-TOKEN"
        alice = sb.add_user("Alice", username="alice", language_code="zh-hans", is_bot=False)
        bob = sb.add_user("Bob")
        p = sb.private_chat(alice)
        assert p.id == alice.id and p.type == "private"
        g = sb.create_group("Brand Fans", owner=alice, supergroup=True)
        assert g.title == "Brand Fans" and sb.member_status(g, alice).status == "creator"
        with pytest.raises(SandboxError):
            await sb.send(g, bob, "I am not in this group")
        await sb.add_bot(g, by=alice, admin=True)
        m = await sb.send(g, alice, "签到")
        assert m.text == "签到" and m.from_user is alice and m.chat is g and m.message_id == 2

        mark = sb.mark()
        task = asyncio.create_task(sb.wait_for(lambda c: c.method == "sendMessage", timeout=2))
        await asyncio.sleep(0.05)
        await ok(sb, "sendMessage", chat_id=g.id, text="✅ Alice checked in")
        call = await task
        assert call.params["text"] == "✅ Alice checked in" and call.result["message_id"] == 3
        again = await sb.wait_for("sendMessage", since=mark, timeout=1)
        assert again is call
        with pytest.raises(TimeoutError):
            await sb.wait_for("deleteMessage", timeout=0.1)

        await ok(sb, "getUpdates", offset=-1)
        await ok(sb, "getUpdates", offset=sb.world.next_update_id)
        await sb.settle(timeout=2, quiet=0.05)
        await sb.send(g, alice, "pending")
        with pytest.raises(TimeoutError):
            await sb.settle(timeout=0.2, quiet=0.05)  # nobody is polling

        await ok(sb, "deleteMessage", chat_id=g.id, message_id=3)
        assert sb.messages(g)[0].deleted and sb.last_message(g) is None
        lines = [e.render() for e in sb.transcript]
        assert "[Brand Fans] Alice: 签到" in lines
        assert "[Brand Fans] 🤖 qunbot: ✅ Alice checked in" in lines
        assert "[Brand Fans] 🤖 deleted #3 (bot's message)" in lines
        assert sb.stats.calls["sendMessage"] == 1
    finally:
        await sb.stop()
        await sb.stop()  # idempotent
