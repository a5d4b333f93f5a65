"""models.db.LoopSQLite: SQLite calls run on the event loop, except a wait for another writer's lock."""

from __future__ import annotations

import asyncio
import threading
import time

from sqlalchemy import text

from models.db import LoopSQLite, create_engine


async def test_a_writer_waits_for_another_connections_lock_without_blocking_the_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Two engines on one file behave like two processes: each has its own connection.
    path = tmp_path / "shared.db"
    first, second = create_engine(f"sqlite+aiosqlite:///{path}"), create_engine(f"sqlite+aiosqlite:///{path}")
    async with first.begin() as connection:
        await connection.execute(text("CREATE TABLE t (who TEXT)"))
    ticks = 0
    holding = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def hold_the_lock() -> None:
        async with first.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES ('first')"))
            holding.set()
            await asyncio.sleep(0.5)  # the write lock is held all this time

    async def write_after() -> float:
        await holding.wait()
        started = time.monotonic()
        async with second.begin() as connection:  # BEGIN IMMEDIATE: busy at once, then waits on the thread
            await connection.execute(text("INSERT INTO t VALUES ('second')"))
        return time.monotonic() - started

    ticking = asyncio.create_task(ticker())
    _held, waited = await asyncio.gather(hold_the_lock(), write_after())
    ticking.cancel()
    async with second.connect() as connection:
        rows = (await connection.execute(text("SELECT who FROM t ORDER BY rowid"))).scalars().all()
    await first.dispose()
    await second.dispose()

    assert rows == ["first", "second"]
    assert waited >= 0.3  # it did wait for the first writer's commit...
    assert ticks >= 15  # ...while the event loop went on (a blocked loop would tick about once)


async def test_checkpoints_run_on_the_thread_every_n_commits(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    checkpoints = []
    original = LoopSQLite._checkpoint

    def counted(self: LoopSQLite) -> None:
        checkpoints.append(threading.get_ident())  # the thread it runs on
        original(self)

    monkeypatch.setattr(LoopSQLite, "CHECKPOINT_EVERY", 3)
    monkeypatch.setattr(LoopSQLite, "_checkpoint", counted)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (n INTEGER)"))
        settings = [
            (await connection.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "wal_autocheckpoint", "busy_timeout")
        ]
    for n in range(6):
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    async with engine.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM t"))).scalar()
    await engine.dispose()

    assert settings == ["wal", 0, 0]  # no checkpoint inside a commit on the loop; no lock wait on the loop
    assert len(checkpoints) == 2  # 7 commits with the table's: after the 3rd and the 6th
    assert threading.get_ident() not in checkpoints
    assert count == 6
