"""The database: engine factory, one transaction per model operation, and the shared metadata.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys, and every transaction
starts with BEGIN IMMEDIATE so two writers queue on the lock instead of failing on a read-to-write upgrade.
PostgreSQL (asyncpg) is the engine for scale. Both are driven through the same functions.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy import BigInteger, DateTime, Insert, Integer, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_dbapi
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_
from sqlmodel import SQLModel

T = TypeVar("T")

# Constraint names that Alembic can find again (and SQLite batch mode needs).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = SQLModel.metadata

SQLITE_BUSY_TIMEOUT_MS = 30_000


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every engine (SQLite gives naive values back; this makes them aware again)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; qunbot stores aware UTC times")
        return value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """The stored form of a value, remembered for the last value seen: a batch writes the same `now` into
        every row, and SQLite's form is a string built in Python each time (datetimes are immutable, and the
        remembered one is kept alive, so the identity check is exact)."""
        convert = super().bind_processor(dialect)
        if convert is None:
            return None
        last: tuple[Any, Any] = (None, None)

        def process(value: Any) -> Any:
            nonlocal last
            seen, stored = last
            if value is seen and value is not None:
                return stored
            stored = convert(value)
            last = (value, stored)
            return stored

        return process

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Telegram ids are 64-bit; SQLite's INTEGER PRIMARY KEY aliasing needs plain INTEGER, so surrogate
# keys use this variant while every Telegram id column uses BigInteger.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 20) -> AsyncEngine:
    """An async engine for `url` (sqlite+aiosqlite or postgresql+asyncpg), configured for qunbot. `pool_size` and
    `max_overflow` are PostgreSQL's connections per process (settings DB_POOL_SIZE, DB_MAX_OVERFLOW): N processes
    open at most N x (pool_size + max_overflow), which must stay under the server's max_connections."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: SQLite has one writer anyway, and queueing for the connection in asyncio
        # is far cheaper than threads spinning in SQLite's busy handler. Other processes still queue on the
        # lock through busy_timeout.
        pool = {"poolclass": StaticPool} if database in ("", ":memory:") else {"pool_size": 1, "max_overflow": 0,
                                                                                 "pool_timeout": 120}
        connector = partial(sqlite3.connect, database or ":memory:", timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                            check_same_thread=False)
        engine = create_async_engine(url, echo=echo, module=_LoopSQLiteDBAPI(aiosqlite, sqlite3),
                                     async_creator=partial(_open_sqlite, connector), **pool)
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)


