"""Backups and moving house: `qunbot backup PATH` (SQLite, with SQLite's online backup API) and
`qunbot move-to-postgres --to URL` (copy an SQLite installation into an empty PostgreSQL database).

PostgreSQL is backed up with its own tools (`pg_dump`, README "Backups"); `qunbot backup` says so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel

import models.all  # noqa: F401  (every table on SQLModel.metadata)
from bot.settings import Settings
from models.migrate import upgrade_to_head

log = logging.getLogger("qunbot.backup")

PG_DUMP_HINT = """\
DATABASE_URL is PostgreSQL: back it up with PostgreSQL's own tool, which takes a consistent snapshot while the
bot runs:
  pg_dump --format=custom --file=qunbot-$(date +%Y%m%d-%H%M%S).dump "postgresql://USER:PASSWORD@HOST:5432/DB"
and restore into an empty database with:
  pg_restore --no-owner --dbname="postgresql://USER:PASSWORD@HOST:5432/DB" qunbot-....dump"""


class MoveError(Exception):
    """The move cannot start or did not verify; the message says why in one line."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    tables: int


def backup_sqlite(source: Path, target: Path) -> BackupResult:
    """Copy the SQLite database at `source` to `target` with SQLite's online backup API: a consistent copy (one
    read transaction: every write the bot makes meanwhile is either wholly in it or not at all) while the bot
    keeps running. `target` may be a folder (a dated file name is chosen); an existing file is never
    overwritten. The copy is checked with PRAGMA integrity_check before it gets its name."""
    if not source.is_file():
        raise FileNotFoundError(f"no SQLite database at {source}")
    if target.is_dir():
        target = target / f"qunbot-{datetime.now(UTC):%Y%m%d-%H%M%S}.db"
    if target.exists():
        raise FileExistsError(f"{target} exists; choose a new name")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # all pages in one step: one consistent snapshot
            verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise RuntimeError(f"the copy failed its integrity check: {verdict}")
            tables = dst.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            dst.close()
    finally:
        src.close()
    os.replace(partial, target)
    return BackupResult(target, target.stat().st_size, int(tables))


# -- moving an SQLite installation to PostgreSQL ---------------------------------------------------------------


@dataclass(frozen=True)
class MoveReport:
    rows: dict[str, int]  # rows copied, by table

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def tables_in_order() -> list[Table]:
    """Every qunbot table, parents before the tables whose foreign keys point at them."""
    return list(SQLModel.metadata.sorted_tables)


async def move_to_postgres(source: AsyncEngine, target: AsyncEngine, *, batch: int = 1000) -> MoveReport:
    """Copy every row from the SQLite `source` into the PostgreSQL `target`: both are migrated to the newest
    schema first; the target must hold no qunbot rows. Tables are copied parents first, `batch` rows at a time,
    in one transaction on the target (a failure leaves it as it was); then each table's id sequence is set past
    its largest id, and every table's row count is compared. The bot must be stopped meanwhile."""
    if source.dialect.name != "sqlite":
        raise MoveError("the source (DATABASE_URL) must be SQLite")
    if target.dialect.name != "postgresql":
        raise MoveError("the target (--to) must be a postgresql+asyncpg:// URL")
    await upgrade_to_head(source)
    await upgrade_to_head(target)
    tables = tables_in_order()
    copied: dict[str, int] = {}
    async with source.connect() as reader, target.begin() as writer:
        for table in tables:
            if await _count(writer, table):
                raise MoveError(f"the target database already holds rows in {table.name}; use an empty database")
        for table in tables:
            copied[table.name] = await _copy_table(reader, writer, table, batch)
            if copied[table.name]:
                log.info("copied %s rows of %s", copied[table.name], table.name)
        for table in tables:
            await _fix_sequence(writer, table)
        for table in tables:
            expected, found = await _count(reader, table), await _count(writer, table)
            if expected != found:
                raise MoveError(f"{table.name}: {expected} rows in SQLite but {found} copied; nothing was kept")
    return MoveReport(copied)


async def _count(connection: AsyncConnection, table: Table) -> int:
    return int(await connection.scalar(select(func.count()).select_from(table)) or 0)


