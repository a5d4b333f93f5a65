"""Newcomers: captcha checks, anti-raid state and the welcome text.

One `NewcomerCheck` row per (group, person) holds the state of their latest join: whether they are in the group,
the challenge they must answer (captcha), and its outcome. A join is claimed by a conditional write on that row
(`in_group` false -> true), so the chat_member update and the new_chat_members service message of one join, or a
redelivered update, count once; leaving and rejoining starts a fresh challenge. Statuses:

- "none"    no captcha was required (captcha off, or an admin joined)
- "pending" a challenge is open until `deadline`
- "held"    restricted during a raid, without an individual challenge, until admins release them or the raid
            ends (then a challenge in the combined post, or released when captcha is off)
- "passed"  answered (or released by admins)
- "failed"  wrong answers, timeout, or left before answering

Raid mode is one `RaidState` row per group, switched on by a conditional upsert so admins are alerted once.
Settings live in `Group.settings["newcomers"]`.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models.db import BigIntKey, UTCDateTime, insert, transaction, utcnow
from models.groups import Group, User

CAPTCHA_KINDS = ("button", "sum", "emoji")
CaptchaKind = Literal["button", "sum", "emoji"]
MAX_WRONG_ANSWERS = 3
# A join request's private chat may be used for 5 minutes (Bot API, ChatJoinRequest.user_chat_id).
REQUEST_WINDOW = timedelta(minutes=5)
RAID_WINDOW = timedelta(minutes=1)
EMOJIS = ("🍎", "🍌", "🍇", "🍓", "🍉", "🍒", "🥝", "🍑", "🍍", "🥥", "🌽", "🥕")
MIN_TIMEOUT, MAX_TIMEOUT = 30, 3600
MIN_RAID_MINUTES, MAX_RAID_MINUTES = 1, 24 * 60
MAX_WELCOME = 1000


# -- settings --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewcomerSettings:
    captcha: bool = False
    kind: str = "button"
    timeout: int = 180  # seconds to answer
    welcome: str | None = None  # a template with {name} {group} {mention}; None = no welcome
    raid_threshold: int = 20  # joins in a minute that start raid mode; 0 = never automatically
    raid_minutes: int = 15


def newcomer_settings(group: Group) -> NewcomerSettings:
    """The group's settings (defaults for anything unset or unreadable)."""
    raw: dict[str, Any] = (group.settings or {}).get("newcomers") or {}
    default = NewcomerSettings()
    kind = raw.get("kind", default.kind)
    return NewcomerSettings(
        captcha=bool(raw.get("captcha", default.captcha)),
        kind=kind if kind in CAPTCHA_KINDS else default.kind,
        timeout=_bounded(raw.get("timeout"), MIN_TIMEOUT, MAX_TIMEOUT, default.timeout),
        welcome=raw.get("welcome") if isinstance(raw.get("welcome"), str) and raw.get("welcome") else None,
        raid_threshold=_bounded(raw.get("raid_threshold"), 0, 100_000, default.raid_threshold),
        raid_minutes=_bounded(raw.get("raid_minutes"), MIN_RAID_MINUTES, MAX_RAID_MINUTES, default.raid_minutes),
    )


