"""Invite rewards (邀请好友入群得奖励): personal invite links, invitations attributed from the link a newcomer used,
vesting after a hold period, and clawback when the newcomer leaves soon after.

An invitation's life: `pending` (the newcomer joined through a member's link) -> `vested` (the newcomer passed the
captcha, stayed `hold_hours` and sent `min_messages`; the inviter earned `reward` points, ledger key
f"invite:{id}") -> `reversed` (the newcomer left within `clawback_days` of vesting; the reward is taken back by a
ledger entry). A pending invitation whose newcomer leaves, fails the captcha or never qualifies within
PENDING_DAYS becomes `void`. Self-invites, bots and people who were members of the group before are recorded as
`void` at once, so they never pay.

Invariants kept by the database: one link per (group, member) and each link string belongs to one member; one
invitation per (group, newcomer) ever, so a redelivered join, a second inviter or a rejoin adds nothing; every
status change is a conditional UPDATE on the old status; points move only through models.points with
idempotency keys (the reward f"invite:{id}", its reversal f"reverse:invite:{id}", milestone bonuses
f"invite-milestone:{group}:{inviter}:{n}").

Clawback when the inviter has already spent the reward: we take what is left of their balance (never below
zero, the ledger invariant) and record the rest as the invitation's `debt`, shown to admins; later earnings are
not garnished. Milestone bonuses are paid once per (inviter, milestone) and are not clawed back.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, field_validator
from pydantic import Field as PydanticField
from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from models import points
from models.db import BigIntKey, UTCDateTime, insert, long_running, transaction, utcnow
from models.groups import Group
from models.points import PointsBalance

log = logging.getLogger("qunbot.invites")

STATUSES = ("pending", "vested", "void", "reversed")
VOID_REASONS = ("self", "bot", "rejoin", "left", "captcha", "expired")
PENDING_DAYS = 30  # a newcomer who never qualifies within this many days voids the invitation ("expired")
LINK_NAME_PREFIX = "qunbot:"  # createChatInviteLink name: 0-32 characters (Bot API), "qunbot:" + a user id fits
LINK_MAX = 255
VEST_BATCH = 500  # invitations examined per vesting run

Status = Literal["pending", "vested", "void", "reversed"]

# -- tables ----------------------------------------------------------------------------------------------------


class InviteLink(SQLModel, table=True):
    """A member's personal invite link for one group, created once (createChatInviteLink) and reused."""

    __tablename__ = "invite_links"
    __table_args__ = (UniqueConstraint("group_id", "user_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    invite_link: str = Field(sa_column=Column(String(LINK_MAX), nullable=False, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class Invitation(SQLModel, table=True):
    """A newcomer who joined a group through a member's link. One per (group, newcomer), ever."""

    __tablename__ = "invitations"
    __table_args__ = (
        UniqueConstraint("group_id", "invitee_id"),
        Index("ix_invitations_inviter", "group_id", "inviter_id", "status"),
        Index("ix_invitations_status_joined", "status", "joined_at"),  # the vesting job's scan
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    inviter_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    invitee_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    invite_link: str = Field(default="", sa_column=Column(String(LINK_MAX), nullable=False, default=""))
    status: str = Field(default="pending", sa_column=Column(String(16), nullable=False, default="pending"))
    reason: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    messages: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    joined_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    vested_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    reward: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    clawed_back: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    debt: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))


class KnownMember(SQLModel, table=True):
    """Someone the invites feature has seen join or leave the group: a later join by them is a rejoin.

    (models.groups.Member cannot tell: the Arrival middleware revives a departed member's row before any handler
    sees the join.)"""

    __tablename__ = "invite_known_members"

    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    )
    user_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False, index=True))
    first_seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


# -- rules -----------------------------------------------------------------------------------------------------


