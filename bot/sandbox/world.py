"""The sandbox's state: people, the bot, chats, memberships, messages, links, polls, updates and the transcript.

Everything here is plain data plus the serialisers that turn it into Bot API JSON shapes. No I/O: the
HTTP server (server.py) and the driver (driver.py) mutate a `World` and read from it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Telegram's service accounts that appear as `from` of messages posted on behalf of a chat.
CHANNEL_BOT = {"id": 136817688, "is_bot": True, "first_name": "Channel", "username": "Channel_Bot"}
GROUP_ANONYMOUS_BOT = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}

# Update kinds that getUpdates/webhooks leave out unless listed explicitly in allowed_updates.
DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

ADMIN_RIGHT_FIELDS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
    "can_pin_messages",
    "can_manage_topics",
)
DEFAULT_BOT_RIGHTS = {
    "can_delete_messages": True,
    "can_restrict_members": True,
    "can_invite_users": True,
    "can_pin_messages": True,
    "can_manage_chat": True,
}
PERMISSION_FIELDS = (
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_react_to_messages",
    "can_edit_tag",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
)
# Default member permissions of a fresh group (what the official apps set).
DEFAULT_CHAT_PERMISSIONS = {name: name not in ("can_change_info", "can_pin_messages") for name in PERMISSION_FIELDS}


def now() -> int:
    return int(time.time())


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# ---------------------------------------------------------------------------------------------- entities

_ENTITY_PATTERNS = [
    ("bot_command", re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])")),
    ("url", re.compile(r"(?:https?://|t\.me/|www\.)[^\s<>\"]+", re.IGNORECASE)),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}\b")),
    ("hashtag", re.compile(r"(?<![\w#])#\w+")),
    ("cashtag", re.compile(r"(?<![\w$])\$[A-Z]{3,8}\b")),
]


def detect_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram's clients/servers attach to a plain text typed by a person (UTF-16 offsets)."""
    found: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _ENTITY_PATTERNS:
        for m in pattern.finditer(text):
            start, end = m.span()
            if kind == "url":
                while end > start and text[end - 1] in ".,;:!?)":
                    end -= 1
            if any(s < end and start < e for s, e in taken):
                continue
            taken.append((start, end))
            found.append((start, end, kind))
    found.sort()
    return [
        {"type": kind, "offset": utf16_len(text[:start]), "length": utf16_len(text[start:end])}
        for start, end, kind in found
    ]


# ---------------------------------------------------------------------------------------------- people


@dataclass(eq=False)
class SbUser:
    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False
    last_name: str | None = None
    # private chat with the bot
    started: bool = False
    blocked: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            d["last_name"] = self.last_name
        if self.username:
            d["username"] = self.username
        if self.language_code:
            d["language_code"] = self.language_code
        return d


@dataclass(eq=False)
class Membership:
    status: str  # creator | administrator | member | restricted | left | kicked
    rights: dict[str, bool] = field(default_factory=dict)  # administrators
    permissions: dict[str, bool] = field(default_factory=dict)  # restricted
    until_date: int = 0
    is_member: bool = True  # restricted only
    custom_title: str | None = None

    @property
    def present(self) -> bool:
        return self.status in ("creator", "administrator", "member") or (self.status == "restricted" and self.is_member)

    @property
    def is_admin(self) -> bool:
        return self.status in ("creator", "administrator")

    def can(self, right: str) -> bool:
        return self.status == "creator" or (self.status == "administrator" and self.rights.get(right, False))

    def copy(self) -> Membership:
        return Membership(
            self.status, dict(self.rights), dict(self.permissions), self.until_date, self.is_member, self.custom_title
        )

    def to_dict(self, user: dict[str, Any], can_be_edited: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status, "user": user}
        if self.status == "creator":
            d["is_anonymous"] = False
        elif self.status == "administrator":
            d["can_be_edited"] = can_be_edited
            d["is_anonymous"] = False
            for name in ADMIN_RIGHT_FIELDS:
                d[name] = bool(self.rights.get(name, False))
        elif self.status == "restricted":
            d["is_member"] = self.is_member
            for name in PERMISSION_FIELDS:
                d[name] = bool(self.permissions.get(name, False))
            d["until_date"] = self.until_date
        elif self.status == "kicked":
            d["until_date"] = self.until_date
        if self.custom_title and self.status in ("creator", "administrator"):
            d["custom_title"] = self.custom_title
        return d


