"""`qunbot backup` (SQLite's online backup API while writes go on) and `qunbot move-to-postgres` (an SQLite
installation the real bot filled, moved to real PostgreSQL, then served from there)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot import cli
from bot.backup import backup_sqlite, tables_in_order
from bot.sandbox import Sandbox
from models import groups
from models.checkin import Checkin
from models.db import create_all, create_engine, create_sessionmaker
from models.points import PointsEntry
from tests.test_end_to_end import play_basic_group, running_bot

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")


async def make_qunbot_db(path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await create_all(engine)
    await engine.dispose()


async def test_backup_is_consistent_while_writes_go_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "qunbot.db"
    await make_qunbot_db(db)
    setup = sqlite3.connect(db)
    setup.executescript("CREATE TABLE pairs (n INTEGER); CREATE TABLE tally (n INTEGER); INSERT INTO tally VALUES (0);")
    setup.close()
    stop = threading.Event()
    commits = 0

    def write() -> None:  # each transaction adds two rows and counts them: a torn copy would disagree
        nonlocal commits
        connection = sqlite3.connect(db, timeout=30, isolation_level=None)
        while not stop.is_set():
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO pairs VALUES (1), (2)")
            connection.execute("UPDATE tally SET n = n + 2")
            connection.execute("COMMIT")
            commits += 1
        connection.close()

    def reach(count: int) -> None:
        while commits < count and writer.is_alive():
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        copies = []
        for i in range(3):
            await asyncio.to_thread(reach, 50 * (i + 1))
            copies.append(await asyncio.to_thread(backup_sqlite, db, tmp_path / f"copy{i}.db"))
    finally:
        stop.set()
        writer.join()
    for copy in copies:
        connection = sqlite3.connect(copy.path)
        rows = connection.execute("SELECT count(*) FROM pairs").fetchone()[0]
        tally = connection.execute("SELECT n FROM tally").fetchone()[0]
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        connection.close()
        assert rows == tally and rows > 0 and rows % 2 == 0
        assert not copy.path.with_name(copy.path.name + "-wal").exists()
    assert len({sqlite3.connect(c.path).execute("SELECT n FROM tally").fetchone()[0] for c in copies}) == 3
    with pytest.raises(FileExistsError):
        backup_sqlite(db, copies[0].path)  # never overwrites


def test_qunbot_backup_command(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "qunbot.db"
    asyncio.run(make_qunbot_db(db))
    out = tmp_path / "backups"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "setup_logging", lambda settings: None)  # keep pytest's log handlers
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    assert cli.main(["backup", str(out)]) == 0
    assert "integrity ok" in capsys.readouterr().out
    (written,) = out.iterdir()
    assert written.name.startswith("qunbot-") and written.suffix == ".db"
    names = {r[0] for r in sqlite3.connect(written).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {t.name for t in tables_in_order()} <= names
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://qunbot:pw@127.0.0.1/qunbot")
    assert cli.main(["backup", str(out)]) == 2
    assert "pg_dump" in capsys.readouterr().err


@pytest.mark.postgres
async def test_move_to_postgres_round_trip(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    if not POSTGRES_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    name = f"move_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    async with admin.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    target_url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
    try:
        # 1. The real bot fills an SQLite installation.
        async with Sandbox() as sb:
            async with running_bot(sb, tmp_path):
                owner, group = await play_basic_group(sb)
                members = [sb.add_user(f"M{i}", language_code="en") for i in range(4)]
                for member in members:
                    sb.add_member(group, member)
                    await sb.send(group, member, "/checkin")
                await sb.settle(timeout=15, quiet=1.2)

            # 2. qunbot move-to-postgres copies it, and every count matches on both ends.
            monkeypatch.chdir(tmp_path)
            monkeypatch.setattr(cli, "setup_logging", lambda settings: None)
            monkeypatch.delenv("BOT_TOKEN", raising=False)
            monkeypatch.setenv("DATABASE_URL", sqlite_url)
            assert await asyncio.to_thread(cli.main, ["move-to-postgres", "--to", target_url, "--batch", "2"]) == 0
            assert "every count matches" in capsys.readouterr().out
            source, target = create_engine(sqlite_url), create_engine(target_url)
            try:
                counted = 0
                async with source.connect() as s, target.connect() as t:
                    for table in tables_in_order():
                        here = await s.scalar(select(func.count()).select_from(table))
                        there = await t.scalar(select(func.count()).select_from(table))
                        assert here == there, table.name
                        counted += here or 0
                assert counted > 10
                async with create_sessionmaker(target)() as session:
                    row = await groups.get_group(session, group.id)
                assert row.timezone == "Asia/Taipei" and row.bot_status == "administrator"
            finally:
                await source.dispose()
                await target.dispose()

            # 3. A second move into the now-filled database is refused, and changes nothing.
            assert await asyncio.to_thread(cli.main, ["move-to-postgres", "--to", target_url]) == 1
            assert "already holds rows" in capsys.readouterr().err

            # 4. The bot serves the same group from PostgreSQL: new rows get fresh ids (sequences were set).
            async with running_bot(sb, tmp_path, database_url=target_url):
                newcomer = sb.add_user("New", language_code="en")
                sb.add_member(group, newcomer)
                before = len(sb.messages(group))
                await sb.send(group, newcomer, "/checkin")
                await sb.send(group, owner, "/timezone")
                await sb.settle(timeout=15, quiet=1.2)
                assert len(sb.messages(group)) > before
                assert not any("Sorry, something went wrong" in (m.text or "") for m in sb.messages(group))
            target = create_engine(target_url)
            async with target.connect() as t:
                checkins = await t.scalar(select(func.count()).select_from(Checkin))
                entries = await t.scalar(select(func.count()).select_from(PointsEntry))
            await target.dispose()
            assert checkins == len(members) + 1 and entries >= checkins  # the newcomer's check-in was stored
    finally:
        async with admin.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