class InvalidRule(ValueError):
    """`set_rule` got an unknown rule name or a value it cannot accept; `reason` says which (English)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class InviteRules(BaseModel):
    """A group's invite rules, stored as JSON in `Group.settings["invites"]`. Every field has a default."""

    reward: int = PydanticField(default=50, ge=0, le=1_000_000)
    hold_hours: int = PydanticField(default=24, ge=0, le=24 * 90)
    min_messages: int = PydanticField(default=1, ge=0, le=1000)
    clawback_days: int = PydanticField(default=7, ge=0, le=365)
    # Bonus paid when an inviter's vested invitations reach exactly this many.
    milestones: dict[int, int] = PydanticField(default_factory=lambda: {5: 50, 10: 150, 50: 1000})

    @field_validator("milestones")
    @classmethod
    def _milestone_table(cls, value: dict[int, int]) -> dict[int, int]:
        for count, bonus in value.items():
            if count < 1 or bonus < 0:
                raise ValueError("milestones must be >= 1 invite and bonuses >= 0")
        return dict(sorted(value.items()))


RULE_NAMES = tuple(InviteRules.model_fields)


def rules_of(group: Group) -> InviteRules:
    """The rules stored on a loaded group row (defaults for anything unset or unreadable)."""
    return _rules_in(group.settings)


def _rules_in(settings: dict[str, Any] | None) -> InviteRules:
    stored = (settings or {}).get("invites") or {}
    try:
        return InviteRules.model_validate(stored)
    except ValidationError:
        return InviteRules()


async def get_rules(session: AsyncSession, group_id: int) -> InviteRules:
    async with transaction(session):
        return rules_of(await points.load_group(session, group_id))


def _parse_rule(name: str, raw: str) -> Any:
    raw = raw.strip()
    if name == "milestones":
        table: dict[int, int] = {}
        if raw.lower() in ("", "none", "-", "off", "0"):
            return table
        for part in raw.replace("，", ",").split(","):
            match = re.fullmatch(r"\s*(\d{1,6})\s*[:：=]\s*(\d{1,9})\s*", part)
            if not match:
                raise InvalidRule(name, f"expected invites:bonus pairs like 5:50,10:150, got {part.strip()!r}")
            count, bonus = int(match[1]), int(match[2])
            if count < 1 or count in table:
                raise InvalidRule(name, f"bad or repeated milestone {count}")
            table[count] = bonus
        return table
    if not re.fullmatch(r"\d{1,9}", raw):
        raise InvalidRule(name, "expected a whole number >= 0")
    return int(raw)


async def set_rule(session: AsyncSession, group_id: int, name: str, raw_value: str) -> InviteRules:
    """Set one rule from an admin's text ("5:50,10:150" or "none" for milestones, whole numbers otherwise) and
    return the new rules. Raises InvalidRule; nothing is written then."""
    if name not in RULE_NAMES:
        raise InvalidRule(name, "unknown rule")
    value = _parse_rule(name, raw_value)
    async with transaction(session):
        group = await points.load_group(session, group_id, for_update=True)
        current = rules_of(group).model_dump(mode="json")
        current[name] = value
        try:
            rules = InviteRules.model_validate(current)
        except ValidationError as error:
            raise InvalidRule(name, error.errors()[0]["msg"]) from error
        settings = dict(group.settings or {})
        settings["invites"] = rules.model_dump(mode="json")
        group.settings = settings
        group.updated_at = utcnow()
        return rules


# -- links -----------------------------------------------------------------------------------------------------


def link_name(user_id: int) -> str:
    """The name qunbot gives a member's link (Bot API: 0-32 characters; a 64-bit id has at most 20 digits)."""
    return f"{LINK_NAME_PREFIX}{user_id}"


async def link_of(session: AsyncSession, group_id: int, user_id: int) -> str | None:
    """The member's stored invite link for the group, if one was created."""
    async with transaction(session):
        return await session.scalar(
            select(InviteLink.invite_link).where(InviteLink.group_id == group_id, InviteLink.user_id == user_id)  # type: ignore[call-overload]
        )


