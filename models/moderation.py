"""Order in the group: each group's moderation rules (presets and knobs), warnings that expire and escalate
along a ladder, and the audit log of every action, automatic or manual.

The rules live as JSON in `Group.settings["moderation"]`. Warnings have a unique (group, key), so one offending
message (or one command) never warns twice. The offending message's text is the only message text qunbot stores:
as audit evidence, erased after `evidence_days` by the scheduler (erase_expired_evidence).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic import Field as PydanticField
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Select,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert, ReturningInsert
from sqlmodel import Field, SQLModel

from models import clock
from models.db import (
    BigIntKey,
    UTCDateTime,
    dialect_insert,
    insert,
    is_postgres,
    long_running,
    run_in_transaction,
    transaction,
    utcnow,
)
from models.detection import compile_banned
from models.groups import Group
from models.roles import BotModerator
from models.script import fold

RULES = ("flood", "repeat", "links", "diversion", "banned", "newcomer", "locks")
ACTIONS = ("delete", "warn", "unwarn", "mute", "unmute", "kick", "ban", "unban", "report", "ban_sender_chat")
EVIDENCE_MAX = 1000  # characters of the offending message kept as evidence
REASON_MAX = 256
BANNED_MAX = 300  # entries per group
DOMAINS_MAX = 100
RULES_TEXT_MAX = 3500
# Telegram treats restrictions shorter than 30 s or longer than 366 days as forever (Bot API, restrictChatMember
# until_date); the parser keeps durations inside that range so what the admin typed is what happens.
MIN_DURATION = 30
MAX_DURATION = 366 * 86400


# -- durations: the house's one grammar (models/clock.py), within what moderation allows ---------------------


def parse_duration(text: str) -> int | None:
    """Seconds in `text` (the grammar of models.clock.parse_duration: 10m, 2h, 1h30m, 90s, 2w, 30分钟, 半小时 …);
    None if it is not a duration or falls outside 30 s .. 366 days."""
    seconds = clock.parse_duration(text)
    return seconds if seconds is not None and MIN_DURATION <= seconds <= MAX_DURATION else None


def format_duration(seconds: int) -> str:
    """The compact form parse_duration reads back: 1d2h, 30m, 45s."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


# -- rules -----------------------------------------------------------------------------------------------------


class Step(BaseModel):
    """A rung of the ladder: at `at` active warnings, do `action` (mute for `seconds`, kick, or ban)."""

    at: int = PydanticField(ge=1, le=100)
    action: Literal["mute", "kick", "ban"]
    seconds: int | None = PydanticField(default=None, ge=MIN_DURATION, le=MAX_DURATION)  # None: forever (ban)


def _ladder(*steps: tuple[int, str, int | None]) -> list[Step]:
    return [Step(at=at, action=action, seconds=seconds) for at, action, seconds in steps]  # type: ignore[arg-type]


class ModerationRules(BaseModel):
    """A group's moderation rules. Every knob has a default (the "standard" preset)."""

    enabled: bool = True
    dry_run: bool = False  # record what would have happened, act on nothing
    flood_messages: int = PydanticField(default=6, ge=0, le=100)  # 0: off
    flood_seconds: int = PydanticField(default=10, ge=1, le=3600)
    flood_repeat: int = PydanticField(default=3, ge=0, le=100)  # identical messages in a row; 0: off
    links: bool = True  # block links (except allowed_domains)
    allowed_domains: list[str] = PydanticField(default_factory=list, max_length=DOMAINS_MAX)
    diversion: bool = True  # 引流: WeChat / QQ / phone numbers, invite links, other channels
    banned_words: list[str] = PydanticField(default_factory=list, max_length=BANNED_MAX)
    newcomer_hours: int = PydanticField(default=24, ge=0, le=24 * 30)  # no links, mentions or media for new members
    share_codes: bool = True  # block shop share codes (淘口令 ￥…￥); a brand sharing its own turns this off
    scam_phrases: bool = True  # block job/investment/"DM me" pitches (detection.SCAM_PHRASES); relaxed: off
    lock_stickers: bool = False
    lock_gifs: bool = False
    lock_forwards: bool = False
    lock_media: bool = False
    warn_expiry_days: int = PydanticField(default=30, ge=1, le=3650)
    evidence_days: int = PydanticField(default=7, ge=0, le=90)
    ladder: list[Step] = PydanticField(default_factory=lambda: _ladder((3, "mute", 3600), (5, "ban", None)))
    # Per-rule ladders replace `ladder` for that rule; per-rule actions: "warn" (delete and warn) or "delete".
    rule_ladders: dict[str, list[Step]] = PydanticField(default_factory=dict)
    rule_actions: dict[str, Literal["warn", "delete"]] = PydanticField(
        default_factory=lambda: {"locks": "delete", "newcomer": "delete"}
    )
    log_chat_id: int | None = None
    rules_text: str = PydanticField(default="", max_length=RULES_TEXT_MAX)

    def ladder_for(self, rule: str | None) -> list[Step]:
        return self.rule_ladders.get(rule or "", self.ladder)

    def action_for(self, rule: str) -> str:
        return self.rule_actions.get(rule, "warn")


