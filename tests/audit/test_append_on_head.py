"""A log that committed the last batch writes the next one in one exchange with the database
(``GroupCommitStore.append_on_head``), only if the head is still the one it left: whatever
moved the head (another writer, a cut back log) sends it down the full path, with its checks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.checkpoint import Checkpoint, SignedTreeState, Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord
from gateway.audit.stores import Head, Row, group_commit_store
from gateway.audit.stores.base import LOG_TABLE
from gateway.db import session_factory
from gateway.errors import AuditUnavailable
from tests.audit.conftest import every_field_record, make_record
from tests.audit.test_signed_state import as_database_owner, count, cut_back_to
from tests.audit.test_tree_log import ORIGIN, check_everything

RecordFactory = Callable[..., AuditRecord]


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def gateway_log(engine: AsyncEngine, signer: Signer, tmp_path: Path) -> AuditLog:
    return AuditLog(
        session_factory(engine),
        signer=signer,
        signed_state=SignedTreeState.beside(tmp_path / "log.key"),
    )


async def test_a_running_log_refuses_to_sign_over_a_cut_back_log(
    engine: AsyncEngine, signer: Signer, tmp_path: Path, record_factory: RecordFactory
) -> None:
    log = gateway_log(engine, signer, tmp_path)
    for i in range(6):
        await log.append(record_factory(request_id=f"kept-{i}"))
    await as_database_owner(engine, *cut_back_to(3))
    # The log still knows the head it left (6): the head is now 3, so the batch must not be
    # written from the edge it remembers, over the cut, but go the full way and refuse.
    with pytest.raises(AuditUnavailable, match="signed a tree of 6 entries but the database"):
        await log.append(record_factory(request_id="after the cut"))
    assert await count(engine) == 3
    await log.aclose()


async def test_a_running_log_goes_on_after_another_writer_appended(
    engine: AsyncEngine, signer: Signer, tmp_path: Path, record_factory: RecordFactory
) -> None:
    here = gateway_log(engine, signer, tmp_path)
    other = gateway_log(engine, signer, tmp_path)  # another replica on this host
    for round_ in range(3):
        for i in range(2):
            await here.append(record_factory(request_id=f"here-{round_}-{i}"))
        await other.append(record_factory(request_id=f"other-{round_}"))
        # An admin action's record in its own transaction, as the admin service writes it.
        async with session_factory(engine)() as db, db.begin():
            await here.append(record_factory(request_id=f"admin-{round_}"), db=db)
    last = await here.append(record_factory(request_id="last"))
    assert last.seq == 3 * 4 + 1 == await count(engine)
    await here.aclose()
    await other.aclose()
    await check_everything(here, signer)


async def test_a_row_another_writer_committed_writes_nothing(
    engine: AsyncEngine, signer: Signer, tmp_path: Path, record_factory: RecordFactory
) -> None:
    log = gateway_log(engine, signer, tmp_path)
    for i in range(3):
        await log.append(record_factory(request_id=f"r{i}"))
    await log.aclose()
    async with engine.connect() as connection:
        seq, record_hash = (
            await connection.execute(
                sa.text("SELECT seq, record_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            )
        ).one()
        tree_rows = await connection.scalar(sa.text("SELECT count(*) FROM audit_tree"))
        checkpoints = await connection.scalar(sa.text("SELECT count(*) FROM audit_checkpoint"))
    store = group_commit_store(engine, lock_timeout_ms=5_000)
    try:
        # The head is as given, but the entry's seq is taken: as when another writer
        # committed it after the statement's snapshot. Nothing of the batch is written.
        taken = dict(
            seq=2,
            prev_hash="00" * 32,
            record_hash="11" * 32,
            **record_factory(request_id="late").model_dump(mode="json"),
        )
        taken["time"] = record_factory().time
        node = {"level": 0, "idx": 7, "hash": b"\x22" * 32}
        checkpoint = {
            "tree_size": 8,
            "root_hash": b"\x33" * 32,
            "note": "never served",
            "created_at": record_factory().time,
        }
        written = await store.append_on_head(Head(seq, record_hash), [taken], [node], checkpoint)
    finally:
        await store.aclose()
    assert written is False
    async with engine.connect() as connection:
        assert await connection.scalar(sa.text("SELECT count(*) FROM audit_tree")) == tree_rows
        assert (
            await connection.scalar(sa.text("SELECT count(*) FROM audit_checkpoint")) == checkpoints
        )
    assert await count(engine) == 3


class WrittenRecord(SignedTreeState):
    """A record that says when a tree of ``size`` has been written to it (in the log's
    worker thread, some time after the append that signed it returned)."""

    def __init__(self, path: Path, size: int) -> None:
        super().__init__(path)
        self.size = size
        self.written = threading.Event()

    def begin_record(self, checkpoint: Checkpoint) -> Callable[[], None]:
        make_durable = super().begin_record(checkpoint)

        def noted() -> None:
            make_durable()
            if checkpoint.size == self.size:
                self.written.set()

        return noted


async def test_a_running_log_checks_the_record_beside_its_key_before_each_signature(
    engine: AsyncEngine, signer: Signer, tmp_path: Path, record_factory: RecordFactory
) -> None:
    state = WrittenRecord(tmp_path / "log.key.signed-tree", size=2)
    log = AuditLog(session_factory(engine), signer=signer, signed_state=state)
    for i in range(2):
        await log.append(record_factory(request_id=f"r{i}"))
    assert await asyncio.to_thread(state.written.wait, 10)
    # Replaced under the running log, after it wrote its last record: by a record of
    # another log (the same tree, another name), then by garbage. Either way the record no
    # longer says this key signed what the log is about to extend: it signs nothing more.
    recorded = state.read()
    assert recorded is not None
    other = Checkpoint("other.example/log", recorded.size, recorded.root_hash)
    state.path.write_text(other.body())
    with pytest.raises(AuditUnavailable, match=r"records a tree of log .other\.example/log."):
        await log.append(record_factory(request_id="refused"))
    state.path.write_text("not a checkpoint\n")
    with pytest.raises(AuditUnavailable, match="cannot be read"):
        await log.append(record_factory(request_id="refused too"))
    assert await count(engine) == 2
    await log.aclose()


def varied_records() -> list[AuditRecord]:
    """Records that between them set every column, with values whose stored text a careless
    conversion would change: floats at the edge of their digits, JSON with non-ASCII text,
    nested nulls and empty objects, nulls where a column allows them."""
    return [
        make_record(request_id="bare"),
        every_field_record(request_id="full"),
        make_record(request_id="deny", decision="deny", latency_ms=12345.678, detail={"a": []}),
    ]


async def stored_rows(engine: AsyncEngine, first: int, last: int) -> list[tuple[object, ...]]:
    """The entries ``first``..``last`` as the database holds them, but for their position
    (seq and the chain hashes): PostgreSQL's text of each value, SQLite's stored values."""
    columns = [c.name for c in LOG_TABLE.c if c.name not in {"seq", "prev_hash", "record_hash"}]
    if engine.dialect.name == "postgresql":
        selected = ", ".join(f'"{name}"::text' for name in columns)
    else:
        selected = ", ".join(f'"{name}"' for name in columns)
    async with engine.connect() as connection:
        result = await connection.exec_driver_sql(
            f"SELECT {selected} FROM audit_log WHERE seq BETWEEN {first:d} AND {last:d}"
            " ORDER BY seq"
        )
        return [tuple(row) for row in result]


async def test_every_size_of_batch_stores_the_same_rows(
    engine: AsyncEngine, signer: Signer, tmp_path: Path
) -> None:
    # PostgreSQL's one-exchange statement binds a batch's entries as scalars up to a size,
    # and as one array a column beyond it: the rows must not tell them apart.
    log = gateway_log(engine, signer, tmp_path)
    sizes: list[tuple[int, bool]] = []
    append_on_head = log._store.append_on_head

    async def spied(head: Head, entries: list[Row], *rest: Any) -> bool:
        written = await append_on_head(head, entries, *rest)
        sizes.append((len(entries), written))
        return written

    log._store.append_on_head = spied  # type: ignore[method-assign]
    records = varied_records()
    n = len(records)
    await log.append(make_record(request_id="first"))  # a new log's first batch: full path
    for record in records:
        await log.append(record)  # one entry a batch
    await asyncio.gather(*(log.append(record) for record in records))  # all in one batch
    many = records * 6  # beyond the scalar statements: arrays
    await asyncio.gather(*(log.append(record) for record in many))
    await log.aclose()
    assert sizes == [(1, True)] * n + [(n, True), (len(many), True)]
    alone = await stored_rows(engine, 2, n + 1)
    assert len(alone) == n
    assert await stored_rows(engine, n + 2, 2 * n + 1) == alone
    in_arrays = await stored_rows(engine, 2 * n + 2, 2 * n + 1 + len(many))
    assert in_arrays == alone * 6
    await check_everything(log, signer)