def _bounded(value: Any, low: int, high: int, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high else default


class InvalidSetting(ValueError):
    """A setting value out of range; the message is a short English reason."""


async def update_settings(session: AsyncSession, group_id: int, **changes: Any) -> NewcomerSettings:
    """Change some settings (fields of NewcomerSettings) and return them all. Raises InvalidSetting."""
    current = NewcomerSettings()
    for name in changes:
        if not hasattr(current, name):
            raise InvalidSetting(f"unknown setting {name}")
    if "kind" in changes and changes["kind"] not in CAPTCHA_KINDS:
        raise InvalidSetting("kind must be button, sum or emoji")
    if "timeout" in changes and not MIN_TIMEOUT <= changes["timeout"] <= MAX_TIMEOUT:
        raise InvalidSetting("timeout must be 30 s to 60 min")
    if "raid_minutes" in changes and not MIN_RAID_MINUTES <= changes["raid_minutes"] <= MAX_RAID_MINUTES:
        raise InvalidSetting("duration must be 1 minute to 24 hours")
    if "raid_threshold" in changes and not 0 <= changes["raid_threshold"] <= 100_000:
        raise InvalidSetting("threshold must be 0 to 100000")
    if changes.get("welcome") is not None and not 0 < len(changes["welcome"]) <= MAX_WELCOME:
        raise InvalidSetting("welcome text must be 1 to 1000 characters")
    async with transaction(session):
        group = await session.get(Group, group_id, with_for_update=True, populate_existing=True)
        if group is None:
            raise InvalidSetting("unknown group")
        settings = dict(group.settings or {})
        stored = dict(settings.get("newcomers") or {})
        stored.update(changes)
        settings["newcomers"] = stored
        group.settings = settings
        group.updated_at = utcnow()
        return newcomer_settings(group)


async def get_settings(session: AsyncSession, group_id: int) -> NewcomerSettings:
    async with transaction(session):
        group = await session.get(Group, group_id)
        return newcomer_settings(group) if group is not None else NewcomerSettings()


# -- tables ----------------------------------------------------------------------------------------------------


class NewcomerCheck(SQLModel, table=True):
    """A person's latest join of a group and its captcha (see the module docstring)."""

    __tablename__ = "newcomer_checks"
    __table_args__ = (
        UniqueConstraint("group_id", "user_id"),
        Index("ix_newcomer_checks_group_joined", "group_id", "joined_at"),
        Index("ix_newcomer_checks_status_deadline", "status", "deadline"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    status: str = Field(default="none", sa_column=Column(String(8), nullable=False, default="none"))
    via: str = Field(default="join", sa_column=Column(String(8), nullable=False, default="join"))  # join | request
    in_group: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    # Each new challenge gets a new round, so buttons of an older challenge stop working.
    round: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    kind: str = Field(default="", sa_column=Column(String(8), nullable=False, default=""))
    answer: str = Field(default="", sa_column=Column(String(16), nullable=False, default=""))
    wrong: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    # The challenge was folded into the group's combined newcomer post (bursts and raids) instead of its own.
    lobby: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))
    # Lift the restriction on pass (False when an admin's earlier restriction was already in place).
    lift: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, default=True))
    message_chat_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    join_message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    joined_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    deadline: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class RaidState(SQLModel, table=True):
    """A group's raid mode: on while `until` is in the future."""

    __tablename__ = "raid_states"

    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    )
    started_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    until: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    manual: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False))


# -- reading ---------------------------------------------------------------------------------------------------


async def captcha_state(session: AsyncSession, group_id: int, user_id: int) -> str | None:
    """The person's captcha in the group: "pending" (not verified yet, including held in a raid), "passed",
    "failed", or None when no captcha was required (or they never joined)."""
    async with transaction(session):
        status = await session.scalar(
            select(NewcomerCheck.status).where(
                NewcomerCheck.group_id == group_id, NewcomerCheck.user_id == user_id  # type: ignore[arg-type]
            )
        )
    return {"pending": "pending", "held": "pending", "passed": "passed", "failed": "failed"}.get(status or "")


async def get_check(session: AsyncSession, check_id: int) -> NewcomerCheck | None:
    async with transaction(session):
        return await session.get(NewcomerCheck, check_id, populate_existing=True)


async def find_check(session: AsyncSession, group_id: int, user_id: int) -> NewcomerCheck | None:
    async with transaction(session):
        return await _find(session, group_id, user_id)


async def _find(session: AsyncSession, group_id: int, user_id: int) -> NewcomerCheck | None:
    return await session.scalar(
        select(NewcomerCheck)
        .where(NewcomerCheck.group_id == group_id, NewcomerCheck.user_id == user_id)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )


