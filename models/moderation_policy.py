"""Moderation's decision: which rule, if any, a group message breaks. Pure: no Telegram, no database, no clock.

The listener (handlers/moderation.py) turns an update into a `MessageFacts` once, asks `is_subject_to_rules`,
counts the sender's pace (`Pace.count`), asks whether they are new (`is_new_member`), and then `find_violation`;
acting on the verdict (deleting, warning, escalating) stays with the listener. Detection of links, diversion and
banned words is models/detection.py; the group's rules are models/moderation.py (`ModerationRules`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from models import detection, moderation
from models.groups import Group
from models.moderation import ModerationRules
from models.spam_classifier import SpamModel

DIVERSION_KINDS = frozenset({"invite", "channel", "wechat", "qq", "phone"})
LINK_KINDS = frozenset({"link", "invite", "channel"})
# The entity types moderation reads (text_link urls arrive in MessageFacts.urls).
ENTITY_TYPES = frozenset({"url", "mention", "text_mention", "phone_number", "email", "cashtag", "bot_command"})
MAX_ENTITIES = 100

PaceRule = Literal["flood", "repeat"]


class MessageFacts(NamedTuple):
    """What moderation needs to know about one group message, read from the update once. Never stored."""

    chat_id: int
    sender_id: int | None  # the person who wrote it; None for no sender, a bot, or Telegram's own accounts
    sender_chat_id: int | None = None  # set when someone writes as a channel, or as the group (anonymous admin)
    text: str = ""  # the text or the caption
    urls: tuple[str, ...] = ()  # links Telegram carries beside the text: text-link entities, button urls
    has_buttons: bool = False  # an inline keyboard (a via_bot message)
    media: bool = False  # photo, video, document, audio, voice, video note or animation
    sticker: bool = False
    animation: bool = False  # a GIF (also counted in media)
    forwarded: bool = False
    automatic_forward: bool = False  # a linked channel's post copied into its discussion group
    service: bool = False  # someone joined or left
    edited: bool = False
    # What Telegram itself marked in the text, as (entity type, value): "url" (the text), "mention" (the @name),
    # "text_mention" (the user id), "phone_number", "email", "cashtag", "bot_command" (the text). See ENTITY_TYPES.
    entities: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Violation:
    """The rule broken ("diversion", "banned", "links", "newcomer", "locks", "flood", "repeat") and what
    triggered it (e.g. "wechat:abc12345", "sticker")."""

    rule: str
    detail: str


@dataclass
class CompiledRules:
    """A group's moderation rules with the banned words compiled, as of the group row's `updated_at`."""

    stamp: datetime
    rules: ModerationRules
    banned: detection.BannedMatcher | None

    @classmethod
    def of(cls, group: Group) -> CompiledRules:
        rules = moderation.rules_of(group)
        banned = detection.compile_banned(rules.banned_words) if rules.banned_words else None
        return cls(group.updated_at, rules, banned)


@dataclass(slots=True)
class Pace:
    """One member's recent messages in one group: their times, and a hash of the last text (memory only)."""

    times: deque[float]
    digest: int | None = None  # hash() of the last text, normalized: memory only, never stored
    repeats: int = 0

    def count(self, text: str | None, rules: ModerationRules, now: float) -> PaceRule | None:
        """Count a message sent at `now` (seconds, monotonic); "flood" or "repeat" when the member went over the
        limit (then the count restarts, so a burst is punished once per limit reached, not once per message)."""
        if rules.flood_messages:
            if self.times.maxlen != rules.flood_messages:
                self.times = deque(self.times, maxlen=rules.flood_messages)
            self.times.append(now)
            if len(self.times) == rules.flood_messages and now - self.times[0] <= rules.flood_seconds:
                self.times.clear()
                return "flood"
        if rules.flood_repeat and text:
            digest = hash(" ".join(text.lower().split()))
            self.repeats = self.repeats + 1 if digest == self.digest else 1
            self.digest = digest
            if self.repeats > rules.flood_repeat:
                self.repeats = 0
                return "repeat"
        return None


def is_subject_to_rules(facts: MessageFacts) -> bool:
    """False for what moderation never touches: a linked channel's automatic forward, a join or leave, an
    anonymous admin (writing as the group), and senders that are not people (bots, Telegram's accounts)."""
    if facts.automatic_forward or facts.service:
        return False
    if facts.sender_chat_id is not None:
        return facts.sender_chat_id != facts.chat_id
    return facts.sender_id is not None


def paced_sender(facts: MessageFacts) -> int | None:
    """Whose pace this message counts toward: the person, for a new message written as themselves."""
    return None if facts.edited or facts.sender_chat_id is not None else facts.sender_id


