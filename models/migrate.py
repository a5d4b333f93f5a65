"""Bring a database to the newest schema with Alembic, from code (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(url: str = "") -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# pg_advisory_lock key: "qunbot migrations". Every process that migrates (each worker, the scheduler, `qunbot
# migrate`) takes it first, so processes started together on an empty database apply the migrations once, one
# after the other, instead of racing on alembic_version (the second finds the schema at head and does nothing).
MIGRATION_LOCK = 0x71756E626F74  # "qunbot"


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Apply every migration not yet applied, on the engine's own connection (on PostgreSQL, under an advisory
    lock held for the whole upgrade; SQLite's own write lock serialises it there)."""

    def upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            await connection.commit()
        try:
            await connection.run_sync(upgrade)
            await connection.commit()
        finally:
            if postgres:
                await connection.rollback()
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                await connection.commit()
