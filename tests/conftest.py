"""Shared fixtures: databases (SQLite always; PostgreSQL when TEST_DATABASE_URL is set) and a dispatcher fed
real updates with a recording bot session."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.settings import load_settings
from models.db import create_all, create_engine, create_sessionmaker
from tests.factories import World

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")

# "sqlite": LoopSQLite (the default SQLITE_DRIVER); "sqlite-stock": SQLAlchemy's stock aiosqlite adapter
# (SQLITE_DRIVER=aiosqlite), for the model tests (see pytest_collection_modifyitems).
DATABASES = ["sqlite", pytest.param("sqlite-stock", marks=pytest.mark.sqlite_stock),
             pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against TEST_DATABASE_URL (PostgreSQL)")
    config.addinivalue_line("markers", "sqlite_stock: runs on SQLite through the stock aiosqlite driver")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The stock-driver variant runs where the driver is what is tested: the model tests. A test that feeds the
    dispatcher (the `world` fixture) runs on LoopSQLite and PostgreSQL only, which keeps the suite's time."""
    keep, dropped = [], []
    for item in items:
        stock = item.get_closest_marker("sqlite_stock") is not None
        (dropped if stock and "world" in getattr(item, "fixturenames", ()) else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


async def _postgres_engine() -> tuple[AsyncEngine, str]:
    """A fresh schema on the test PostgreSQL server, so tests never see each other's rows."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    await admin.dispose()
    engine = create_engine(POSTGRES_URL)
    @event.listens_for(engine.sync_engine, "connect")
    def _search_path(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute(f'SET search_path TO "{schema}"')
        cursor.close()
        dbapi_connection.commit()  # the adapter ran SET inside a transaction: commit it, or a rollback undoes it

    return engine, schema


@pytest.fixture(params=DATABASES)
async def engine(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    if request.param in ("sqlite", "sqlite-stock"):
        driver = "aiosqlite" if request.param == "sqlite-stock" else "loop"
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'qunbot.db'}", sqlite_driver=driver)
        await create_all(engine)
        yield engine
        await engine.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    engine, schema = await _postgres_engine()
    await create_all(engine)
    yield engine
    await engine.dispose()
    admin = create_engine(POSTGRES_URL)
    async with admin.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await admin.dispose()


@pytest.fixture
async def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def settings():  # type: ignore[no-untyped-def]
    # Groups without a /lang choice speak DEFAULT_LOCALE: English here, so tests read plainly.
    return load_settings(bot_token="4200:TEST-TOKEN-abcdefghij", _env_file=None, database_url="sqlite+aiosqlite:///:memory:",
                         default_locale="en")


@pytest.fixture
async def world(settings, sessionmaker) -> AsyncIterator[World]:  # type: ignore[no-untyped-def]
    """A dispatcher with every router and middleware, a recording bot, and factories for people and chats."""
    world = World(settings, sessionmaker)
    yield world
    await world.close()
