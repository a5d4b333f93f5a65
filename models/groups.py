"""Groups, the people the bot has met, their membership in each group, and the updates already handled."""

from __future__ import annotations

import functools
import json
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Select,
    String,
    UniqueConstraint,
    bindparam,
    case,
    delete,
    func,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert, ReturningInsert
from sqlmodel import Field, SQLModel

from models.batching import Coalescer, in_transaction
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

LOCALES = ("zh_Hans", "zh_Hant", "en")
ROLES = ("member", "administrator", "creator", "restricted", "left", "kicked")
GONE_ROLES = ("left", "kicked")  # no longer in the group


class Group(SQLModel, table=True):
    __tablename__ = "groups"

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    chat_id: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    title: str = Field(default="", sa_column=Column(String(255), nullable=False, default=""))
    chat_type: str = Field(default="supergroup", sa_column=Column(String(16), nullable=False))
    locale: str | None = Field(default=None, sa_column=Column(String(8), nullable=True))
    timezone: str = Field(default="Asia/Shanghai", sa_column=Column(String(64), nullable=False))
    # ISO 4217 code its prices are shown in (/currency; handlers.kit.CURRENCIES); prices are stored in minor units.
    currency: str = Field(default="CNY", sa_column=Column(String(3), nullable=False, server_default="CNY"))
    # active: the bot is in the group and may post; inactive groups get no scheduled posts.
    active: bool = Field(default=True, nullable=False)
    bot_status: str = Field(default="member", sa_column=Column(String(16), nullable=False, default="member"))
    bot_rights: dict[str, bool] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    # Set on every change of the row (onupdate), whoever makes it: caches of a group's rules and the arrival
    # desk's group snapshots compare it.
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False, onupdate=utcnow)
    )