# ---------------------------------------------------------------------------------------------- chats


@dataclass
class SbFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_name: str | None = None
    mime_type: str | None = None
    file_path: str = ""
    width: int = 0
    height: int = 0

    @property
    def file_size(self) -> int:
        return len(self.data)


@dataclass(eq=False)
class SbDocument:
    name: str | None
    data: bytes
    mime_type: str | None
    file_id: str

    @property
    def bytes(self) -> bytes:  # noqa: A003 - convenient alias for tests
        return self.data


@dataclass(eq=False)
class SbPoll:
    id: str
    question: str
    options: list[str]
    is_anonymous: bool = True
    type: str = "regular"
    allows_multiple_answers: bool = False
    correct_option_id: int | None = None
    is_closed: bool = False
    votes: dict[int, list[int]] = field(default_factory=dict)  # user id -> option ids
    chat_id: int = 0
    message_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        counts = Counter(o for ids in self.votes.values() for o in ids)
        d: dict[str, Any] = {
            "id": self.id,
            "question": self.question,
            "options": [
                {"persistent_id": str(i), "text": text, "voter_count": counts.get(i, 0)}
                for i, text in enumerate(self.options)
            ],
            "total_voter_count": len(self.votes),
            "is_closed": self.is_closed,
            "is_anonymous": self.is_anonymous,
            "type": self.type,
            "allows_multiple_answers": self.allows_multiple_answers,
            "allows_revoting": True,
            "members_only": False,
        }
        if self.correct_option_id is not None and self.type == "quiz":
            d["correct_option_id"] = self.correct_option_id
        return d


@dataclass(eq=False)
class SbInviteLink:
    invite_link: str
    creator: SbUser
    chat_id: int
    name: str | None = None
    expire_date: int | None = None
    member_limit: int | None = None
    creates_join_request: bool = False
    is_primary: bool = False
    is_revoked: bool = False
    joined: int = 0
    pending: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "invite_link": self.invite_link,
            "creator": self.creator.to_dict(),
            "creates_join_request": self.creates_join_request,
            "is_primary": self.is_primary,
            "is_revoked": self.is_revoked,
        }
        if self.name:
            d["name"] = self.name
        if self.expire_date:
            d["expire_date"] = self.expire_date
        if self.member_limit:
            d["member_limit"] = self.member_limit
        if self.creates_join_request:
            d["pending_join_request_count"] = self.pending
        return d