# -- challenges ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    kind: str
    answer: str
    question: str  # "3 + 4" for sum, the emoji for emoji, "" for button
    options: tuple[str, ...]  # button texts (the option is its own value)


def new_challenge(kind: str, rng: random.Random | None = None) -> Challenge:
    """A fresh challenge of `kind` with its shuffled options."""
    rng = rng or random.Random(secrets.randbits(64))
    if kind == "sum":
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        right = a + b
        wrong = rng.sample([n for n in range(2, 19) if n != right], 3)
        options = [str(right), *(str(n) for n in wrong)]
        rng.shuffle(options)
        return Challenge("sum", str(right), f"{a} + {b}", tuple(options))
    if kind == "emoji":
        picks = rng.sample(EMOJIS, 6)
        return Challenge("emoji", picks[0], picks[0], tuple(rng.sample(picks, len(picks))))
    return Challenge("button", "ok", "", ("ok",))


def challenge_of(check: NewcomerCheck, rng: random.Random | None = None) -> Challenge:
    """The stored challenge of a check, with its options re-derived (a sum's question is kept in `answer`)."""
    if check.kind == "sum":
        question, _sep, right = check.answer.partition("=")
        rng = rng or random.Random(f"{check.id}:{check.round}")
        wrong = rng.sample([n for n in range(2, 19) if str(n) != right], 3)
        options = [right, *(str(n) for n in wrong)]
        rng.shuffle(options)
        return Challenge("sum", right, question, tuple(options))
    if check.kind == "emoji":
        rng = rng or random.Random(f"{check.id}:{check.round}")
        others = rng.sample([e for e in EMOJIS if e != check.answer], 5)
        options = [check.answer, *others]
        rng.shuffle(options)
        return Challenge("emoji", check.answer, check.answer, tuple(options))
    return Challenge("button", "ok", "", ("ok",))


def _stored_answer(challenge: Challenge) -> str:
    return f"{challenge.question}={challenge.answer}" if challenge.kind == "sum" else challenge.answer


# -- joining ---------------------------------------------------------------------------------------------------

JoinAction = Literal["duplicate", "captcha", "hold", "welcome", "verified"]


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    """What to do about one join.

    action: "duplicate" (this join was already handled), "captcha" (restrict and challenge), "hold" (raid:
    restrict without a challenge), "welcome" (no captcha), "verified" (joined after passing a join-request
    challenge). raid_started: this join switched raid mode on (alert admins once). raid_until: when the current
    raid ends (None if none).
    """

    action: JoinAction
    check: NewcomerCheck
    raid_started: bool = False
    raid_until: datetime | None = None


