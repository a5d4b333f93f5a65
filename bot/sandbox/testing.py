"""Helpers for tests that use the sandbox: raw API calls and dual validation (aiogram + python-telegram-bot)."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.sandbox.driver import Sandbox


async def api(sb: Sandbox, method: str, _http: str = "json", **params: Any) -> tuple[int, dict[str, Any]]:
    """Call a Bot API method on the sandbox as a plain HTTP client: (HTTP status, JSON body)."""
    url = f"{sb.base_url}/bot{sb.token}/{method}"
    async with aiohttp.ClientSession() as http:
        if _http == "json":
            request = http.post(url, json=params)
        elif _http == "form":
            import json

            data = {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in params.items()}
            request = http.post(url, data=data)
        else:
            request = http.get(url, params={k: str(v) for k, v in params.items()})
        async with request as resp:
            return resp.status, await resp.json()


async def ok(sb: Sandbox, method: str, **params: Any) -> Any:
    status, body = await api(sb, method, **params)
    assert status == 200 and body["ok"], body
    return body["result"]


def ptb_bot(sb: Sandbox) -> Any:
    import telegram

    return telegram.Bot(sb.token)


def validate_update(data: dict[str, Any], sb: Sandbox) -> tuple[Any, Any]:
    """Parse an update with aiogram and PTB; returns both objects (raises if either rejects it)."""
    import telegram
    from aiogram.types import Update

    a = Update.model_validate(data)
    p = telegram.Update.de_json(data, ptb_bot(sb))
    assert a.update_id == p.update_id == data["update_id"]
    return a, p


_PTB_TYPES = {
    "getMe": "User",
    "sendMessage": "Message",
    "sendPhoto": "Message",
    "sendDocument": "Message",
    "sendPoll": "Message",
    "editMessageText": "Message",
    "editMessageCaption": "Message",
    "editMessageReplyMarkup": "Message",
    "getChat": "ChatFullInfo",
    "getChatMember": "ChatMember",
    "createChatInviteLink": "ChatInviteLink",
    "revokeChatInviteLink": "ChatInviteLink",
    "editChatInviteLink": "ChatInviteLink",
    "stopPoll": "Poll",
    "getWebhookInfo": "WebhookInfo",
    "getFile": "File",
}
_PTB_LISTS = {"getChatAdministrators": "ChatMember", "getUpdates": "Update", "getMyCommands": "BotCommand"}


def validate_result(method: str, result: Any, sb: Sandbox) -> tuple[Any, Any]:
    """Validate a method result under aiogram's declared return type and PTB's matching class."""
    import aiogram.methods
    import telegram
    from pydantic import TypeAdapter

    cls = getattr(aiogram.methods, method[0].upper() + method[1:])
    a = TypeAdapter(cls.__returning__).validate_python(result)
    bot = ptb_bot(sb)
    if method in _PTB_TYPES:
        p = getattr(telegram, _PTB_TYPES[method]).de_json(result, bot)
        assert p is not None
    elif method in _PTB_LISTS:
        p = getattr(telegram, _PTB_LISTS[method]).de_list(result, bot)
        assert len(p) == len(result)
    else:
        p = result
        assert isinstance(result, bool | int)
    return a, p
