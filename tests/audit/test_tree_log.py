"""The Merkle-tree log on real databases: group commit, checkpoints, proofs, bad input,
tampering the log refuses to sign over, faults at each step of the append path."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Callable
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import guards, merkle
from gateway.audit.checkpoint import Checkpoint, Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import VerifyProblem
from gateway.db import session_factory
from gateway.errors import AuditUnavailable, MalformedRequest
from tests.audit.conftest import checker_of, reader_of
from tests.audit.test_audit_log import tamper

RecordFactory = Callable[..., AuditRecord]
ORIGIN = "test.example/facegate"


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def tree_log(engine: AsyncEngine, signer: Signer) -> AuditLog:
    return AuditLog(session_factory(engine), signer=signer)


async def tamper_tree(engine: AsyncEngine, statement: str, **params: object) -> None:
    """Change the tree tables behind their guards' back, as their owner could."""
    if engine.dialect.name == "postgresql":
        await tamper(engine, statement, **params)
        return
    async with engine.begin() as connection:
        for ddl in guards.tree_remove_statements("sqlite"):
            await connection.exec_driver_sql(ddl)
        await connection.execute(sa.text(statement), params)
        for ddl in guards.tree_install_statements("sqlite"):
            await connection.exec_driver_sql(ddl)


def b64(value: str) -> bytes:
    return base64.b64decode(value)


async def check_everything(log: AuditLog, signer: Signer) -> int:
    """Verify the whole log, every checkpoint, and consistency between successive ones."""
    chain_report = await checker_of(log).verify()
    assert chain_report.ok, chain_report
    tree_report = await checker_of(log).verify_tree(signer.verifier, all_checkpoints=True)
    assert tree_report.ok, tree_report
    checkpoints = [
        Checkpoint.open(c.note, signer.verifier) async for c in reader_of(log).checkpoints()
    ]
    for older, newer in itertools.pairwise(checkpoints):
        proof = await reader_of(log).consistency_proof(older.size, newer.size)
        merkle.verify_consistency(
            older.size, newer.size, older.root_hash, newer.root_hash, [b64(h) for h in proof.hashes]
        )
    return len(checkpoints)


async def test_group_commit_signs_each_batch_and_proofs_verify(
    tree_log: AuditLog, signer: Signer, record_factory: RecordFactory
) -> None:
    appended = await asyncio.gather(
        *(tree_log.append(record_factory(request_id=f"req-{i}")) for i in range(60))
    )
    assert sorted(a.seq for a in appended) == list(range(1, 61))
    # Appends arriving together shared transactions: fewer checkpoints than appends.
    signed = await check_everything(tree_log, signer)
    assert 1 <= signed < 60

    latest = await reader_of(tree_log).latest_checkpoint()
    assert latest is not None
    checkpoint = Checkpoint.open(latest.note, signer.verifier)
    assert checkpoint.size == 60
    for seq in (1, 2, 31, 60):
        page = await reader_of(tree_log).entries(seq, seq + 1)
        leaf = page.entries[0].leaf.encode()
        proof = await reader_of(tree_log).inclusion_proof(seq, 60)
        assert b64(proof.leaf_hash) == merkle.leaf_hash(leaf)
        merkle.verify_inclusion(
            merkle.leaf_hash(leaf),
            seq - 1,
            60,
            [b64(h) for h in proof.hashes],
            checkpoint.root_hash,
        )


async def test_one_bad_record_does_not_sink_its_batch(
    tree_log: AuditLog, signer: Signer, record_factory: RecordFactory
) -> None:
    naive = record_factory(request_id="naive", time=datetime(2026, 1, 1))
    results = await asyncio.gather(
        tree_log.append(record_factory(request_id="a")),
        tree_log.append(naive),
        tree_log.append(record_factory(request_id="b")),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    assert sorted(r.seq for r in results if not isinstance(r, BaseException)) == [1, 2]
    await check_everything(tree_log, signer)


async def test_db_appends_join_the_tree_and_the_next_batch_signs_them(
    tree_log: AuditLog, engine: AsyncEngine, signer: Signer, record_factory: RecordFactory
) -> None:
    await tree_log.append(record_factory(request_id="first"))
    async with session_factory(engine)() as db, db.begin():
        await tree_log.append(record_factory(request_id="admin-1"), db=db)
        await tree_log.append(record_factory(request_id="admin-2"), db=db)
    await tree_log.append(record_factory(request_id="last"))
    latest = await reader_of(tree_log).latest_checkpoint()
    assert latest is not None and latest.tree_size == 4
    assert await check_everything(tree_log, signer) == 2


async def test_bad_proof_requests_say_what_is_wrong(
    tree_log: AuditLog, record_factory: RecordFactory
) -> None:
    for i in range(5):
        await tree_log.append(record_factory(request_id=f"req-{i}"))
    cases = [
        (reader_of(tree_log).inclusion_proof(0, 5), "seq 0 is not in a tree of size 5"),
        (reader_of(tree_log).inclusion_proof(6, 5), "seq 6 is not in a tree of size 5"),
        (
            reader_of(tree_log).inclusion_proof(1, 9),
            "tree_size 9 is outside the log: it holds 5 entries",
        ),
        (reader_of(tree_log).consistency_proof(4, 2), "first (4) must be between 0 and second (2)"),
        (reader_of(tree_log).consistency_proof(1, 6), "second 6 is outside the log"),
        (reader_of(tree_log).entries(0, 3), "need 1 <= start < end"),
        (reader_of(tree_log).entries(1, 7), "end 7 is beyond the log"),
        (reader_of(tree_log).entries(1, 5000), "at most 1000 entries"),
    ]
    for call, message in cases:
        with pytest.raises(MalformedRequest) as raised:
            await call
        assert message in raised.value.message


async def test_an_altered_row_is_named_by_the_tree_verifier(
    tree_log: AuditLog, engine: AsyncEngine, signer: Signer, record_factory: RecordFactory
) -> None:
    for i in range(8):
        await tree_log.append(record_factory(request_id=f"req-{i}"))
    await tamper(engine, "UPDATE audit_log SET decision = 'deny' WHERE seq = 5")
    report = await checker_of(tree_log).verify_tree(signer.verifier)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 5, VerifyProblem.ALTERED)