async def note_join(
    session: AsyncSession,
    group_id: int,
    user_id: int,
    *,
    now: datetime | None = None,
    needs_captcha: bool = True,
    was_restricted: bool = False,
    via_request: bool = False,
    join_message_id: int | None = None,
) -> JoinOutcome:
    """Record that the person joined, exactly once per join, and decide what happens to them.

    `needs_captcha` False for people exempt from it (admins); `was_restricted`: an admin's restriction carried
    over from before (then a pass does not lift it). Counts the join towards raid detection.
    """
    now = now or utcnow()
    async with transaction(session):
        group = await session.get(Group, group_id, populate_existing=True)
        if group is None:
            raise InvalidSetting("unknown group")
        settings = newcomer_settings(group)
        await session.execute(
            insert(session, NewcomerCheck)
            .values(group_id=group_id, user_id=user_id, status="none", via="join", in_group=False, round=0,
                    kind="", answer="", wrong=0, lobby=False, lift=True, joined_at=now)
            .on_conflict_do_nothing()
        )
        columns = NewcomerCheck.__table__.c  # type: ignore[attr-defined]
        claimed = (
            await session.execute(
                update(NewcomerCheck)
                .where(columns.group_id == group_id, columns.user_id == user_id, columns.in_group.is_(False))
                .values(in_group=True)
                .returning(columns.id)
            )
        ).first()
        check = await _find(session, group_id, user_id)
        assert check is not None
        if claimed is None:
            if join_message_id is not None and check.join_message_id is None:
                check.join_message_id = join_message_id
            return JoinOutcome("duplicate", check)
        check.joined_at, check.join_message_id, check.lobby = now, join_message_id, False
        check.message_id = check.message_chat_id = None
        raid_started, raid_until = await _count_towards_raid(session, group_id, settings, now)
        # A join right after a passed join-request challenge (Telegram sets via_join_request only for requests
        # made without an invite link, so the recent pass decides, not the flag).
        recent_pass = check.finished_at is not None and now - check.finished_at < REQUEST_WINDOW * 2
        if check.via == "request" and check.status == "passed" and (via_request or recent_pass):
            return JoinOutcome("verified", check, raid_started, raid_until)
        check.via, check.wrong, check.finished_at, check.deadline = "join", 0, None, None
        check.kind, check.answer, check.lift = "", "", not was_restricted
        if not needs_captcha:
            check.status = "none"
            return JoinOutcome("welcome", check, raid_started, raid_until)
        if raid_until is not None:
            check.status, check.lobby = "held", True
            return JoinOutcome("hold", check, raid_started, raid_until)
        if not settings.captcha:
            check.status = "none"
            return JoinOutcome("welcome", check, raid_started, raid_until)
        _open_challenge(check, settings.kind, now + timedelta(seconds=settings.timeout))
        return JoinOutcome("captcha", check, raid_started, raid_until)


def _open_challenge(check: NewcomerCheck, kind: str, deadline: datetime) -> None:
    challenge = new_challenge(kind)
    check.status, check.round, check.deadline = "pending", check.round + 1, deadline
    check.kind, check.answer, check.wrong = challenge.kind, _stored_answer(challenge), 0


async def _count_towards_raid(
    session: AsyncSession, group_id: int, settings: NewcomerSettings, now: datetime
) -> tuple[bool, datetime | None]:
    """(raid started by this join, end of the raid in force or None)."""
    await session.flush()
    active = await _raid_until(session, group_id, now)
    if active is not None or settings.raid_threshold <= 0:
        return False, active
    recent = await session.scalar(
        select(func.count())
        .select_from(NewcomerCheck)
        .where(NewcomerCheck.group_id == group_id, NewcomerCheck.joined_at > now - RAID_WINDOW)  # type: ignore[arg-type]
    )
    if (recent or 0) <= settings.raid_threshold:
        return False, None
    until = now + timedelta(minutes=settings.raid_minutes)
    started = await _start_raid(session, group_id, now, until, manual=False)
    return started, until if started else await _raid_until(session, group_id, now)


async def _start_raid(session: AsyncSession, group_id: int, now: datetime, until: datetime, *, manual: bool) -> bool:
    """Switch raid mode on unless it already is: True only for the call that switched it on."""
    table = RaidState.__table__  # type: ignore[attr-defined]
    statement = insert(session, RaidState).values(group_id=group_id, started_at=now, until=until, manual=manual)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.group_id],
        set_={"started_at": now, "until": until, "manual": manual},
        where=table.c.until <= now,
    ).returning(table.c.group_id)
    return (await session.execute(statement)).first() is not None


async def _raid_until(session: AsyncSession, group_id: int, now: datetime) -> datetime | None:
    until = await session.scalar(
        select(RaidState.until).where(RaidState.group_id == group_id, RaidState.until > now)  # type: ignore[arg-type]
    )
    return until


async def raid_until(session: AsyncSession, group_id: int, *, now: datetime | None = None) -> datetime | None:
    """When the group's raid mode ends, or None when it is off."""
    async with transaction(session):
        return await _raid_until(session, group_id, now or utcnow())