async def save_link(
    session: AsyncSession, group_id: int, user_id: int, invite_link: str, *, now: datetime | None = None
) -> str:
    """Store the member's link. If one was stored meanwhile (two /invite at once), that one wins and is returned."""
    if not invite_link or len(invite_link) > LINK_MAX:
        raise ValueError("an invite link of 1..255 characters is required")
    async with transaction(session):
        await session.execute(
            insert(session, InviteLink)
            .values(group_id=group_id, user_id=user_id, invite_link=invite_link, created_at=now or utcnow())
            .on_conflict_do_nothing()
        )
        await _mark_known(session, group_id, user_id, now or utcnow())
        stored = await link_of(session, group_id, user_id)
        if stored is None:  # the link string belongs to someone else: never reassign it
            raise ValueError("this invite link is already stored for another member")
        return stored


async def forget_link(session: AsyncSession, group_id: int, user_id: int) -> bool:
    """Drop the member's stored link (e.g. Telegram says it was revoked); /invite will create a new one."""
    async with transaction(session):
        result = await session.execute(
            delete(InviteLink).where(InviteLink.group_id == group_id, InviteLink.user_id == user_id)  # type: ignore[arg-type]
        )
        return bool(result.rowcount)


async def inviter_of_link(session: AsyncSession, group_id: int, invite_link: str) -> int | None:
    async with transaction(session):
        return await session.scalar(
            select(InviteLink.user_id).where(  # type: ignore[call-overload]
                InviteLink.group_id == group_id, InviteLink.invite_link == invite_link
            )
        )


# -- joins, leaves, messages -----------------------------------------------------------------------------------


async def _mark_known(session: AsyncSession, group_id: int, user_id: int, now: datetime) -> None:
    await session.execute(
        insert(session, KnownMember)
        .values(group_id=group_id, user_id=user_id, first_seen_at=now)
        .on_conflict_do_nothing()
    )


async def mark_known(session: AsyncSession, group_id: int, user_id: int, *, now: datetime | None = None) -> None:
    """Remember that the person has been a member of the group (a later join of theirs is a rejoin)."""
    async with transaction(session):
        await _mark_known(session, group_id, user_id, now or utcnow())


async def _was_member(session: AsyncSession, group_id: int, user_id: int) -> bool:
    """Seen joining or leaving before, or has a points balance row here (took part before)."""
    known = await session.scalar(
        select(KnownMember.user_id).where(KnownMember.group_id == group_id, KnownMember.user_id == user_id)  # type: ignore[call-overload]
    )
    if known is not None:
        return True
    balance = await session.scalar(
        select(PointsBalance.user_id).where(PointsBalance.group_id == group_id, PointsBalance.user_id == user_id)  # type: ignore[call-overload]
    )
    return balance is not None


JoinStatus = Literal["pending", "void", "duplicate", "unattributed"]


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    """What a join did: "pending" (a new invitation), "void" (recorded, earns nothing: see invitation.reason),
    "duplicate" (the newcomer already has an invitation in this group: nothing changed), "unattributed" (not
    through a member's link)."""

    status: JoinStatus
    invitation: Invitation | None = None


async def _invitation_of(session: AsyncSession, group_id: int, invitee_id: int) -> Invitation | None:
    return await session.scalar(
        select(Invitation)
        .where(Invitation.group_id == group_id, Invitation.invitee_id == invitee_id)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )


async def record_join(
    session: AsyncSession,
    group_id: int,
    invitee_id: int,
    invite_link: str | None,
    *,
    invitee_is_bot: bool = False,
    now: datetime | None = None,
) -> JoinOutcome:
    """A person joined the group, through `invite_link` if given. Attributes the join to the member whose link
    it is: a pending invitation, or a void one (self-invite, a bot, someone who was a member before). Safe to
    call twice for the same join: the unique (group, newcomer) key makes the second call a "duplicate"."""
    now = now or utcnow()
    async with transaction(session):
        inviter_id = await inviter_of_link(session, group_id, invite_link) if invite_link else None
        if inviter_id is None:
            await _mark_known(session, group_id, invitee_id, now)
            return JoinOutcome("unattributed")
        if await _invitation_of(session, group_id, invitee_id) is not None:
            await _mark_known(session, group_id, invitee_id, now)
            return JoinOutcome("duplicate", await _invitation_of(session, group_id, invitee_id))
        if invitee_is_bot:
            reason: str | None = "bot"
        elif inviter_id == invitee_id:
            reason = "self"
        elif await _was_member(session, group_id, invitee_id):
            reason = "rejoin"
        else:
            reason = None
        inserted = await session.scalar(
            insert(session, Invitation)
            .values(
                group_id=group_id,
                inviter_id=inviter_id,
                invitee_id=invitee_id,
                invite_link=invite_link or "",
                status="void" if reason else "pending",
                reason=reason,
                messages=0,
                joined_at=now,
                ended_at=now if reason else None,
                reward=0,
                clawed_back=0,
                debt=0,
            )
            .on_conflict_do_nothing()
            .returning(Invitation.id)  # type: ignore[arg-type]
        )
        await _mark_known(session, group_id, invitee_id, now)
        invitation = await _invitation_of(session, group_id, invitee_id)
        if inserted is None:
            return JoinOutcome("duplicate", invitation)
        return JoinOutcome("void" if reason else "pending", invitation)


