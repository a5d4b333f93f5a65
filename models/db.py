"""The database: engine factory, one transaction per model operation, and the shared metadata.

SQLite (the embedded default) runs in WAL mode with a busy timeout and foreign keys, and every transaction
starts with BEGIN IMMEDIATE so two writers queue on the lock instead of failing on a read-to-write upgrade.
PostgreSQL (asyncpg) is the engine for scale. Both are driven through the same functions.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import partial, wraps
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import aiosqlite
from sqlalchemy import BigInteger, DateTime, Insert, Integer, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_dbapi
from sqlalchemy.engine import Dialect, Result, ScalarResult, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_
from sqlmodel import SQLModel

T = TypeVar("T")
P = ParamSpec("P")

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


SQLiteDriver = Literal["loop", "aiosqlite"]
SQLITE_DRIVERS: tuple[SQLiteDriver, ...] = ("loop", "aiosqlite")


def create_engine(url: str, *, echo: bool = False, sqlite_driver: SQLiteDriver = "loop", pool_size: int = 10,
                  max_overflow: int = 20) -> AsyncEngine:
    """An async engine for `url` (sqlite+aiosqlite or postgresql+asyncpg), configured for qunbot.

    `sqlite_driver` (the SQLITE_DRIVER setting): "loop" drives SQLite through LoopSQLite (each statement on the
    event loop's thread); "aiosqlite" through SQLAlchemy's stock aiosqlite adapter (each call on aiosqlite's
    thread). On either, known-long work runs off the loop (see `off_loop` and `run_off_loop`).
    `pool_size` and `max_overflow` are PostgreSQL's connections per process (settings DB_POOL_SIZE,
    DB_MAX_OVERFLOW): N processes open at most N x (pool_size + max_overflow), which must stay under the
    server's max_connections."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if sqlite_driver not in SQLITE_DRIVERS:
            raise ValueError(f"unknown SQLite driver {sqlite_driver!r}; one of {', '.join(SQLITE_DRIVERS)}")
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
        dbapi = (_LoopSQLiteDBAPI if sqlite_driver == "loop" else _StockSQLiteDBAPI)(aiosqlite, sqlite3)
        engine = create_async_engine(url, echo=echo, module=dbapi, async_creator=partial(_open_sqlite, connector),
                                     **pool)
        _configure_sqlite(engine, loop=sqlite_driver == "loop")
        return engine
    return create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)


ROWS_PER_SLICE = 1_000  # rows read (or values joined) between two chances for the loop's thread to run


def let_the_loop_in() -> None:
    """Off the loop, between slices of CPU work: let go of the GIL, so the event loop's thread, if it is waiting
    for it, runs now (a C call such as sqlite3's fetch or str.join keeps it for its whole length otherwise)."""
    time.sleep(0)


def all_off_loop(result: Result[Any] | ScalarResult[Any]) -> list[Any]:
    """`result.all()` for work that runs off the loop (`run_off_loop`): the rows in slices, letting the loop's
    thread in between (SQLAlchemy turns a slice of rows into objects without letting go of the GIL)."""
    rows: list[Any] = []
    for part in result.partitions(ROWS_PER_SLICE):
        rows.extend(part)
        let_the_loop_in()
    return rows


def join_off_loop(separator: str, values: Iterable[object]) -> str:
    """`separator.join(map(str, values))` for work that runs off the loop (`run_off_loop`): in slices, letting the
    loop's thread in between."""
    values = list(values)
    parts = []
    for start in range(0, len(values), ROWS_PER_SLICE * 5):
        parts.append(separator.join(map(str, values[start:start + ROWS_PER_SLICE * 5])))
        let_the_loop_in()
    return separator.join(parts)


# Set while known-long work runs (see `off_loop`): its SQLite statements run on aiosqlite's thread.
_OFF_LOOP: ContextVar[bool] = ContextVar("qunbot_off_loop", default=False)


@contextmanager
def off_loop() -> Iterator[None]:
    """Within this block, every SQLite statement runs on aiosqlite's thread, the event loop free meanwhile (for a
    statement that scans: a leaderboard, an export, a prune). The rows are still turned into Python objects on
    the loop: for work that also has much Python to do, see `run_off_loop`. PostgreSQL: nothing changes
    (asyncpg's statements never held the loop)."""
    token = _OFF_LOOP.set(True)
    try:
        yield
    finally:
        _OFF_LOOP.reset(token)