@dataclass(eq=False)
class SbMessage:
    message_id: int
    chat: SbChat
    date: int
    from_user: SbUser | None = None
    from_dict: dict[str, Any] | None = None  # service accounts (Channel_Bot, GroupAnonymousBot)
    sender_chat: SbChat | None = None
    text: str | None = None
    caption: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    reply_to: SbMessage | None = None
    photo: list[dict[str, Any]] | None = None
    document: SbDocument | None = None
    document_dict: dict[str, Any] | None = None
    poll: SbPoll | None = None
    forward_origin: dict[str, Any] | None = None
    service: dict[str, Any] = field(default_factory=dict)
    by_bot: bool = False
    deleted: bool = False
    edit_date: int | None = None
    history: list[str] = field(default_factory=list)  # earlier texts/captions

    @property
    def edited(self) -> bool:
        return self.edit_date is not None

    @property
    def content(self) -> str:
        return self.text if self.text is not None else (self.caption or "")

    def to_dict(self, *, with_reply: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"message_id": self.message_id}
        if self.from_dict is not None:
            d["from"] = dict(self.from_dict)
        elif self.from_user is not None:
            d["from"] = self.from_user.to_dict()
        if self.sender_chat is not None:
            d["sender_chat"] = self.sender_chat.to_dict()
        d["date"] = self.date
        d["chat"] = self.chat.to_dict()
        if self.forward_origin is not None:
            d["forward_origin"] = self.forward_origin
        if self.reply_to is not None and with_reply:
            d["reply_to_message"] = self.reply_to.to_dict(with_reply=False)
        if self.edit_date is not None:
            d["edit_date"] = self.edit_date
        if self.text is not None:
            d["text"] = self.text
            if self.entities:
                d["entities"] = self.entities
        if self.photo is not None:
            d["photo"] = self.photo
        if self.document_dict is not None:
            d["document"] = self.document_dict
        if self.poll is not None:
            d["poll"] = self.poll.to_dict()
        if self.caption is not None and self.text is None:
            d["caption"] = self.caption
            if self.entities:
                d["caption_entities"] = self.entities
        d.update(self.service)
        if self.reply_markup is not None and self.reply_markup.get("inline_keyboard"):
            d["reply_markup"] = self.reply_markup
        return d


@dataclass(eq=False)
class SbChat:
    id: int
    type: str  # private | group | supergroup | channel
    title: str | None = None
    username: str | None = None
    user: SbUser | None = None  # private chats
    members: dict[int, Membership] = field(default_factory=dict)
    messages: dict[int, SbMessage] = field(default_factory=dict)
    next_message_id: int = 1
    invite_links: dict[str, SbInviteLink] = field(default_factory=dict)
    permissions: dict[str, bool] = field(default_factory=lambda: dict(DEFAULT_CHAT_PERMISSIONS))
    pinned: list[int] = field(default_factory=list)
    migrated_to: int | None = None
    migrated_from: int | None = None
    chat_instance: str = field(default_factory=lambda: str(secrets.randbits(62)))
    banned_sender_chats: set[int] = field(default_factory=set)
    description: str | None = None
    join_requests: dict[int, str | None] = field(default_factory=dict)  # user id -> invite link used

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    @property
    def label(self) -> str:
        if self.type == "private" and self.user is not None:
            return f"private {self.user.first_name}"
        return self.title or str(self.id)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private" and self.user is not None:
            d["first_name"] = self.user.first_name
            if self.user.last_name:
                d["last_name"] = self.user.last_name
            if self.user.username:
                d["username"] = self.user.username
        else:
            d["title"] = self.title or ""
            if self.username:
                d["username"] = self.username
        return d

    def new_message_id(self) -> int:
        mid = self.next_message_id
        self.next_message_id += 1
        return mid


# ---------------------------------------------------------------------------------------------- transcript


@dataclass
class TranscriptEntry:
    """One line of what happened: a person's action or the bot's effect."""

    kind: str  # message, bot_message, press, edit, bot_edit, delete, join, leave, ... (see driver/server)
    chat: str  # chat label, e.g. "Brand Fans" or "private Alice"
    actor: str  # person's name or the bot's username
    text: str = ""
    buttons: list[str] = field(default_factory=list)
    by_bot: bool = False
    at: float = field(default_factory=time.time)
    chat_id: int | None = None
    message_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        head = f"[{self.chat}] "
        buttons = ("  " + " ".join(f"[{b}]" for b in self.buttons)) if self.buttons else ""
        if self.kind == "message":
            return f"{head}{self.actor}: {self.text}{buttons}"
        if self.kind == "bot_message":
            return f"{head}🤖 {self.actor}: {self.text}{buttons}"
        if self.kind == "bot_edit":
            return f"{head}🤖 edited #{self.message_id}: {self.text}{buttons}"
        if self.kind == "press":
            answer = self.extra.get("answer")
            if answer is None:
                tail = " -> (no answer)"
            elif answer.get("text") and answer.get("show_alert"):
                tail = f" -> alert to {self.actor}: {answer['text']}"
            elif answer.get("text"):
                tail = f" -> toast to {self.actor}: {answer['text']}"
            else:
                tail = " -> answered"
            return f"{head}{self.actor} pressed [{self.text}]{tail}"
        if self.by_bot:
            return f"{head}🤖 {self.text}"
        return f"{head}{self.actor} {self.text}"