class User(SQLModel, table=True):
    """A person the bot has seen anywhere; private-chat state lives here."""

    __tablename__ = "users"

    user_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    first_name: str = Field(default="", sa_column=Column(String(128), nullable=False, default=""))
    username: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    language_code: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    is_bot: bool = Field(default=False, nullable=False)
    # Set when the person has opened a private chat with the bot (so it may write to them).
    started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    blocked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class Member(SQLModel, table=True):
    """A person's membership in one group."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("group_id", "user_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntKey, primary_key=True, autoincrement=True))
    group_id: int = Field(
        sa_column=Column(BigIntKey, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    user_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    role: str = Field(default="member", sa_column=Column(String(16), nullable=False, default="member"))
    language_code: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    joined_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class ProcessedUpdate(SQLModel, table=True):
    """An update already handled: a redelivery with the same update_id is dropped."""

    __tablename__ = "processed_updates"

    bot_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    update_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    processed_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False, index=True))


# The values that travel with every update are NamedTuples: immutable and hashable like frozen dataclasses, at a
# third of their cost to build (a frozen dataclass sets each field through object.__setattr__).


class ChatSeen(NamedTuple):
    chat_id: int
    title: str
    chat_type: str


class UserSeen(NamedTuple):
    user_id: int
    first_name: str
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False


# -- updates ---------------------------------------------------------------------------------------------------


async def claim_update(session: AsyncSession, bot_id: int, update_id: int) -> bool:
    """Record that this update is being handled. False if it was handled before (a redelivery)."""
    async with transaction(session):
        statement = (
            insert(session, ProcessedUpdate)
            .values(bot_id=bot_id, update_id=update_id, processed_at=utcnow())
            .on_conflict_do_nothing()
        )
        result = await session.execute(statement)
        return result.rowcount == 1


@long_running
async def prune_processed_updates(session: AsyncSession, older_than: timedelta = timedelta(days=2)) -> int:
    """Forget handled update ids older than `older_than` (Telegram keeps undelivered updates for 24 h)."""
    async with transaction(session):
        result = await session.execute(
            delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < utcnow() - older_than)  # type: ignore[arg-type]
        )
        return result.rowcount or 0


class Arriving(NamedTuple):
    """One update as it arrives: its id (None: not deduplicated), the group it happened in, the person behind
    it, whether it came through the private chat, whether it refreshes their membership in the group, and
    whether it is routine (a message or a press: no join or leave)."""

    update_id: int | None
    chat: ChatSeen | None
    person: UserSeen | None
    private: bool = False
    member: bool = False
    routine: bool = False


@dataclass(frozen=True, slots=True)
class MemberSnapshot:
    """A membership row as the arrival recorded it, for handlers to read."""

    id: int
    group_id: int
    user_id: int
    role: str
    language_code: str | None
    joined_at: datetime
    last_seen_at: datetime


class Arrived(NamedTuple):
    """fresh=False: the update was handled before (a redelivery); group and member are then None."""

    fresh: bool
    group: Group | None = None
    member: MemberSnapshot | None = None


async def arrive_many(
    session: AsyncSession, bot_id: int, arrivals: Sequence[Arriving], *, default_timezone: str,
    known: Mapping[tuple[int, int], MemberSnapshot] | None = None, groups_seen: dict[int, Group] | None = None,
) -> list[Arrived]:
    """Claim the updates and keep their groups, people and memberships current, all in one transaction and a
    few statements however many updates arrived together (run in one go: every update takes this path). One
    result per arrival, in order.

    `known`: memberships (by chat id and user id) recorded moments ago, whose person and member rows need no
    write for a routine arrival; their snapshot is handed back as it is. `groups_seen`: group rows loaded
    before, by chat id; one whose row has not changed since (same `updated_at`) is handed back as it is, and the
    ones loaded now are put there."""
    return await run_in_transaction(
        session, lambda s: _arrive_many(s, bot_id, arrivals, default_timezone, known or {}, groups_seen)
    )


def _arrive_many(
    session: Session, bot_id: int, arrivals: Sequence[Arriving], default_timezone: str,
    known: Mapping[tuple[int, int], MemberSnapshot], groups_seen: dict[int, Group] | None,
) -> list[Arrived]:
    now = utcnow()
    postgres = is_postgres(session)
    connection = session.connection()
    ids = list(dict.fromkeys(a.update_id for a in arrivals if a.update_id is not None))
    claimed: set[int] = set()
    if ids:
        # One statement and three parameters however many updates: the ids travel as one array.
        result = connection.execute(
            _claims(postgres), dict(bot_id=bot_id, ids=ids if postgres else json.dumps(ids), now=now)
        )
        claimed = set(result.scalars())
    fresh = []
    for arrival in arrivals:  # an id twice in one batch: the first is the delivery, the second a redelivery
        fresh.append(arrival.update_id is None or arrival.update_id in claimed)
        claimed.discard(arrival.update_id)  # type: ignore[arg-type]
    live = [a for a, ok in zip(arrivals, fresh, strict=True) if ok]

    found: dict[int, Group] = {}
    for chat in dict.fromkeys(a.chat for a in live if a.chat is not None):
        group = groups_seen.get(chat.chat_id) if groups_seen is not None else None
        if group is None or not _unchanged(connection, group, chat):
            group = _upsert_group(session, chat, default_timezone)
            if groups_seen is not None:
                groups_seen[chat.chat_id] = group
        found[chat.chat_id] = group
    skip = [_is_known(a, known) for a in live]
    people: dict[int, tuple[UserSeen, bool]] = {}
    for a, skipped in zip(live, skip, strict=True):
        if a.person is not None and not skipped:
            people[a.person.user_id] = (a.person, a.private or people.get(a.person.user_id, (a.person, False))[1])
    if people:
        _upsert_users(connection, postgres, list(people.values()), now)
    wanted = {
        (found[a.chat.chat_id].id, a.person.user_id): a.person
        for a, skipped in zip(live, skip, strict=True)
        if a.member and a.chat is not None and a.person is not None and not skipped
    }
    members = _upsert_members(connection, postgres, wanted, now) if wanted else {}
    for a, skipped in zip(live, skip, strict=True):
        if skipped:
            assert a.chat is not None and a.person is not None
            key = (a.chat.chat_id, a.person.user_id)
            members.setdefault((found[a.chat.chat_id].id, a.person.user_id), known[key])

    out = []
    for arrival, ok in zip(arrivals, fresh, strict=True):
        if not ok:
            out.append(Arrived(False))
            continue
        group = found.get(arrival.chat.chat_id) if arrival.chat is not None else None
        member = None
        if group is not None and arrival.member and arrival.person is not None:
            member = members.get((group.id, arrival.person.user_id))  # type: ignore[arg-type]
        out.append(Arrived(True, group, member))
    return out


@functools.cache
def _claims(postgres: bool) -> ReturningInsert[Any]:
    """Claim the update ids in :ids (a BIGINT[] on PostgreSQL, a JSON array on SQLite) for :bot_id at :now;
    returns the ids claimed now (the others were claimed before)."""
    if postgres:
        update_id = func.unnest(bindparam("ids", type_=ARRAY(BigInteger))).column_valued()
        rows = select(bindparam("bot_id", type_=BigInteger), update_id, bindparam("now", type_=UTCDateTime))
    else:
        listed = func.json_each(bindparam("ids", type_=String)).table_valued("value")
        rows = select(bindparam("bot_id", type_=BigInteger), listed.c.value, bindparam("now", type_=UTCDateTime))
        rows = rows.where(true())  # SQLite: INSERT ... SELECT needs a WHERE before ON CONFLICT
    statement = dialect_insert(postgres, ProcessedUpdate).from_select(["bot_id", "update_id", "processed_at"], rows)
    return statement.on_conflict_do_nothing().returning(ProcessedUpdate.update_id)  # type: ignore[arg-type]


def _is_known(arrival: Arriving, known: Mapping[tuple[int, int], MemberSnapshot]) -> bool:
    return (
        arrival.routine and arrival.member and not arrival.private and arrival.chat is not None
        and arrival.person is not None and (arrival.chat.chat_id, arrival.person.user_id) in known
    )


def _upsert_users(connection: Connection, postgres: bool, people: list[tuple[UserSeen, bool]], now: datetime) -> None:
    rows = [
        dict(user_id=p.user_id, first_name=p.first_name[:128], username=p.username, language_code=p.language_code,
             is_bot=p.is_bot, started_at=now if private else None, seen_at=now)
        for p, private in sorted(people, key=lambda item: item[0].user_id)
    ]
    connection.execute(_users_upsert(postgres), rows)


@functools.cache
def _users_upsert(postgres: bool) -> Insert:
    """Built once per dialect: constructing and keying this statement costs more than running it for a batch."""
    users = User.__table__.c  # type: ignore[attr-defined]
    statement = dialect_insert(postgres, User)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["user_id"],
        set_={
            "first_name": new.first_name, "username": new.username, "language_code": new.language_code,
            "seen_at": new.seen_at,
            # A private message means the person has (again) started the bot and not blocked it.
            "started_at": func.coalesce(users.started_at, new.started_at),
            "blocked_at": case((new.started_at.is_not(None), None), else_=users.blocked_at),
        },
    )


def _upsert_members(
    connection: Connection, postgres: bool, wanted: dict[tuple[int, int], UserSeen], now: datetime
) -> dict[tuple[int, int], MemberSnapshot]:
    rows = [
        dict(group_id=group_id, user_id=user_id, role="member", language_code=person.language_code, joined_at=now,
             last_seen_at=now)
        for (group_id, user_id), person in sorted(wanted.items(), key=lambda item: item[0])
    ]
    result = connection.execute(_members_upsert(postgres), rows)
    found = {}
    for row in result:
        member = MemberSnapshot(**row._mapping)
        found[(member.group_id, member.user_id)] = member
    return found


@functools.cache
def _members_upsert(postgres: bool) -> ReturningInsert[Any]:
    members = Member.__table__.c  # type: ignore[attr-defined]
    statement = dialect_insert(postgres, Member)
    gone = (members.role == "left") | (members.role == "kicked")  # seen again after leaving: a member again
    return statement.on_conflict_do_update(
        index_elements=["group_id", "user_id"],
        set_={
            "language_code": statement.excluded.language_code,
            "last_seen_at": statement.excluded.last_seen_at,
            "role": case((gone, "member"), else_=members.role),
            "joined_at": case((gone, statement.excluded.joined_at), else_=members.joined_at),
        },
    ).returning(*Member.__table__.columns)  # type: ignore[attr-defined]


class ArrivalDesk:
    """Updates that arrive together are claimed and recorded together (`arrive_many`, one transaction).

    A member who keeps talking is written once a minute, not once a message: for `refresh_s` after their
    membership was recorded, a routine arrival (a message or a press, with the same name, username and language)
    only claims its update id and reuses the recorded snapshot. A join, a leave or a private message is always
    written, and drops what this desk remembered about that membership. With several processes, a membership
    changed elsewhere is seen here at most `refresh_s` late (`last_seen_at` is that coarse too).

    A group's row is loaded again only when it has changed: each batch reads its (id, updated_at), which every
    change of the row sets, wherever it was made."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], default_timezone: str, *,
        refresh_s: float = 60.0, remember: int = 100_000,
    ) -> None:
        self.default_timezone = default_timezone
        self.refresh_s, self.remember = refresh_s, remember
        self.coalescer: Coalescer[int, Arriving, Arrived] = Coalescer(
            self._record, opener=in_transaction(sessionmaker)
        )
        self.recent: OrderedDict[tuple[int, int], tuple[UserSeen, MemberSnapshot, float]] = OrderedDict()
        self.groups: dict[int, Group] = {}  # snapshots handed to handlers, reloaded when the row changes

    async def arrive(self, bot_id: int, arrival: Arriving) -> Arrived:
        result = await self.coalescer.submit(bot_id, arrival)  # committed by now: safe to remember
        if arrival.chat is not None and arrival.person is not None and result.fresh:
            key = (arrival.chat.chat_id, arrival.person.user_id)
            if not arrival.routine or not arrival.member or result.member is None:
                self.recent.pop(key, None)
            elif (hit := self.recent.get(key)) is None or hit[1] is not result.member:  # written, not reused
                self.recent[key] = (arrival.person, result.member, time.monotonic())
                self.recent.move_to_end(key)
                if len(self.recent) > self.remember:
                    self.recent.popitem(last=False)
        return result

    async def _record(self, bot_id: int, arrivals: Sequence[Arriving], session: AsyncSession) -> list[Arrived]:
        now = time.monotonic()
        known: dict[tuple[int, int], MemberSnapshot] = {}
        for a in arrivals:
            if a.routine and a.chat is not None and a.person is not None:
                hit = self.recent.get((a.chat.chat_id, a.person.user_id))
                if hit is not None and hit[0] == a.person and now - hit[2] < self.refresh_s:
                    known[a.chat.chat_id, a.person.user_id] = hit[1]
        if len(self.groups) > self.remember:
            self.groups.clear()
        return await arrive_many(session, bot_id, arrivals, default_timezone=self.default_timezone, known=known,
                                 groups_seen=self.groups)


