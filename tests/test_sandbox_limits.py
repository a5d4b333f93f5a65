"""Sandbox rate limits: Telegram's per-group, per-chat and global budgets, with scaled windows."""

from __future__ import annotations

import asyncio

from bot.limits import TelegramLimits
from bot.sandbox import Sandbox
from bot.sandbox.testing import api


async def test_21st_group_message_in_a_minute_window_is_refused():
    limits = TelegramLimits().scaled(0.05)  # second = 0.05 s, minute = 3 s
    async with Sandbox(limits=limits) as sb:
        alice = sb.add_user("Alice")
        g = sb.create_group("G", owner=alice)
        await sb.add_bot(g, by=alice)
        for i in range(20):
            status, body = await api(sb, "sendMessage", chat_id=g.id, text=f"m{i}")
            assert status == 200, body
            await asyncio.sleep(limits.second + 0.005)  # keep under the per-chat per-second budget
        status, body = await api(sb, "sendMessage", chat_id=g.id, text="m20")
        assert status == 429
        assert body["error_code"] == 429 and body["description"].startswith("Too Many Requests: retry after ")
        retry = body["parameters"]["retry_after"]
        assert isinstance(retry, int) and retry >= 1
        assert body["description"] == f"Too Many Requests: retry after {retry}"
        # the refused call had no effect, and was counted
        assert [m.text for m in sb.messages(g)] == [f"m{i}" for i in range(20)]
        assert sb.stats.rate_limited[g.id] == 1 and sb.stats.rate_limited_total == 1
        assert not sb.calls[-1].ok and sb.calls[-1].error_code == 429
        # uncounted methods are never limited
        status, _ = await api(sb, "getChat", chat_id=g.id)
        assert status == 200


async def test_per_chat_limits_private_burst_and_group_strict():
    async with Sandbox(limits=TelegramLimits().scaled(0.05)) as sb:
        alice = sb.add_user("Alice")
        await sb.send(sb.private_chat(alice), alice, "/start")
        codes = [(await api(sb, "sendMessage", chat_id=alice.id, text=str(i)))[0] for i in range(4)]
        assert codes == [200, 200, 200, 429]  # lenient burst of 3 in private chats
        g = sb.create_group("G", owner=alice)
        await sb.add_bot(g, by=alice)
        codes = [(await api(sb, "sendMessage", chat_id=g.id, text=str(i)))[0] for i in range(2)]
        assert codes == [200, 429]
        await asyncio.sleep(0.06)
        assert (await api(sb, "sendMessage", chat_id=g.id, text="later"))[0] == 200


async def test_global_limit_across_chats():
    limits = TelegramLimits(global_per_second=5, chat_per_second=1, group_per_minute=20, second=0.5, minute=10)
    async with Sandbox(limits=limits) as sb:
        users = [sb.add_user(f"U{i}") for i in range(7)]
        for u in users:
            await sb.send(sb.private_chat(u), u, "/start")
        codes = [(await api(sb, "sendMessage", chat_id=u.id, text="hi"))[0] for u in users]
        assert codes == [200] * 5 + [429, 429]
        assert sb.stats.rate_limited["global"] == 2
        status, body = await api(sb, "sendMessage", chat_id=users[5].id, text="hi")
        assert status == 429 and body["parameters"]["retry_after"] == 1
        await asyncio.sleep(0.55)
        assert (await api(sb, "sendMessage", chat_id=users[5].id, text="hi"))[0] == 200