async def test_the_log_refuses_to_sign_a_fork(
    tree_log: AuditLog, engine: AsyncEngine, signer: Signer, record_factory: RecordFactory
) -> None:
    for i in range(4):
        await tree_log.append(record_factory(request_id=f"req-{i}"))
    # The tree's right edge rewritten behind the guards. A log that reads it (a restarted
    # process, another replica) would compute a root contradicting the checkpoint already
    # signed, so it refuses to append at all.
    await tamper_tree(
        engine, "UPDATE audit_tree SET hash = :h WHERE level = 2 AND idx = 0", h=bytes(32)
    )
    restarted = AuditLog(session_factory(engine), signer=signer)
    with pytest.raises(AuditUnavailable, match="refusing to sign a fork"):
        await restarted.append(record_factory(request_id="after"))


async def test_the_log_refuses_to_sign_after_another_key(
    engine: AsyncEngine, signer: Signer, record_factory: RecordFactory
) -> None:
    await AuditLog(session_factory(engine), signer=signer).append(record_factory())
    imposter = AuditLog(session_factory(engine), signer=Signer.generate(ORIGIN))
    with pytest.raises(AuditUnavailable, match="not one this log's key signed"):
        await imposter.append(record_factory(request_id="b"))


async def test_tree_tables_refuse_update_and_delete(
    tree_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await tree_log.append(record_factory())
    for statement in (
        "UPDATE audit_tree SET hash = hash",
        "DELETE FROM audit_tree",
        "UPDATE audit_checkpoint SET note = 'x'",
        "DELETE FROM audit_checkpoint",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="is append-only"):
            async with engine.begin() as connection:
                await connection.execute(sa.text(statement))
    if engine.dialect.name == "postgresql":
        for table in ("audit_tree", "audit_checkpoint"):
            with pytest.raises(sa.exc.DBAPIError, match="is append-only"):
                async with engine.begin() as connection:
                    await connection.execute(sa.text(f"TRUNCATE {table}"))


class Injected(OSError):
    """Stands for a dropped connection or a dead disk at one step of the append path."""


class FaultyLog(AuditLog):
    fail_at: str | None = None

    async def _reached(self, step: str) -> None:
        if step == self.fail_at:
            self.fail_at = None
            raise Injected(f"fault injected at {step}")


class CancelledLog(AuditLog):
    cancel_at: str | None = None

    async def _reached(self, step: str) -> None:
        if step == self.cancel_at:
            self.cancel_at = None
            raise asyncio.CancelledError  # the writer task cancelled mid-batch (shutdown)


async def test_a_batch_cancelled_before_commit_is_rolled_back_and_the_log_goes_on(
    engine: AsyncEngine, signer: Signer, record_factory: RecordFactory
) -> None:
    log = CancelledLog(session_factory(engine), signer=signer)
    await log.append(record_factory(request_id="before"))
    log.cancel_at = "inserted"
    with pytest.raises(AuditUnavailable, match="writer was stopped"):
        await log.append(record_factory(request_id="cancelled"))
    # The cancelled batch's transaction is gone and the write lock with it: the next batch
    # takes the sequencer at once and finds the log as it was.
    after = await log.append(record_factory(request_id="after"))
    assert after.seq == 2
    await check_everything(log, signer)
    await log.aclose()


@pytest.mark.parametrize(
    ("step", "persisted"), [("inserted", False), ("signed", False), ("committed", True)]
)
@pytest.mark.parametrize("path", ["one exchange", "full"])
async def test_faults_before_and_after_persisting_leave_a_log_that_verifies(
    engine: AsyncEngine,
    signer: Signer,
    record_factory: RecordFactory,
    step: str,
    persisted: bool,
    path: str,
) -> None:
    log = FaultyLog(session_factory(engine), signer=signer)
    await log.append(record_factory(request_id="before"))
    if path == "full":
        # A log that did not commit the last batch (a restart) takes the full path, with a
        # transaction open across its steps; one that did writes it in one exchange.
        log = FaultyLog(session_factory(engine), signer=signer)
    log.fail_at = step
    results = await asyncio.gather(
        *(log.append(record_factory(request_id=f"batch-{i}")) for i in range(5)),
        return_exceptions=True,
    )
    # Every caller of the failed batch is told it failed, so none of them forwards.
    assert all(isinstance(r, AuditUnavailable) for r in results)
    assert await reader_of(log).tree_size() == (6 if persisted else 1)
    after = await log.append(record_factory(request_id="after"))
    assert after.seq == (7 if persisted else 2)
    await check_everything(log, signer)