def is_new_member(joined_at: datetime | None, bot_joined_at: datetime, hours: int, now: datetime) -> bool:
    """Joined less than `hours` ago. Members first seen in the bot's own first `hours` in the group are not new:
    the bot cannot tell a newcomer from a regular it simply had not met yet."""
    if joined_at is None or hours <= 0:
        return False
    window = timedelta(hours=hours)
    return now - joined_at < window and joined_at - bot_joined_at >= window


class EntityFacts(NamedTuple):
    """What Telegram's entities add to the patterns: urls to check as links, findings they prove, and whether
    the message names someone (an @mention or a text mention) or a cashtag."""

    urls: tuple[str, ...]
    findings: tuple[detection.Finding, ...]
    mentions: tuple[str, ...]
    cashtags: tuple[str, ...]


def entity_facts(facts: MessageFacts) -> EntityFacts:
    """Telegram's own marks first: a `url` entity is a link whatever its ending (example.lat), an `email` is a
    link to its domain, a `phone_number` written with "+" is a phone, a `bot_command` in a forward promotes a
    bot; mentions and cashtags are kept for the newcomer check."""
    urls: list[str] = []
    findings: list[detection.Finding] = []
    mentions: list[str] = []
    cashtags: list[str] = []
    for kind, value in facts.entities[:MAX_ENTITIES]:
        if kind == "url":
            urls.append(value)
        elif kind == "email":
            findings.append(detection.Finding("link", value.rpartition("@")[2].strip().lower()))
        elif kind == "phone_number":
            digits = "".join(ch for ch in value if ch.isdigit())
            if value.lstrip().startswith("+") and 8 <= len(digits) <= 15:
                findings.append(detection.Finding("phone", "+" + digits))
        elif kind in ("mention", "text_mention"):
            mentions.append(value.lstrip("@").lower())
        elif kind == "cashtag":
            cashtags.append(value.upper())
        elif kind == "bot_command" and facts.forwarded:
            findings.append(detection.Finding("channel", value.lower()))
    return EntityFacts(tuple(urls), tuple(findings), tuple(mentions), tuple(cashtags))


def find_violation(
    facts: MessageFacts, compiled: CompiledRules, *, new_member: bool, pace: str | None,
    learned: SpamModel | None = None,
) -> Violation | None:
    """The first rule the message breaks, content first: diversion, banned words (and the scam phrases), links
    (and shop share codes), then for a new member what the group's classifier (`learned`, trained on its
    confirmed samples) calls spam and any link, mention or media, then locked content, then pace (`pace`: what
    `Pace.count` said). None when it breaks none."""
    rules = compiled.rules
    marked = entity_facts(facts) if facts.entities else None
    findings: list[detection.Finding] = []
    if facts.text or facts.has_buttons:
        urls = facts.urls + marked.urls if marked is not None else facts.urls
        findings = detection.scan(facts.text, urls, banned=compiled.banned, share_codes=rules.share_codes,
                                  scam_phrases=rules.scam_phrases)
    if marked is not None:
        findings += marked.findings
    for finding in findings:
        if finding.kind in DIVERSION_KINDS and rules.diversion:
            return Violation("diversion", f"{finding.kind}:{finding.value}")
    for finding in findings:
        if finding.kind == "banned":
            return Violation("banned", finding.value)
    for finding in findings:
        if finding.kind == "scam":
            return Violation("banned", f"scam:{finding.value}")
    links = [f for f in findings if f.kind in LINK_KINDS or f.kind == "sharecode"]
    if rules.links:
        for finding in links:
            if finding.kind == "sharecode" or finding.kind != "link" or not detection.domain_allowed(
                finding.value, rules.allowed_domains
            ):
                return Violation("links", f"{finding.kind}:{finding.value}")
    elif rules.share_codes:
        for finding in links:
            if finding.kind == "sharecode":
                return Violation("links", f"sharecode:{finding.value}")
    if new_member:
        if learned and facts.text:
            judgement = learned.judge(facts.text)
            if judgement.spam:
                return Violation("newcomer", "learned: " + judgement.detail())
        if links:
            return Violation("newcomer", "link")
        if marked is not None and (marked.mentions or marked.cashtags) or detection.mentions_someone(facts.text):
            return Violation("newcomer", "mention")
        if facts.media or facts.sticker:
            return Violation("newcomer", "media")
    if rules.lock_stickers and facts.sticker:
        return Violation("locks", "sticker")
    if rules.lock_gifs and facts.animation:
        return Violation("locks", "gif")
    if rules.lock_forwards and facts.forwarded:
        return Violation("locks", "forward")
    if rules.lock_media and facts.media and not facts.animation:
        return Violation("locks", "media")
    if pace is not None:
        return Violation(pace, "")
    return None