# -- groups ----------------------------------------------------------------------------------------------------


async def get_group(session: AsyncSession, chat_id: int) -> Group | None:
    async with transaction(session):
        return await session.scalar(select(Group).where(Group.chat_id == chat_id))  # type: ignore[arg-type]


async def chat_id_of(session: AsyncSession, group_id: int) -> int | None:
    """The group's chat id now (it changes when a group becomes a supergroup); None if the group is gone."""
    async with transaction(session):
        return await session.scalar(select(Group.chat_id).where(Group.id == group_id))  # type: ignore[arg-type]


async def upsert_group(session: AsyncSession, chat: ChatSeen, *, default_timezone: str) -> Group:
    """The group row for this chat, created on first sight, its title kept current."""
    return await run_in_transaction(session, lambda s: _upsert_group(s, chat, default_timezone))


def _upsert_group(session: Session, chat: ChatSeen, default_timezone: str) -> Group:
    group = session.scalar(_group_by_chat(), {"chat_id": chat.chat_id})
    if group is None:
        now = utcnow()
        session.execute(
            dialect_insert(is_postgres(session), Group)
            .values(
                chat_id=chat.chat_id, title=chat.title, chat_type=chat.chat_type, timezone=default_timezone,
                active=True, bot_status="member", bot_rights={}, settings={}, created_at=now, updated_at=now,
            )
            .on_conflict_do_nothing()
        )
        group = session.scalar(_group_by_chat(), {"chat_id": chat.chat_id})
        assert group is not None
    elif group.title != chat.title or group.chat_type != chat.chat_type:
        group.title, group.chat_type, group.updated_at = chat.title, chat.chat_type, utcnow()
    return group