async def start_raid(session: AsyncSession, group_id: int, *, now: datetime | None = None) -> tuple[bool, datetime]:
    """An admin switches raid mode on for the group's raid duration (extends a raid in force).
    Returns (switched on now, until)."""
    now = now or utcnow()
    async with transaction(session):
        group = await session.get(Group, group_id)
        assert group is not None
        until = now + timedelta(minutes=newcomer_settings(group).raid_minutes)
        started = await _start_raid(session, group_id, now, until, manual=True)
        if not started:
            await session.execute(
                update(RaidState).where(RaidState.group_id == group_id).values(until=until)  # type: ignore[arg-type]
            )
        return started, until


@dataclass(frozen=True, slots=True)
class Released:
    user_id: int
    lift: bool


async def end_raid(session: AsyncSession, group_id: int, *, now: datetime | None = None) -> list[Released]:
    """Switch raid mode off and release everyone held by it (they count as passed). Returns who to release."""
    now = now or utcnow()
    async with transaction(session):
        await session.execute(
            update(RaidState)
            .where(RaidState.group_id == group_id, RaidState.until > now)  # type: ignore[arg-type]
            .values(until=now)
        )
        columns = NewcomerCheck.__table__.c  # type: ignore[attr-defined]
        rows = await session.execute(
            update(NewcomerCheck)
            .where(columns.group_id == group_id, columns.status == "held")
            .values(status="passed", finished_at=now)
            .returning(columns.user_id, columns.lift, columns.in_group)
        )
        return [Released(user_id, lift) for user_id, lift, in_group in rows.all() if in_group]


@dataclass(frozen=True, slots=True)
class RaidOver:
    """A group whose raid mode ended by itself with newcomers still held. With captcha on, `challenged` of them
    now have the combined post's challenge, `timeout` seconds to answer; with captcha off, `released` are let go."""

    group_id: int
    chat_id: int
    locale: str | None
    challenged: int = 0
    timeout: int = 0
    released: tuple[Released, ...] = ()


async def settle_ended_raids(session: AsyncSession, *, now: datetime | None = None) -> list[RaidOver]:
    """The newcomers held by a raid that has ended by itself (admins release them at once with /antiraid off):
    in a group with captcha on they get a challenge (open until now + the captcha timeout, answered with the
    combined post's button: the people tap it, the bots are removed when it times out); with captcha off they
    count as passed and are released. Each held row moves on by one conditional UPDATE (held -> ...), so two
    schedulers never settle anyone twice."""
    now = now or utcnow()
    async with transaction(session):
        columns = NewcomerCheck.__table__.c  # type: ignore[attr-defined]
        held = (columns.group_id == Group.id, columns.status == "held")
        ended = await session.scalars(
            select(Group)
            .join(RaidState, RaidState.group_id == Group.id)  # type: ignore[arg-type]
            .where(RaidState.until <= now, select(columns.id).where(*held).exists())  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        )
        settled = []
        for group in ended.all():
            assert group.id is not None
            settings = newcomer_settings(group)
            mine = (columns.group_id == group.id, columns.status == "held")
            if settings.captcha:
                deadline = now + timedelta(seconds=settings.timeout)
                rows = await session.execute(
                    update(NewcomerCheck).where(*mine)
                    .values(status="pending", round=columns.round + 1, kind="button", answer="ok", wrong=0,
                            lobby=True, deadline=deadline)
                    .returning(columns.id)
                )
                challenged = len(rows.all())
                if challenged:
                    settled.append(RaidOver(group.id, group.chat_id, group.locale, challenged, settings.timeout))
            else:
                rows = await session.execute(
                    update(NewcomerCheck).where(*mine).values(status="passed", finished_at=now)
                    .returning(columns.user_id, columns.lift)
                )
                released = tuple(Released(user_id, lift) for user_id, lift in rows.all())
                if released:
                    settled.append(RaidOver(group.id, group.chat_id, group.locale, released=released))
        return settled


async def held_count(session: AsyncSession, group_id: int) -> int:
    async with transaction(session):
        count = await session.scalar(
            select(func.count())
            .select_from(NewcomerCheck)
            .where(NewcomerCheck.group_id == group_id, NewcomerCheck.status == "held")  # type: ignore[arg-type]
        )
        return int(count or 0)