def long_running(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorate a models function whose statements scan (a leaderboard, an export, a prune): they run
    `off_loop`."""

    @wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with off_loop():
            return await fn(*args, **kwargs)

    return run


class _Threaded:
    """What both SQLite connections share: a unit of work run on aiosqlite's thread (`run_off_loop`).

    While `threaded` is set the connection belongs to that thread: its cursors call sqlite3 directly there.
    (Nothing else can touch it meanwhile: it is checked out to the session whose caller awaits the work.)"""

    __slots__ = ()
    sqlite: sqlite3.Connection
    threaded: bool
    long: bool
    _connection: aiosqlite.Connection

    async def on_thread(self, work: Callable[[], T]) -> T:
        self.threaded = self.long = True
        done = asyncio.ensure_future(self._connection._execute(work))
        try:
            with _no_collections():
                return await asyncio.shield(done)
        finally:
            if not done.done():  # cancelled: the connection is the thread's until the work has ended
                await asyncio.wait({done})
            self.threaded = False


_collections_held = 0


@contextmanager
def _no_collections() -> Iterator[None]:
    """No automatic garbage collection while a unit of work runs on the thread. Its burst of objects (100,000 rows)
    would trigger full collections, which stop every thread, the loop's included, for as long as the heap takes to
    scan (80-90 ms measured beside a draw). Its objects die by reference counting when it ends, so none of them
    was ever going to need a collection; the loop's own garbage waits the few hundred milliseconds."""
    global _collections_held
    if _collections_held == 0 and not gc.isenabled():
        yield  # someone else turned collections off: leave them so
        return
    _collections_held += 1
    gc.disable()
    try:
        yield
    finally:
        _collections_held -= 1
        if _collections_held == 0:
            gc.enable()


class LoopSQLite(_Threaded, AsyncAdapt_aiosqlite_connection):
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

    Known-long work goes to the thread too: a statement run `off_loop`, or a unit of work (`run_off_loop`).
    """

    __slots__ = ("sqlite", "commits", "threaded", "ran_since", "long")

    CHECKPOINT_EVERY = 500  # commits; a commit of a bot's batch is a few pages, so the log stays a few MB
    RUN_FOR = 0.005  # seconds of statements on the loop before a unit of work lets other tasks run

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection) -> None:
        super().__init__(dbapi, connection)
        self.sqlite: sqlite3.Connection = connection._conn
        self.commits = 0
        self.threaded = False
        self.ran_since = time.perf_counter()  # when this connection's work last let the loop run (see pause)
        self.long = False  # this transaction did known-long work (it commits on the thread too)

    def cursor(self, server_side: bool = False) -> _LoopCursor:
        return _LoopCursor(self)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` here; if the database is locked by another connection, on the thread, waiting for it."""
        try:
            return fn(*args)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            if self.threaded:
                return self._waiting(fn, args)  # type: ignore[no-any-return]
            return await_(self._connection._execute(self._waiting, fn, args))  # type: ignore[no-any-return]

    def run_long(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the thread, waiting for the lock if need be (a statement run `off_loop`)."""
        self.long = True
        if self.threaded:
            return self._waiting(fn, args)  # type: ignore[no-any-return]
        return await_(self._connection._execute(self._waiting, fn, args))  # type: ignore[no-any-return]

    def begin(self) -> None:
        self.ran_since, self.long = time.perf_counter(), False
        self.run(self.sqlite.execute, "BEGIN IMMEDIATE")

    def pause(self) -> None:
        """Before a statement: let the loop run its other tasks if this unit of work has kept it for RUN_FOR
        already (a transaction of many short statements, such as a draw handing out prizes, never waits for
        anything, so it would otherwise hold the loop from its first statement to its last)."""
        if time.perf_counter() - self.ran_since < self.RUN_FOR:
            await_(_no_wait())
            return
        await_(asyncio.sleep(0))
        self.ran_since = time.perf_counter()

    def commit(self) -> None:
        if self._connection._connection is None:
            return
        if self.long and not self.threaded:  # what the long work wrote (a draw's entrant list) is written now
            self.run_long(self.sqlite.commit)
        else:
            self.run(self.sqlite.commit)
        self.long = False
        self.commits += 1
        if self.commits % self.CHECKPOINT_EVERY == 0:
            if self.threaded:
                self._checkpoint()
            else:
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

    def __init__(self, connection: LoopSQLite | StockSQLite) -> None:
        self.connection, self.cursor = connection, connection.sqlite.cursor()
        self.rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount, self.lastrowid, self.arraysize = -1, None, 1

    def execute(self, operation: str, parameters: Any = None) -> None:
        cursor, connection = self.cursor, self.connection
        parameters = () if parameters is None else parameters
        if connection.threaded:  # a unit of work on the thread (run_off_loop): here is the thread
            connection.run(cursor.execute, operation, parameters)
            self._read_yielding()
        elif _OFF_LOOP.get():  # known-long: the statement and its rows on the thread, the loop free meanwhile
            connection.run_long(self._execute_and_read, operation, parameters)
        else:
            connection.pause()
            connection.run(cursor.execute, operation, parameters)
            self._read()

    def _execute_and_read(self, operation: str, parameters: Any) -> None:
        self.cursor.execute(operation, parameters)
        self._read_yielding()

    def _read(self) -> None:
        cursor = self.cursor
        self.description = cursor.description
        self.rows = deque(cursor.fetchall()) if cursor.description else deque()
        self.rowcount, self.lastrowid = cursor.rowcount, cursor.lastrowid  # (RETURNING counts once fetched)

    def _read_yielding(self) -> None:
        """`_read` on the thread: the rows in slices, letting the loop's thread take the GIL between them (sqlite3
        builds a slice of rows without letting go of it: 100,000 rows at once would hold the loop ~100 ms)."""
        cursor = self.cursor
        self.description = cursor.description
        rows: deque[Any] = deque()
        if cursor.description:
            while part := cursor.fetchmany(ROWS_PER_SLICE):
                rows.extend(part)
                let_the_loop_in()
        self.rows = rows
        self.rowcount, self.lastrowid = cursor.rowcount, cursor.lastrowid

    def executemany(self, operation: str, parameters: Any) -> None:
        cursor = self.cursor
        if not self.connection.threaded:
            self.connection.pause()
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


class StockSQLite(_Threaded, AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's stock aiosqlite connection (SQLITE_DRIVER=aiosqlite: every call on aiosqlite's thread, as
    SQLAlchemy ships it), plus `run_off_loop`'s units of work, whose statements run on that thread directly."""

    __slots__ = ("sqlite", "threaded", "long")

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection) -> None:
        super().__init__(dbapi, connection)
        self.sqlite: sqlite3.Connection = connection._conn
        self.threaded = self.long = False

    def cursor(self, server_side: bool = False) -> Any:
        return _LoopCursor(self) if self.threaded else super().cursor(server_side)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)  # only ever on the thread, which waits for a lock through busy_timeout