def _unchanged(connection: Connection, group: Group, chat: ChatSeen) -> bool:
    """The group row as loaded before is still current (same title and type, no change stored since)."""
    if (group.title, group.chat_type) != (chat.title, chat.chat_type):
        return False
    return connection.execute(_group_version(), {"chat_id": chat.chat_id}).first() == (group.id, group.updated_at)


@functools.cache
def _group_version() -> Select[tuple[int, datetime]]:
    """What tells whether a group row changed: (id, updated_at). Far cheaper than loading the row."""
    table = Group.__table__.c  # type: ignore[attr-defined]
    return select(table.id, table.updated_at).where(table.chat_id == bindparam("chat_id"))


@functools.cache
def _group_by_chat() -> Select[tuple[Group]]:
    """Built once: every arrival batch reads its group (constructing the query cost as much as running it)."""
    return select(Group).where(Group.chat_id == bindparam("chat_id"))  # type: ignore[arg-type]


async def set_bot_status(
    session: AsyncSession, chat: ChatSeen, status: str, rights: dict[str, bool], *, default_timezone: str
) -> Group:
    """Keep what the bot is in this group (member, administrator, left, kicked) and its rights."""
    async with transaction(session):
        group = await upsert_group(session, chat, default_timezone=default_timezone)
        group.bot_status = status
        group.bot_rights = rights
        group.active = status in ("member", "administrator", "restricted")
        group.updated_at = utcnow()
        return group