async def set_check_message(
    session: AsyncSession, check_id: int, *, chat_id: int | None = None, message_id: int | None = None,
    lobby: bool = False,
) -> None:
    """Remember where the person's challenge was posted (or that it went into the combined post)."""
    async with transaction(session):
        await session.execute(
            update(NewcomerCheck)
            .where(NewcomerCheck.id == check_id)  # type: ignore[arg-type]
            .values(message_chat_id=chat_id, message_id=message_id, lobby=lobby)
        )


async def drop_challenge(session: AsyncSession, check_id: int) -> None:
    """No captcha after all (the bot may not restrict, or could not deliver a join request's challenge)."""
    async with transaction(session):
        await session.execute(
            update(NewcomerCheck)
            .where(NewcomerCheck.id == check_id, NewcomerCheck.status == "pending")  # type: ignore[arg-type]
            .values(status="none", deadline=None)
        )


async def fold_into_lobby(session: AsyncSession, check_id: int) -> None:
    """The person is shown in the group's combined newcomer post rather than in a message of their own."""
    async with transaction(session):
        await session.execute(
            update(NewcomerCheck).where(NewcomerCheck.id == check_id).values(lobby=True)  # type: ignore[arg-type]
        )


async def note_leave(
    session: AsyncSession, group_id: int, user_id: int, *, now: datetime | None = None
) -> NewcomerCheck | None:
    """The person left or was removed. An open challenge fails (leaving does not skip it: a rejoin gets a new
    one). Returns the check when this call closed an open challenge (its message can be cleaned up)."""
    now = now or utcnow()
    async with transaction(session):
        columns = NewcomerCheck.__table__.c  # type: ignore[attr-defined]
        await session.execute(
            update(NewcomerCheck)
            .where(columns.group_id == group_id, columns.user_id == user_id, columns.via == "join")
            .values(in_group=False)
        )
        closed = (
            await session.execute(
                update(NewcomerCheck)
                .where(columns.group_id == group_id, columns.user_id == user_id, columns.via == "join",
                       columns.status.in_(("pending", "held")))
                .values(status="failed", finished_at=now)
                .returning(columns.id)
            )
        ).first()
        return await _find(session, group_id, user_id) if closed else None


# -- join requests ---------------------------------------------------------------------------------------------


async def open_request_check(
    session: AsyncSession, group_id: int, user_id: int, chat_id: int, *, now: datetime | None = None
) -> tuple[NewcomerCheck, Challenge] | None:
    """A join request in a group with captcha on: open a challenge to be answered in private chat (deadline:
    the group's timeout, at most the 5 minutes Telegram lets the bot write to a requester). None if captcha is
    off, raid mode is on (requests then wait for admins), or the person is already in the group."""
    now = now or utcnow()
    async with transaction(session):
        group = await session.get(Group, group_id, populate_existing=True)
        assert group is not None
        settings = newcomer_settings(group)
        if not settings.captcha or await _raid_until(session, group_id, now) is not None:
            return None
        await session.execute(
            insert(session, NewcomerCheck)
            .values(group_id=group_id, user_id=user_id, status="none", via="request", in_group=False, round=0,
                    kind="", answer="", wrong=0, lobby=False, lift=True, joined_at=now)
            .on_conflict_do_nothing()
        )
        check = await _find(session, group_id, user_id)
        assert check is not None
        if check.in_group:
            return None
        if check.via == "request" and check.status == "pending" and check.deadline and check.deadline > now:
            return check, challenge_of(check)  # a repeated request: the open challenge stands
        deadline = now + min(timedelta(seconds=settings.timeout), REQUEST_WINDOW)
        check.via, check.lobby, check.join_message_id = "request", False, None
        check.message_chat_id, check.message_id, check.finished_at = chat_id, None, None
        _open_challenge(check, settings.kind, deadline)
        await session.flush()
        return check, challenge_of(check)


# -- answering -------------------------------------------------------------------------------------------------