class LoopSQLite(AsyncAdapt_aiosqlite_connection):
    """The DBAPI connection SQLAlchemy drives for SQLite: sqlite3 called directly on the event loop's thread,
    and aiosqlite's thread only for what has to wait.

    SQLAlchemy's aiosqlite adapter sends each call (a cursor, execute, fetch, close: three or four a statement)
    through a coroutine, a greenlet switch and aiosqlite's thread and back, which costs more CPU than our
    statements take in SQLite. SQLAlchemy makes one call at a time per connection, so the loop and the thread
    never share it. What could wait, and what happens instead:

    - BEGIN IMMEDIATE (every transaction, see `begin`) waits for another process's write lock. The busy
      timeout is 0, so on the loop it either gets the lock at once (always, when this process is the only
      writer: it has one connection) or fails with SQLITE_BUSY; then it is tried again on the thread with the
      busy timeout, the loop running meanwhile.
    - COMMIT: in WAL mode it appends to the log and needs no other lock (the rollback journal of an in-memory
      or unusual file system may: a busy COMMIT, which leaves the transaction open, is retried on the thread).
      A commit would also checkpoint the log into the database file (file writes and an fsync) every 1,000
      pages: automatic checkpoints are off, and one runs on the thread after every CHECKPOINT_EVERY commits.
    - Every statement runs inside a transaction that holds the write lock: no waiting (any SQLITE_BUSY would
      still be retried on the thread).
    - Opening and closing go to the thread, which closing ends.
    """

    __slots__ = ("sqlite", "commits")

    CHECKPOINT_EVERY = 500  # commits; a commit of a bot's batch is a few pages, so the log stays a few MB

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection) -> None:
        super().__init__(dbapi, connection)
        self.sqlite: sqlite3.Connection = connection._conn
        self.commits = 0

    def cursor(self, server_side: bool = False) -> _LoopCursor:
        return _LoopCursor(self)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` here; if the database is locked by another connection, on the thread, waiting for it."""
        try:
            return fn(*args)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            return await_(self._connection._execute(self._waiting, fn, args))  # type: ignore[no-any-return]

    def begin(self) -> None:
        self.run(self.sqlite.execute, "BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self._connection._connection is None:
            return
        self.run(self.sqlite.commit)
        self.commits += 1
        if self.commits % self.CHECKPOINT_EVERY == 0:
            await_(self._connection._execute(self._checkpoint))

    def rollback(self) -> None:
        if self._connection._connection is not None:
            self.sqlite.rollback()

    def _checkpoint(self) -> None:
        self.sqlite.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # fetched: the statement ends

    def _waiting(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """`fn` on aiosqlite's thread, waiting up to the busy timeout for the lock."""
        self.sqlite.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        try:
            return fn(*args)
        finally:
            self.sqlite.execute("PRAGMA busy_timeout=0")


class _LoopCursor:
    """A DBAPI cursor over sqlite3's, for LoopSQLite. A statement's rows are read when it runs (as SQLAlchemy's
    aiosqlite adapter does), so they stay readable after its transaction ends."""

    __slots__ = ("connection", "cursor", "rows", "description", "rowcount", "lastrowid", "arraysize")
    server_side = False

    def __init__(self, connection: LoopSQLite) -> None:
        self.connection, self.cursor = connection, connection.sqlite.cursor()
        self.rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount, self.lastrowid, self.arraysize = -1, None, 1

    def execute(self, operation: str, parameters: Any = None) -> None:
        cursor = self.cursor
        await_(_no_wait())
        self.connection.run(cursor.execute, operation, () if parameters is None else parameters)
        self.description = cursor.description
        self.rows = deque(cursor.fetchall()) if cursor.description else deque()
        self.rowcount, self.lastrowid = cursor.rowcount, cursor.lastrowid  # (RETURNING counts once fetched)

    def executemany(self, operation: str, parameters: Any) -> None:
        cursor = self.cursor
        await_(_no_wait())
        self.connection.run(cursor.executemany, operation, parameters)
        self.description, self.rows = None, deque()
        self.rowcount, self.lastrowid = cursor.rowcount, cursor.lastrowid

    def fetchone(self) -> Any:
        return self.rows.popleft() if self.rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self.rows
        return [rows.popleft() for _ in range(min(self.arraysize if size is None else size, len(rows)))]

    def fetchall(self) -> list[Any]:
        rows = list(self.rows)
        self.rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self.rows:
            yield self.rows.popleft()

    def close(self) -> None:
        self.rows.clear()
        self.cursor.close()

    async def _async_soft_close(self) -> None:
        """What SQLAlchemy's async results call before handing a result back: nothing to do, rows are read."""

    def setinputsizes(self, *sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass


async def _no_wait() -> None:
    """Awaited once per statement: SQLAlchemy's AsyncConnection checks that each statement awaited the driver
    at least once (its guard against a synchronous driver under asyncio), and here none has to wait."""


class _LoopSQLiteDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DBAPI module, handing out LoopSQLite connections."""

    def connect(self, *args: Any, **kwargs: Any) -> LoopSQLite:
        creator = kwargs.pop("async_creator_fn")
        return LoopSQLite(self, await_(creator(*args, **kwargs)))


def _open_sqlite(connector: Callable[[], sqlite3.Connection]) -> aiosqlite.Connection:
    connection = aiosqlite.Connection(connector, iter_chunk_size=64)
    connection._thread.daemon = True  # as SQLAlchemy's own aiosqlite connect does
    return connection


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, decide when transactions begin (so BEGIN IMMEDIATE is ours).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=0")  # LoopSQLite waits for the lock on its thread, not on the loop
        cursor.execute("PRAGMA wal_autocheckpoint=0")  # LoopSQLite checkpoints on its thread
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        connection.connection.dbapi_connection.begin()  # LoopSQLite.begin: BEGIN IMMEDIATE


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: handlers render them after the transaction has ended.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """One unit of work. Joins the caller's transaction if one is open; otherwise begins and commits one.

    Every public models function wraps its work in this, so a handler's database work is committed before it
    talks to Telegram, and no write lock is held across network calls.
    """
    if session.in_transaction():
        yield session
        return
    async with session.begin():
        yield session


async def run_in_transaction(session: AsyncSession, work: Callable[[Session], T]) -> T:
    """`work(session)`, on the synchronous Session behind `session`, as one unit of work like `transaction`
    (joining the caller's transaction if one is open), run in one go.

    For the hot paths that run several statements back to back (an automatic removal, an arrival batch): each
    `await session.execute` is a greenlet of its own plus a switch per driver call, and on SQLite, where the
    statement itself takes microseconds, those cost more than the SQL. The work must not talk to Telegram (it
    holds the write lock) and must not await anything.
    """

    def run(sync_session: Session) -> T:
        if sync_session.in_transaction():
            return work(sync_session)
        with sync_session.begin():
            return work(sync_session)

    return await session.run_sync(run)


async def create_all(engine: AsyncEngine) -> None:
    """Create every table (tests; production uses Alembic migrations)."""
    import models.all  # noqa: F401  (registers every table)

    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)


def is_postgres(session_or_engine: AsyncSession | Session | AsyncEngine) -> bool:
    bind = session_or_engine.bind if isinstance(session_or_engine, AsyncSession | Session) else session_or_engine
    return bind is not None and bind.dialect.name == "postgresql"


def insert(session: AsyncSession, table: type[SQLModel] | Table) -> Insert:
    """A dialect INSERT for `table`, so callers can use on_conflict_do_nothing / do_update on both engines."""
    return dialect_insert(is_postgres(session), table)


def dialect_insert(postgres: bool, table: type[SQLModel] | Table) -> Insert:
    """`insert` for a statement built once per dialect (and cached by the caller) rather than per call."""
    target = table if isinstance(table, Table) else table.__table__  # type: ignore[attr-defined]
    return (postgresql.insert if postgres else sqlite.insert)(target)