async def set_group_active(session: AsyncSession, chat_id: int, active: bool) -> bool:
    """Mark a group (in)active, e.g. after Telegram answered 403. True if a row changed."""
    async with transaction(session):
        result = await session.execute(
            update(Group)
            .where(Group.chat_id == chat_id, Group.active != active)  # type: ignore[arg-type]
            .values(active=active, updated_at=utcnow())
        )
        return bool(result.rowcount)


async def set_group_locale(session: AsyncSession, chat_id: int, locale: str | None) -> None:
    async with transaction(session):
        await session.execute(
            update(Group).where(Group.chat_id == chat_id).values(locale=locale, updated_at=utcnow())  # type: ignore[arg-type]
        )


async def set_group_timezone(session: AsyncSession, chat_id: int, timezone: str) -> None:
    async with transaction(session):
        await session.execute(
            update(Group).where(Group.chat_id == chat_id).values(timezone=timezone, updated_at=utcnow())  # type: ignore[arg-type]
        )


async def set_group_currency(session: AsyncSession, chat_id: int, currency: str) -> None:
    """The ISO 4217 code the group's prices are shown in (stored prices, in minor units, do not change)."""
    async with transaction(session):
        await session.execute(
            update(Group).where(Group.chat_id == chat_id).values(currency=currency, updated_at=utcnow())  # type: ignore[arg-type]
        )


async def migrate_group(session: AsyncSession, old_chat_id: int, new_chat_id: int) -> bool:
    """Move a group to its new (supergroup) id. Every other table refers to groups.id, so one row moves.

    If the new id already has a row (an update from the supergroup arrived first), that younger row is
    dropped in favour of the group's history. Returns True if anything moved.
    """
    async with transaction(session):
        old = await session.scalar(select(Group).where(Group.chat_id == old_chat_id))  # type: ignore[arg-type]
        if old is None:
            return False
        await session.execute(delete(Group).where(Group.chat_id == new_chat_id))  # type: ignore[arg-type]
        await session.flush()
        old.chat_id, old.chat_type, old.updated_at = new_chat_id, "supergroup", utcnow()
        return True


# -- people ----------------------------------------------------------------------------------------------------


async def upsert_user(session: AsyncSession, person: UserSeen, *, private: bool = False) -> User:
    """The person's row, names kept current; `private` marks that they have a private chat with the bot."""
    async with transaction(session):
        user = await session.get(User, person.user_id)
        now = utcnow()
        if user is None:
            await session.execute(
                insert(session, User)
                .values(
                    user_id=person.user_id,
                    first_name=person.first_name[:128],
                    username=person.username,
                    language_code=person.language_code,
                    is_bot=person.is_bot,
                    started_at=now if private else None,
                    seen_at=now,
                )
                .on_conflict_do_nothing()
            )
            user = await session.get(User, person.user_id, populate_existing=True)
            assert user is not None
            return user
        changed = (user.first_name, user.username, user.language_code) != (
            person.first_name[:128],
            person.username,
            person.language_code,
        )
        if changed:
            user.first_name, user.username = person.first_name[:128], person.username
            user.language_code = person.language_code
        if private and (user.started_at is None or user.blocked_at is not None):
            user.started_at, user.blocked_at = user.started_at or now, None
        if changed or now - user.seen_at > timedelta(hours=1):
            user.seen_at = now
        return user