AnswerStatus = Literal["passed", "wrong", "failed", "not_yours", "stale"]


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """status: "passed" (this answer passed), "wrong" (tries left in `tries_left`), "failed" (too many wrong
    answers: remove them), "not_yours" (someone else pressed), "stale" (an older or closed challenge)."""

    status: AnswerStatus
    check: NewcomerCheck | None
    chat_id: int = 0  # the group's chat id
    tries_left: int = 0


async def answer_check(
    session: AsyncSession, check_id: int, user_id: int, round_: int, option: str, *, now: datetime | None = None
) -> AnswerResult:
    """A press on a challenge's button: pass, count a wrong answer, or refuse — each outcome decided by a
    conditional UPDATE on status "pending", so a double press passes once."""
    now = now or utcnow()
    async with transaction(session):
        check = await session.get(NewcomerCheck, check_id, populate_existing=True)
        if check is None:
            return AnswerResult("stale", None)
        chat_id = await session.scalar(select(Group.chat_id).where(Group.id == check.group_id)) or 0  # type: ignore[arg-type]
        if check.user_id != user_id:
            return AnswerResult("not_yours", check, chat_id)
        return await _answer(session, check, round_, option, chat_id, now)


async def answer_lobby(
    session: AsyncSession, group_id: int, user_id: int, *, now: datetime | None = None
) -> AnswerResult:
    """A press on the combined post's button: passes the presser's own open challenge in that group."""
    now = now or utcnow()
    async with transaction(session):
        check = await _find(session, group_id, user_id)
        chat_id = await session.scalar(select(Group.chat_id).where(Group.id == group_id)) or 0  # type: ignore[arg-type]
        if check is None or check.status != "pending" or check.via != "join":
            return AnswerResult("not_yours", check, chat_id)
        return await _answer(session, check, check.round, "", chat_id, now, any_option=True)


async def _answer(
    session: AsyncSession, check: NewcomerCheck, round_: int, option: str, chat_id: int, now: datetime,
    *, any_option: bool = False,
) -> AnswerResult:
    columns = NewcomerCheck.__table__.c  # type: ignore[attr-defined]
    open_ = (columns.id == check.id, columns.status == "pending", columns.round == round_, columns.deadline > now)
    right = any_option or option == challenge_of(check).answer
    if right:
        row = (
            await session.execute(
                update(NewcomerCheck).where(*open_).values(status="passed", finished_at=now).returning(columns.id)
            )
        ).first()
        await session.refresh(check)
        return AnswerResult("passed" if row else "stale", check, chat_id)
    row = (
        await session.execute(
            update(NewcomerCheck).where(*open_).values(wrong=columns.wrong + 1).returning(columns.wrong)
        )
    ).first()
    if row is None:
        await session.refresh(check)
        return AnswerResult("stale", check, chat_id)
    if row[0] < MAX_WRONG_ANSWERS:
        await session.refresh(check)
        return AnswerResult("wrong", check, chat_id, MAX_WRONG_ANSWERS - row[0])
    failed = (
        await session.execute(
            update(NewcomerCheck).where(*open_).values(status="failed", finished_at=now).returning(columns.id)
        )
    ).first()
    await session.refresh(check)
    return AnswerResult("failed" if failed else "stale", check, chat_id)


# -- timeouts --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expired:
    """A challenge that timed out, claimed by this caller alone."""

    check_id: int
    group_id: int
    chat_id: int
    user_id: int
    via: str
    in_group: bool
    message_chat_id: int | None
    message_id: int | None
    join_message_id: int | None
    locale: str | None

    @classmethod
    def of(cls, check: NewcomerCheck, chat_id: int, locale: str | None) -> Expired:
        assert check.id is not None
        return cls(check.id, check.group_id, chat_id, check.user_id, check.via, check.in_group,
                   check.message_chat_id, check.message_id, check.join_message_id, locale)