LeaveStatus = Literal["voided", "reversed", "kept", "none"]


@dataclass(frozen=True, slots=True)
class LeaveOutcome:
    """What a departure did to the leaver's invitation: "voided" (it was pending), "reversed" (vested within the
    clawback window: `taken` points came back from the inviter, `debt` could not), "kept" (vested earlier than
    the window), "none" (no invitation, or already ended)."""

    status: LeaveStatus
    invitation: Invitation | None = None
    taken: int = 0
    debt: int = 0


async def _claw_back(session: AsyncSession, invitation: Invitation, now: datetime) -> tuple[int, int]:
    """Take the invitation's reward back from the inviter: all of it if they still have it, else what is left.
    Returns (taken, debt)."""
    reward_key = f"invite:{invitation.id}"
    if invitation.reward <= 0:
        return 0, 0
    try:
        reversed_entry = await points.reverse(session, reward_key, now=now)
    except points.InsufficientPoints:
        reversed_entry = None
    else:
        if reversed_entry is not None:
            return -reversed_entry.delta if reversed_entry.applied else invitation.reward, 0
    await points.lock_member(session, invitation.group_id, invitation.inviter_id, now=now)
    balance = (await points.get_balance(session, invitation.group_id, invitation.inviter_id)).balance
    taken = min(balance, invitation.reward)
    if taken > 0:
        await points.spend(
            session, invitation.group_id, invitation.inviter_id, taken, "reversal", f"reverse:{reward_key}",
            reference=f"invitation:{invitation.id}", now=now,
        )  # fmt: skip
    return taken, invitation.reward - taken


async def record_leave(
    session: AsyncSession, group_id: int, user_id: int, *, now: datetime | None = None
) -> LeaveOutcome:
    """A person left (or was removed from) the group: their pending invitation is voided; a vested one within
    the clawback window is reversed (see the module docstring). Exactly once, even if called again."""
    now = now or utcnow()
    async with transaction(session), session.begin_nested():
        await _mark_known(session, group_id, user_id, now)
        columns = Invitation.__table__.c  # type: ignore[attr-defined]
        mine = (columns.group_id == group_id) & (columns.invitee_id == user_id)
        voided = (
            await session.execute(
                update(Invitation)
                .where(mine, columns.status == "pending")
                .values(status="void", reason="left", ended_at=now)
                .returning(columns.id)
            )
        ).first()
        if voided is not None:
            return LeaveOutcome("voided", await _invitation_of(session, group_id, user_id))
        invitation = await _invitation_of(session, group_id, user_id)
        if invitation is None or invitation.status != "vested" or invitation.vested_at is None:
            return LeaveOutcome("none", invitation)
        group = await points.load_group(session, group_id)
        if now - invitation.vested_at > timedelta(days=rules_of(group).clawback_days):
            return LeaveOutcome("kept", invitation)
        claimed = (
            await session.execute(
                update(Invitation)
                .where(columns.id == invitation.id, columns.status == "vested")
                .values(status="reversed", reason="left", ended_at=now)
                .returning(columns.id)
            )
        ).first()
        if claimed is None:
            return LeaveOutcome("none", await _invitation_of(session, group_id, user_id))
        taken, debt = await _claw_back(session, invitation, now)
        await session.execute(
            update(Invitation).where(columns.id == invitation.id).values(clawed_back=taken, debt=debt)
        )
        return LeaveOutcome("reversed", await _invitation_of(session, group_id, user_id), taken, debt)