class _StockSQLiteDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *args: Any, **kwargs: Any) -> StockSQLite:
        creator = kwargs.pop("async_creator_fn")
        return StockSQLite(self, await_(creator(*args, **kwargs)))


def _open_sqlite(connector: Callable[[], sqlite3.Connection]) -> aiosqlite.Connection:
    connection = aiosqlite.Connection(connector, iter_chunk_size=64)
    connection._thread.daemon = True  # as SQLAlchemy's own aiosqlite connect does
    return connection


def _configure_sqlite(engine: AsyncEngine, *, loop: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, decide when transactions begin (so BEGIN IMMEDIATE is ours).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        if loop:
            cursor.execute("PRAGMA busy_timeout=0")  # LoopSQLite waits for the lock on its thread, not on the loop
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # LoopSQLite checkpoints on its thread
        else:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # every call is on the thread
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        if loop:
            connection.connection.dbapi_connection.begin()  # LoopSQLite.begin: BEGIN IMMEDIATE
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


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


async def run_off_loop(session: AsyncSession, work: Callable[[Session], T]) -> T:
    """`work(session)` as one unit of work like `run_in_transaction` (joining the caller's transaction if one is
    open), with all of its CPU off the event loop: on SQLite the whole of it (statements, turning rows into
    objects, the Python in between) runs on the connection's aiosqlite thread while the loop serves everyone
    else. For known-long work that also computes much in Python (a draw over 100,000 entrants). On PostgreSQL
    it runs as `run_in_transaction` does (asyncpg's statements never held the loop).

    The work must not await anything nor talk to Telegram (it holds the write lock), and must not commit."""
    if session.in_transaction():
        return await _work_off_loop(session, work)
    async with session.begin():
        return await _work_off_loop(session, work)


async def _work_off_loop(session: AsyncSession, work: Callable[[Session], T]) -> T:
    connection = await session.connection()  # checked out and begun here, on the loop
    dbapi_connection = (await connection.get_raw_connection()).dbapi_connection
    if not isinstance(dbapi_connection, _Threaded):
        return await session.run_sync(work)
    return await dbapi_connection.on_thread(partial(work, session.sync_session))


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
