"""The request path's reader (gateway.db.RequestReader) on a real database: each read sees
what was committed through the engine just before it (a new warrant, a revocation, a
refused authorisation), never a cached row or an old snapshot; on a SQLite file it reads
on a read-only connection of its own, not blocked by a writer; a read that fails is
refused through the storage edge and its connection replaced."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from gateway.context.warrants import (
    WarrantRow,
    find_warrant,
    revoke_warrant,
)
from gateway.db import (
    RequestReader,
    _ReadConnections,
    asyncpg_connect_args,
    create_engine,
    map_database_errors,
    session_factory,
    sqlite_file,
)
from gateway.errors import StorageUnavailable
from gateway.leads.models import AuthorisationRow
from gateway.leads.refusals import refused_bases
from gateway.operations import FaceOperation, OperationKind
from gateway.policy.contract import WarrantStatus
from tests.context.test_warrants import register_warrant

NOW = datetime(2026, 11, 30, 12, 0, 0, 250000, tzinfo=UTC)
SEARCH = FaceOperation(
    vendor="rekognition",
    name="SearchFacesByImage",
    kind=OperationKind.IDENTIFY,
    collection="mugshots",
)


async def register(engine: AsyncEngine, warrant_id: str) -> None:
    async with session_factory(engine)() as db, db.begin():
        await register_warrant(db, warrant_id, now=NOW, registered_at=NOW - timedelta(days=1))


async def status(reads: RequestReader, warrant_id: str) -> WarrantStatus:
    found = await find_warrant(
        reads, warrant_id=warrant_id, operation=SEARCH, case_number="2026-1", now=NOW
    )
    return found.status


async def refuse(engine: AsyncEngine, authorisation_id: str, basis: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            sa.insert(AuthorisationRow).values(
                id=authorisation_id,
                search_request_id=f"request-{authorisation_id}",
                agency="Metro PD",
                officer="officer-1",
                case_number="2026-1",
                legal_basis="exigent",
                basis=basis,
                opened_at=NOW,
                deadline=NOW + timedelta(days=1),
                state="refused",
                decided_at=NOW,
            )
        )


async def test_a_sqlite_file_is_read_on_the_readers_own_connection(
    engine: AsyncEngine, reads: RequestReader
) -> None:
    """Which path this module's other tests exercise: on SQLite, the reader's own."""
    if engine.dialect.name == "sqlite":
        assert reads.on_sqlite_file and not reads.on_asyncpg
    else:
        assert reads.on_asyncpg and not reads.on_sqlite_file


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite:///file:reads?mode=memory&uri=true",
        "sqlite+aiosqlite:///{tmp}/facegate.db?timeout=5",
    ],
    ids=["memory", "uri", "query"],
)
async def test_a_sqlite_database_that_is_not_a_plain_file_is_read_through_the_engine(
    tmp_path: Path, url: str
) -> None:
    # Another connection would not reach an in-memory database, nor honour the URL's options.
    engine = create_async_engine(url.format(tmp=tmp_path), poolclass=NullPool)
    try:
        assert sqlite_file(engine) is None
        reads = await RequestReader.open(engine)
        assert not reads.on_sqlite_file
        with pytest.raises(RuntimeError):
            reads.sqlite_fetchall("SELECT 1")
        await reads.aclose()
    finally:
        await engine.dispose()


async def test_a_new_warrant_and_a_revocation_are_seen_by_the_very_next_read(
    engine: AsyncEngine, reads: RequestReader
) -> None:
    await register(engine, "W-1")
    for _ in range(3):  # the connection open, the statement prepared
        assert await status(reads, "W-1") is WarrantStatus.ACTIVE
        assert await status(reads, "W-2") is WarrantStatus.UNKNOWN
    await register(engine, "W-2")
    assert await status(reads, "W-2") is WarrantStatus.ACTIVE
    async with session_factory(engine)() as db, db.begin():
        await revoke_warrant(db, warrant_id="W-1", reason="quashed", now=NOW)
    assert await status(reads, "W-1") is WarrantStatus.REVOKED
    async with engine.begin() as connection:  # deleted: no longer in the registry
        await connection.execute(sa.delete(WarrantRow).where(WarrantRow.id == "W-2"))
    assert await status(reads, "W-2") is WarrantStatus.UNKNOWN


async def test_a_refusal_is_seen_by_the_very_next_read(
    engine: AsyncEngine, reads: RequestReader
) -> None:
    async def bases() -> list[str]:
        return await refused_bases(reads, case_number="2026-1", agency="Metro PD")

    assert await bases() == []
    await refuse(engine, "A-1", "post_remote")
    assert await bases() == ["post_remote"]
    await refuse(engine, "A-2", "exigent")
    await refuse(engine, "A-3", "exigent")
    assert await bases() == ["exigent", "post_remote"]  # distinct, sorted
    assert await refused_bases(reads, case_number="2026-1", agency="Other PD") == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_write_in_progress_neither_blocks_a_read_nor_shows_through(
    engine: AsyncEngine, reads: RequestReader
) -> None:
    """WAL: a reader reads the last commit while another connection holds the write lock
    (even EXCLUSIVE) over an uncommitted change, and the commit's next read sees it."""
    await register(engine, "W-1")
    assert await status(reads, "W-1") is WarrantStatus.ACTIVE
    path = sqlite_file(engine)
    assert path is not None
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("UPDATE warrants SET revoked_at = valid_from WHERE id = 'W-1'")
        assert await status(reads, "W-1") is WarrantStatus.ACTIVE
        writer.execute("COMMIT")
        assert await status(reads, "W-1") is WarrantStatus.REVOKED
    finally:
        writer.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_readers_sqlite_connection_writes_nothing(reads: RequestReader) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reads.sqlite_fetchall("DELETE FROM warrants")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_failed_sqlite_read_is_refused_and_its_connection_replaced(
    engine: AsyncEngine, reads: RequestReader
) -> None:
    await register(engine, "W-1")
    assert await status(reads, "W-1") is WarrantStatus.ACTIVE
    opened = reads._sqlite._connection if reads._sqlite else None
    assert opened is not None
    async with engine.begin() as connection:
        await connection.execute(sa.text("ALTER TABLE warrants RENAME TO warrants_away"))
    try:
        # find_warrant leaves the storage edge to its caller: gather's, as gather has it.
        with (
            pytest.raises(StorageUnavailable, match="warrant registry"),
            map_database_errors("the warrant registry could not be read"),
        ):
            await status(reads, "W-1")
    finally:
        async with engine.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE warrants_away RENAME TO warrants"))
    assert await status(reads, "W-1") is WarrantStatus.ACTIVE
    assert reads._sqlite is not None and reads._sqlite._connection is not opened