PRESETS: dict[str, dict[str, Any]] = {
    "relaxed": {
        "flood_messages": 10, "flood_seconds": 10, "flood_repeat": 5, "links": False, "diversion": True,
        "newcomer_hours": 0, "lock_stickers": False, "lock_gifs": False, "lock_forwards": False, "lock_media": False,
        "scam_phrases": False,
        "ladder": _ladder((5, "mute", 3600), (8, "ban", None)), "rule_ladders": {},
        "rule_actions": {"locks": "delete", "newcomer": "delete"},
    },
    "standard": {
        field: ModerationRules.model_fields[field].get_default(call_default_factory=True)
        for field in ("flood_messages", "flood_seconds", "flood_repeat", "links", "diversion", "newcomer_hours",
                      "scam_phrases", "lock_stickers", "lock_gifs", "lock_forwards", "lock_media", "ladder",
                      "rule_ladders", "rule_actions")
    },
    "strict": {
        "flood_messages": 5, "flood_seconds": 10, "flood_repeat": 2, "links": True, "diversion": True,
        "newcomer_hours": 72, "lock_stickers": False, "lock_gifs": False, "lock_forwards": True, "lock_media": False,
        "scam_phrases": True,
        "ladder": _ladder((2, "mute", 86400), (3, "ban", None)), "rule_ladders": {},
        "rule_actions": {"locks": "delete", "newcomer": "warn"},
    },
}

# The knobs /modset changes (besides presets, per-rule ladders `ladder.<rule>` and actions `action.<rule>`).
KNOBS = (
    "enabled", "dry_run", "flood_messages", "flood_seconds", "flood_repeat", "links", "allowed_domains",
    "diversion", "banned_words", "newcomer_hours", "share_codes", "scam_phrases", "lock_stickers", "lock_gifs",
    "lock_forwards", "lock_media", "warn_expiry_days", "evidence_days", "ladder",
)
KNOB_ALIASES = {
    "flood": "flood_messages", "repeat": "flood_repeat", "domains": "allowed_domains", "banned": "banned_words",
    "words": "banned_words", "newcomers": "newcomer_hours", "newcomer": "newcomer_hours", "stickers": "lock_stickers",
    "gifs": "lock_gifs", "forwards": "lock_forwards", "media": "lock_media", "dryrun": "dry_run",
    "expiry": "warn_expiry_days", "evidence": "evidence_days", "sharecodes": "share_codes", "scam": "scam_phrases",
}
_TRUE = {"1", "true", "yes", "on", "y", "开", "是", "block", "lock"}
_FALSE = {"0", "false", "no", "off", "n", "关", "否", "allow", "unlock"}
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_STEP = re.compile(r"^(\d{1,3})\s*[:：=]\s*(mute|kick|ban)\s*(\S*)$")


