"""The sequencer under contention: many coroutines, two replicas, a stuck lock holder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.checkpoint import Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import AppendedEntry, AuditQuery
from gateway.audit.stores import SEQUENCER_LOCK_ID
from gateway.db import create_engine, session_factory
from gateway.errors import AuditUnavailable
from tests.audit.conftest import checker_of, records_of

RecordFactory = Callable[..., AuditRecord]


async def all_entries(audit_log: AuditLog) -> list[tuple[int, str, str]]:
    entries: list[tuple[int, str, str]] = []
    cursor: str | None = None
    while True:
        page = await records_of(audit_log).query(AuditQuery(), cursor=cursor, limit=1000)
        entries.extend((e.seq, e.prev_hash, e.record_hash) for e in page.entries)
        if page.next_cursor is None:
            return entries
        cursor = page.next_cursor


def assert_one_unbroken_chain(
    appended: list[AppendedEntry], stored: list[tuple[int, str, str]], count: int
) -> None:
    assert sorted(entry.seq for entry in appended) == list(range(1, count + 1))
    assert [seq for seq, _, _ in stored] == list(range(1, count + 1))
    # No fork: every entry names a different predecessor, the one just before it.
    prev_hashes = [prev for _, prev, _ in stored]
    assert len(set(prev_hashes)) == count
    assert prev_hashes[1:] == [record_hash for _, _, record_hash in stored[:-1]]
    assert {e.record_hash for e in appended} == {record_hash for _, _, record_hash in stored}


async def test_concurrent_appends_get_contiguous_seqs(
    audit_log: AuditLog, record_factory: RecordFactory
) -> None:
    appended = await asyncio.gather(
        *(audit_log.append(record_factory(request_id=f"req-{i}")) for i in range(200))
    )
    assert_one_unbroken_chain(list(appended), await all_entries(audit_log), 200)
    report = await checker_of(audit_log).verify(batch_size=64)
    assert report.ok and report.entries_checked == 200


@pytest.fixture
async def second_engine(migrated_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_two_replicas_append_without_gap_or_fork(
    audit_log: AuditLog, second_engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    # Two AuditLogs on two engines share nothing in memory: only the database's lock
    # (advisory lock; SQLite's write lock) keeps them from reading the same head.
    replica = AuditLog(session_factory(second_engine))
    appended = await asyncio.gather(
        *(
            log.append(record_factory(request_id=f"req-{i}"))
            for i in range(100)
            for log in (audit_log, replica)
        )
    )
    assert_one_unbroken_chain(list(appended), await all_entries(audit_log), 200)
    report = await checker_of(replica).verify()
    assert report.ok and report.entries_checked == 200


async def hold_sequencer(connection: AsyncConnection) -> None:
    """Take the sequencer on ``connection`` the way a hung replica would keep it."""
    if connection.dialect.name == "postgresql":
        await connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": SEQUENCER_LOCK_ID}
        )
    else:
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
async def test_stuck_sequencer_fails_closed_then_recovers(
    engine: AsyncEngine, second_engine: AsyncEngine, record_factory: RecordFactory, signed: bool
) -> None:
    # Signed, the log's second batch takes the one-exchange path (it committed the first).
    impatient = AuditLog(
        session_factory(engine),
        lock_timeout=timedelta(milliseconds=200),
        signer=Signer.generate("test.example/log") if signed else None,
    )
    assert (await impatient.append(record_factory(request_id="before"))).seq == 1

    async with second_engine.connect() as holder:
        await hold_sequencer(holder)
        with pytest.raises(AuditUnavailable):
            await impatient.append(record_factory(request_id="while-stuck"))
        await holder.rollback()

    assert (await impatient.append(record_factory(request_id="after"))).seq == 2
    report = await checker_of(impatient).verify()
    assert report.ok and report.entries_checked == 2