async def _copy_table(reader: AsyncConnection, writer: AsyncConnection, table: Table, batch: int) -> int:
    order = list(table.primary_key.columns) or list(table.columns)
    done = 0
    while True:
        rows = (await reader.execute(select(table).order_by(*order).limit(batch).offset(done))).mappings().all()
        if not rows:
            return done
        await writer.execute(table.insert(), [dict(row) for row in rows])
        done += len(rows)
        if len(rows) < batch:
            return done


async def _fix_sequence(writer: AsyncConnection, table: Table) -> None:
    """An id column filled by a sequence must continue after the copied ids."""
    for column in table.primary_key.columns:
        if column.autoincrement is False or not _is_integer(column):
            continue
        sequence = await writer.scalar(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                       {"t": table.name, "c": column.name})
        if sequence is None:
            continue
        largest = await writer.scalar(select(func.max(column)))
        if largest is None:
            await writer.execute(text("SELECT setval(:s, 1, false)"), {"s": sequence})
        else:
            await writer.execute(text("SELECT setval(:s, :v, true)"), {"s": sequence, "v": int(largest)})


def _is_integer(column: object) -> bool:
    try:
        return column.type.python_type is int  # type: ignore[attr-defined, no-any-return]
    except NotImplementedError:
        return False


# -- the command line ----------------------------------------------------------------------------------------


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`qunbot backup` and `qunbot move-to-postgres`."""
    backup = commands.add_parser(
        "backup", help="copy the SQLite database while the bot runs",
        description="Write a consistent copy of the SQLite database (DATABASE_URL) with SQLite's online backup "
        "API; the bot may keep running. PATH is a new file, or a folder for a dated file name. For PostgreSQL, "
        "use pg_dump (this command prints how).")
    backup.add_argument("path", metavar="PATH", help="the backup file to write, or a folder")
    move = commands.add_parser(
        "move-to-postgres", help="copy this SQLite installation into an empty PostgreSQL database",
        description="Stop the bot first. Migrates the PostgreSQL database (--to) to the newest schema, copies "
        "every table from the SQLite database (DATABASE_URL) in one transaction, sets the id sequences and "
        "compares row counts. Then set DATABASE_URL to the new URL and start the bot.")
    move.add_argument("--to", required=True, metavar="URL", help="postgresql+asyncpg://USER:PASSWORD@HOST/DB")
    move.add_argument("--batch", type=int, default=1000, metavar="N", help="rows a statement (default 1000)")


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run `qunbot backup` or `qunbot move-to-postgres`; the exit status."""
    if args.command == "backup":
        path = settings.sqlite_path()
        if path is None:
            print(PG_DUMP_HINT if settings.database_url.startswith("postgresql") else
                  "qunbot backup: DATABASE_URL is not an SQLite file", file=sys.stderr)
            return 2
        try:
            result = backup_sqlite(path, Path(args.path))
        except (OSError, RuntimeError, sqlite3.Error) as error:
            print(f"qunbot backup: {error}", file=sys.stderr)
            return 1
        print(f"backup written to {result.path} ({result.size} bytes, {result.tables} tables, integrity ok)")
        return 0
    if not args.to.startswith("postgresql+asyncpg://"):
        print("qunbot move-to-postgres: --to must start with postgresql+asyncpg://", file=sys.stderr)
        return 2
    if settings.sqlite_path() is None:
        print("qunbot move-to-postgres: DATABASE_URL must be the SQLite database to move", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_move(settings.database_url, args.to, args.batch))
    except MoveError as error:
        print(f"qunbot move-to-postgres: {error}", file=sys.stderr)
        return 1
    print(f"moved {report.total} rows in {len(report.rows)} tables; every count matches.\n"
          f"Now set DATABASE_URL={_without_password(args.to)} (with its password) and start the bot.")
    return 0


async def _move(source_url: str, target_url: str, batch: int) -> MoveReport:
    from models.db import create_engine

    source, target = create_engine(source_url), create_engine(target_url)
    try:
        return await move_to_postgres(source, target, batch=batch)
    finally:
        await source.dispose()
        await target.dispose()


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
