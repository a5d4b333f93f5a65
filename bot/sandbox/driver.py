"""`Sandbox`: start the emulated Bot API, act as people, and read what the bot did.

The Python API is the contract; the `/sandbox/...` HTTP routes expose the same actions as JSON for other
clients and stay thin wrappers over it.

Behaviour worth knowing (beyond the names in the contract):

* People must be in a group to write there (`join`, `add`, `add_member`, or be the owner), otherwise the
  action raises `SandboxError`; so do other impossible actions (pressing a button that does not exist,
  joining by a revoked link, voting in a closed poll...).
* Writing in a private chat "starts" the bot for that user (before that, the bot gets 403 "can't initiate
  conversation"); writing after `block_bot` unblocks first (my_chat_member kicked -> member).
* `join()` returns the new_chat_members service message, or None when the link creates a join request (a
  chat_join_request update is queued; the bot answers with approve/declineChatJoinRequest).
* `last_message()` skips deleted messages; `messages()` lists them all with `.deleted`.
* `calls` holds every Bot API call except successful getUpdates polls (failed ones are kept), so "no bot call
  for `quiet` seconds" in `settle()` means no real activity. `settle()` and `wait_for()` raise TimeoutError.
  `wait_for()` also accepts a method name instead of a predicate.
* Extras: `create_channel`, `add_member` (silent), `add` (someone adds a user), `kick` and `restrict` (an
  admin acts on someone), `member_status`, `commands`, `all_messages`, `render_transcript`, `world`, `server`.
* Group chats get `chat_per_second` counted calls per `second` (strict, `group_burst=` overrides); private
  chats get a burst of `private_burst` (3). See server.py's fidelity notes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.limits import TelegramLimits
from bot.sandbox.server import BotApiServer, PendingQuery, SbCall
from bot.sandbox.world import (
    ADMIN_RIGHT_FIELDS,
    CHANNEL_BOT,
    DEFAULT_BOT_RIGHTS,
    GROUP_ANONYMOUS_BOT,
    Membership,
    SbChat,
    SbInviteLink,
    SbMessage,
    SbStats,
    SbUser,
    TranscriptEntry,
    World,
    detect_entities,
    keyboard_buttons,
    now,
)

_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{3,32}))?(?=\s|$)")


class SandboxError(RuntimeError):
    """A driver action that is impossible in the emulated world (e.g. writing to a group one is not in)."""


@dataclass
class SbAnswer:
    """How the bot answered a button press."""

    text: str | None = None
    show_alert: bool = False
    answered: bool = False
    url: str | None = None


ChatRef = SbChat | int


class Sandbox:
    def __init__(
        self,
        limits: TelegramLimits | None = None,
        token: str = "123456:SANDBOX-TOKEN",
        bot_username: str = "qunbot",
        privacy_mode: bool = True,
        *,
        bot_name: str | None = None,
        private_burst: int = 3,
        group_burst: int | None = None,
    ):
        self.limits = limits or TelegramLimits()
        self.world = World(token, bot_username, privacy_mode=privacy_mode, bot_name=bot_name)
        self.server = BotApiServer(self.world, self.limits, private_burst=private_burst, group_burst=group_burst)
        self._add_routes(self.server.app)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.base_url = ""
        self.host = ""
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def token(self) -> str:
        return self.world.token

    @property
    def bot(self) -> SbUser:
        return self.world.bot

    @property
    def privacy_mode(self) -> bool:
        return self.world.privacy_mode

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Sandbox:
        if self._runner is not None:
            return self
        self.server.closing = False
        runner = web.AppRunner(self.server.app, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner, self._site = runner, site
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        self.host = host
        self.port = sockets[0].getsockname()[1] if sockets else port
        self.base_url = f"http://{host}:{self.port}"
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        await self.server.close()
        if runner is not None:
            await runner.cleanup()

    # ------------------------------------------------------------------ faults (recovery tests)
    def fail_with_502(self) -> None:
        """Every Bot API call gets nginx's HTML "502 Bad Gateway" until `recover()`."""
        self.server.fault = "502"

    def hang(self) -> None:
        """Bot API calls are held without an answer until `recover()`, then carried out (late, not lost)."""
        self.server.recovered.clear()
        self.server.fault = "hang"

    async def refuse_connections(self) -> None:
        """Stop listening: connections are refused until `recover()` listens again on the same port."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for connection in list(self._runner.server.connections):  # kept-alive ones too
                connection.force_close()
            await asyncio.sleep(0.2)  # let the closes reach the clients (Telegram gone, not mid-request)
        self.server.fault = "refuse"

    async def recover(self) -> None:
        """End any fault: answer normally again (held calls go through now)."""
        fault, self.server.fault = self.server.fault, None
        self.server.recovered.set()
        if fault == "refuse" and self._runner is not None and self._site is None:
            self._site = web.TCPSite(self._runner, self.host, self.port)
            await self._site.start()

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ reading
    @property
    def calls(self) -> list[SbCall]:
        return self.server.calls

    @property
    def transcript(self) -> list[TranscriptEntry]:
        return self.world.transcript

    @property
    def stats(self) -> SbStats:
        return self.world.stats

    def render_transcript(self) -> str:
        return "\n".join(e.render() for e in self.world.transcript)

    def chat(self, ref: ChatRef) -> SbChat:
        if isinstance(ref, SbChat):
            return ref
        chat = self.world.find_chat(ref)
        if chat is None:
            raise SandboxError(f"unknown chat {ref!r}")
        return chat

    def user(self, ref: SbUser | int) -> SbUser:
        if isinstance(ref, SbUser):
            return ref
        u = self.world.person(int(ref))
        if u is None:
            raise SandboxError(f"unknown user {ref!r}")
        return u

    def messages(self, chat: ChatRef) -> list[SbMessage]:
        """The bot's messages in `chat`, as they are now (deleted ones included, flagged `.deleted`)."""
        c = self.chat(chat)
        return [m for m in c.messages.values() if m.by_bot]

    def last_message(self, chat: ChatRef) -> SbMessage | None:
        """The newest bot message in `chat` that is not deleted, or None."""
        for m in reversed(self.messages(chat)):
            if not m.deleted:
                return m
        return None

    def all_messages(self, chat: ChatRef) -> list[SbMessage]:
        return list(self.chat(chat).messages.values())

    @staticmethod
    def buttons(message: SbMessage) -> list[tuple[str, str | None]]:
        return keyboard_buttons(message.reply_markup)

    def member_status(self, chat: ChatRef, who: SbUser | str) -> Membership:
        c = self.chat(chat)
        uid = self.world.bot.id if who == "bot" else self.user(who).id  # type: ignore[arg-type]
        return self.world.membership(c, uid)

    def commands(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[dict[str, str]]:
        import json

        key = (json.dumps(scope or {"type": "default"}, sort_keys=True), language_code)
        return list(self.world.commands.get(key, []))

    def mark(self) -> int:
        return len(self.server.calls)

    async def wait_for(
        self,
        predicate: Callable[[SbCall], bool] | str,
        timeout: float = 5,  # noqa: ASYNC109 - part of the driver contract
        since: int | None = None,
    ) -> SbCall:
        """The first bot call (at index >= `since`, default: from now on) matching `predicate` (or a method name)."""
        if isinstance(predicate, str):
            name = predicate
            predicate = lambda call: call.method == name  # noqa: E731
        index = self.mark() if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            calls = self.server.calls
            while index < len(calls):
                call = calls[index]
                index += 1
                if predicate(call):
                    return call
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching bot call within {timeout}s")
            event = self.server.call_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def settle(self, timeout: float = 5, quiet: float = 0.3) -> None:  # noqa: ASYNC109
        """Wait until every queued update was fetched and confirmed (or delivered by webhook) and the bot made
        no call for `quiet` seconds. Raises TimeoutError (with the pending count) after `timeout`."""
        start = time.monotonic()
        deadline = start + timeout
        last_busy = start
        while True:
            t = time.monotonic()
            if self.world.updates:
                last_busy = t
            quiet_since = max(last_busy, self.server.last_call_at)
            if not self.world.updates and t - quiet_since >= quiet:
                return
            if t >= deadline:
                raise TimeoutError(
                    f"sandbox did not settle within {timeout}s: {len(self.world.updates)} update(s) pending"
                )
            await asyncio.sleep(min(0.02, max(0.001, deadline - t)))

    # ------------------------------------------------------------------ world building
    def add_user(
        self,
        first_name: str,
        username: str | None = None,
        language_code: str | None = None,
        is_bot: bool = False,
        last_name: str | None = None,
    ) -> SbUser:
        return self.world.add_user(
            first_name, username=username, language_code=language_code, is_bot=is_bot, last_name=last_name
        )

    def create_group(self, title: str, owner: SbUser, supergroup: bool = True, username: str | None = None) -> SbChat:
        chat = self.world.create_chat(title, owner, "supergroup" if supergroup else "group", username)
        self.world.note(
            "create", chat, owner.first_name, f"created {'supergroup' if supergroup else 'group'} {title!r}"
        )
        return chat

    def create_channel(self, title: str, username: str | None = None) -> SbChat:
        return self.world.create_chat(title, None, "channel", username)

    def private_chat(self, user: SbUser) -> SbChat:
        return self.world.private_chat(user)

    def add_member(self, chat: ChatRef, user: SbUser) -> None:
        """Silently make `user` a member (no updates) — for setting up a world before the bot arrives."""
        self.chat(chat).members[user.id] = Membership("member")

    # ------------------------------------------------------------------ delivery
    def _bot_sees(self, msg: SbMessage) -> bool:
        chat = msg.chat
        if chat.type == "private":
            return True
        bot_m = self.world.bot_membership(chat)
        if not bot_m.present:
            return False
        if not self.world.privacy_mode or bot_m.is_admin or msg.service:
            return True
        if msg.reply_to is not None and msg.reply_to.by_bot:
            return True
        text = msg.text or ""
        m = _COMMAND.match(text)
        if m and (m.group(2) is None or m.group(2).lower() == (self.world.bot.username or "").lower()):
            return True
        mention = f"@{self.world.bot.username}".lower()
        for e in msg.entities:
            if e["type"] == "bot_command":
                frag = text.encode("utf-16-le")[e["offset"] * 2 : (e["offset"] + e["length"]) * 2].decode("utf-16-le")
                if frag.lower().endswith(mention):
                    return True
        return False

    def _deliver(self, kind: str, msg: SbMessage) -> int | None:
        if not self._bot_sees(msg):
            self.world.stats.updates_filtered["privacy" if msg.chat.is_group else kind] += 1
            return None
        return self.world.enqueue(kind, msg.to_dict())

    def _member_update(
        self, kind: str, chat: SbChat, actor: SbUser, uid: int, old: dict[str, Any], **extra: Any
    ) -> None:
        payload = {
            "chat": chat.to_dict(),
            "from": actor.to_dict(),
            "date": now(),
            "old_chat_member": old,
            "new_chat_member": self.world.member_dict(chat, uid),
        }
        payload.update(extra)
        if kind == "chat_member" and not self.world.bot_membership(chat).is_admin:
            self.world.stats.updates_filtered["chat_member"] += 1
            return
        self.world.enqueue(kind, payload)

    def _writable(self, chat: ChatRef, user: SbUser) -> SbChat:
        c = self.chat(chat)
        if c.migrated_to is not None:
            raise SandboxError(f"{c.label} was upgraded to supergroup {c.migrated_to}")
        if c.type == "private":
            if c.user is not user:
                raise SandboxError(f"{user.first_name} can't write in {c.label}")
            return c
        m = self.world.membership(c, user.id)
        if not m.present:
            raise SandboxError(f"{user.first_name} is not a member of {c.label} ({m.status})")
        if m.status == "restricted" and not m.permissions.get("can_send_messages", False):
            raise SandboxError(f"{user.first_name} is restricted in {c.label} and can't send messages")
        return c

    async def _private_opened(self, chat: SbChat, user: SbUser) -> None:
        if chat.type != "private":
            return
        if user.blocked:
            await self.unblock_bot(user)
        user.started = True

    # ------------------------------------------------------------------ people's actions
    async def send(self, chat: ChatRef, user: SbUser, text: str, reply_to: SbMessage | None = None) -> SbMessage:
        c = self._writable(chat, user)
        await self._private_opened(c, user)
        msg = self.world.add_message(c, from_user=user, text=text, entities=detect_entities(text), reply_to=reply_to)
        self.world.note("message", c, user.first_name, text, message_id=msg.message_id)
        self._deliver("message", msg)
        return msg

    async def send_photo(
        self, chat: ChatRef, user: SbUser, caption: str = "", reply_to: SbMessage | None = None
    ) -> SbMessage:
        c = self._writable(chat, user)
        await self._private_opened(c, user)
        data = b"\xff\xd8\xff\xe0" + secrets.token_bytes(2048)
        big = self.world.new_file(data, kind="photo", mime_type="image/jpeg")
        small = self.world.new_file(data[:512], kind="photo", mime_type="image/jpeg")
        photo = [
            {
                "file_id": small.file_id,
                "file_unique_id": small.file_unique_id,
                "file_size": small.file_size,
                "width": 90,
                "height": 67,
            },
            {
                "file_id": big.file_id,
                "file_unique_id": big.file_unique_id,
                "file_size": big.file_size,
                "width": 1280,
                "height": 960,
            },
        ]
        msg = self.world.add_message(
            c,
            from_user=user,
            photo=photo,
            caption=caption or None,
            entities=detect_entities(caption) if caption else [],
            reply_to=reply_to,
        )
        self.world.note("message", c, user.first_name, f"🖼 {caption}".rstrip(), message_id=msg.message_id)
        self._deliver("message", msg)
        return msg

    async def forward(
        self,
        chat: ChatRef,
        user: SbUser,
        text: str,
        from_user: SbUser | None = None,
        from_chat: SbChat | None = None,
    ) -> SbMessage:
        c = self._writable(chat, user)
        await self._private_opened(c, user)
        date = now() - 3600
        if from_chat is not None and from_chat.type == "channel":
            origin: dict[str, Any] = {
                "type": "channel",
                "date": date,
                "chat": from_chat.to_dict(),
                "message_id": from_chat.new_message_id(),
            }
        elif from_chat is not None:
            origin = {"type": "chat", "date": date, "sender_chat": from_chat.to_dict()}
        elif from_user is not None:
            origin = {"type": "user", "date": date, "sender_user": from_user.to_dict()}
        else:
            origin = {"type": "hidden_user", "date": date, "sender_user_name": "Hidden User"}
        msg = self.world.add_message(
            c, from_user=user, text=text, entities=detect_entities(text), forward_origin=origin
        )
        src = from_chat.title if from_chat else (from_user.first_name if from_user else "hidden user")
        self.world.note("message", c, user.first_name, f"[forwarded from {src}] {text}", message_id=msg.message_id)
        self._deliver("message", msg)
        return msg

    async def send_as_channel(self, chat: ChatRef, channel_chat: SbChat, text: str) -> SbMessage:
        c = self.chat(chat)
        if c.migrated_to is not None:
            raise SandboxError(f"{c.label} was upgraded to supergroup {c.migrated_to}")
        if channel_chat.id in c.banned_sender_chats:
            raise SandboxError(f"{channel_chat.title} is banned from {c.label}")
        anonymous_admin = channel_chat is c
        msg = self.world.add_message(
            c,
            from_dict=GROUP_ANONYMOUS_BOT if anonymous_admin else CHANNEL_BOT,
            sender_chat=channel_chat,
            text=text,
            entities=detect_entities(text),
        )
        who = f"{channel_chat.title} (anonymous admin)" if anonymous_admin else f"{channel_chat.title} (channel)"
        self.world.note("message", c, who, text, message_id=msg.message_id)
        self._deliver("message", msg)
        return msg

    async def edit(self, message: SbMessage, text: str) -> SbMessage:
        if message.by_bot:
            raise SandboxError("people can't edit the bot's messages")
        message.history.append(message.content)
        if message.text is not None:
            message.text = text
        else:
            message.caption = text
        message.entities = detect_entities(text)
        message.edit_date = now()
        who = message.from_user.first_name if message.from_user else (message.sender_chat.title or "")  # type: ignore[union-attr]
        self.world.note(
            "edit", message.chat, who, f"edited #{message.message_id}: {text}", message_id=message.message_id
        )
        self._deliver("edited_message", message)
        return message

    async def press(self, user: SbUser, message: SbMessage, callback_data: str, timeout: float = 5) -> SbAnswer:  # noqa: ASYNC109
        if message.deleted:
            raise SandboxError(f"message #{message.message_id} was deleted")
        buttons = keyboard_buttons(message.reply_markup)
        label = None
        for text, data in buttons:
            if data == callback_data:
                label = text
                break
        if label is None:
            for text, data in buttons:
                if text == callback_data and data is not None:
                    label, callback_data = text, data
                    break
        if label is None:
            raise SandboxError(
                f"message #{message.message_id} has no button with callback_data {callback_data!r}: {buttons}"
            )
        chat = message.chat
        if chat.is_group and not self.world.membership(chat, user.id).present:
            raise SandboxError(f"{user.first_name} is not in {chat.label}")
        qid = str(secrets.randbits(63))
        entry = self.world.note(
            "press", chat, user.first_name, label, message_id=message.message_id, extra={"callback_data": callback_data}
        )
        query = PendingQuery(qid, user.id, message, callback_data, entry=entry)
        self.server.queries[qid] = query
        self.world.enqueue(
            "callback_query",
            {
                "id": qid,
                "from": user.to_dict(),
                "message": message.to_dict(),
                "chat_instance": chat.chat_instance,
                "data": callback_data,
            },
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(query.done.wait(), timeout)
        ans = query.answer or {}
        return SbAnswer(ans.get("text"), bool(ans.get("show_alert")), query.answered, ans.get("url"))

    def _resolve_link(self, chat: SbChat, invite_link: Any) -> SbInviteLink | None:
        if invite_link is None:
            return None
        url = (
            invite_link.invite_link
            if isinstance(invite_link, SbInviteLink)
            else (invite_link.get("invite_link") if isinstance(invite_link, dict) else str(invite_link))
        )
        link = self.world.invite_links.get(url)
        if link is None or link.chat_id != chat.id:
            raise SandboxError(f"invite link {url} does not belong to {chat.label}")
        if link.is_revoked:
            raise SandboxError(f"invite link {url} was revoked")
        if link.expire_date and link.expire_date <= now():
            raise SandboxError(f"invite link {url} expired")
        if link.member_limit and link.joined >= link.member_limit:
            raise SandboxError(f"invite link {url} reached its member limit")
        return link

    async def join(self, chat: ChatRef, user: SbUser, invite_link: Any = None) -> SbMessage | None:
        """User joins (by `invite_link`, a URL, dict or SbInviteLink). Returns the new_chat_members service
        message, or None when the link creates a join request (a chat_join_request update instead)."""
        c = self.chat(chat)
        if c.migrated_to is not None:
            raise SandboxError(f"{c.label} was upgraded to supergroup {c.migrated_to}")
        current = self.world.membership(c, user.id)
        if current.status == "kicked":
            raise SandboxError(f"{user.first_name} is banned from {c.label}")
        if current.present:
            raise SandboxError(f"{user.first_name} is already in {c.label}")
        link = self._resolve_link(c, invite_link)
        if link is not None and link.creates_join_request:
            c.join_requests[user.id] = link.invite_link
            link.pending += 1
            self.world.note("join_request", c, user.first_name, f"asked to join via {link.name or link.invite_link}")
            self.world.enqueue(
                "chat_join_request",
                {
                    "chat": c.to_dict(),
                    "from": user.to_dict(),
                    "user_chat_id": user.id,
                    "date": now(),
                    "invite_link": link.to_dict(),
                },
            )
            return None
        old = self.world.member_dict(c, user.id)
        c.members[user.id] = Membership("member")
        extra: dict[str, Any] = {}
        if link is not None:
            link.joined += 1
            extra["invite_link"] = link.to_dict()
        how = f" via link {link.name or link.invite_link}" if link else ""
        self.world.note("join", c, user.first_name, f"joined{how}")
        self._member_update("chat_member", c, user, user.id, old, **extra)
        msg = self.world.add_message(c, from_user=user, service={"new_chat_members": [user.to_dict()]})
        self._deliver("message", msg)
        return msg

    async def add(self, chat: ChatRef, user: SbUser, by: SbUser) -> SbMessage:
        """`by` adds `user` to the group."""
        c = self.chat(chat)
        old = self.world.member_dict(c, user.id)
        c.members[user.id] = Membership("member")
        self.world.note("join", c, user.first_name, f"was added by {by.first_name}")
        self._member_update("chat_member", c, by, user.id, old)
        msg = self.world.add_message(c, from_user=by, service={"new_chat_members": [user.to_dict()]})
        self._deliver("message", msg)
        return msg

    async def leave(self, chat: ChatRef, user: SbUser) -> SbMessage:
        c = self.chat(chat)
        current = self.world.membership(c, user.id)
        if not current.present:
            raise SandboxError(f"{user.first_name} is not in {c.label}")
        old = self.world.member_dict(c, user.id)
        c.members[user.id] = Membership("left")
        self.world.note("leave", c, user.first_name, "left")
        self._member_update("chat_member", c, user, user.id, old)
        msg = self.world.add_message(c, from_user=user, service={"left_chat_member": user.to_dict()})
        self._deliver("message", msg)
        return msg

    async def answer_poll(self, user: SbUser, poll_message: SbMessage, option_ids: list[int]) -> None:
        poll = poll_message.poll
        if poll is None:
            raise SandboxError("not a poll message")
        if poll.is_closed:
            raise SandboxError("poll is closed")
        if any(not 0 <= i < len(poll.options) for i in option_ids):
            raise SandboxError(f"bad option ids {option_ids}")
        if len(option_ids) > 1 and not poll.allows_multiple_answers:
            raise SandboxError("poll allows one answer")
        if option_ids:
            poll.votes[user.id] = list(option_ids)
        else:
            poll.votes.pop(user.id, None)
        chosen = ", ".join(poll.options[i] for i in option_ids) or "(retracted)"
        self.world.note("poll_answer", poll_message.chat, user.first_name, f"voted {chosen} in {poll.question!r}")
        if not poll.is_anonymous:
            self.world.enqueue(
                "poll_answer",
                {
                    "poll_id": poll.id,
                    "user": user.to_dict(),
                    "option_ids": list(option_ids),
                    "option_persistent_ids": [str(i) for i in option_ids],
                },
            )
        self.world.enqueue("poll", poll.to_dict())

    # ------------------------------------------------------------------ bot membership
    async def add_bot(self, chat: ChatRef, by: SbUser, admin: bool = False) -> None:
        c = self.chat(chat)
        bot_id = self.world.bot.id
        old = self.world.member_dict(c, bot_id)
        c.members[bot_id] = (
            Membership("administrator", rights=dict(DEFAULT_BOT_RIGHTS)) if admin else Membership("member")
        )
        self.world.note(
            "add_bot", c, by.first_name, f"added 🤖 {self.world.bot.username}" + (" as admin" if admin else "")
        )
        self._member_update("my_chat_member", c, by, bot_id, old)
        msg = self.world.add_message(c, from_user=by, service={"new_chat_members": [self.world.bot.to_dict()]})
        self._deliver("message", msg)

    async def promote(
        self, chat: ChatRef, who: SbUser | str, by: SbUser, rights: dict[str, bool] | None = None
    ) -> None:
        c = self.chat(chat)
        is_bot = who == "bot"
        uid = self.world.bot.id if is_bot else who.id  # type: ignore[union-attr]
        current = self.world.membership(c, uid)
        if not current.present:
            raise SandboxError(f"{'the bot' if is_bot else who.first_name} is not in {c.label}")  # type: ignore[union-attr]
        if current.status == "creator":
            raise SandboxError("the owner is already the owner")
        given = dict(DEFAULT_BOT_RIGHTS if rights is None else rights)
        full = {name: bool(given.get(name, False)) for name in ADMIN_RIGHT_FIELDS}
        old = self.world.member_dict(c, uid)
        c.members[uid] = Membership("administrator", rights=full)
        name = self.world.bot.username if is_bot else who.first_name  # type: ignore[union-attr]
        granted = ", ".join(k[4:] for k, v in full.items() if v)
        self.world.note("promote", c, by.first_name, f"promoted {name} to admin ({granted})")
        self._member_update("my_chat_member" if is_bot else "chat_member", c, by, uid, old)

    async def demote(self, chat: ChatRef, who: SbUser | str, by: SbUser) -> None:
        c = self.chat(chat)
        is_bot = who == "bot"
        uid = self.world.bot.id if is_bot else who.id  # type: ignore[union-attr]
        current = self.world.membership(c, uid)
        if current.status != "administrator":
            raise SandboxError("not an administrator")
        old = self.world.member_dict(c, uid)
        c.members[uid] = Membership("member")
        name = self.world.bot.username if is_bot else who.first_name  # type: ignore[union-attr]
        self.world.note("demote", c, by.first_name, f"demoted {name}")
        if is_bot:
            self._member_update("my_chat_member", c, by, uid, old)
        else:
            # the bot must be an admin to hear about it; check against the state before the change too
            self._member_update("chat_member", c, by, uid, old)

    async def restrict(
        self,
        chat: ChatRef,
        who: SbUser | str,
        by: SbUser,
        permissions: dict[str, bool] | None = None,
        until_date: int = 0,
    ) -> None:
        """An admin restricts someone (the bot too, with who="bot")."""
        from bot.sandbox.world import PERMISSION_FIELDS

        c = self.chat(chat)
        is_bot = who == "bot"
        uid = self.world.bot.id if is_bot else who.id  # type: ignore[union-attr]
        old = self.world.member_dict(c, uid)
        perms = {n: bool((permissions or {}).get(n, False)) for n in PERMISSION_FIELDS}
        c.members[uid] = Membership("restricted", permissions=perms, until_date=until_date, is_member=True)
        self.world.note("restrict", c, by.first_name, f"restricted {'the bot' if is_bot else who.first_name}")  # type: ignore[union-attr]
        self._member_update("my_chat_member" if is_bot else "chat_member", c, by, uid, old)

    async def kick_bot(self, chat: ChatRef, by: SbUser) -> None:
        c = self.chat(chat)
        bot_id = self.world.bot.id
        old = self.world.member_dict(c, bot_id)
        c.members[bot_id] = Membership("kicked", until_date=0)
        self.world.note("kick_bot", c, by.first_name, f"removed 🤖 {self.world.bot.username}")
        self._member_update("my_chat_member", c, by, bot_id, old)
        self.world.add_message(c, from_user=by, service={"left_chat_member": self.world.bot.to_dict()})

    async def kick(self, chat: ChatRef, user: SbUser, by: SbUser) -> None:
        """An admin bans `user` (not the bot)."""
        c = self.chat(chat)
        old = self.world.member_dict(c, user.id)
        c.members[user.id] = Membership("kicked", until_date=0)
        self.world.note("kick", c, by.first_name, f"removed {user.first_name}")
        self._member_update("chat_member", c, by, user.id, old)
        msg = self.world.add_message(c, from_user=by, service={"left_chat_member": user.to_dict()})
        self._deliver("message", msg)

    async def block_bot(self, user: SbUser) -> None:
        chat = self.world.private_chat(user)
        if user.blocked:
            return
        old = Membership("member").to_dict(self.world.bot.to_dict())
        user.blocked = True
        self.world.note("block", chat, user.first_name, "blocked the bot")
        self.world.enqueue(
            "my_chat_member",
            {
                "chat": chat.to_dict(),
                "from": user.to_dict(),
                "date": now(),
                "old_chat_member": old,
                "new_chat_member": Membership("kicked", until_date=0).to_dict(self.world.bot.to_dict()),
            },
        )

    async def unblock_bot(self, user: SbUser) -> None:
        chat = self.world.private_chat(user)
        if not user.blocked:
            return
        user.blocked = False
        self.world.note("unblock", chat, user.first_name, "unblocked the bot")
        self.world.enqueue(
            "my_chat_member",
            {
                "chat": chat.to_dict(),
                "from": user.to_dict(),
                "date": now(),
                "old_chat_member": Membership("kicked", until_date=0).to_dict(self.world.bot.to_dict()),
                "new_chat_member": Membership("member").to_dict(self.world.bot.to_dict()),
            },
        )

    async def upgrade_to_supergroup(self, chat: ChatRef) -> SbChat:
        old_chat = self.chat(chat)
        if old_chat.type != "group":
            raise SandboxError(f"{old_chat.label} is not a basic group")
        new = SbChat(
            id=self.world.new_supergroup_id(),
            type="supergroup",
            title=old_chat.title,
            username=old_chat.username,
            members={uid: m.copy() for uid, m in old_chat.members.items()},
            permissions=dict(old_chat.permissions),
            migrated_from=old_chat.id,
        )
        self.world.chats[new.id] = new
        owner_id = next((uid for uid, m in old_chat.members.items() if m.status == "creator"), None)
        owner = self.world.users.get(owner_id) if owner_id is not None else None
        m_old = self.world.add_message(old_chat, from_user=owner, service={"migrate_to_chat_id": new.id})
        self._deliver("message", m_old)
        old_chat.migrated_to = new.id
        m_new = self.world.add_message(
            new,
            from_dict=GROUP_ANONYMOUS_BOT if owner is None else None,
            from_user=owner,
            sender_chat=new,
            service={"migrate_from_chat_id": old_chat.id},
        )
        self._deliver("message", m_new)
        self.world.note(
            "upgrade",
            new,
            owner.first_name if owner else "group",
            f"upgraded to a supergroup ({old_chat.id} -> {new.id})",
        )
        return new

    # ------------------------------------------------------------------ HTTP driver routes
    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/sandbox/users", self._r_users)
        app.router.add_post("/sandbox/groups", self._r_groups)
        app.router.add_post("/sandbox/add_bot", self._r_add_bot)
        app.router.add_post("/sandbox/send", self._r_send)
        app.router.add_post("/sandbox/press", self._r_press)
        app.router.add_post("/sandbox/join", self._r_join)
        app.router.add_post("/sandbox/leave", self._r_leave)
        app.router.add_post("/sandbox/promote", self._r_promote)
        app.router.add_post("/sandbox/settle", self._r_settle)
        app.router.add_get("/sandbox/transcript", self._r_transcript)
        app.router.add_get("/sandbox/calls", self._r_calls)
        app.router.add_get("/sandbox/messages", self._r_messages)
        app.router.add_get("/sandbox/stats", self._r_stats)

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        import json

        return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(
                text='{"ok": false, "error": "JSON body expected"}', content_type="application/json"
            ) from None
        return body if isinstance(body, dict) else {}

    async def _guard(self, request: web.Request, action: Callable[[dict[str, Any]], Any]) -> web.Response:
        body = await self._body(request)
        try:
            result = await action(body)
        except (SandboxError, KeyError, ValueError, TypeError) as exc:
            return self._json({"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}, status=400)
        return self._json({"ok": True, "result": result})

    @staticmethod
    def _msg_json(m: SbMessage | None) -> dict[str, Any] | None:
        if m is None:
            return None
        d = m.to_dict()
        d["deleted"] = m.deleted
        if m.document is not None:
            d["document_size"] = len(m.document.data)
        return d

    async def _r_users(self, request: web.Request) -> web.Response:
        async def act(b: dict[str, Any]) -> Any:
            u = self.add_user(
                b["first_name"],
                username=b.get("username"),
                language_code=b.get("language_code"),
                is_bot=bool(b.get("is_bot", False)),
                last_name=b.get("last_name"),
            )
            return u.to_dict()

        return await self._guard(request, act)

    async def _r_groups(self, request: web.Request) -> web.Response:
        async def act(b: dict[str, Any]) -> Any:
            owner = self.user(b["owner_id"])
            g = self.create_group(
                b["title"], owner, supergroup=bool(b.get("supergroup", True)), username=b.get("username")
            )
            for uid in b.get("member_ids", []):
                self.add_member(g, self.user(uid))
            if b.get("add_bot"):
                await self.add_bot(g, by=owner, admin=bool(b.get("bot_admin", False)))
            return g.to_dict()

        return await self._guard(request, act)

    async def _r_add_bot(self, request: web.Request) -> web.Response:
        async def act(b: dict[str, Any]) -> Any:
            await self.add_bot(b["chat_id"], by=self.user(b["by_id"]), admin=bool(b.get("admin", False)))
            return True

        return await self._guard(request, act)

    async def _r_send(self, request: web.Request) -> web.Response:
        async def act(b: dict[str, Any]) -> Any:
            user = self.user(b["user_id"])
            chat = self.chat(b.get("chat_id", user.id))
            if chat.type == "private" and chat.user is None:
                chat = self.private_chat(user)
            reply_to = chat.messages.get(int(b["reply_to_message_id"])) if b.get("reply_to_message_id") else None
            return self._msg_json(await self.send(chat, user, b["text"], reply_to=reply_to))

        return await self._guard(request, act)

    async def _r_press(self, request: web.Request) -> web.Response:
        async def act(b: dict[str, Any]) -> Any:
            user = self.user(b["user_id"])
            chat = self.chat(b["chat_id"])
            msg = chat.messages.get(int(b["message_id"]))
            if msg is None:
                raise SandboxError("message not found")
            ans = await self.press(user, msg, b["callback_data"], timeout=float(b.get("timeout", 5)))
            return {"text": ans.text, "show_alert": ans.show_alert, "answered": ans.answered, "url": ans.url}

        return await self._guard(request, act)

    async def _r_join(self, request: web.Request) -> web.Response:
        async def act(b: dict[str, Any]) -> Any:
            return self._msg_json(await self.join(b["chat_id"], self.user(b["user_id"]), b.get("invite_link")))

        return await self._guard(request, act)

    async def _r_leave(self, request: web.Request) -> web.Response:
        async def act(b: dict[str, Any]) -> Any:
            return self._msg_json(await self.leave(b["chat_id"], self.user(b["user_id"])))

        return await self._guard(request, act)

    async def _r_promote(self, request: web.Request) -> web.Response:
        async def act(b: dict[str, Any]) -> Any:
            who = b["who"]
            target: SbUser | str = "bot" if who == "bot" else self.user(who)
            await self.promote(b["chat_id"], target, by=self.user(b["by_id"]), rights=b.get("rights"))
            return True

        return await self._guard(request, act)

    async def _r_settle(self, request: web.Request) -> web.Response:
        async def act(b: dict[str, Any]) -> Any:
            await self.settle(timeout=float(b.get("timeout", 5)), quiet=float(b.get("quiet", 0.3)))
            return True

        return await self._guard(request, act)

    async def _r_transcript(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", 0))
        entries = self.world.transcript[since:]
        return self._json(
            {
                "ok": True,
                "result": {
                    "lines": [e.render() for e in entries],
                    "entries": [
                        {
                            "kind": e.kind,
                            "chat": e.chat,
                            "chat_id": e.chat_id,
                            "actor": e.actor,
                            "text": e.text,
                            "buttons": e.buttons,
                            "by_bot": e.by_bot,
                            "at": e.at,
                            "message_id": e.message_id,
                        }
                        for e in entries
                    ],
                },
            }
        )

    async def _r_calls(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", 0))
        method = request.query.get("method")
        calls = [c.to_dict() for c in self.server.calls[since:] if method is None or c.method == method]
        return self._json({"ok": True, "result": calls})

    async def _r_messages(self, request: web.Request) -> web.Response:
        try:
            chat = self.chat(int(request.query["chat_id"]))
        except (KeyError, ValueError, SandboxError) as exc:
            return self._json({"ok": False, "error": str(exc)}, status=400)
        everyone = request.query.get("all") in ("1", "true")
        msgs = self.all_messages(chat) if everyone else self.messages(chat)
        return self._json({"ok": True, "result": [self._msg_json(m) for m in msgs]})

    async def _r_stats(self, request: web.Request) -> web.Response:
        return self._json({"ok": True, "result": self.world.stats.as_dict()})
