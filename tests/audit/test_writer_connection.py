"""PostgreSQL's group commit writes on one asyncpg connection of its own (not a checkout of
the engine's pool per batch), with the append's settings set once when it connects, and
fails closed: a batch that fails for any reason terminates the connection, so the server
rolls back and frees the sequencer, and the next batch connects again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import merkle
from gateway.audit.log import AuditLog, Unit
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import AppendedEntry
from gateway.audit.stores import SEQUENCER_LOCK_ID, AppendStore, AsyncpgGroupCommit, AsyncpgStore
from gateway.db import session_factory
from gateway.errors import AuditUnavailable
from tests.audit.conftest import checker_of

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

RecordFactory = Callable[..., AuditRecord]


class ObservedLog(AuditLog):
    """Notes the writer's backend and its lock_timeout in each group-commit batch, once the
    sequencer is taken, and runs ``during_batch`` (if set) there, before the rest of the
    batch is written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backends: list[int] = []
        self.lock_timeouts: list[str] = []
        self.during_batch: Callable[[int], Awaitable[None]] | None = None

    async def _write(
        self,
        store: AppendStore,
        records: Sequence[AuditRecord | Unit],
        *,
        sign: bool,
        cached: tuple[int, bytes, merkle.CompactRange] | None = None,
    ) -> list[AppendedEntry | list[AppendedEntry] | ValueError]:
        if not isinstance(store, AsyncpgStore):
            return await super()._write(store, records, sign=sign, cached=cached)
        connection: Any = store._connection
        self.backends.append(await connection.fetchval("SELECT pg_backend_pid()"))
        self.lock_timeouts.append(await connection.fetchval("SHOW lock_timeout"))

        hook, self.during_batch = self.during_batch, None
        if hook is not None:
            store = _Hooked(store, lambda: hook(self.backends[-1]))
        return await super()._write(store, records, sign=sign, cached=cached)


class _Hooked:
    """A store that runs ``hook`` right after the sequencer is taken."""

    def __init__(self, store: AppendStore, hook: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        self._hook = hook

    async def take_sequencer(self) -> None:
        await self._store.take_sequencer()
        await self._hook()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def terminate(engine: AsyncEngine, pid: int) -> None:
    """End backend ``pid`` from another connection, and wait until the server has."""
    async with engine.connect() as connection:
        assert await connection.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(500):
            gone = await connection.scalar(
                sa.text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
            if gone:
                return
            await connection.rollback()  # pg_stat_activity is read once a transaction
            await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} still there")


async def sequencer_is_free(engine: AsyncEngine) -> bool:
    """Whether another connection takes the sequencer within a few seconds (the server may
    take a moment to notice that the writer's connection was closed)."""
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SET lock_timeout = '5s'")
        try:
            await connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": SEQUENCER_LOCK_ID}
            )
        except sa.exc.DBAPIError:
            return False
        finally:
            await connection.rollback()
        return True


@pytest.fixture
async def log(engine: AsyncEngine) -> AsyncIterator[ObservedLog]:
    audit = ObservedLog(session_factory(engine), lock_timeout=timedelta(milliseconds=1234))
    try:
        yield audit
    finally:
        await audit.aclose()


