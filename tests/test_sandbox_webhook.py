"""Sandbox webhook mode: delivery with the secret header, redelivery after failures, getWebhookInfo."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.sandbox import Sandbox
from bot.sandbox.testing import api, ok, validate_result, validate_update


async def _receiver(statuses: list[int]):
    """A tiny webhook endpoint answering with the given statuses in turn (then 200)."""
    received: list[tuple[dict, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json(), dict(request.headers)))
        status = statuses.pop(0) if statuses else 200
        return web.Response(status=status, text="")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/hook", received


async def test_webhook_delivers_with_secret_and_redelivers_after_500():
    runner, url, received = await _receiver([500])
    try:
        async with Sandbox() as sb:
            assert await ok(sb, "setWebhook", url=url, secret_token="s3cret") is True
            alice = sb.add_user("Alice")
            await sb.send(sb.private_chat(alice), alice, "/start")
            await sb.settle(timeout=5, quiet=0.05)
            assert len(received) == 2  # first answered 500, then redelivered
            (first, h1), (second, h2) = received
            assert first == second and first["message"]["text"] == "/start"
            assert h2["X-Telegram-Bot-Api-Secret-Token"] == "s3cret"
            validate_update(second, sb)
            info = await ok(sb, "getWebhookInfo")
            validate_result("getWebhookInfo", info, sb)
            assert info["url"] == url and info["pending_update_count"] == 0
            assert "500" in info["last_error_message"] and info["last_error_date"] > 0
            assert sb.stats.webhook_failures == 1 and sb.stats.updates_delivered == 1
            status, body = await api(sb, "getUpdates")
            assert status == 409 and body["description"].startswith("Conflict: can't use getUpdates method")
            assert await ok(sb, "deleteWebhook", drop_pending_updates=True) is True
            assert (await ok(sb, "getWebhookInfo"))["url"] == ""
    finally:
        await runner.cleanup()


async def test_webhook_connection_error_keeps_update_pending():
    async with Sandbox() as sb:
        sb.server.webhook_backoff = (0.02, 0.05)
        await ok(sb, "setWebhook", url="http://127.0.0.1:9/nothing-listens-here")
        alice = sb.add_user("Alice")
        await sb.send(sb.private_chat(alice), alice, "hello")
        for _ in range(100):
            if sb.stats.webhook_failures >= 2:
                break
            await asyncio.sleep(0.02)
        info = await ok(sb, "getWebhookInfo")
        assert info["pending_update_count"] == 1 and info["last_error_message"]
        # switching back to polling hands the pending update to getUpdates
        await ok(sb, "deleteWebhook")
        updates = await ok(sb, "getUpdates")
        assert updates[0]["message"]["text"] == "hello"


async def test_webhook_reply_with_method_is_executed():
    async def hook(request: web.Request) -> web.Response:
        update = await request.json()
        chat_id = update["message"]["chat"]["id"]
        return web.json_response({"method": "sendMessage", "chat_id": chat_id, "text": "pong"})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with Sandbox() as sb:
            await ok(sb, "setWebhook", url=f"http://127.0.0.1:{port}/hook")
            alice = sb.add_user("Alice")
            await sb.send(sb.private_chat(alice), alice, "ping")
            call = await sb.wait_for("sendMessage", timeout=5)
            assert call.ok and sb.last_message(sb.private_chat(alice)).text == "pong"
    finally:
        await runner.cleanup()
