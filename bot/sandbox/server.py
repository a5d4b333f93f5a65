"""A loopback Telegram Bot API server over a `World`: `{base}/bot{token}/{method}` and `{base}/file/bot{token}/…`.

Fidelity notes — what this emulation relies on, and where it is a deliberate simplification
----------------------------------------------------------------------------------------------
Looked up (search over the Bot API docs, aiogram/teloxide/PTB sources and GitHub issue threads):

* Response envelope `{"ok": true, "result": …}` / `{"ok": false, "error_code", "description", "parameters"}`;
  aiogram (client/session/base.py `check_response`) maps `parameters.retry_after` -> TelegramRetryAfter,
  `parameters.migrate_to_chat_id` -> TelegramMigrateToChat, then 400/401/403/404/409 by HTTP status, so
  the HTTP status always equals `error_code` here.
* Error descriptions, as catalogued by teloxide's ApiError enum and seen in issue reports
  (aiogram#445, teloxide-core#83, Telegram.Bot#250/#662, bostrot/telegram-support-bot#71):
  "Forbidden: bot was blocked by the user", "Forbidden: bot was kicked from the group chat" /
  "…supergroup chat", "Forbidden: bot is not a member of the group chat" / "…supergroup chat",
  "Forbidden: bot can't initiate conversation with a user", "Bad Request: chat not found",
  "Bad Request: group chat was upgraded to a supergroup chat" (+ migrate_to_chat_id),
  "Bad Request: message is not modified: specified new message content and reply markup are exactly the
  same as a current content and reply markup of the message", "Bad Request: message can't be edited",
  "Bad Request: message to edit not found", "Bad Request: message can't be deleted",
  "Bad Request: message to delete not found", "Bad Request: message text is empty",
  "Bad Request: message is too long", "Bad Request: BUTTON_DATA_INVALID",
  "Bad Request: not enough rights to restrict/unrestrict chat member",
  "Bad Request: not enough rights to manage pinned messages in the chat",
  "Bad Request: method is available only for supergroups" (restrictChatMember in a basic group),
  "Bad Request: poll has already been closed", "Bad Request: message with poll to stop not found",
  "Bad Request: query is too old and response timeout expired or query ID is invalid",
  "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook
  first", "Too Many Requests: retry after N" (+ retry_after), "Unauthorized" (401), "Not Found" (404).
* Guessed wording (no authoritative source found quickly): "Bad Request: not enough rights to manage chat
  invite link" (createChatInviteLink without can_invite_users), "Bad Request: user is an administrator of
  the chat" / "Bad Request: can't remove chat owner" (restrict/ban an admin/owner), "Bad Request: user not
  found", "Bad Request: INVITE_HASH_INVALID" (revoking an unknown link), "Bad Request: there is no text in
  the message to edit".
* Rights per method: deleteMessage of others' messages needs can_delete_messages (the bot may always delete
  its own messages and anything in private chats); restrictChatMember / banChatMember / unbanChatMember /
  banChatSenderChat need can_restrict_members; createChatInviteLink / revokeChatInviteLink /
  approve/declineChatJoinRequest need can_invite_users; pin/unpinChatMessage in groups need
  can_pin_messages. The creator has every right.
* Required fields of result/update types were taken from aiogram 3.31's and PTB 22.8's models (ChatFullInfo
  needs accent_color_id, max_reaction_count, accepted_gift_types; Poll needs allows_revoting/members_only and
  PollOption.persistent_id; PollAnswer needs option_persistent_ids; ChatMemberAdministrator needs
  can_send_welcome_messages, ChatMemberRestricted needs can_edit_tag, …).
* allowed_updates: remembered across getUpdates/setWebhook calls; an empty list or never set means
  "everything except chat_member, message_reaction, message_reaction_count". Filtering happens when the
  update is created (Telegram: changing the list does not affect updates already created).
  chat_member updates additionally require the bot to be an administrator of the chat.
* getUpdates: offset confirms (drops) every update with a smaller id; a negative offset keeps only the
  last -offset updates; limit is clamped to 1..100; long polling returns as soon as something is queued; a
  getUpdates while another is still waiting ends the waiting one with 409 Conflict (two bot instances).
* Privacy mode (core.telegram.org/bots/features#privacy-mode): a non-admin bot with privacy mode on gets,
  in groups, only: commands addressed to it (`/cmd@thisbot`) and commands without a bot name (Telegram
  delivers those to the bot that last posted in the group — the sandbox has exactly one bot, so it always
  qualifies); replies to its own messages; service messages; plus non-message updates as usual. Messages
  merely mentioning @thisbot are NOT delivered (BotFather's blurb says they are, the features page does not
  list them; we follow the features page). Admin bots and bots with privacy off see every message.
* Rate limits (bot/limits.py, Telegram Bot FAQ): counted methods only; sliding windows. Global:
  `global_per_second` per `second`. Per chat: `chat_per_second` per `second` for groups; private chats get a
  lenient burst of `private_burst` (default 3) per `second`, since Telegram's per-chat limit is soft. Groups:
  `group_per_minute` per `minute`. retry_after = ceil(real wait), at least 1 — with scaled-down windows the
  advertised wait is therefore longer than needed. Refused calls have no effect and are counted in stats.
  Only successful counted calls consume budget. Calls are timed on arrival, so the windows forgive jitter:
  per-second windows are 20% shorter and the minute window 2% shorter than nominal (this matters with
  scaled-down windows, where a few milliseconds of HTTP latency would otherwise turn a correctly paced bot's
  sends into 429s).
* Simplifications: parse_mode HTML is parsed into entities (unsupported tags -> "can't parse entities");
  Markdown/MarkdownV2 text is stored verbatim without entities; inline_message_id edits are refused;
  message_thread_id is ignored; photos get fake dimensions; URLs given as files are not fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import mimetypes
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web

from bot.limits import COUNTED_METHODS, TelegramLimits
from bot.sandbox.world import (
    ADMIN_RIGHT_FIELDS,
    PERMISSION_FIELDS,
    Membership,
    SbChat,
    SbDocument,
    SbInviteLink,
    SbMessage,
    SbPoll,
    World,
    keyboard_buttons,
    now,
    utf16_len,
)

JSON_FIELDS = {
    "reply_markup",
    "entities",
    "caption_entities",
    "allowed_updates",
    "permissions",
    "reply_parameters",
    "options",
    "commands",
    "scope",
    "link_preview_options",
    "media",
    "question_entities",
    "explanation_entities",
}
INT_FIELDS = {
    "chat_id",
    "message_id",
    "user_id",
    "until_date",
    "offset",
    "limit",
    "timeout",
    "reply_to_message_id",
    "message_thread_id",
    "expire_date",
    "member_limit",
    "cache_time",
    "from_chat_id",
    "max_connections",
    "open_period",
    "close_date",
    "correct_option_id",
    "sender_chat_id",
}
BOOL_FIELDS = {
    "show_alert",
    "disable_notification",
    "only_if_banned",
    "revoke_messages",
    "drop_pending_updates",
    "is_anonymous",
    "allows_multiple_answers",
    "creates_join_request",
    "protect_content",
    "disable_web_page_preview",
    "use_independent_chat_permissions",
    "has_spoiler",
    "disable_content_type_detection",
    "allow_sending_without_reply",
    "is_closed",
}
MAX_TEXT = 4096
MAX_CAPTION = 1024


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def bad(text: str, **parameters: Any) -> ApiError:
    return ApiError(400, f"Bad Request: {text}", parameters or None)


def forbidden(text: str) -> ApiError:
    return ApiError(403, f"Forbidden: {text}")


@dataclass
class SbCall:
    """One Bot API call the bot made."""

    method: str
    params: dict[str, Any]
    ok: bool
    result: Any = None
    error_code: int | None = None
    description: str | None = None
    at: float = field(default_factory=time.time)
    chat_id: int | None = None
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "method": self.method,
            "params": self.params,
            "ok": self.ok,
            "result": self.result,
            "error_code": self.error_code,
            "description": self.description,
            "at": self.at,
        }


@dataclass
class UploadedFile:
    data: bytes
    filename: str | None
    content_type: str | None


def _decode_value(name: str, value: Any) -> Any:
    if isinstance(value, str):
        if name in JSON_FIELDS:
            try:
                return json.loads(value)
            except ValueError:
                return value
        if name in INT_FIELDS:
            try:
                return int(value)
            except ValueError:
                return value
        if name in BOOL_FIELDS:
            return value.strip().lower() in ("true", "1", "yes")
    return value


class Params:
    def __init__(self, data: dict[str, Any], files: dict[str, UploadedFile]):
        self.data = {k: _decode_value(k, v) for k, v in data.items()}
        self.files = files

    def get(self, name: str, default: Any = None) -> Any:
        value = self.data.get(name)
        return default if value is None else value

    def int(self, name: str, default: int | None = None, required: bool = False) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise bad(f"{name} is empty" if name != "message_id" else "message identifier is not specified")
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad(f"invalid {name} specified") from None

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.data.get(name)
        if value is None:
            return default
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.data.get(name)
        return default if value is None else str(value)

    def json(self, name: str) -> Any:
        value = self.data.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad(f"can't parse {name} JSON object") from None
        return value

    def input_file(self, name: str) -> UploadedFile | str | None:
        """An uploaded file (direct part or attach://), or a string (file_id / URL)."""
        if name in self.files:
            return self.files[name]
        value = self.data.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            return self.files.get(value[len("attach://") :])
        return value

    def recorded(self) -> dict[str, Any]:
        out = dict(self.data)
        for key, f in self.files.items():
            out[key] = {"filename": f.filename, "size": len(f.data), "content_type": f.content_type}
        return out


# ---------------------------------------------------------------------------------------------- HTML


class _HtmlEntities(HTMLParser):
    TAGS = {
        "b": "bold",
        "strong": "bold",
        "i": "italic",
        "em": "italic",
        "u": "underline",
        "ins": "underline",
        "s": "strikethrough",
        "strike": "strikethrough",
        "del": "strikethrough",
        "code": "code",
        "pre": "pre",
        "a": "text_link",
        "tg-spoiler": "spoiler",
        "span": "spoiler",
        "blockquote": "blockquote",
        "tg-emoji": "custom_emoji",
    }

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.source = source
        self.out: list[str] = []
        self.length = 0
        self.stack: list[tuple[str, int, dict[str, str | None]]] = []
        self.entities: list[dict[str, Any]] = []

    def _offset(self) -> int:
        line, col = self.getpos()
        lines = self.source.split("\n")
        return len("\n".join(lines[: line - 1]).encode()) + (1 if line > 1 else 0) + len(lines[line - 1][:col].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.TAGS:
            raise bad(f'can\'t parse entities: Unsupported start tag "{tag}" at byte offset {self._offset()}')
        self.stack.append((tag, self.length, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            raise bad(f'can\'t parse entities: Unmatched end tag at byte offset {self._offset()}, expected "{tag}"')
        _, start, attrs = self.stack.pop()
        if self.length == start:
            return
        kind = self.TAGS[tag]
        entity: dict[str, Any] = {"type": kind, "offset": start, "length": self.length - start}
        if kind == "text_link":
            href = attrs.get("href") or ""
            if not href:
                return
            entity["url"] = href
        elif kind == "pre" and attrs.get("language"):
            entity["language"] = attrs["language"]
        elif kind == "custom_emoji":
            entity["custom_emoji_id"] = attrs.get("emoji-id") or "0"
        elif kind == "blockquote" and "expandable" in attrs:
            entity["type"] = "expandable_blockquote"
        self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.out.append(data)
        self.length += utf16_len(data)


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    parser = _HtmlEntities(text)
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise bad(f"can't parse entities: Can't find end tag corresponding to start tag \"{parser.stack[-1][0]}\"")
    entities = sorted(parser.entities, key=lambda e: (e["offset"], -e["length"]))
    return "".join(parser.out), entities


# ---------------------------------------------------------------------------------------------- rate limits


class RateLimiter:
    """Sliding-window enforcement of TelegramLimits for counted methods."""

    # Calls are timed when they arrive, not when the bot's pacer released them; forgive that much jitter
    # (a fraction of each window, so it scales with TelegramLimits.scaled()).
    SECOND_TOLERANCE = 0.2
    MINUTE_TOLERANCE = 0.02

    def __init__(self, limits: TelegramLimits, private_burst: int = 3, group_burst: int | None = None):
        self.limits = limits
        self.private_burst = max(private_burst, limits.chat_per_second)
        self.group_burst = group_burst if group_burst is not None else limits.chat_per_second
        self.second = limits.second * (1 - self.SECOND_TOLERANCE)
        self.minute = limits.minute * (1 - self.MINUTE_TOLERANCE)
        self.glob: deque[float] = deque()
        self.per_chat: dict[int, deque[float]] = defaultdict(deque)
        self.per_group_minute: dict[int, deque[float]] = defaultdict(deque)

    @staticmethod
    def _prune(dq: deque[float], horizon: float) -> None:
        while dq and dq[0] <= horizon:
            dq.popleft()

    def wait_needed(self, chat_id: int | None, t: float) -> tuple[float, str]:
        lim = self.limits
        waits: list[tuple[float, str]] = []
        self._prune(self.glob, t - self.second)
        if len(self.glob) >= lim.global_per_second:
            waits.append((self.glob[-lim.global_per_second] + self.second - t, "global"))
        if chat_id is not None:
            per = self.private_burst if chat_id > 0 else self.group_burst
            dq = self.per_chat[chat_id]
            self._prune(dq, t - self.second)
            if per > 0 and len(dq) >= per:
                waits.append((dq[-per] + self.second - t, "chat"))
            if chat_id < 0:
                gm = self.per_group_minute[chat_id]
                self._prune(gm, t - self.minute)
                if len(gm) >= lim.group_per_minute:
                    waits.append((gm[-lim.group_per_minute] + self.minute - t, "group"))
        if not waits:
            return 0.0, ""
        return max(waits)

    def record(self, chat_id: int | None, t: float) -> None:
        self.glob.append(t)
        if chat_id is not None:
            self.per_chat[chat_id].append(t)
            if chat_id < 0:
                self.per_group_minute[chat_id].append(t)


# ---------------------------------------------------------------------------------------------- callback queries


@dataclass
class PendingQuery:
    id: str
    user_id: int
    message: SbMessage | None
    data: str | None
    answered: bool = False
    answer: dict[str, Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    entry: Any = None


# ---------------------------------------------------------------------------------------------- server


def _update_queue(update: dict[str, Any]) -> object:
    """The chat an update belongs to (its delivery queue), else its sender."""
    for key, value in update.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        chat = value.get("chat") or (value.get("message") or {}).get("chat")
        if isinstance(chat, dict) and "id" in chat:
            return chat["id"]
        sender = value.get("from") or value.get("user")
        if isinstance(sender, dict) and "id" in sender:
            return ("user", sender["id"])
    return ("update", update.get("update_id"))


BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class BotApiServer:
    def __init__(
        self,
        world: World,
        limits: TelegramLimits | None = None,
        private_burst: int = 3,
        group_burst: int | None = None,
    ):
        self.world = world
        self.limits = limits or TelegramLimits()
        self.limiter = RateLimiter(self.limits, private_burst, group_burst)
        self.calls: list[SbCall] = []
        self.call_event = asyncio.Event()
        self.last_call_at = 0.0
        self.queries: dict[str, PendingQuery] = {}
        self.closing = False
        self.polls = 0  # getUpdates calls so far; a newer one ends an older one still waiting (409)
        self.polls_waiting = 0
        # webhook
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.webhook_max_connections = 40
        self.webhook_last_error_date: int | None = None
        self.webhook_last_error_message: str | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self.webhook_backoff = (0.05, 1.0)
        self._webhook_failures = 0  # deliveries failed in a row (the backoff grows with them)
        self.on_update_hooks: list[Callable[[], None]] = []
        # Faults for recovery tests (driver: Sandbox.fail_with_502 / hang / refuse_connections): "502" answers
        # every Bot API call with nginx's HTML page; "hang" holds calls until `recovered` is set, then runs
        # them (as a Telegram that was slow, not one that lost them).
        self.fault: str | None = None
        self.recovered = asyncio.Event()
        self.app = web.Application(client_max_size=60 * 1024 * 1024)
        self.app.router.add_route("*", "/bot{token}/{method}", self.handle)
        self.app.router.add_get("/file/bot{token}/{path:.*}", self.handle_file)
        self.methods: dict[str, Callable[[Params], Any]] = {
            name[2:]: getattr(self, name) for name in dir(self) if name.startswith("m_")
        }

    # ------------------------------------------------------------------ plumbing
    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.world.token:
            return self._error_response(ApiError(401, "Unauthorized"))
        if self.fault == "502":
            await request.read()  # a gateway reads the request, then answers (no reset mid-upload)
            self.world.stats.errors["502"] += 1
            return web.Response(status=502, text=BAD_GATEWAY_PAGE, content_type="text/html")
        method_name = request.match_info["method"]
        canonical = {k.lower(): k for k in self.methods}.get(method_name.lower())
        if canonical is None:
            return self._error_response(ApiError(404, "Not Found"))
        try:
            params = await self._read_params(request)
        except ApiError as err:
            return self._error_response(err)
        if self.fault == "hang":  # received, then held: the call is carried out when Telegram wakes
            await self.recovered.wait()
        if canonical == "getUpdates":
            # long polling must not hold up anything else; it is not recorded as a bot "call" for quietness
            try:
                result = await self.get_updates(params)
            except ApiError as err:
                self._record(canonical, params, None, err)
                return self._error_response(err)
            return web.json_response({"ok": True, "result": result})
        status, body = self.execute(canonical, params)
        return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def _read_params(self, request: web.Request) -> Params:
        data: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if request.method == "POST" and request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise bad("can't parse JSON request body") from None
                if isinstance(body, dict):
                    data.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        content = value.file.read()
                        ct = value.content_type
                        if not ct or ct == "application/octet-stream":
                            ct = mimetypes.guess_type(value.filename or "")[0] or ct
                        files[key] = UploadedFile(content, value.filename, ct)
                    else:
                        data[key] = value
        return Params(data, files)

    @staticmethod
    def _error_response(err: ApiError) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": err.code, "description": err.description}
        if err.parameters:
            body["parameters"] = err.parameters
        return web.json_response(body, status=err.code)

    def _rate_key(self, params: Params) -> int | None:
        raw = params.get("chat_id")
        if raw is None:
            return None
        chat = self.world.find_chat(raw)
        if chat is not None:
            return chat.id
        try:
            return int(raw)
        except (TypeError, ValueError):
            return None

    def execute(self, method: str, params: Params) -> tuple[int, dict[str, Any]]:
        """Run one Bot API method synchronously: returns (HTTP status, response body)."""
        counted = method in COUNTED_METHODS
        chat_key = self._rate_key(params) if counted else None
        t = time.monotonic()
        try:
            if counted:
                wait, scope = self.limiter.wait_needed(chat_key, t)
                if wait > 0:
                    retry = max(1, math.ceil(wait))
                    self.world.stats.rate_limited[chat_key if scope != "global" else "global"] += 1
                    self.world.stats.rate_limited_total += 1
                    raise ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
            result = self.methods[method](params)
        except ApiError as err:
            self._record(method, params, None, err, chat_key)
            body: dict[str, Any] = {"ok": False, "error_code": err.code, "description": err.description}
            if err.parameters:
                body["parameters"] = err.parameters
            return err.code, body
        if counted:
            self.limiter.record(chat_key, t)
        self._record(method, params, result, None, chat_key)
        return 200, {"ok": True, "result": result}

    def _record(
        self, method: str, params: Params, result: Any, err: ApiError | None, chat_key: int | None = None
    ) -> None:
        self.world.stats.calls[method] += 1
        if err is not None:
            self.world.stats.errors[method] += 1
        if chat_key is None:
            chat_key = self._rate_key(params)
        call = SbCall(
            method=method,
            params=params.recorded(),
            ok=err is None,
            result=result,
            error_code=err.code if err else None,
            description=err.description if err else None,
            chat_id=chat_key,
            index=len(self.calls),
        )
        self.calls.append(call)
        self.last_call_at = time.monotonic()
        self.call_event.set()
        self.call_event = asyncio.Event()

    async def handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.world.token:
            return self._error_response(ApiError(401, "Unauthorized"))
        path = request.match_info["path"]
        for f in self.world.files.values():
            if f.file_path == path:
                return web.Response(body=f.data, content_type=f.mime_type or "application/octet-stream")
        return self._error_response(ApiError(404, "Not Found"))

    def notify_update(self) -> None:
        for hook in list(self.on_update_hooks):
            hook()

    async def close(self) -> None:
        self.closing = True
        event, self.world.new_update = self.world.new_update, asyncio.Event()
        event.set()  # wake long polls and the webhook loop
        await self._stop_webhook()

    # ------------------------------------------------------------------ shared checks
    def target_chat(self, params: Params, name: str = "chat_id") -> SbChat:
        raw = params.get(name)
        if raw is None or raw == "":
            raise bad(f"{name} is empty")
        chat = self.world.find_chat(raw)
        if chat is None:
            raise bad("chat not found")
        if chat.migrated_to is not None:
            raise bad("group chat was upgraded to a supergroup chat", migrate_to_chat_id=chat.migrated_to)
        return chat

    def require_presence(self, chat: SbChat) -> None:
        if chat.type == "private":
            user = chat.user
            assert user is not None
            if user.blocked:
                raise forbidden("bot was blocked by the user")
            if not user.started:
                raise forbidden("bot can't initiate conversation with a user")
            return
        m = self.world.bot_membership(chat)
        kind = "supergroup chat" if chat.type == "supergroup" else f"{chat.type} chat"
        if m.status == "kicked":
            raise forbidden(f"bot was kicked from the {kind}")
        if not m.present:
            raise forbidden(f"bot is not a member of the {kind}")

    def require_can_send(self, chat: SbChat, what: str = "text messages") -> None:
        self.require_presence(chat)
        if chat.is_group:
            m = self.world.bot_membership(chat)
            if m.status == "restricted" and not m.permissions.get("can_send_messages", False):
                raise bad(f"not enough rights to send {what} to the chat")

    def require_right(self, chat: SbChat, right: str, description: str) -> None:
        if not self.world.bot_membership(chat).can(right):
            raise bad(description)

    def chat_message(self, chat: SbChat, message_id: int | None, missing: str) -> SbMessage:
        msg = chat.messages.get(message_id or 0)
        if msg is None or msg.deleted:
            raise bad(missing)
        return msg

    def user_param(self, params: Params) -> int:
        uid = params.int("user_id", required=True)
        assert uid is not None
        if self.world.person(uid) is None:
            raise bad("user not found")
        return uid

    # ------------------------------------------------------------------ message building
    def parse_markup(self, params: Params) -> dict[str, Any] | None:
        markup = params.json("reply_markup")
        if not markup:
            return None
        if not isinstance(markup, dict):
            raise bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            for row in markup["inline_keyboard"]:
                for button in row:
                    data = button.get("callback_data")
                    if data is not None and not (1 <= len(str(data).encode()) <= 64):
                        raise bad("BUTTON_DATA_INVALID")
                    actions = set(button) - {"text", "style", "icon_custom_emoji_id"}
                    if not actions:
                        raise bad(
                            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                        )
        return markup

    def format_text(self, params: Params, text_field: str, entities_field: str) -> tuple[str, list[dict[str, Any]]]:
        text = params.str(text_field, "") or ""
        entities = params.json(entities_field)
        if entities:
            return text, list(entities)
        mode = (params.str("parse_mode") or "").lower()
        if mode == "html":
            return parse_html(text)
        return text, []

    def reply_target(self, chat: SbChat, params: Params) -> SbMessage | None:
        rp = params.json("reply_parameters")
        mid = None
        allow_missing = params.bool("allow_sending_without_reply")
        if isinstance(rp, dict):
            mid = rp.get("message_id")
            allow_missing = bool(rp.get("allow_sending_without_reply", allow_missing))
            if rp.get("chat_id") not in (None, chat.id):
                other = self.world.find_chat(rp["chat_id"])
                if other is None:
                    raise bad("chat not found")
                chat = other
        elif params.get("reply_to_message_id") is not None:
            mid = params.int("reply_to_message_id")
        if mid is None:
            return None
        msg = chat.messages.get(int(mid))
        if msg is None or msg.deleted:
            if allow_missing:
                return None
            raise bad("message to be replied not found")
        return msg

    def bot_says(self, msg: SbMessage) -> None:
        text = msg.content
        if msg.photo is not None:
            text = "🖼 " + text if text else "🖼 (photo)"
        elif msg.document is not None:
            name = msg.document.name or "document"
            text = f"📄 {name}" + (f" — {msg.caption}" if msg.caption else "")
        elif msg.poll is not None:
            text = f"📊 {msg.poll.question} (" + " / ".join(msg.poll.options) + ")"
        self.world.note(
            "bot_message",
            msg.chat,
            self.world.bot.username or "bot",
            text,
            buttons=[b for b, _ in keyboard_buttons(msg.reply_markup)],
            by_bot=True,
            message_id=msg.message_id,
        )

    def _new_bot_message(self, chat: SbChat, params: Params, **kw: Any) -> SbMessage:
        reply_to = self.reply_target(chat, params)
        markup = self.parse_markup(params)
        msg = self.world.add_message(
            chat, from_user=self.world.bot, reply_to=reply_to, reply_markup=markup, by_bot=True, **kw
        )
        self.bot_says(msg)
        return msg

    # ------------------------------------------------------------------ identity and updates
    def m_getMe(self, params: Params) -> dict[str, Any]:
        d = self.world.bot.to_dict()
        d.update(
            can_join_groups=True,
            can_read_all_group_messages=not self.world.privacy_mode,
            supports_inline_queries=False,
            can_connect_to_business=False,
            has_main_web_app=False,
        )
        return d

    def m_logOut(self, params: Params) -> bool:
        return True

    def m_close(self, params: Params) -> bool:
        return True

    def m_getUpdates(self, params: Params) -> Any:  # pragma: no cover - routed to get_updates
        raise bad("getUpdates is asynchronous")

    async def get_updates(self, params: Params) -> list[dict[str, Any]]:
        world = self.world
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.int("offset")
        limit = min(100, max(1, params.int("limit", 100) or 100))
        timeout = max(0, params.int("timeout", 0) or 0)
        allowed = params.json("allowed_updates")
        if allowed is not None:
            world.allowed_updates = list(allowed) or None
        if offset is not None and offset != 0:
            world.confirm(offset)
        # A second poller on the same token ends the one already waiting with 409, as Telegram does.
        self.polls += 1
        poll = self.polls
        if self.polls_waiting:
            event, world.new_update = world.new_update, asyncio.Event()
            event.set()
        self.notify_update()
        deadline = time.monotonic() + timeout
        while not world.updates and not self.closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            event = world.new_update  # replaced (unset) after every enqueue, so never stale-set
            self.polls_waiting += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            finally:
                self.polls_waiting -= 1
            if self.polls != poll:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
                    "is running",
                )
        batch = world.updates[:limit]
        world.mark_delivered(batch)
        world.stats.calls["getUpdates"] += 1
        return batch

    # ------------------------------------------------------------------ webhook
    def m_setWebhook(self, params: Params) -> bool:
        url = params.str("url", "") or ""
        if params.bool("drop_pending_updates"):
            self.world.updates.clear()
        allowed = params.json("allowed_updates")
        if allowed is not None:
            self.world.allowed_updates = list(allowed) or None
        self.webhook_secret = params.str("secret_token")
        self.webhook_max_connections = params.int("max_connections", 40) or 40
        if url != self.webhook_url:
            self.webhook_last_error_date = None
            self.webhook_last_error_message = None
        self.webhook_url = url
        self._restart_webhook()
        return True

    def m_deleteWebhook(self, params: Params) -> bool:
        if params.bool("drop_pending_updates"):
            self.world.updates.clear()
        self.webhook_url = ""
        self._restart_webhook()
        return True

    def m_getWebhookInfo(self, params: Params) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.world.updates),
        }
        if self.webhook_url:
            info["max_connections"] = self.webhook_max_connections
            info["ip_address"] = "127.0.0.1"
        if self.webhook_last_error_date:
            info["last_error_date"] = self.webhook_last_error_date
            info["last_error_message"] = self.webhook_last_error_message
        if self.world.allowed_updates is not None:
            info["allowed_updates"] = list(self.world.allowed_updates)
        return info

    def _restart_webhook(self) -> None:
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            self._webhook_task = None
        if self.webhook_url and not self.closing:
            self._webhook_task = asyncio.get_running_loop().create_task(self._webhook_loop(self.webhook_url))

    async def _stop_webhook(self) -> None:
        task, self._webhook_task = self._webhook_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _webhook_loop(self, url: str) -> None:
        """Deliver queued updates to the webhook as Telegram's Bot API server does: over up to max_connections
        parallel connections, oldest first, with at most one update of a chat in flight (a chat's updates arrive
        in order); a failed delivery stays queued and is tried again after a backoff."""
        world = self.world
        in_flight: dict[int, asyncio.Task[None]] = {}
        busy: set[object] = set()  # chats with an update in flight
        # A connection per update: several workers sharing one port (SO_REUSEPORT) then share the updates, as they
        # share Telegram's parallel webhook connections (one kept-alive connection would feed one worker only).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            try:
                while self.webhook_url == url and not self.closing:
                    for update in list(world.updates):
                        if len(in_flight) >= max(1, self.webhook_max_connections):
                            break
                        queue = _update_queue(update)
                        if update["update_id"] in in_flight or queue in busy:
                            continue
                        busy.add(queue)
                        task = asyncio.create_task(self._deliver(http, url, update))
                        in_flight[update["update_id"]] = task
                        task.add_done_callback(
                            lambda _t, uid=update["update_id"], q=queue: (in_flight.pop(uid, None), busy.discard(q))
                        )
                    waiter = asyncio.ensure_future(world.new_update.wait())
                    await asyncio.wait({waiter, *in_flight.values()}, timeout=0.5,
                                       return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
            finally:
                for task in list(in_flight.values()):
                    task.cancel()

    async def _deliver(self, http: aiohttp.ClientSession, url: str, update: dict[str, Any]) -> None:
        world = self.world
        headers = {}
        if self.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret
        try:
            async with http.post(url, json=update, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.read()
                if 200 <= resp.status < 300:
                    with contextlib.suppress(ValueError):
                        world.updates.remove(update)
                    world.mark_delivered([update])
                    self.notify_update()
                    self._webhook_failures = 0
                    self._webhook_reply(body)
                    return
                error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"Connection error: {exc.__class__.__name__}: {exc}"
        self.webhook_last_error_date = now()
        self.webhook_last_error_message = error
        world.stats.webhook_failures += 1
        first_backoff, max_backoff = self.webhook_backoff
        self._webhook_failures += 1
        await asyncio.sleep(min(max_backoff, first_backoff * 2 ** (self._webhook_failures - 1)))

    def _webhook_reply(self, body: bytes) -> None:
        """A webhook answer may carry one method call (`{"method": ..., ...}`), which Telegram executes."""
        if not body:
            return
        try:
            payload = json.loads(body)
        except ValueError:
            return
        if not isinstance(payload, dict) or "method" not in payload:
            return
        name = str(payload.pop("method"))
        canonical = {k.lower(): k for k in self.methods}.get(name.lower())
        if canonical and canonical != "getUpdates":
            self.execute(canonical, Params(payload, {}))

    # ------------------------------------------------------------------ sending
    def m_sendMessage(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        self.require_can_send(chat)
        text, entities = self.format_text(params, "text", "entities")
        if not text.strip():
            raise bad("message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise bad("message is too long")
        msg = self._new_bot_message(chat, params, text=text, entities=entities)
        return msg.to_dict()

    def _caption(self, params: Params) -> tuple[str | None, list[dict[str, Any]]]:
        if params.get("caption") is None:
            return None, []
        caption, entities = self.format_text(params, "caption", "caption_entities")
        if utf16_len(caption) > MAX_CAPTION:
            raise bad("message caption is too long")
        return caption, entities

    def _file_input(self, params: Params, name: str) -> tuple[bytes, str | None, str | None, str | None]:
        """(bytes, filename, mime, existing file_id)."""
        value = params.input_file(name)
        if value is None or value == "":
            raise bad(f"there is no {name} in the request")
        if isinstance(value, UploadedFile):
            return value.data, value.filename, value.content_type, None
        value = str(value)
        if value in self.world.files:
            f = self.world.files[value]
            return f.data, f.file_name, f.mime_type, value
        if value.startswith(("http://", "https://")):
            filename = value.rstrip("/").rsplit("/", 1)[-1] or name
            return f"fetched from {value}".encode(), filename, mimetypes.guess_type(filename)[0], None
        raise bad("wrong file identifier/HTTP URL specified")

    def m_sendPhoto(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        self.require_can_send(chat, "photos")
        data, filename, mime, existing = self._file_input(params, "photo")
        caption, entities = self._caption(params)
        main = (
            self.world.files[existing]
            if existing
            else self.world.new_file(data, kind="photo", file_name=filename, mime_type=mime or "image/jpeg")
        )
        main.width, main.height = main.width or 1280, main.height or 720
        thumb = self.world.new_file(data[:1024], kind="photo", mime_type="image/jpeg")
        thumb.width, thumb.height = 320, 180
        photo = [
            {
                "file_id": f.file_id,
                "file_unique_id": f.file_unique_id,
                "file_size": f.file_size,
                "width": f.width,
                "height": f.height,
            }
            for f in (thumb, main)
        ]
        msg = self._new_bot_message(chat, params, photo=photo, caption=caption, entities=entities)
        return msg.to_dict()

    def m_sendDocument(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        self.require_can_send(chat, "documents")
        data, filename, mime, existing = self._file_input(params, "document")
        caption, entities = self._caption(params)
        f = (
            self.world.files[existing]
            if existing
            else self.world.new_file(data, kind="document", file_name=filename, mime_type=mime)
        )
        doc_dict: dict[str, Any] = {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.file_size}
        if f.file_name:
            doc_dict["file_name"] = f.file_name
        if f.mime_type:
            doc_dict["mime_type"] = f.mime_type
        msg = self._new_bot_message(
            chat,
            params,
            document=SbDocument(f.file_name, f.data, f.mime_type, f.file_id),
            document_dict=doc_dict,
            caption=caption,
            entities=entities,
        )
        return msg.to_dict()

    def m_getFile(self, params: Params) -> dict[str, Any]:
        f = self.world.files.get(params.str("file_id", "") or "")
        if f is None:
            raise bad("invalid file_id")
        return {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_size": f.file_size,
            "file_path": f.file_path,
        }

    def m_sendPoll(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        self.require_can_send(chat, "polls")
        question = params.str("question", "") or ""
        if not question.strip():
            raise bad("poll question must be non-empty")
        raw_options = params.json("options") or []
        options = [o.get("text", "") if isinstance(o, dict) else str(o) for o in raw_options]
        if len(options) < 2:
            raise bad("poll must have at least 2 option")
        if len(options) > 12:
            raise bad("poll can't have more than 12 options")
        if any(not o.strip() for o in options):
            raise bad("poll options must be non-empty")
        ptype = params.str("type", "regular") or "regular"
        poll = SbPoll(
            id=str(5_000_000_000_000_000 + secrets.randbits(40)),
            question=question,
            options=options,
            is_anonymous=params.bool("is_anonymous", True),
            type=ptype,
            allows_multiple_answers=params.bool("allows_multiple_answers"),
            correct_option_id=params.int("correct_option_id"),
            is_closed=params.bool("is_closed"),
            chat_id=chat.id,
        )
        msg = self._new_bot_message(chat, params, poll=poll)
        poll.message_id = msg.message_id
        self.world.polls[poll.id] = poll
        return msg.to_dict()

    def m_stopPoll(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        self.require_presence(chat)
        msg = self.chat_message(chat, params.int("message_id", required=True), "message with poll to stop not found")
        if msg.poll is None:
            raise bad("message is not a poll")
        if not msg.by_bot:
            raise bad("message can't be edited")
        if msg.poll.is_closed:
            raise bad("poll has already been closed")
        msg.poll.is_closed = True
        markup = self.parse_markup(params)
        if markup is not None:
            msg.reply_markup = markup
        self.world.note(
            "bot_stop_poll", chat, "bot", f"closed poll #{msg.message_id}", by_bot=True, message_id=msg.message_id
        )
        return msg.poll.to_dict()

    # ------------------------------------------------------------------ editing
    def _editable(self, params: Params) -> SbMessage:
        if params.get("inline_message_id"):
            raise bad("MESSAGE_ID_INVALID")
        chat = self.target_chat(params)
        self.require_presence(chat)
        msg = self.chat_message(chat, params.int("message_id", required=True), "message to edit not found")
        if not msg.by_bot:
            raise bad("message can't be edited")
        return msg

    def _apply_edit(
        self,
        msg: SbMessage,
        params: Params,
        *,
        text: str | None = None,
        caption: str | None = None,
        entities: list[dict[str, Any]] | None = None,
        markup_given: bool = True,
    ) -> dict[str, Any]:
        new_markup = self.parse_markup(params) if markup_given else msg.reply_markup
        new_text = msg.text if text is None else text
        new_caption = msg.caption if caption is None else caption
        new_entities = msg.entities if entities is None else entities

        def norm(m: dict[str, Any] | None) -> Any:
            return m if m and m.get("inline_keyboard") else None

        if (
            new_text == msg.text
            and new_caption == msg.caption
            and new_entities == msg.entities
            and norm(new_markup) == norm(msg.reply_markup)
        ):
            raise bad(
                "message is not modified: specified new message content and reply markup are exactly the same "
                "as a current content and reply markup of the message"
            )
        msg.history.append(msg.content)
        msg.text, msg.caption, msg.entities, msg.reply_markup = new_text, new_caption, new_entities, new_markup
        msg.edit_date = now()
        self.world.note(
            "bot_edit",
            msg.chat,
            "bot",
            msg.content,
            buttons=[b for b, _ in keyboard_buttons(msg.reply_markup)],
            by_bot=True,
            message_id=msg.message_id,
        )
        return msg.to_dict()

    def m_editMessageText(self, params: Params) -> dict[str, Any]:
        msg = self._editable(params)
        if msg.text is None:
            raise bad("there is no text in the message to edit")
        text, entities = self.format_text(params, "text", "entities")
        if not text.strip():
            raise bad("message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise bad("message is too long")
        return self._apply_edit(msg, params, text=text, entities=entities)

    def m_editMessageCaption(self, params: Params) -> dict[str, Any]:
        msg = self._editable(params)
        if msg.text is not None:
            raise bad("there is no caption in the message to edit")
        caption, entities = self._caption(params)
        return self._apply_edit(msg, params, caption=caption or "", entities=entities)

    def m_editMessageReplyMarkup(self, params: Params) -> dict[str, Any]:
        msg = self._editable(params)
        return self._apply_edit(msg, params)

    def m_deleteMessage(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self.require_presence(chat)
        msg = self.chat_message(chat, params.int("message_id", required=True), "message to delete not found")
        allowed = msg.by_bot or chat.type == "private" or self.world.bot_membership(chat).can("can_delete_messages")
        if msg.service.get("migrate_to_chat_id") or msg.service.get("migrate_from_chat_id"):
            allowed = False
        if not allowed:
            raise bad("message can't be deleted")
        msg.deleted = True
        who = "bot's" if msg.by_bot else (msg.from_user.first_name if msg.from_user else "a")
        self.world.note(
            "bot_delete",
            chat,
            "bot",
            f"deleted #{msg.message_id} ({who} message)",
            by_bot=True,
            message_id=msg.message_id,
        )
        return True

    def m_deleteMessages(self, params: Params) -> bool:
        chat = self.target_chat(params)
        ids = params.json("message_ids") or []
        for mid in ids:
            sub = Params({"chat_id": chat.id, "message_id": mid}, {})
            with contextlib.suppress(ApiError):
                self.m_deleteMessage(sub)
        return True

    def _pin_check(self, chat: SbChat) -> None:
        self.require_presence(chat)
        if chat.is_group:
            self.require_right(chat, "can_pin_messages", "not enough rights to manage pinned messages in the chat")

    def m_pinChatMessage(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self._pin_check(chat)
        msg = self.chat_message(chat, params.int("message_id", required=True), "message to pin not found")
        if msg.message_id in chat.pinned:
            chat.pinned.remove(msg.message_id)
        chat.pinned.append(msg.message_id)
        self.world.note(
            "bot_pin",
            chat,
            "bot",
            f"pinned #{msg.message_id}: {msg.content[:60]}",
            by_bot=True,
            message_id=msg.message_id,
        )
        return True

    def m_unpinChatMessage(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self._pin_check(chat)
        mid = params.int("message_id")
        if mid is None:
            mid = chat.pinned[-1] if chat.pinned else None
        if mid is None or mid not in chat.pinned:
            raise bad("message to unpin not found") if mid is not None else bad("message to unpin not found")
        chat.pinned.remove(mid)
        self.world.note("bot_unpin", chat, "bot", f"unpinned #{mid}", by_bot=True, message_id=mid)
        return True

    def m_unpinAllChatMessages(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self._pin_check(chat)
        chat.pinned.clear()
        self.world.note("bot_unpin", chat, "bot", "unpinned all messages", by_bot=True)
        return True

    # ------------------------------------------------------------------ callback queries
    def m_answerCallbackQuery(self, params: Params) -> bool:
        qid = params.str("callback_query_id", "") or ""
        query = self.queries.get(qid)
        if query is None or query.answered:
            raise bad("query is too old and response timeout expired or query ID is invalid")
        text = params.str("text")
        if text is not None and len(text) > 200:
            raise bad("MESSAGE_TOO_LONG")
        query.answered = True
        query.answer = {"text": text, "show_alert": params.bool("show_alert"), "url": params.str("url")}
        if query.entry is not None:
            query.entry.extra["answer"] = query.answer
        query.done.set()
        return True

    # ------------------------------------------------------------------ chats and members
    def m_getChat(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        if chat.is_group:
            self.require_presence(chat)
        d = chat.to_dict()
        d.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        if chat.is_group:
            d["permissions"] = dict(chat.permissions)
            if chat.description:
                d["description"] = chat.description
            if chat.pinned and chat.pinned[-1] in chat.messages:
                d["pinned_message"] = chat.messages[chat.pinned[-1]].to_dict(with_reply=False)
            if chat.type == "supergroup":
                d["has_visible_history"] = True
        if chat.type == "private" and chat.user is not None:
            d["has_private_forwards"] = False
        return d

    def m_getChatMember(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        uid = self.user_param(params)
        if chat.is_group:
            self.require_presence(chat)
        elif chat.type == "private":
            if uid not in (chat.id, self.world.bot.id):
                raise bad("user not found")
            user = self.world.person(uid)
            assert user is not None
            return Membership("member").to_dict(user.to_dict())
        return self.world.member_dict(chat, uid)

    def m_getChatAdministrators(self, params: Params) -> list[dict[str, Any]]:
        chat = self.target_chat(params)
        if chat.type == "private":
            raise bad("there are no administrators in the private chat")
        self.require_presence(chat)
        out = []
        for uid in list(chat.members):
            if self.world.membership(chat, uid).is_admin:
                out.append(self.world.member_dict(chat, uid))
        return out

    def m_getChatMemberCount(self, params: Params) -> int:
        chat = self.target_chat(params)
        if chat.type == "private":
            return 2
        self.require_presence(chat)
        return sum(1 for uid in list(chat.members) if self.world.membership(chat, uid).present)

    def m_getChatMembersCount(self, params: Params) -> int:
        return self.m_getChatMemberCount(params)

    def _member_target(self, chat: SbChat, uid: int, action: str) -> Membership:
        if uid == self.world.bot.id:
            raise bad(f"can't {action} self")
        current = self.world.membership(chat, uid)
        if current.status == "creator":
            raise bad("can't remove chat owner")
        if current.status == "administrator":
            raise bad("user is an administrator of the chat")
        return current

    def _member_changed(self, chat: SbChat, uid: int, old: dict[str, Any]) -> None:
        """Emit the chat_member update for a change the bot made."""
        new = self.world.member_dict(chat, uid)
        if old == new:
            return
        if self.world.bot_membership(chat).is_admin:
            self.world.enqueue(
                "chat_member",
                {
                    "chat": chat.to_dict(),
                    "from": self.world.bot.to_dict(),
                    "date": now(),
                    "old_chat_member": old,
                    "new_chat_member": new,
                },
            )

    def m_restrictChatMember(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self.require_presence(chat)
        if chat.type != "supergroup":
            raise bad("method is available only for supergroups")
        self.require_right(chat, "can_restrict_members", "not enough rights to restrict/unrestrict chat member")
        uid = self.user_param(params)
        current = self._member_target(chat, uid, "restrict")
        perms = params.json("permissions")
        if not isinstance(perms, dict):
            raise bad("can't parse permissions JSON object")
        independent = params.bool("use_independent_chat_permissions")
        full: dict[str, bool] = {}
        for name in PERMISSION_FIELDS:
            full[name] = bool(perms.get(name, False))
        if not independent:
            # Telegram's implied permissions when not independent
            if any(
                full[n]
                for n in (
                    "can_send_audios",
                    "can_send_documents",
                    "can_send_photos",
                    "can_send_videos",
                    "can_send_video_notes",
                    "can_send_voice_notes",
                    "can_send_polls",
                    "can_send_other_messages",
                    "can_add_web_page_previews",
                )
            ):
                full["can_send_messages"] = True
        until = params.int("until_date", 0) or 0
        t = now()
        if until and (until - t < 30 or until - t > 366 * 86400):
            until = 0  # "forever"
        old = self.world.member_dict(chat, uid)
        was_member = current.present or current.status == "restricted" and current.is_member
        if all(full.get(n, False) for n in PERMISSION_FIELDS if n != "can_edit_tag") and current.status in (
            "member",
            "restricted",
        ):
            new = Membership("member") if was_member else Membership("left")
        else:
            new = Membership("restricted", permissions=full, until_date=until, is_member=was_member)
        chat.members[uid] = new
        user = self.world.person(uid)
        name = user.first_name if user else str(uid)
        if new.status == "restricted":
            muted = [n[4:] for n in ("can_send_messages", "can_send_photos", "can_send_other_messages") if not full[n]]
            desc = f"restricted {name}" + (f" (no {', '.join(muted)})" if muted else "")
            desc += f" until {time.strftime('%Y-%m-%d %H:%M', time.gmtime(until))} UTC" if until else " forever"
        else:
            desc = f"lifted restrictions of {name}"
        self.world.note("bot_restrict", chat, "bot", desc, by_bot=True, extra={"user_id": uid})
        self._member_changed(chat, uid, old)
        return True

    def m_banChatMember(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self.require_presence(chat)
        if chat.type == "private":
            raise bad("can't ban members in private chats")
        self.require_right(chat, "can_restrict_members", "not enough rights to restrict/unrestrict chat member")
        uid = self.user_param(params)
        self._member_target(chat, uid, "remove")
        until = params.int("until_date", 0) or 0
        t = now()
        if until and (until - t < 30 or until - t > 366 * 86400):
            until = 0
        old = self.world.member_dict(chat, uid)
        chat.members[uid] = Membership("kicked", until_date=until)
        if params.bool("revoke_messages") or chat.type == "group":
            if params.bool("revoke_messages"):
                for msg in chat.messages.values():
                    if msg.from_user is not None and msg.from_user.id == uid:
                        msg.deleted = True
        user = self.world.person(uid)
        name = user.first_name if user else str(uid)
        desc = f"banned {name}" + (f" until {time.strftime('%Y-%m-%d %H:%M', time.gmtime(until))} UTC" if until else "")
        if params.bool("revoke_messages"):
            desc += " and deleted their messages"
        self.world.note("bot_ban", chat, "bot", desc, by_bot=True, extra={"user_id": uid})
        self._member_changed(chat, uid, old)
        return True

    def m_kickChatMember(self, params: Params) -> bool:
        return self.m_banChatMember(params)

    def m_unbanChatMember(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self.require_presence(chat)
        if chat.type == "private":
            raise bad("can't unban members in private chats")
        self.require_right(chat, "can_restrict_members", "not enough rights to restrict/unrestrict chat member")
        uid = self.user_param(params)
        current = self.world.membership(chat, uid)
        if current.status == "kicked":
            old = self.world.member_dict(chat, uid)
            chat.members[uid] = Membership("left")
            user = self.world.person(uid)
            self.world.note("bot_unban", chat, "bot", f"unbanned {user.first_name if user else uid}", by_bot=True)
            self._member_changed(chat, uid, old)
            return True
        if params.bool("only_if_banned"):
            return True
        if current.is_admin:
            raise bad("user is an administrator of the chat")
        if current.present:
            # Telegram: without only_if_banned, a current member is removed from the chat (but can join again)
            old = self.world.member_dict(chat, uid)
            chat.members[uid] = Membership("left")
            user = self.world.person(uid)
            self.world.note("bot_kick", chat, "bot", f"removed {user.first_name if user else uid} (unban)", by_bot=True)
            self._member_changed(chat, uid, old)
        return True

    def m_banChatSenderChat(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self.require_presence(chat)
        if chat.type != "supergroup":
            raise bad("method is available only for supergroups and channel")
        self.require_right(chat, "can_restrict_members", "not enough rights to restrict/unrestrict chat member")
        sender = params.int("sender_chat_id", required=True)
        assert sender is not None
        chat.banned_sender_chats.add(sender)
        other = self.world.chats.get(sender)
        self.world.note("bot_ban", chat, "bot", f"banned sender chat {other.title if other else sender}", by_bot=True)
        return True

    def m_unbanChatSenderChat(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self.require_presence(chat)
        self.require_right(chat, "can_restrict_members", "not enough rights to restrict/unrestrict chat member")
        chat.banned_sender_chats.discard(params.int("sender_chat_id", required=True) or 0)
        return True

    def m_setChatPermissions(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self.require_presence(chat)
        self.require_right(chat, "can_restrict_members", "not enough rights to change chat permissions")
        perms = params.json("permissions") or {}
        chat.permissions = {n: bool(perms.get(n, False)) for n in PERMISSION_FIELDS}
        self.world.note("bot_permissions", chat, "bot", "changed default permissions", by_bot=True)
        return True

    def m_promoteChatMember(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self.require_presence(chat)
        self.require_right(chat, "can_promote_members", "not enough rights")
        uid = self.user_param(params)
        old = self.world.member_dict(chat, uid)
        rights = {n: params.bool(n) for n in ADMIN_RIGHT_FIELDS}
        current = self.world.membership(chat, uid)
        if current.status == "creator":
            raise bad("can't demote chat creator")
        if any(rights.values()):
            chat.members[uid] = Membership("administrator", rights=rights)
        elif current.status == "administrator":
            chat.members[uid] = Membership("member")
        self._member_changed(chat, uid, old)
        return True

    def m_leaveChat(self, params: Params) -> bool:
        chat = self.target_chat(params)
        if chat.type == "private":
            raise bad("chat member status can't be changed in private chats")
        self.require_presence(chat)
        old = self.world.member_dict(chat, self.world.bot.id)
        chat.members[self.world.bot.id] = Membership("left")
        self.world.note("bot_leave", chat, "bot", "left the chat", by_bot=True)
        self.world.enqueue(
            "my_chat_member",
            {
                "chat": chat.to_dict(),
                "from": self.world.bot.to_dict(),
                "date": now(),
                "old_chat_member": old,
                "new_chat_member": self.world.member_dict(chat, self.world.bot.id),
            },
        )
        return True

    # ------------------------------------------------------------------ invite links and join requests
    def _invite_check(self, chat: SbChat) -> None:
        if chat.type == "private":
            raise bad("can't invite members to a private chat")
        self.require_presence(chat)
        self.require_right(chat, "can_invite_users", "not enough rights to manage chat invite link")

    def m_createChatInviteLink(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        self._invite_check(chat)
        name = params.str("name")
        if name is not None and len(name) > 32:
            raise bad("invite link name is too long")
        creates_join_request = params.bool("creates_join_request")
        member_limit = params.int("member_limit")
        if creates_join_request and member_limit:
            raise bad("member limit can't be specified for links requiring administrator approval")
        link = SbInviteLink(
            invite_link=f"https://t.me/+{secrets.token_urlsafe(12)}",
            creator=self.world.bot,
            chat_id=chat.id,
            name=name,
            expire_date=params.int("expire_date"),
            member_limit=member_limit,
            creates_join_request=creates_join_request,
        )
        chat.invite_links[link.invite_link] = link
        self.world.invite_links[link.invite_link] = link
        self.world.note(
            "bot_invite_link",
            chat,
            "bot",
            f"created invite link {link.invite_link}" + (f" ({name})" if name else ""),
            by_bot=True,
        )
        return link.to_dict()

    def m_editChatInviteLink(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        self._invite_check(chat)
        link = chat.invite_links.get(params.str("invite_link", "") or "")
        if link is None:
            raise bad("INVITE_HASH_INVALID")
        if params.get("name") is not None:
            link.name = params.str("name")
        if params.get("expire_date") is not None:
            link.expire_date = params.int("expire_date")
        if params.get("member_limit") is not None:
            link.member_limit = params.int("member_limit")
        if params.get("creates_join_request") is not None:
            link.creates_join_request = params.bool("creates_join_request")
        return link.to_dict()

    def m_revokeChatInviteLink(self, params: Params) -> dict[str, Any]:
        chat = self.target_chat(params)
        self._invite_check(chat)
        link = chat.invite_links.get(params.str("invite_link", "") or "")
        if link is None:
            raise bad("INVITE_HASH_INVALID")
        link.is_revoked = True
        self.world.note("bot_invite_link", chat, "bot", f"revoked invite link {link.invite_link}", by_bot=True)
        return link.to_dict()

    def m_exportChatInviteLink(self, params: Params) -> str:
        chat = self.target_chat(params)
        self._invite_check(chat)
        for link in chat.invite_links.values():
            if link.is_primary:
                link.is_revoked = True
                link.is_primary = False
        link = SbInviteLink(f"https://t.me/+{secrets.token_urlsafe(12)}", self.world.bot, chat.id, is_primary=True)
        chat.invite_links[link.invite_link] = link
        self.world.invite_links[link.invite_link] = link
        return link.invite_link

    def _join_request(self, params: Params, approve: bool) -> bool:
        chat = self.target_chat(params)
        self._invite_check(chat)
        uid = self.user_param(params)
        if uid not in chat.join_requests:
            raise bad("HIDE_REQUESTER_MISSING")
        link_url = chat.join_requests.pop(uid)
        link = self.world.invite_links.get(link_url) if link_url else None
        if link is not None:
            link.pending = max(0, link.pending - 1)
        user = self.world.person(uid)
        assert user is not None
        if approve:
            old = self.world.member_dict(chat, uid)
            chat.members[uid] = Membership("member")
            self.world.note("bot_approve", chat, "bot", f"approved join request of {user.first_name}", by_bot=True)
            self.world.note("join", chat, user.first_name, "joined (request approved)")
            if self.world.bot_membership(chat).is_admin:
                payload = {
                    "chat": chat.to_dict(),
                    "from": self.world.bot.to_dict(),
                    "date": now(),
                    "old_chat_member": old,
                    "new_chat_member": self.world.member_dict(chat, uid),
                    "via_join_request": True,
                }
                if link is not None:
                    payload["invite_link"] = link.to_dict()
                self.world.enqueue("chat_member", payload)
            msg = self.world.add_message(chat, from_user=user, service={"new_chat_members": [user.to_dict()]})
            self.world.enqueue("message", msg.to_dict())
        else:
            self.world.note("bot_decline", chat, "bot", f"declined join request of {user.first_name}", by_bot=True)
        return True

    def m_approveChatJoinRequest(self, params: Params) -> bool:
        return self._join_request(params, True)

    def m_declineChatJoinRequest(self, params: Params) -> bool:
        return self._join_request(params, False)

    # ------------------------------------------------------------------ commands
    @staticmethod
    def _scope_key(params: Params) -> tuple[str, str]:
        scope = params.json("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.str("language_code", "") or ""

    def m_setMyCommands(self, params: Params) -> bool:
        commands = params.json("commands")
        if not isinstance(commands, list):
            raise bad("can't parse commands JSON object")
        clean = []
        for c in commands:
            cmd = str(c.get("command", "")).lstrip("/")
            if not cmd or len(cmd) > 32:
                raise bad("command must be non-empty")
            clean.append({"command": cmd, "description": str(c.get("description", ""))})
        key = self._scope_key(params)
        self.world.commands[key] = clean
        scope = json.loads(key[0]).get("type", "default")
        lang = f" [{key[1]}]" if key[1] else ""
        self.world.note(
            "bot_commands",
            None,
            "bot",
            f"set commands ({scope}{lang}): " + " ".join("/" + c["command"] for c in clean),
            by_bot=True,
        )
        return True

    def m_getMyCommands(self, params: Params) -> list[dict[str, str]]:
        return list(self.world.commands.get(self._scope_key(params), []))

    def m_deleteMyCommands(self, params: Params) -> bool:
        self.world.commands.pop(self._scope_key(params), None)
        return True

    # ------------------------------------------------------------------ harmless extras
    def m_sendChatAction(self, params: Params) -> bool:
        chat = self.target_chat(params)
        self.require_presence(chat)
        return True

    def m_setMyDescription(self, params: Params) -> bool:
        return True

    def m_setMyShortDescription(self, params: Params) -> bool:
        return True

    def m_setMyName(self, params: Params) -> bool:
        return True

    def m_setChatMenuButton(self, params: Params) -> bool:
        return True
