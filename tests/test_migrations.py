"""Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import models.all  # noqa: F401
from models.db import metadata
from models.migrate import upgrade_to_head


async def test_upgrade_to_head_matches_the_models(request, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from models.db import create_engine
    from tests.conftest import POSTGRES_URL, _postgres_engine  # noqa: F401

    engines = [("sqlite", create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"), None)]
    if POSTGRES_URL:
        engine, schema = await _postgres_engine()
        engines.append(("postgres", engine, schema))
    for name, engine, schema in engines:
        try:
            await upgrade_to_head(engine)
            await upgrade_to_head(engine)  # a second run is a no-op

            def diff(connection):  # type: ignore[no-untyped-def]
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                return compare_metadata(context, metadata)

            async with engine.connect() as connection:
                changes = await connection.run_sync(diff)
                tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert changes == [], f"{name}: migrations and models differ: {changes}"
            assert set(metadata.tables) <= tables
        finally:
            await engine.dispose()
            if schema:
                admin = create_engine(POSTGRES_URL)
                async with admin.begin() as connection:
                    await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                await admin.dispose()
