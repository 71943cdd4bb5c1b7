"""Shared fixtures: real databases (SQLite in a temp dir, PostgreSQL at 127.0.0.1:5432)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio
import sqlalchemy as sa

from gateway.migrate import upgrade_async

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def pytest_configure(config: pytest.Config) -> None:
    # Before any test module imports the CompreFace SDK (see tests/sdk_compat.py).
    from tests.sdk_compat import install_appengine_stand_in

    install_appengine_stand_in()


def _fresh_postgres_database() -> str:
    """Create an empty database for one test module; its name is returned."""
    name = f"facegate_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(
        POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name


def _drop_postgres_database(name: str) -> None:
    engine = sa.create_engine(
        POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database, dropped afterwards. Fails loudly if the server is down."""
    name = _fresh_postgres_database()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _drop_postgres_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'facegate.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each supported kind (tests using it run once per kind)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def migrated_database_url(database_url: str) -> AsyncIterator[str]:
    """The same, with every Alembic migration applied."""
    await upgrade_async(database_url)
    yield database_url


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own in the shared Redis, its keys deleted afterwards."""
    prefix = f"facegate:test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