async def count_message(session: AsyncSession, group_id: int, user_id: int) -> bool:
    """Count a message by a newcomer with a pending invitation (one indexed UPDATE). False if they have none."""
    async with transaction(session):
        columns = Invitation.__table__.c  # type: ignore[attr-defined]
        row = (
            await session.execute(
                update(Invitation)
                .where(columns.group_id == group_id, columns.invitee_id == user_id, columns.status == "pending")
                .values(messages=columns.messages + 1)
                .returning(columns.id)
            )
        ).first()
        return row is not None


async def pending_invitees(session: AsyncSession, group_id: int) -> set[int]:
    """Everyone with a pending invitation in the group (the message listener's cache)."""
    async with transaction(session):
        rows = await session.scalars(
            select(Invitation.invitee_id).where(Invitation.group_id == group_id, Invitation.status == "pending")  # type: ignore[call-overload]
        )
        return set(rows.all())


# -- vesting ---------------------------------------------------------------------------------------------------

CaptchaState = Callable[[AsyncSession, int, int], Awaitable[str | None]]


def captcha_checker() -> CaptchaState | None:
    """models.newcomers.captcha_state if the captcha feature is installed, else None (no captcha anywhere)."""
    try:
        module = importlib.import_module("models.newcomers")
    except ImportError:
        return None
    checker = getattr(module, "captcha_state", None)
    return checker if callable(checker) else None


@dataclass(frozen=True, slots=True)
class Vested:
    """An invitation that vested now: the inviter earned `reward` and `bonuses` as (milestone, points)."""

    invitation_id: int
    group_id: int
    chat_id: int
    inviter_id: int
    invitee_id: int
    reward: int
    vested_count: int
    bonuses: tuple[tuple[int, int], ...] = ()
    group_title: str = ""
    locale: str | None = None


async def _vested_count(session: AsyncSession, group_id: int, inviter_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Invitation)
        .where(Invitation.group_id == group_id, Invitation.inviter_id == inviter_id, Invitation.status == "vested")  # type: ignore[arg-type]
    )
    return int(count or 0)


async def vest_invitation(
    session: AsyncSession, invitation_id: int, *, now: datetime | None = None
) -> Vested | None:
    """Vest one pending invitation now (its conditions are the caller's check): pending -> vested by a
    conditional UPDATE, the reward (key f"invite:{id}") and any milestone reached. None if it was not pending."""
    now = now or utcnow()
    async with transaction(session), session.begin_nested():
        columns = Invitation.__table__.c  # type: ignore[attr-defined]
        row = (
            await session.execute(
                update(Invitation)
                .where(columns.id == invitation_id, columns.status == "pending")
                .values(status="vested", vested_at=now)
                .returning(columns.group_id, columns.inviter_id, columns.invitee_id)
            )
        ).first()
        if row is None:
            return None
        group_id, inviter_id, invitee_id = row
        group = await points.load_group(session, group_id)
        rules = rules_of(group)
        if rules.reward > 0:
            await points.award(
                session, group_id, inviter_id, rules.reward, "invite", f"invite:{invitation_id}",
                reference=f"invitation:{invitation_id}", now=now,
            )  # fmt: skip
            await session.execute(update(Invitation).where(columns.id == invitation_id).values(reward=rules.reward))
        count = await _vested_count(session, group_id, inviter_id)
        bonuses: list[tuple[int, int]] = []
        bonus = rules.milestones.get(count, 0)
        if bonus > 0:
            result = await points.award(
                session, group_id, inviter_id, bonus, "invite", f"invite-milestone:{group_id}:{inviter_id}:{count}",
                reference=f"milestone:{count}", now=now,
            )  # fmt: skip
            if result.applied:
                bonuses.append((count, bonus))
        return Vested(
            invitation_id, group_id, group.chat_id, inviter_id, invitee_id, rules.reward, count, tuple(bonuses),
            group.title, group.locale,
        )  # fmt: skip


