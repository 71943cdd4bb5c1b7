"""Shared fixtures: real databases (SQLite in a temp dir, PostgreSQL at 127.0.0.1:5432).

The suite runs on parallel pytest-xdist workers (``-n``/``--dist`` in pyproject's addopts);
``pytest -p no:xdist`` (or ``-n 0``) runs it serially. Each worker is its own process with
its own session fixtures, so a test must be safe beside any other test in another process:

- Databases: take ``database_url`` / ``migrated_database_url`` / ``postgres_url`` /
  ``sqlite_url``; never use a fixed database name. A PostgreSQL database you create yourself
  is named with ``worker_database_name()`` and dropped by you.
- Ports: bind port 0 (``gateway.serving.BackgroundServer`` does) or take ``free_port()``;
  never a fixed port.
- Redis: keys only under the ``redis_prefix`` fixture's prefix; never flush.
- Files: under ``tmp_path`` / ``tmp_path_factory``; never a fixed path in the repository or
  /tmp.
- Session- or module-scoped state (servers, collections at the reference vendor) exists once
  per worker, not once per run: never count on a session fixture running once in total.
- Collection must be identical in every worker: no clock, random or set order in
  parametrize ids (tests/test_clock_at_collection.py checks the clock).
- Nothing may depend on having the CPU to itself: no wall-clock bounds in assertions (a
  deadline is a deadlock guard only). Under ``--dist worksteal`` xdist_group marks are
  ignored; a test that truly must run alone needs ``--dist loadgroup`` and such a mark.
- Under ``-n`` a single test still starts every worker; run one file or test with
  ``-p no:xdist`` (or ``-n 0``).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import RequestReader, create_engine
from gateway.migrate import upgrade_async

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
DATABASE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # pyproject's addopts ask for xdist's workers; under `-p no:xdist` nothing would know
    # those options and pytest would refuse to start. They are accepted and mean nothing.
    if not pluginmanager.has_plugin("xdist"):
        group = parser.getgroup("xdist (disabled)")
        # (_addoption: pytest reserves lowercase short options for itself and plugins.)
        group._addoption("-n", "--numprocesses", dest="numprocesses", default=None)
        group.addoption("--dist", dest="dist", default="no")


def pytest_configure(config: pytest.Config) -> None:
    # Before any test module imports the CompreFace SDK (see tests/sdk_compat.py).
    from tests.sdk_compat import install_appengine_stand_in

    install_appengine_stand_in()


def worker_id() -> str:
    """This process's xdist worker ("gw0", "gw1", ...), or "main" when run without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def worker_database_name(kind: str = "test") -> str:
    """A PostgreSQL database name no other test, worker or engineer will choose."""
    return f"facegate_{kind}_{worker_id()}_{uuid.uuid4().hex[:12]}"


def _admin(statement: str) -> None:
    engine = sa.create_engine(
        POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def _create_postgres_database() -> str:
    """Create an empty database; its name is returned."""
    name = worker_database_name()
    _admin(f'CREATE DATABASE "{name}"')
    return name


def _drop_postgres_database(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database, dropped afterwards. Fails loudly if the server is down."""
    name = _create_postgres_database()
    try:
        yield _postgres_url(name)
    finally:
        _drop_postgres_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'facegate.db'}"


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each supported kind (tests using it run once per kind; a test
    may pick kinds with ``@pytest.mark.parametrize("database_url", [...], indirect=True)``)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(scope="session")
async def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every Alembic migration applied once per worker to an SQLite file, for copying."""
    path = tmp_path_factory.mktemp("sqlite-template") / "facegate.db"
    await upgrade_async(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def migrated_database_url(database_url: str, _sqlite_template: Path) -> AsyncIterator[str]:
    """The same, with every Alembic migration applied.

    An SQLite database is a copy of the worker's migrated template: the same schema and
    alembic_version a fresh upgrade gives (the migrations insert no rows of their own),
    without running them again for every test. PostgreSQL is migrated in place. The
    migrations themselves are tested from empty databases (tests/audit/test_audit_schema.py,
    test_tree_migration.py, tests/context/test_warrants_migration.py)."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        # SQLite's backup API: a consistent copy whatever the template's journal holds.
        with (
            closing(sqlite3.connect(_sqlite_template)) as source,
            closing(sqlite3.connect(path)) as copy,
        ):
            source.backup(copy)
    else:
        await upgrade_async(database_url)
    yield database_url


@pytest.fixture
async def engine(migrated_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the migrated database, disposed afterwards."""
    engine = create_engine(migrated_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def reads(engine: AsyncEngine) -> AsyncIterator[RequestReader]:
    """The request path's reader over ``engine``, as the gateway opens it."""
    reads = await RequestReader.open(engine)
    yield reads
    await reads.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own in the shared Redis, its keys deleted afterwards."""
    prefix = f"facegate:test:{worker_id()}:{uuid.uuid4().hex}:"
    yield prefix
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