# The reader's own pool on PostgreSQL (gateway.db._ReadConnections), two connections wide.
POOL = 2


@pytest.fixture
async def small_pool(postgres_url: str) -> AsyncIterator[tuple[AsyncEngine, RequestReader]]:
    """A reader of POOL connections on PostgreSQL, and its engine; both closed after."""
    engine = create_engine(postgres_url)
    reads = RequestReader(engine, _ReadConnections(asyncpg_connect_args(engine), size=POOL))
    try:
        yield engine, reads
    finally:
        await reads.aclose()
        await engine.dispose()


async def backend(reads: RequestReader, sleep: float = 0.0) -> int:
    row = await reads.fetchrow("SELECT pg_backend_pid() FROM pg_sleep($1)", sleep)
    assert row is not None
    pid: int = row[0]
    return pid


async def test_reads_past_the_pools_size_wait_their_turn_on_its_connections(
    small_pool: tuple[AsyncEngine, RequestReader],
) -> None:
    _, reads = small_pool
    async with asyncio.timeout(30):
        pids = await asyncio.gather(*(backend(reads, 0.05) for _ in range(4 * POOL)))
    assert len(set(pids)) == POOL  # never more connections than the pool's size
    # Every connection came back: as many reads at once again, on the same ones.
    async with asyncio.timeout(30):
        again = await asyncio.gather(*(backend(reads, 0.05) for _ in range(POOL)))
    assert set(again) == set(pids)


async def test_a_read_cancelled_or_failed_gives_its_place_back(
    small_pool: tuple[AsyncEngine, RequestReader],
) -> None:
    _, reads = small_pool
    first = await backend(reads)
    # Cancelled mid-statement: its connection is terminated, never lent again.
    slow = asyncio.ensure_future(backend(reads, 10))
    await asyncio.sleep(0.2)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    # Cancelled while waiting for a connection: it holds no place either.
    holders = [asyncio.ensure_future(backend(reads, 0.3)) for _ in range(POOL)]
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(backend(reads))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    async with asyncio.timeout(30):
        await asyncio.gather(*holders)
    # A failed statement: terminated too.
    with pytest.raises(Exception, match="division by zero"):
        await reads.fetchrow("SELECT 1 / 0")
    async with asyncio.timeout(30):
        pids = await asyncio.gather(*(backend(reads, 0.1) for _ in range(POOL)))
    assert len(set(pids)) == POOL and first not in pids


async def test_a_connection_the_server_closed_while_idle_is_passed_over(
    small_pool: tuple[AsyncEngine, RequestReader],
) -> None:
    engine, reads = small_pool
    pid = await backend(reads)
    async with engine.connect() as connection:
        await connection.execute(sa.text(f"SELECT pg_terminate_backend({pid})"))
    await asyncio.sleep(0.5)  # the close read by the idle connection
    assert await backend(reads) != pid


async def test_a_closed_reader_refuses_reads(
    small_pool: tuple[AsyncEngine, RequestReader],
) -> None:
    _, reads = small_pool
    await backend(reads)
    await reads.aclose()
    with pytest.raises(StorageUnavailable), map_database_errors("closed: {cause}"):
        await backend(reads)