class InvalidKnob(ValueError):
    """An unknown knob or a value it does not accept; `reason` is short English for the handler to show."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def rules_of(group: Group) -> ModerationRules:
    """The rules stored on a loaded group row (the defaults for anything unset or unreadable)."""
    stored = (group.settings or {}).get("moderation") or {}
    try:
        return ModerationRules.model_validate(stored)
    except ValidationError:
        return ModerationRules()


async def _load_group(session: AsyncSession, group_id: int, *, for_update: bool = False) -> Group:
    statement = select(Group).where(Group.id == group_id)  # type: ignore[arg-type]
    if for_update:
        statement = statement.with_for_update()
    group = await session.scalar(statement)
    if group is None:
        raise LookupError(f"no group {group_id}")
    return group


async def get_rules(session: AsyncSession, group_id: int) -> ModerationRules:
    async with transaction(session):
        return rules_of(await _load_group(session, group_id))


async def _store(session: AsyncSession, group_id: int, change: dict[str, Any]) -> ModerationRules:
    group = await _load_group(session, group_id, for_update=True)
    current = rules_of(group).model_dump(mode="json")
    current.update(change)
    rules = ModerationRules.model_validate(current)
    settings = dict(group.settings or {})
    settings["moderation"] = rules.model_dump(mode="json")
    group.settings = settings
    group.updated_at = utcnow()  # handlers key their compiled-rules cache on this
    return rules


def parse_ladder(raw: str) -> list[Step]:
    """`3:mute1h,5:ban` (at:action[duration]); `none` for no escalation (warnings only)."""
    text = raw.strip().lower()
    if text in ("none", "-", "off", ""):
        return []
    steps: dict[int, Step] = {}
    for part in text.replace("，", ",").split(","):
        match = _STEP.match(part.strip())
        if not match:
            raise InvalidKnob("ladder", f"expected steps like 3:mute1h,5:ban, got {part.strip()[:40]!r}")
        at, action, duration = int(match[1]), match[2], match[3]
        seconds = None
        if duration:
            seconds = parse_duration(duration)
            if seconds is None:
                raise InvalidKnob("ladder", f"bad duration {duration[:20]!r} (use 10m, 2h, 1d)")
        elif action == "mute":
            seconds = 3600
        if not 1 <= at <= 100 or at in steps:
            raise InvalidKnob("ladder", f"bad or repeated step {at}")
        steps[at] = Step(at=at, action=action, seconds=seconds)  # type: ignore[arg-type]
    return [steps[at] for at in sorted(steps)]


def format_ladder(steps: list[Step]) -> str:
    if not steps:
        return "none"
    return ",".join(
        f"{step.at}:{step.action}" + (format_duration(step.seconds) if step.seconds else "") for step in steps
    )


def _bool(name: str, raw: str) -> bool:
    value = fold(raw)  # 開/关, ＯＮ
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidKnob(name, "expected on/off")


def _int(name: str, raw: str) -> int:
    value = raw.strip()
    if not re.fullmatch(r"\d{1,6}", value):
        raise InvalidKnob(name, "expected a whole number >= 0")
    return int(value)


def check_banned_entry(entry: str) -> str:
    """A banned-words entry as stored: plain text, a wildcard (* and ?), or `re:` + a regular expression."""
    entry = entry.strip()
    if not entry or len(entry) > 200:
        raise InvalidKnob("banned_words", "entries must be 1 to 200 characters")
    errors = compile_banned([entry]).errors  # the detector refuses bad or catastrophically slow patterns
    if errors:
        raise InvalidKnob("banned_words", errors[0])
    return entry


def check_domain(entry: str) -> str:
    domain = entry.strip().lower().removeprefix("https://").removeprefix("http://").split("/")[0]
    domain = domain.removeprefix("*.").removeprefix("www.")
    if not _DOMAIN.match(domain):
        raise InvalidKnob("allowed_domains", f"not a domain: {entry.strip()[:60]!r}")
    return domain


def _list_change(name: str, current: list[str], raw: str) -> list[str]:
    """`add X`, `remove X`, `clear` on a list knob."""
    verb, _sep, rest = raw.strip().partition(" ")
    verb = verb.lower()
    check = check_banned_entry if name == "banned_words" else check_domain
    if verb in ("clear", "none"):
        return []
    if verb in ("add", "+", "remove", "del", "-") and rest.strip():
        entry = check(rest)
        if verb in ("add", "+"):
            limit = BANNED_MAX if name == "banned_words" else DOMAINS_MAX
            if entry not in current and len(current) >= limit:
                raise InvalidKnob(name, f"at most {limit} entries")
            return current if entry in current else [*current, entry]
        if entry not in current:
            raise InvalidKnob(name, f"{entry[:60]!r} is not in the list")
        return [item for item in current if item != entry]
    raise InvalidKnob(name, "use add <entry>, remove <entry> or clear")


def knob_name(raw: str) -> str:
    name = raw.strip().lower()
    return KNOB_ALIASES.get(name, name)


async def set_knob(session: AsyncSession, group_id: int, name: str, raw_value: str) -> ModerationRules:
    """Change one knob from an admin's text; return the new rules. Raises InvalidKnob (nothing written then).

    Knobs: KNOBS (with KNOB_ALIASES), `ladder.<rule>` (a ladder, or `default` to follow the group's ladder),
    and `action.<rule>` (warn | delete). Lists take `add X` / `remove X` / `clear`.
    """
    name = knob_name(name)
    async with transaction(session):
        current = rules_of(await _load_group(session, group_id))
        change: dict[str, Any]
        rule = name.partition(".")[2]
        if name.startswith("ladder.") and rule in RULES:
            ladders = dict(current.model_dump(mode="json")["rule_ladders"])
            if raw_value.strip().lower() == "default":
                ladders.pop(rule, None)
            else:
                ladders[rule] = [step.model_dump() for step in parse_ladder(raw_value)]
            change = {"rule_ladders": ladders}
        elif name.startswith("action.") and rule in RULES:
            action = raw_value.strip().lower()
            if action not in ("warn", "delete"):
                raise InvalidKnob(name, "expected warn or delete")
            change = {"rule_actions": {**current.rule_actions, rule: action}}
        elif name not in KNOBS:
            raise InvalidKnob(name, "unknown setting")
        elif name in ("allowed_domains", "banned_words"):
            change = {name: _list_change(name, list(getattr(current, name)), raw_value)}
        elif name == "ladder":
            change = {"ladder": [step.model_dump() for step in parse_ladder(raw_value)]}
        elif ModerationRules.model_fields[name].annotation is bool:
            change = {name: _bool(name, raw_value)}
        else:
            change = {name: _int(name, raw_value)}
        try:
            return await _store(session, group_id, change)
        except ValidationError as error:
            raise InvalidKnob(name, error.errors()[0]["msg"]) from error


async def apply_preset(session: AsyncSession, group_id: int, preset: str) -> ModerationRules:
    """Set every knob a preset covers (lists, the log chat and the rules text are kept)."""
    if preset not in PRESETS:
        raise InvalidKnob("preset", "expected relaxed, standard or strict")
    values = {
        key: [step.model_dump() for step in value] if key == "ladder" else value
        for key, value in PRESETS[preset].items()
    }
    async with transaction(session):
        return await _store(session, group_id, values)


async def set_log_chat(session: AsyncSession, group_id: int, chat_id: int | None) -> ModerationRules:
    async with transaction(session):
        return await _store(session, group_id, {"log_chat_id": chat_id})


async def set_rules_text(session: AsyncSession, group_id: int, text: str) -> ModerationRules:
    """The group's rules as members read them with /rules. Raises InvalidKnob when too long."""
    if len(text) > RULES_TEXT_MAX:
        raise InvalidKnob("rules", f"at most {RULES_TEXT_MAX} characters")
    async with transaction(session):
        return await _store(session, group_id, {"rules_text": text.strip()})


# -- warnings and the ladder -----------------------------------------------------------------------------------


class ModWarning(SQLModel, table=True):
    """A warning given to a member; counts toward the ladder until it expires or is revoked."""

    __tablename__ = "mod_warnings"
    __table_args__ = (
        UniqueConstraint("group_id", "key"),
        Index("ix_mod_warnings_member", "group_id", "user_id", "expires_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    issued_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # None: automatic
    rule: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(String(REASON_MAX), nullable=True))
    # What caused it, e.g. "msg:<chat>:<message>"; one warning per cause.
    key: str = Field(sa_column=Column(String(96), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    revoked_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


@dataclass(frozen=True, slots=True)
class WarnResult:
    """`added`: False when this cause had already warned (nothing new). `count`: active warnings now.
    `step`: the ladder rung reached by this warning (None: a plain warning)."""

    added: bool
    count: int
    step: Step | None


def step_for(ladder: list[Step], count: int) -> Step | None:
    """The highest rung at or below `count` (so after the last rung every further warning repeats it)."""
    reached = None
    for step in sorted(ladder, key=lambda s: s.at):
        if step.at <= count:
            reached = step
    return reached


async def count_warnings(session: AsyncSession, group_id: int, user_id: int, now: datetime | None = None) -> int:
    now = now or utcnow()
    async with transaction(session):
        return int(
            await session.scalar(
                select(func.count())
                .select_from(ModWarning)
                .where(
                    ModWarning.group_id == group_id, ModWarning.user_id == user_id,  # type: ignore[arg-type]
                    ModWarning.revoked_at.is_(None), ModWarning.expires_at > now,  # type: ignore[union-attr, operator]
                )
            )
            or 0
        )


async def add_warning(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    *,
    key: str,
    issued_by: int | None = None,
    rule: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
    rules: ModerationRules | None = None,
) -> WarnResult:
    """Warn a member once per `key`; the expiry and the ladder come from the group's rules (`rules` when the
    caller has them, else loaded)."""
    now = now or utcnow()
    async with transaction(session):
        if rules is None:
            rules = rules_of(await _load_group(session, group_id))
        result = await session.execute(
            insert(session, ModWarning)
            .values(
                group_id=group_id, user_id=user_id, issued_by=issued_by, rule=rule,
                reason=(reason or None) and reason[:REASON_MAX], key=key[:96], created_at=now,
                expires_at=now + timedelta(days=rules.warn_expiry_days),
            )
            .on_conflict_do_nothing()
        )
        added = result.rowcount == 1
        count = await count_warnings(session, group_id, user_id, now)
        step = step_for(rules.ladder_for(rule), count) if added else None
        return WarnResult(added, count, step)


async def revoke_warning(
    session: AsyncSession, group_id: int, user_id: int, *, by: int | None, now: datetime | None = None
) -> int | None:
    """Revoke the member's latest active warning; the active count left, or None if there was none."""
    now = now or utcnow()
    async with transaction(session):
        latest = await session.scalar(
            select(ModWarning)
            .where(
                ModWarning.group_id == group_id, ModWarning.user_id == user_id,  # type: ignore[arg-type]
                ModWarning.revoked_at.is_(None), ModWarning.expires_at > now,  # type: ignore[union-attr, operator]
            )
            .order_by(ModWarning.created_at.desc(), ModWarning.id.desc())  # type: ignore[attr-defined, union-attr]
            .limit(1)
            .with_for_update()
        )
        if latest is None:
            return None
        latest.revoked_at, latest.revoked_by = now, by
        await session.flush()
        return await count_warnings(session, group_id, user_id, now)


async def active_warnings(
    session: AsyncSession, group_id: int, user_id: int, now: datetime | None = None
) -> list[ModWarning]:
    now = now or utcnow()
    async with transaction(session):
        rows = await session.scalars(
            select(ModWarning)
            .where(
                ModWarning.group_id == group_id, ModWarning.user_id == user_id,  # type: ignore[arg-type]
                ModWarning.revoked_at.is_(None), ModWarning.expires_at > now,  # type: ignore[union-attr, operator]
            )
            .order_by(ModWarning.created_at, ModWarning.id)  # type: ignore[arg-type]
        )
        return list(rows)


# -- the audit log ---------------------------------------------------------------------------------------------


class ModAction(SQLModel, table=True):
    """One moderation action, automatic (actor_id None) or by a person. `evidence`: the offending message's
    text, kept until `evidence_until`."""

    __tablename__ = "mod_actions"
    __table_args__ = (
        Index("ix_mod_actions_group_time", "group_id", "created_at"),
        Index("ix_mod_actions_evidence_until", "evidence_until"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    actor_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True, index=True))
    target_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True, index=True))
    action: str = Field(sa_column=Column(String(32), nullable=False))
    rule: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(String(REASON_MAX), nullable=True))
    evidence: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    evidence_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    dry_run: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


async def record_action(
    session: AsyncSession,
    *,
    group_id: int,
    actor_id: int | None,
    target_id: int | None,
    action: str,
    rule: str | None = None,
    reason: str | None = None,
    evidence: str | None = None,
    dry_run: bool = False,
    rules: ModerationRules | None = None,
) -> int:
    """Write one audit row and return its id. `group_id` is groups.id; `actor_id` None means the bot itself.
    Evidence is clipped and kept for the group's `evidence_days` (0: not kept), from `rules` when the caller
    has them."""
    async with transaction(session):
        if evidence and rules is None:
            rules = rules_of(await _load_group(session, group_id))
        row = _action_row(group_id, actor_id, target_id, action, rule, reason, evidence, dry_run, rules, utcnow())
        row_id = await session.scalar(_action_insert(is_postgres(session)), row)
        assert row_id is not None
        return int(row_id)


def _action_row(
    group_id: int, actor_id: int | None, target_id: int | None, action: str, rule: str | None, reason: str | None,
    evidence: str | None, dry_run: bool, rules: ModerationRules | None, now: datetime,
) -> dict[str, Any]:
    until = None
    if evidence:
        assert rules is not None
        days = rules.evidence_days
        evidence, until = (evidence[:EVIDENCE_MAX], now + timedelta(days=days)) if days > 0 else (None, None)
    return dict(
        group_id=group_id, actor_id=actor_id, target_id=target_id, action=action[:32],
        rule=rule[:32] if rule else None, reason=reason[:REASON_MAX] if reason else None,
        evidence=evidence or None, evidence_until=until, dry_run=dry_run, created_at=now,
    )


@dataclass(frozen=True, slots=True)
class Removal:
    """What an automatic removal recorded. `exempt`: the sender is a bot moderator, nothing was recorded.
    `warning`: the warning it added or found (None when the rule does not warn, or in a dry run)."""

    exempt: bool
    warning: WarnResult | None = None


async def record_removal(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    *,
    rule: str,
    detail: str | None,
    evidence: str | None,
    rules: ModerationRules,
    warn: tuple[str, str, str] | None,
    dry_run: bool = False,
) -> Removal:
    """A rule broken by a member's message: unless they are a bot moderator, the removal's audit row and, when
    `warn` = (key, ladder rule, reason) is given, a warning once per key and its audit row. One transaction of
    three statements (exempt and active warnings in one read, the warning, both audit rows), run in one go
    (`run_in_transaction`: this is every spam message's path)."""
    now = utcnow()
    postgres = is_postgres(session)

    def work(sync_session: Session) -> Removal:
        connection = sync_session.connection()
        exempt, before = connection.execute(_exempt_and_warnings(), dict(g=group_id, u=user_id, now=now)).one()
        if exempt:
            return Removal(True)
        rows = [_action_row(group_id, None, user_id, "delete", rule, detail, evidence, dry_run, rules, now)]
        warning = None
        if warn is not None and not dry_run:
            key, ladder_rule, reason = warn
            added = connection.execute(_warning_insert(postgres), dict(
                group_id=group_id, user_id=user_id, issued_by=None, rule=ladder_rule, reason=reason[:REASON_MAX],
                key=key[:96], created_at=now, expires_at=now + timedelta(days=rules.warn_expiry_days),
            )).rowcount == 1
            count = int(before) + added
            warning = WarnResult(added, count, step_for(rules.ladder_for(ladder_rule), count) if added else None)
            if added:
                rows.append(_action_row(group_id, None, user_id, "warn", rule, reason, None, False, rules, now))
        connection.execute(_actions_insert(postgres), rows)
        return Removal(False, warning)

    return await run_in_transaction(session, work)


@functools.cache
def _action_insert(postgres: bool) -> ReturningInsert[Any]:
    """One audit row, its id returned (built once per dialect, like the two below: the removal path is hot)."""
    return dialect_insert(postgres, ModAction).returning(ModAction.id)  # type: ignore[arg-type]


@functools.cache
def _actions_insert(postgres: bool) -> Insert:
    return dialect_insert(postgres, ModAction)


@functools.cache
def _warning_insert(postgres: bool) -> Insert:
    return dialect_insert(postgres, ModWarning).on_conflict_do_nothing()


@functools.cache
def _exempt_and_warnings() -> Select[Any]:
    """(is a bot moderator, active warnings) for :g, :u at :now, in one read."""
    moderator = select(BotModerator.id).where(
        BotModerator.group_id == bindparam("g"), BotModerator.user_id == bindparam("u")  # type: ignore[arg-type]
    )
    active = select(func.count()).select_from(ModWarning).where(
        ModWarning.group_id == bindparam("g"), ModWarning.user_id == bindparam("u"),  # type: ignore[arg-type]
        ModWarning.revoked_at.is_(None), ModWarning.expires_at > bindparam("now", type_=UTCDateTime),  # type: ignore[union-attr, operator]
    )
    return select(exists(moderator), active.scalar_subquery())


async def recent_actions(session: AsyncSession, group_id: int, limit: int = 15) -> list[ModAction]:
    async with transaction(session):
        rows = await session.scalars(
            select(ModAction)
            .where(ModAction.group_id == group_id)  # type: ignore[arg-type]
            .order_by(ModAction.created_at.desc(), ModAction.id.desc())  # type: ignore[attr-defined, union-attr]
            .limit(limit)
        )
        return list(rows)


@long_running
async def erase_expired_evidence(session: AsyncSession, now: datetime | None = None) -> int:
    """Blank the evidence whose retention has passed; the number of rows blanked."""
    now = now or utcnow()
    async with transaction(session):
        result = await session.execute(
            update(ModAction)
            .where(ModAction.evidence_until.is_not(None), ModAction.evidence_until <= now)  # type: ignore[union-attr, operator]
            .values(evidence=None, evidence_until=None)
        )
        return result.rowcount or 0


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """Warnings given to the person and audit rows about them or by them (with evidence still kept)."""
    async with transaction(session):
        warnings = await session.execute(
            select(ModWarning, Group.chat_id)
            .join(Group, Group.id == ModWarning.group_id)  # type: ignore[arg-type]
            .where(ModWarning.user_id == user_id)  # type: ignore[arg-type]
        )
        actions = await session.execute(
            select(ModAction, Group.chat_id)
            .join(Group, Group.id == ModAction.group_id)  # type: ignore[arg-type]
            .where((ModAction.target_id == user_id) | (ModAction.actor_id == user_id))  # type: ignore[arg-type]
            .order_by(ModAction.created_at)  # type: ignore[arg-type]
        )
        return {
            "warnings": [
                {"chat_id": chat_id, "rule": w.rule, "reason": w.reason, "created_at": w.created_at.isoformat(),
                 "expires_at": w.expires_at.isoformat(), "revoked": w.revoked_at is not None}
                for w, chat_id in warnings.all()
            ],
            "actions": [
                {"chat_id": chat_id, "action": a.action, "rule": a.rule, "reason": a.reason, "evidence": a.evidence,
                 "by_you": a.actor_id == user_id, "created_at": a.created_at.isoformat()}
                for a, chat_id in actions.all()
            ],
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Delete the person's warnings; keep the audit trail (the group's record) under `pseudonym`, without the
    evidence of what they wrote."""
    async with transaction(session):
        await session.execute(delete(ModWarning).where(ModWarning.user_id == user_id))  # type: ignore[arg-type]
        await session.execute(
            update(ModWarning).where(ModWarning.issued_by == user_id).values(issued_by=pseudonym)  # type: ignore[arg-type]
        )
        await session.execute(
            update(ModWarning).where(ModWarning.revoked_by == user_id).values(revoked_by=pseudonym)  # type: ignore[arg-type]
        )
        await session.execute(
            update(ModAction)
            .where(ModAction.target_id == user_id)  # type: ignore[arg-type]
            .values(target_id=pseudonym, evidence=None, evidence_until=None)
        )
        await session.execute(
            update(ModAction).where(ModAction.actor_id == user_id).values(actor_id=pseudonym)  # type: ignore[arg-type]
        )