# ---------------------------------------------------------------------------------------------- stats


@dataclass
class SbStats:
    updates_queued: int = 0
    updates_delivered: int = 0
    updates_filtered: Counter = field(default_factory=Counter)  # kind -> dropped by allowed_updates/privacy
    calls: Counter = field(default_factory=Counter)  # method -> count
    errors: Counter = field(default_factory=Counter)  # method -> failed calls
    rate_limited: Counter = field(default_factory=Counter)  # chat id (or "global") -> 429s
    rate_limited_total: int = 0
    webhook_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "updates_queued": self.updates_queued,
            "updates_delivered": self.updates_delivered,
            "updates_filtered": dict(self.updates_filtered),
            "calls": dict(self.calls),
            "errors": dict(self.errors),
            "rate_limited": {str(k): v for k, v in self.rate_limited.items()},
            "rate_limited_total": self.rate_limited_total,
            "webhook_failures": self.webhook_failures,
        }


# ---------------------------------------------------------------------------------------------- world


class World:
    """All state of the emulated Telegram, as seen by one bot."""

    def __init__(self, token: str, bot_username: str, privacy_mode: bool = True, bot_name: str | None = None):
        self.token = token
        bot_id = int(token.split(":", 1)[0])
        self.bot = SbUser(id=bot_id, first_name=bot_name or bot_username, username=bot_username, is_bot=True)
        self.privacy_mode = privacy_mode
        self.users: dict[int, SbUser] = {}
        self.chats: dict[int, SbChat] = {}
        self.files: dict[str, SbFile] = {}
        self.polls: dict[str, SbPoll] = {}
        self.invite_links: dict[str, SbInviteLink] = {}
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.transcript: list[TranscriptEntry] = []
        self.stats = SbStats()
        # updates
        self.updates: list[dict[str, Any]] = []
        self.next_update_id = 1
        self.allowed_updates: list[str] | None = None
        self.delivered_ids: set[int] = set()
        self.new_update = asyncio.Event()
        self._seq = 0
        self._file_seq = 0

    # ---- ids
    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def new_user_id(self) -> int:
        return 7_000_000_000 + self._next() * 17

    def new_group_id(self) -> int:
        return -(400_000_000 + self._next() * 101)

    def new_supergroup_id(self) -> int:
        return -(1_001_000_000_000 + self._next() * 101)

    # ---- people and chats
    def add_user(self, first_name: str, **kw: Any) -> SbUser:
        user = SbUser(id=self.new_user_id(), first_name=first_name, **kw)
        self.users[user.id] = user
        return user

    def private_chat(self, user: SbUser) -> SbChat:
        chat = self.chats.get(user.id)
        if chat is None:
            chat = SbChat(id=user.id, type="private", user=user)
            self.chats[user.id] = chat
        return chat

    def create_chat(self, title: str, owner: SbUser | None, type_: str, username: str | None = None) -> SbChat:
        if type_ == "group":
            cid = self.new_group_id()
        else:
            cid = self.new_supergroup_id()
        chat = SbChat(id=cid, type=type_, title=title, username=username)
        if owner is not None:
            chat.members[owner.id] = Membership("creator")
        self.chats[cid] = chat
        return chat

    def find_chat(self, ref: int | str) -> SbChat | None:
        if isinstance(ref, str) and ref.startswith("@"):
            name = ref[1:].lower()
            for chat in self.chats.values():
                if (chat.username or "").lower() == name or (
                    chat.user is not None and (chat.user.username or "").lower() == name
                ):
                    return chat
            return None
        try:
            cid = int(ref)
        except (TypeError, ValueError):
            return None
        chat = self.chats.get(cid)
        if chat is None and cid in self.users:
            chat = self.private_chat(self.users[cid])
        return chat

    def membership(self, chat: SbChat, user_id: int) -> Membership:
        m = chat.members.get(user_id)
        if m is None:
            return Membership("left")
        if m.status in ("restricted", "kicked") and m.until_date and m.until_date <= now():
            # temporary restriction or ban ran out
            m = Membership("member") if (m.status == "restricted" and m.is_member) else Membership("left")
            chat.members[user_id] = m
        return m

    def bot_membership(self, chat: SbChat) -> Membership:
        return self.membership(chat, self.bot.id)

    def person(self, user_id: int) -> SbUser | None:
        if user_id == self.bot.id:
            return self.bot
        return self.users.get(user_id)

    def member_dict(self, chat: SbChat, user_id: int) -> dict[str, Any]:
        user = self.person(user_id)
        assert user is not None
        return self.membership(chat, user_id).to_dict(user.to_dict(), can_be_edited=False)

    # ---- messages
    def add_message(self, chat: SbChat, **kw: Any) -> SbMessage:
        msg = SbMessage(message_id=chat.new_message_id(), chat=chat, date=now(), **kw)
        chat.messages[msg.message_id] = msg
        return msg

    def new_file(self, data: bytes, *, kind: str, file_name: str | None = None, mime_type: str | None = None) -> SbFile:
        self._file_seq += 1
        unique = f"AQAD{secrets.token_urlsafe(9)}"
        file_id = f"{kind[:2].upper()}ACAgIAAxkBAAI{self._file_seq:06d}{secrets.token_urlsafe(18)}"
        ext = {"photo": "jpg"}.get(kind, (file_name or "file.bin").rsplit(".", 1)[-1])
        f = SbFile(file_id, unique, data, file_name, mime_type, file_path=f"{kind}s/file_{self._file_seq}.{ext}")
        self.files[file_id] = f
        return f

    # ---- updates
    def update_allowed(self, kind: str) -> bool:
        if self.allowed_updates is None:
            return kind not in DEFAULT_EXCLUDED_UPDATES
        return kind in self.allowed_updates

    def enqueue(self, kind: str, payload: dict[str, Any]) -> int | None:
        """Queue an update unless the bot's allowed_updates exclude it (filtered at creation, like Telegram)."""
        if not self.update_allowed(kind):
            self.stats.updates_filtered[kind] += 1
            return None
        uid = self.next_update_id
        self.next_update_id += 1
        self.updates.append({"update_id": uid, kind: payload})
        self.stats.updates_queued += 1
        self.new_update.set()
        self.new_update = asyncio.Event()
        return uid

    def confirm(self, offset: int) -> None:
        """Forget every update with update_id < offset (getUpdates' offset)."""
        if offset < 0:
            keep = -offset
            self.updates = self.updates[-keep:] if keep else []
        else:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]

    def mark_delivered(self, updates: list[dict[str, Any]]) -> None:
        for u in updates:
            if u["update_id"] not in self.delivered_ids:
                self.delivered_ids.add(u["update_id"])
                self.stats.updates_delivered += 1

    def note(self, kind: str, chat: SbChat | None, actor: str, text: str = "", **kw: Any) -> TranscriptEntry:
        entry = TranscriptEntry(
            kind=kind,
            chat=chat.label if chat is not None else "-",
            actor=actor,
            text=text,
            chat_id=chat.id if chat is not None else None,
            **kw,
        )
        self.transcript.append(entry)
        return entry


def keyboard_buttons(markup: dict[str, Any] | None) -> list[tuple[str, str | None]]:
    """(text, callback_data or url) for every button of an inline keyboard."""
    if not markup:
        return []
    out: list[tuple[str, str | None]] = []
    for row in markup.get("inline_keyboard") or []:
        for b in row:
            value = b.get("callback_data")
            if value is None:
                value = b.get("url") or b.get("switch_inline_query") or b.get("copy_text", {}).get("text")
            out.append((b.get("text", ""), value))
    return out