async def expire_checks(session: AsyncSession, *, now: datetime | None = None, limit: int = 500) -> list[Expired]:
    """Fail every open challenge past its deadline: one conditional UPDATE pending -> failed per row, so each
    timeout is handled once even with two schedulers."""
    now = now or utcnow()
    async with transaction(session):
        columns = NewcomerCheck.__table__.c  # type: ignore[attr-defined]
        due = list(
            (
                await session.scalars(
                    select(columns.id).where(columns.status == "pending", columns.deadline <= now).limit(limit)
                )
            ).all()
        )
        if not due:
            return []
        rows = await session.execute(
            update(NewcomerCheck)
            .where(columns.id.in_(due), columns.status == "pending", columns.deadline <= now)
            .values(status="failed", finished_at=now)
            .returning(columns.id)
        )
        claimed = [row[0] for row in rows.all()]
        if not claimed:
            return []
        result = await session.execute(
            select(NewcomerCheck, Group.chat_id, Group.locale)
            .join(Group, Group.id == NewcomerCheck.group_id)  # type: ignore[arg-type]
            .where(columns.id.in_(claimed))
            .execution_options(populate_existing=True)
        )
        return [
            Expired(check.id, check.group_id, chat_id, check.user_id, check.via, check.in_group,  # type: ignore[arg-type]
                    check.message_chat_id, check.message_id, check.join_message_id, locale)
            for check, chat_id, locale in result.all()
        ]


# -- the combined post -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LobbySnapshot:
    """What the group's combined newcomer post shows, for joins since `since`."""

    raid_until: datetime | None
    held: int
    verifying: int
    welcomed: int
    names: tuple[str, ...]


async def lobby_snapshot(
    session: AsyncSession, group_id: int, since: datetime, *, now: datetime | None = None, names: int = 10
) -> LobbySnapshot:
    now = now or utcnow()
    async with transaction(session):
        columns = NewcomerCheck.__table__.c  # type: ignore[attr-defined]
        base = (columns.group_id == group_id, columns.lobby.is_(True), columns.joined_at >= since)
        counts = dict(
            (
                await session.execute(
                    select(columns.status, func.count()).where(*base).group_by(columns.status)
                )
            ).all()
        )
        welcomed_rows = await session.execute(
            select(User.first_name)
            .select_from(NewcomerCheck)
            .join(User, User.user_id == NewcomerCheck.user_id, isouter=True)  # type: ignore[arg-type]
            .where(*base, columns.status.in_(("none", "passed")))
            .order_by(columns.joined_at)
            .limit(names)
        )
        return LobbySnapshot(
            raid_until=await _raid_until(session, group_id, now),
            held=int(counts.get("held", 0)),
            verifying=int(counts.get("pending", 0)),
            welcomed=int(counts.get("none", 0)) + int(counts.get("passed", 0)),
            names=tuple(name or "?" for (name,) in welcomed_rows.all()),
        )


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's joins and captcha outcomes (the expected answers are not exported)."""
    async with transaction(session):
        rows = await session.execute(
            select(NewcomerCheck, Group.chat_id, Group.title)
            .join(Group, Group.id == NewcomerCheck.group_id)  # type: ignore[arg-type]
            .where(NewcomerCheck.user_id == user_id)  # type: ignore[arg-type]
            .order_by(NewcomerCheck.id)  # type: ignore[arg-type]
        )
        out = []
        for check, chat_id, title in rows.all():
            out.append({
                "chat_id": chat_id, "group": title, "status": check.status, "via": check.via,
                "in_group": check.in_group, "kind": check.kind, "wrong_answers": check.wrong,
                "joined_at": check.joined_at.isoformat(),
                "deadline": check.deadline.isoformat() if check.deadline else None,
                "finished_at": check.finished_at.isoformat() if check.finished_at else None,
            })
        return {"newcomer_checks": out}


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Delete the person's checks (nothing here is shared with others)."""
    async with transaction(session):
        await session.execute(delete(NewcomerCheck).where(NewcomerCheck.user_id == user_id))  # type: ignore[arg-type]