async def _void(session: AsyncSession, invitation_id: int, reason: str, now: datetime) -> bool:
    async with transaction(session):
        columns = Invitation.__table__.c  # type: ignore[attr-defined]
        row = (
            await session.execute(
                update(Invitation)
                .where(columns.id == invitation_id, columns.status == "pending")
                .values(status="void", reason=reason, ended_at=now)
                .returning(columns.id)
            )
        ).first()
        return row is not None


async def vest_due(
    session: AsyncSession,
    *,
    now: datetime | None = None,
    captcha: CaptchaState | None = None,
    limit: int = VEST_BATCH,
) -> list[Vested]:
    """The vesting job: every pending invitation whose newcomer has stayed the group's hold period, sent enough
    messages and passed the captcha (when `captcha` says one applies) vests; one that failed the captcha or is
    older than PENDING_DAYS is voided. Each invitation is its own transaction. Returns what vested."""
    now = now or utcnow()
    vested: list[Vested] = []
    after = 0
    while True:  # keyset pages of `limit`, so young invitations never starve behind old ones
        async with transaction(session):
            rows = (
                await session.execute(
                    select(Invitation.id, Invitation.group_id, Invitation.invitee_id, Invitation.messages,  # type: ignore[call-overload]
                           Invitation.joined_at, Group.settings)
                    .join(Group, Group.id == Invitation.group_id)  # type: ignore[arg-type]
                    .where(Invitation.status == "pending", Invitation.joined_at <= now, Invitation.id > after)
                    .order_by(Invitation.id)
                    .limit(limit)
                )
            ).all()
        for row in rows:
            done = await _vest_if_due(session, row, now, captcha)
            if done is not None:
                vested.append(done)
        if len(rows) < limit:
            return vested
        after = rows[-1][0]


async def _vest_if_due(session: AsyncSession, row: Any, now: datetime, captcha: CaptchaState | None) -> Vested | None:
    invitation_id, group_id, invitee_id, messages, joined_at, settings = row
    rules = _rules_in(settings)
    if now - joined_at > timedelta(days=PENDING_DAYS):
        await _void(session, invitation_id, "expired", now)
        return None
    if now - joined_at < timedelta(hours=rules.hold_hours) or messages < rules.min_messages:
        return None
    if captcha is not None:
        state = await captcha(session, group_id, invitee_id)
        if session.in_transaction():  # the captcha module may have left its read transaction open
            await session.commit()
        if state == "failed":
            await _void(session, invitation_id, "captcha", now)
            return None
        if state not in (None, "passed"):
            return None
    return await vest_invitation(session, invitation_id, now=now)


# -- reading ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InviterStats:
    """One inviter's invitations in a group by status; void_rate = (void + reversed) / ended-or-vested."""

    inviter_id: int
    pending: int = 0
    vested: int = 0
    void: int = 0
    reversed: int = 0
    points: int = 0
    debt: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.vested + self.void + self.reversed

    @property
    def void_rate(self) -> float | None:
        decided = self.vested + self.void + self.reversed
        return (self.void + self.reversed) / decided if decided else None


def _stats_columns() -> list[Any]:
    columns = Invitation.__table__.c  # type: ignore[attr-defined]

    def count(status: str) -> Any:
        return func.sum(case((columns.status == status, 1), else_=0))

    return [
        columns.inviter_id,
        count("pending"),
        count("vested"),
        count("void"),
        count("reversed"),
        func.sum(columns.reward - columns.clawed_back),
        func.sum(columns.debt),
    ]


def _stats(row: Any) -> InviterStats:
    return InviterStats(int(row[0]), *(int(value or 0) for value in row[1:]))


