"""Moderation's decision on plain values (models/moderation_policy.py): no Telegram objects, no database."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models import detection
from models.moderation import ModerationRules
from models.moderation_policy import (
    CompiledRules,
    MessageFacts,
    Pace,
    Violation,
    find_violation,
    is_new_member,
    is_subject_to_rules,
    paced_sender,
)

CHAT = -1001234
ALICE = 42
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def compiled(**knobs: Any) -> CompiledRules:
    rules = ModerationRules(**knobs)
    banned = detection.compile_banned(rules.banned_words) if rules.banned_words else None
    return CompiledRules(NOW, rules, banned)


def said(text: str = "", **facts: Any) -> MessageFacts:
    return MessageFacts(chat_id=CHAT, sender_id=ALICE, text=text, **facts)


# (what was said, the group's knobs, a new member?, the pace verdict) -> the violation, or None
VERDICTS = [
    ("clean chatter", said("今天的团购什么时候开始？"), {}, False, None, None),
    ("wechat diversion", said("便宜代购 加微信 abc12345"), {}, False, None, Violation("diversion", "wechat:abc12345")),
    ("diversion allowed by the group", said("加微信 abc12345"), {"diversion": False}, False, None, None),
    ("a link", said("cheap http://spam-shop.example.com/buy"), {}, False, None,
     Violation("links", "link:spam-shop.example.com")),
    ("an allowed domain", said("see https://shop.example.com/x"), {"allowed_domains": ["example.com"]}, False, None,
     None),
    ("links allowed", said("see https://spam.example.com"), {"links": False}, False, None, None),
    ("a link hidden in a text-link entity", said("click here", urls=("https://evil.example.net/",)), {}, False, None,
     Violation("links", "link:evil.example.net")),
    ("a button link with no text", said(urls=("https://evil.example.net/",), has_buttons=True), {}, False, None,
     Violation("links", "link:evil.example.net")),
    ("a banned word", said("best 代购 ever"), {"banned_words": ["代购"]}, False, None, Violation("banned", "代购")),
    ("diversion comes before a banned word", said("代购 加微信 abc12345"), {"banned_words": ["代购"]}, False, None,
     Violation("diversion", "wechat:abc12345")),
    ("a new member's photo", said(media=True), {}, True, None, Violation("newcomer", "media")),
    ("a new member's sticker", said(sticker=True), {}, True, None, Violation("newcomer", "media")),
    ("a new member's allowed link", said("https://shop.example.com"), {"allowed_domains": ["example.com"]}, True,
     None, Violation("newcomer", "link")),
    ("a regular's photo", said(media=True), {}, False, None, None),
    ("a locked sticker", said(sticker=True), {"lock_stickers": True}, False, None, Violation("locks", "sticker")),
    ("a locked gif", said(media=True, animation=True), {"lock_gifs": True}, False, None, Violation("locks", "gif")),
    ("a gif is not locked media", said(media=True, animation=True), {"lock_media": True}, False, None, None),
    ("locked media", said(media=True), {"lock_media": True}, False, None, Violation("locks", "media")),
    ("a locked forward", said("hi", forwarded=True), {"lock_forwards": True}, False, None,
     Violation("locks", "forward")),
    ("a forward, not locked", said("hi", forwarded=True), {}, False, None, None),
    ("flooding", said("hi"), {}, False, "flood", Violation("flood", "")),
    ("content comes before pace", said("加微信 abc12345"), {}, False, "repeat",
     Violation("diversion", "wechat:abc12345")),
]


@pytest.mark.parametrize(("facts", "knobs", "new_member", "pace", "expected"),
                         [case[1:] for case in VERDICTS], ids=[case[0] for case in VERDICTS])
def test_find_violation_names_the_first_rule_broken(
    facts: MessageFacts, knobs: dict[str, Any], new_member: bool, pace: str | None, expected: Violation | None
) -> None:
    assert find_violation(facts, compiled(**knobs), new_member=new_member, pace=pace) == expected


SUBJECTS = [
    ("a member", said("hi"), True),
    ("someone writing as their channel", MessageFacts(CHAT, None, sender_chat_id=-100777, text="hi"), True),
    ("an anonymous admin", MessageFacts(CHAT, None, sender_chat_id=CHAT, text="hi"), False),
    ("a bot or Telegram's service account", MessageFacts(CHAT, None, text="hi"), False),
    ("a linked channel's automatic forward", said("hi", automatic_forward=True), False),
    ("a join or leave", said(service=True), False),
]


@pytest.mark.parametrize(("facts", "expected"), [case[1:] for case in SUBJECTS], ids=[case[0] for case in SUBJECTS])
def test_who_the_rules_apply_to(facts: MessageFacts, expected: bool) -> None:
    assert is_subject_to_rules(facts) is expected


def test_only_new_messages_written_as_oneself_count_toward_pace() -> None:
    assert paced_sender(said("hi")) == ALICE
    assert paced_sender(said("hi", edited=True)) is None
    assert paced_sender(MessageFacts(CHAT, ALICE, sender_chat_id=-100777, text="hi")) is None


BOT_ARRIVED = NOW - timedelta(days=30)
NEWCOMERS = [
    ("joined an hour ago", NOW - timedelta(hours=1), BOT_ARRIVED, 24, True),
    ("joined two days ago", NOW - timedelta(days=2), BOT_ARRIVED, 24, False),
    ("newcomer rule off", NOW - timedelta(hours=1), BOT_ARRIVED, 0, False),
    ("never seen joining", None, BOT_ARRIVED, 24, False),
    ("first seen while the bot itself was new", NOW - timedelta(hours=1), NOW - timedelta(hours=2), 24, False),
]


@pytest.mark.parametrize(("joined_at", "bot_joined_at", "hours", "expected"), [case[1:] for case in NEWCOMERS],
                         ids=[case[0] for case in NEWCOMERS])
def test_is_new_member(joined_at: datetime | None, bot_joined_at: datetime, hours: int, expected: bool) -> None:
    assert is_new_member(joined_at, bot_joined_at, hours, NOW) is expected


def test_pace_flags_a_flood_once_per_limit_reached() -> None:
    rules = ModerationRules(flood_messages=3, flood_seconds=10, flood_repeat=0)
    pace = Pace(deque(maxlen=3))
    verdicts = [pace.count(f"m{i}", rules, float(i)) for i in range(7)]
    assert verdicts == [None, None, "flood", None, None, "flood", None]


def test_pace_lets_slow_talk_through() -> None:
    rules = ModerationRules(flood_messages=3, flood_seconds=10, flood_repeat=0)
    pace = Pace(deque(maxlen=3))
    assert [pace.count(f"m{i}", rules, i * 6.0) for i in range(6)] == [None] * 6


def test_pace_flags_repeating_the_same_text_ignoring_case_and_spacing() -> None:
    rules = ModerationRules(flood_messages=0, flood_repeat=2)
    pace = Pace(deque(maxlen=1))
    texts = ["Buy now", "buy  now", "BUY NOW", "something else", "buy now"]
    assert [pace.count(text, rules, 0.0) for text in texts] == [None, None, "repeat", None, None]