async def set_user_blocked(session: AsyncSession, user_id: int, blocked: bool) -> None:
    """The person blocked (or unblocked) the bot in private chat."""
    async with transaction(session):
        now = utcnow()
        values = {"blocked_at": now} if blocked else {"blocked_at": None, "started_at": now}
        await session.execute(update(User).where(User.user_id == user_id).values(**values))  # type: ignore[arg-type]


async def can_write_privately(session: AsyncSession, user_id: int) -> bool:
    """True when the person has started the bot and not blocked it."""
    async with transaction(session):
        user = await session.get(User, user_id)
        return user is not None and user.started_at is not None and user.blocked_at is None


async def upsert_member(session: AsyncSession, group: Group, person: UserSeen) -> Member:
    """The person's membership row in `group`, created when first seen there."""
    async with transaction(session):
        assert group.id is not None
        member = await session.scalar(
            select(Member).where(Member.group_id == group.id, Member.user_id == person.user_id)  # type: ignore[arg-type]
        )
        now = utcnow()
        if member is None:
            await session.execute(
                insert(session, Member)
                .values(
                    group_id=group.id,
                    user_id=person.user_id,
                    role="member",
                    language_code=person.language_code,
                    joined_at=now,
                    last_seen_at=now,
                )
                .on_conflict_do_nothing()
            )
            member = await session.scalar(
                select(Member)
                .where(Member.group_id == group.id, Member.user_id == person.user_id)  # type: ignore[arg-type]
                .execution_options(populate_existing=True)
            )
            assert member is not None
            return member
        if member.language_code != person.language_code:
            member.language_code = person.language_code
        if member.role in ("left", "kicked"):
            member.role, member.joined_at = "member", now
        if now - member.last_seen_at > timedelta(minutes=10):
            member.last_seen_at = now
        return member


async def set_member_role(
    session: AsyncSession, group: Group, person: UserSeen, role: str, *, joined: bool = False
) -> Member:
    """Record a chat_member change: joined (fresh joined_at), promoted, restricted, left or kicked."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    async with transaction(session):
        member = await upsert_member(session, group, person)
        member.role = role
        if joined:
            member.joined_at = utcnow()
        return member


async def get_member(session: AsyncSession, chat_id: int, user_id: int) -> Member | None:
    async with transaction(session):
        return await session.scalar(
            select(Member)
            .join(Group, Group.id == Member.group_id)  # type: ignore[arg-type]
            .where(Group.chat_id == chat_id, Member.user_id == user_id)  # type: ignore[arg-type]
        )


# -- privacy ---------------------------------------------------------------------------------------------------


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """Everything this module stores about the person."""
    async with transaction(session):
        user = await session.get(User, user_id)
        rows = await session.execute(
            select(Member, Group.chat_id, Group.title)
            .join(Group, Group.id == Member.group_id)  # type: ignore[arg-type]
            .where(Member.user_id == user_id)  # type: ignore[arg-type]
        )
        return {
            "profile": _row_dict(user) if user else None,
            "memberships": [
                {"chat_id": chat_id, "group": title, **_row_dict(member, skip=("id", "group_id"))}
                for member, chat_id, title in rows.all()
            ],
        }


async def erase_user_data(session: AsyncSession, user_id: int, *, pseudonym: int) -> None:
    """Delete the person's profile and memberships. (Nothing here is shared, so `pseudonym` is not needed.)"""
    async with transaction(session):
        await session.execute(delete(Member).where(Member.user_id == user_id))  # type: ignore[arg-type]
        await session.execute(delete(User).where(User.user_id == user_id))  # type: ignore[arg-type]


def _row_dict(row: SQLModel, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.model_dump().items():
        if key in skip:
            continue
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out