async def inviter_stats(session: AsyncSession, group_id: int, inviter_id: int) -> InviterStats:
    async with transaction(session):
        columns = Invitation.__table__.c  # type: ignore[attr-defined]
        row = (
            await session.execute(
                select(*_stats_columns())
                .where(columns.group_id == group_id, columns.inviter_id == inviter_id)
                .group_by(columns.inviter_id)
            )
        ).first()
        return _stats(row) if row is not None else InviterStats(inviter_id)


async def my_invitations(
    session: AsyncSession, group_id: int, inviter_id: int, *, limit: int = 20
) -> list[Invitation]:
    """The inviter's invitations in the group, newest first."""
    async with transaction(session):
        result = await session.scalars(
            select(Invitation)
            .where(Invitation.group_id == group_id, Invitation.inviter_id == inviter_id)  # type: ignore[arg-type]
            .order_by(Invitation.joined_at.desc(), Invitation.id.desc())  # type: ignore[attr-defined,union-attr]
            .limit(limit)
        )
        return list(result.all())


@dataclass(frozen=True, slots=True)
class InviteRank:
    inviter_id: int
    vested: int
    place: int  # 1 + the number of inviters with more vested invitations (ties share a place)


@long_running
async def leaderboard(session: AsyncSession, group_id: int, *, limit: int = 10) -> list[InviteRank]:
    """Top inviters by invitations vested now (reversed ones do not count). Erased people are left out."""
    async with transaction(session):
        columns = Invitation.__table__.c  # type: ignore[attr-defined]
        vested = func.count().label("vested")
        rows = (
            await session.execute(
                select(columns.inviter_id, vested)
                .where(columns.group_id == group_id, columns.status == "vested", columns.inviter_id > 0)
                .group_by(columns.inviter_id)
                .order_by(vested.desc(), columns.inviter_id)
                .limit(limit)
            )
        ).all()
        out: list[InviteRank] = []
        for index, (inviter_id, count) in enumerate(rows):
            place = out[-1].place if out and out[-1].vested == count else index + 1
            out.append(InviteRank(int(inviter_id), int(count), place))
        return out


@long_running
async def top_inviters(session: AsyncSession, group_id: int, *, limit: int = 10) -> list[InviterStats]:
    """Admins' view: inviters with the most invitations of any status, with their void rates."""
    async with transaction(session):
        columns = Invitation.__table__.c  # type: ignore[attr-defined]
        total = func.count()
        rows = (
            await session.execute(
                select(*_stats_columns())
                .where(columns.group_id == group_id, columns.inviter_id > 0)
                .group_by(columns.inviter_id)
                .order_by(total.desc(), columns.inviter_id)
                .limit(limit)
            )
        ).all()
        return [_stats(row) for row in rows]


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The person's invite links, the invitations they made and the one(s) that brought them in."""
    async with transaction(session):
        links = await session.scalars(select(InviteLink).where(InviteLink.user_id == user_id))  # type: ignore[arg-type]
        columns = Invitation.__table__.c  # type: ignore[attr-defined]
        invitations = await session.scalars(
            select(Invitation)
            .where((columns.inviter_id == user_id) | (columns.invitee_id == user_id))
            .order_by(columns.id)
        )
        known = await session.scalars(select(KnownMember).where(KnownMember.user_id == user_id))  # type: ignore[arg-type]
        return {
            "invite_links": [points.row_dict(row) for row in links.all()],
            "invitations": [points.row_dict(row) for row in invitations.all()],
            "seen_in_groups": [points.row_dict(row) for row in known.all()],
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Delete the person's links and sightings; keep invitations (others' counts and the ledger refer to them)
    under `pseudonym`, without the link string that could identify the inviter."""
    async with transaction(session):
        await session.execute(delete(InviteLink).where(InviteLink.user_id == user_id))  # type: ignore[arg-type]
        await session.execute(delete(KnownMember).where(KnownMember.user_id == user_id))  # type: ignore[arg-type]
        columns = Invitation.__table__.c  # type: ignore[attr-defined]
        await session.execute(
            update(Invitation).where(columns.inviter_id == user_id).values(inviter_id=pseudonym, invite_link="")
        )
        await session.execute(update(Invitation).where(columns.invitee_id == user_id).values(invitee_id=pseudonym))