async def test_batches_share_one_backend_with_the_settings_set_once(
    log: ObservedLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    for i in range(3):
        await log.append(record_factory(request_id=f"r{i}"))
    await asyncio.gather(*(log.append(record_factory(request_id=f"g{i}")) for i in range(10)))

    assert len(log.backends) >= 4
    assert len(set(log.backends)) == 1, "a batch ran on another connection"
    # Set on the session when it connected, not per transaction: in force in every batch.
    assert log.lock_timeouts == ["1234ms"] * len(log.backends)
    # Not a connection of the engine's pool: that stays free of the writer's backend.
    async with engine.connect() as connection:
        pool_backend = await connection.scalar(sa.text("SELECT pg_backend_pid()"))
    assert pool_backend != log.backends[0]
    assert (await checker_of(log).verify()).entries_checked == 13


async def test_a_failed_batch_fails_its_callers_and_frees_the_sequencer(
    log: ObservedLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await log.append(record_factory(request_id="before"))

    async def fail(_pid: int) -> None:
        raise RuntimeError("injected while holding the sequencer")

    log.during_batch = fail
    results = await asyncio.gather(
        *(log.append(record_factory(request_id=f"failed{i}")) for i in range(3)),
        return_exceptions=True,
    )
    assert results and all(isinstance(r, RuntimeError) for r in results), results
    # The failed batch's connection is gone, and with it its transaction and the lock.
    assert await sequencer_is_free(engine)

    entry = await log.append(record_factory(request_id="after"))
    assert entry.seq == 2  # nothing of the failed batch was committed
    assert log.backends[-1] != log.backends[0], "the failed connection was used again"
    assert (await checker_of(log).verify()).entries_checked == 2


async def test_a_cancelled_batch_frees_the_sequencer(
    log: ObservedLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await log.append(record_factory(request_id="before"))
    holding = asyncio.Event()

    async def stall(_pid: int) -> None:
        holding.set()
        await asyncio.sleep(60)

    log.during_batch = stall
    pending = asyncio.ensure_future(log.append(record_factory(request_id="cancelled")))
    await holding.wait()
    assert log._writer is not None
    log._writer.cancel()  # what the event loop's shutdown does to the writer task
    with pytest.raises(AuditUnavailable):
        await pending
    assert await sequencer_is_free(engine)

    assert (await log.append(record_factory(request_id="after"))).seq == 2
    assert log.backends[-1] != log.backends[0]


async def test_a_connection_the_server_drops_mid_batch_fails_that_batch_only(
    log: ObservedLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await log.append(record_factory(request_id="before"))

    async def drop(pid: int) -> None:
        await terminate(engine, pid)

    log.during_batch = drop
    with pytest.raises(AuditUnavailable):
        await log.append(record_factory(request_id="dropped"))

    entry = await log.append(record_factory(request_id="after"))
    assert entry.seq == 2
    before, dropped, after = log.backends
    assert dropped == before and after != dropped  # the dropped one reused, then replaced
    assert (await checker_of(log).verify()).entries_checked == 2


async def test_a_connection_the_server_dropped_while_idle_is_replaced(
    log: ObservedLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    # A server restart, an idle_session_timeout, an administrator: the writer's connection
    # is ended between batches. Once asyncpg has read the server's close (it reads as the
    # close arrives; the backend leaves pg_stat_activity a moment before its socket
    # closes), the next batch sees the connection closed and opens another, failing no one.
    await log.append(record_factory(request_id="before"))
    writer: Any = log._store._connection  # type: ignore[attr-defined]
    await terminate(engine, log.backends[-1])
    for _ in range(500):
        if writer.is_closed():
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("asyncpg did not see the close")

    assert (await log.append(record_factory(request_id="after"))).seq == 2
    assert log.backends[-1] != log.backends[0]


def terminate_blocking(engine: AsyncEngine, pid: int) -> None:
    """``terminate``, on a synchronous connection: the event loop runs nothing meanwhile, so
    asyncpg has not read the server's close of ``pid`` when this returns."""
    url = engine.url.set(drivername="postgresql+psycopg")
    blocking = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with blocking.connect() as connection:
            assert connection.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(500):
                if not connection.scalar(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                ):
                    return
                time.sleep(0.01)  # blocking the loop is the point
    finally:
        blocking.dispose()
    raise AssertionError(f"backend {pid} still there")


async def test_a_dropped_connection_not_yet_seen_closed_fails_one_batch_closed(
    log: ObservedLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    # The drop arrives, unread, as a batch starts: that batch's BEGIN goes to a dead
    # connection and fails, its callers get AuditUnavailable, and the next batch connects.
    await log.append(record_factory(request_id="before"))
    terminate_blocking(engine, log.backends[-1])
    with pytest.raises(AuditUnavailable):
        await log.append(record_factory(request_id="dropped"))

    assert (await log.append(record_factory(request_id="after"))).seq == 2
    assert log.backends[-1] != log.backends[0]
    assert (await checker_of(log).verify()).entries_checked == 2


async def test_aclose_closes_the_connection(
    log: ObservedLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await log.append(record_factory(request_id="before"))
    pid = log.backends[-1]
    # Held here, so that only aclose, not the collector, can close it.
    writer: Any = log._store._connection  # type: ignore[attr-defined]
    await log.aclose()
    assert writer.is_closed()
    async with engine.connect() as connection:
        for _ in range(500):
            if not await connection.scalar(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ):
                break
            await connection.rollback()
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the writer's backend outlived aclose")


async def test_overlapping_batches_are_refused(engine: AsyncEngine) -> None:
    # One connection: a second batch inside the first would share its transaction.
    writer = AsyncpgGroupCommit(engine, lock_timeout_ms=1000)
    try:
        with pytest.raises(RuntimeError, match="must not overlap"):
            async with writer.batch() as store:
                await store.take_sequencer()
                async with writer.batch():
                    pass  # pragma: no cover
        assert await sequencer_is_free(engine)  # the outer batch failed closed
    finally:
        await writer.aclose()
