"""The log's key signs only trees that extend the last tree it signed, as recorded beside the
key: a database owner without the key who cuts back or empties the checkpoint table and
rebuilds the tree (both verifiers then say ok) cannot make the gateway sign the rewrite."""

from __future__ import annotations

import asyncio
import errno
import functools
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import guards, merkle
from gateway.audit.checkpoint import Checkpoint, SignedTreeState, Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord
from gateway.db import session_factory
from gateway.errors import AuditUnavailable
from tests.audit.conftest import checker_of, reader_of
from tests.audit.test_tree_log import ORIGIN, check_everything

RecordFactory = Callable[..., AuditRecord]


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def state(tmp_path: Path) -> SignedTreeState:
    return SignedTreeState.beside(tmp_path / "log.key")


def gateway_log(engine: AsyncEngine, signer: Signer, state: SignedTreeState) -> AuditLog:
    """The log as a (re)started gateway opens it."""
    return AuditLog(session_factory(engine), signer=signer, signed_state=state)


async def as_database_owner(engine: AsyncEngine, *statements: str) -> None:
    """Run SQL as the database's owner may: with the append-only guards out of the way."""
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            for ddl in (
                *guards.remove_statements("sqlite"),
                *guards.tree_remove_statements("sqlite"),
            ):
                await connection.exec_driver_sql(ddl)
        for statement in statements:
            await connection.execute(sa.text(statement))
        if engine.dialect.name != "postgresql":
            for ddl in (
                *guards.install_statements("sqlite"),
                *guards.tree_install_statements("sqlite"),
            ):
                await connection.exec_driver_sql(ddl)


def cut_back_to(size: int) -> tuple[str, ...]:
    """The log, its tree and its checkpoints as they were at ``size`` entries."""
    return (
        f"DELETE FROM audit_log WHERE seq > {size}",
        f"DELETE FROM audit_tree WHERE ((idx + 1) << level) > {size}",
        f"DELETE FROM audit_checkpoint WHERE tree_size > {size}",
    )


EMPTIED = ("DELETE FROM audit_log", "DELETE FROM audit_tree", "DELETE FROM audit_checkpoint")


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(sa.text("SELECT count(*) FROM audit_log")) or 0)


async def append_each(log: AuditLog, make: RecordFactory, prefix: str, n: int) -> None:
    """Append ``n`` records, then close the log as a gateway that stops does: the record of
    the last signed tree is written after the callers are answered, and by ``aclose``."""
    for i in range(n):
        await log.append(make(request_id=f"{prefix}-{i}"))
    await log.aclose()


async def test_a_log_cut_back_with_its_checkpoints_is_not_signed(
    engine: AsyncEngine, signer: Signer, state: SignedTreeState, record_factory: RecordFactory
) -> None:
    await append_each(gateway_log(engine, signer, state), record_factory, "kept", 6)
    await as_database_owner(engine, *cut_back_to(3))
    restarted = gateway_log(engine, signer, state)
    # What the database now holds is self-consistent: both verifiers accept it...
    assert (await checker_of(restarted).verify()).ok
    assert (await checker_of(restarted).verify_tree(signer.verifier, all_checkpoints=True)).ok

    # ...but the key signed 6 entries, and will not sign a tree that forgot three of them.
    with pytest.raises(AuditUnavailable, match="signed a tree of 6 entries but the database"):
        await restarted.append(record_factory(request_id="after the cut"))
    assert await count(engine) == 3


async def test_an_emptied_checkpoint_table_and_a_rebuilt_tree_are_not_signed(
    engine: AsyncEngine, signer: Signer, state: SignedTreeState, record_factory: RecordFactory
) -> None:
    await append_each(gateway_log(engine, signer, state), record_factory, "real", 4)
    await as_database_owner(engine, *EMPTIED)
    # A log without the key still sequences entries into a tree: the owner rebuilds one,
    # longer than the one signed, with other records in it.
    await append_each(AuditLog(session_factory(engine)), record_factory, "forged", 7)
    restarted = gateway_log(engine, signer, state)
    assert (await checker_of(restarted).verify()).ok

    with pytest.raises(AuditUnavailable, match="does not extend the tree of 4"):
        await restarted.append(record_factory(request_id="next"))
    assert await count(engine) == 7


async def test_a_rebuilt_tree_of_the_same_size_is_not_signed(
    engine: AsyncEngine, signer: Signer, state: SignedTreeState, record_factory: RecordFactory
) -> None:
    await append_each(gateway_log(engine, signer, state), record_factory, "real", 5)
    await as_database_owner(engine, *EMPTIED)
    await append_each(AuditLog(session_factory(engine)), record_factory, "forged", 5)
    with pytest.raises(AuditUnavailable, match="does not extend the tree of 5"):
        await gateway_log(engine, signer, state).append(record_factory(request_id="next"))


async def test_appends_across_restarts_and_replicas_go_on(
    engine: AsyncEngine,
    signer: Signer,
    state: SignedTreeState,
    record_factory: RecordFactory,
    tmp_path: Path,
) -> None:
    # The key as the gateway creates it, its record beside it, and another replica on
    # another host given a copy of both: one database, one key, a record per host.
    signer = Signer.load_or_create(tmp_path / "log.key", ORIGIN)
    (tmp_path / "other-host").mkdir()
    for name in ("log.key", "log.key.signed-tree"):
        (tmp_path / "other-host" / name).write_bytes((tmp_path / name).read_bytes())
    other_state = SignedTreeState.beside(tmp_path / "other-host" / "log.key")
    assert state.read() == other_state.read() == Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT)
    for restart in range(3):
        here = gateway_log(engine, signer, state)
        there = gateway_log(engine, signer, other_state)
        await asyncio.gather(
            *(here.append(record_factory(request_id=f"h{restart}-{i}")) for i in range(8)),
            *(there.append(record_factory(request_id=f"t{restart}-{i}")) for i in range(8)),
        )
        # Unsigned appends in a caller's transaction (admin actions) join in between.
        async with session_factory(engine)() as db, db.begin():
            await here.append(record_factory(request_id=f"db-{restart}"), db=db)
        await here.aclose()
        await there.aclose()
    last = gateway_log(engine, signer, state)
    await last.append(record_factory(request_id="last"))
    await last.aclose()
    assert await count(engine) == 3 * 17 + 1
    await check_everything(last, signer)
    recorded = state.read()
    assert recorded is not None and recorded.size == 3 * 17 + 1
    latest = await reader_of(last).latest_checkpoint()
    assert latest is not None
    assert recorded == Checkpoint.open(latest.note, signer.verifier)


async def test_a_lost_record_refuses_to_sign_until_a_checkpoint_is_pinned(
    engine: AsyncEngine, signer: Signer, state: SignedTreeState, record_factory: RecordFactory
) -> None:
    await append_each(gateway_log(engine, signer, state), record_factory, "a", 3)
    state.path.unlink()  # lost: or a gateway upgraded from a version that kept no record
    restarted = gateway_log(engine, signer, state)
    with pytest.raises(AuditUnavailable, match=r"no record of the last tree.*pin-head"):
        await restarted.append(record_factory(request_id="b"))
    assert await count(engine) == 3

    # What `facegate audit pin-head` does once the operator has checked the log.
    latest = await reader_of(restarted).latest_checkpoint()
    assert latest is not None
    state.record(Checkpoint.open(latest.note, signer.verifier))
    await restarted.append(record_factory(request_id="c"))
    assert await count(engine) == 4


async def test_a_log_that_never_signed_starts_its_record(
    engine: AsyncEngine, signer: Signer, state: SignedTreeState, record_factory: RecordFactory
) -> None:
    # Entries from before the first signature (a keyless tool, `facegate db upgrade`).
    await append_each(AuditLog(session_factory(engine)), record_factory, "early", 2)
    assert state.read() is None
    log = gateway_log(engine, signer, state)
    await log.append(record_factory(request_id="first signed"))
    await log.aclose()
    recorded = state.read()
    assert recorded is not None and recorded.size == 3


async def test_a_record_of_another_log_or_garbage_refuses(
    engine: AsyncEngine, signer: Signer, state: SignedTreeState, record_factory: RecordFactory
) -> None:
    await append_each(gateway_log(engine, signer, state), record_factory, "a", 2)
    saved = state.read()
    assert saved is not None
    state.path.write_text("not a checkpoint\n")
    with pytest.raises(AuditUnavailable, match="cannot be read"):
        await gateway_log(engine, signer, state).append(record_factory(request_id="b"))
    other = Checkpoint("other.example/log", 2, saved.root_hash)
    state.path.write_text(other.body())
    with pytest.raises(AuditUnavailable, match=r"records a tree of log .other\.example/log."):
        await gateway_log(engine, signer, state).append(record_factory(request_id="c"))


def test_the_record_only_moves_forward_and_is_replaced_whole(tmp_path: Path) -> None:
    state = SignedTreeState.beside(tmp_path / "keys" / "log.key")
    assert state.path == tmp_path / "keys" / "log.key.signed-tree"
    assert state.read() is None
    five = Checkpoint(ORIGIN, 5, bytes(range(32)))
    state.record(five)
    state.record(Checkpoint(ORIGIN, 3, bytes(32)))  # a batch that finished late
    assert state.read() == five
    # Two slots, each a header line with the body's checksum, the body, padding.
    text = state.path.read_text()
    assert len(text) == 2 * SignedTreeState.SLOT_SIZE and text.count(five.body()) == 2
    assert sorted(p.name for p in state.path.parent.iterdir()) == [
        "log.key.signed-tree",
        "log.key.signed-tree.lock",
    ]  # no temporary file left behind
    assert state.path.stat().st_mode & 0o777 == 0o600


def test_a_record_changed_by_another_process_or_in_place_is_read_afresh(tmp_path: Path) -> None:
    # This process read and wrote the record last; another replica on the host (its own
    # SignedTreeState) moves it on, then someone rewrites it in place, same size.
    here = SignedTreeState.beside(tmp_path / "log.key")
    there = SignedTreeState.beside(tmp_path / "log.key")
    here.record(Checkpoint(ORIGIN, 5, bytes(32)))
    assert here.read() == Checkpoint(ORIGIN, 5, bytes(32))
    there.record(Checkpoint(ORIGIN, 7, bytes(32)))
    assert here.read() == Checkpoint(ORIGIN, 7, bytes(32))
    here.record(Checkpoint(ORIGIN, 6, bytes(32)))  # finished late: 7 stays
    assert here.read() == Checkpoint(ORIGIN, 7, bytes(32))
    state_path = here.path
    state_path.write_text(Checkpoint(ORIGIN, 8, bytes(range(32))).body())
    assert here.read() == Checkpoint(ORIGIN, 8, bytes(range(32)))
    here.record(Checkpoint(ORIGIN, 8, bytes(32)))  # not larger: the rewrite stays
    assert here.read() == Checkpoint(ORIGIN, 8, bytes(range(32)))
    state_path.write_bytes(Checkpoint(ORIGIN, 9, bytes(32)).body().replace("\n", "\r\n").encode())
    assert here.read() == Checkpoint(ORIGIN, 9, bytes(32))  # as read_text reads it


class HeldRecord(SignedTreeState):
    """A record that is written only once ``release`` is set (or after 10 s, so that a
    broken log fails its test rather than hangs it), noting when each write is done."""

    def __init__(self, path: Path, events: list[str]) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.events = events

    def begin_record(self, checkpoint: Checkpoint) -> Callable[[], None]:
        make_durable = super().begin_record(checkpoint)

        def held() -> None:
            self.release.wait(timeout=10)
            make_durable()
            self.events.append(f"recorded {checkpoint.size}")

        return held


class NotedLog(AuditLog):
    """The gateway's log, noting its steps; it lets a held record go as soon as it waits
    for it, so a log that waits when it should not is told by the order of events."""

    def __init__(self, engine: AsyncEngine, signer: Signer, state: HeldRecord) -> None:
        super().__init__(session_factory(engine), signer=signer, signed_state=state)
        self.state = state

    async def _reached(self, step: str) -> None:
        if step == "awaiting the signed-state record":
            self.state.release.set()
        self.state.events.append(step)


async def test_callers_go_on_before_the_record_is_written_and_the_next_signature_waits(
    engine: AsyncEngine, signer: Signer, tmp_path: Path, record_factory: RecordFactory
) -> None:
    events: list[str] = []
    state = HeldRecord(tmp_path / "log.key.signed-tree", events)
    log = NotedLog(engine, signer, state)
    await log.append(record_factory(request_id="first"))
    # Answered while the record of its batch is still held back: its fdatasync is not
    # the caller's to wait for.
    assert "recorded 1" not in events and await count(engine) == 1

    state.release.clear()
    events.clear()
    await log.append(record_factory(request_id="second"))
    # The second batch signed only once the record of the first was written, so it was
    # checked against the tree the key signed last, not one batch older.
    assert events.index("awaiting the signed-state record") < events.index("recorded 1")
    assert events.index("recorded 1") < events.index("signed")
    await log.aclose()


async def test_closing_the_log_writes_the_record_of_its_last_signature(
    engine: AsyncEngine, signer: Signer, tmp_path: Path, record_factory: RecordFactory
) -> None:
    state = HeldRecord(tmp_path / "log.key.signed-tree", [])
    log = NotedLog(engine, signer, state)
    for i in range(3):
        state.release.clear()
        await log.append(record_factory(request_id=f"r{i}"))
    state.release.clear()
    await log.aclose()
    recorded = state.read()
    assert recorded is not None and recorded.size == 3


class UnwritableRecord(SignedTreeState):
    """A record whose file system refuses writes while ``broken``."""

    broken = False

    def record(self, checkpoint: Checkpoint) -> None:
        if self.broken:
            raise PermissionError(errno.EACCES, "Permission denied")
        super().record(checkpoint)

    def begin_record(self, checkpoint: Checkpoint) -> Callable[[], None]:
        if self.broken:  # as begin_record does when a write fails: all of it in the thread
            return functools.partial(self.record, checkpoint)
        return super().begin_record(checkpoint)


async def test_a_record_that_cannot_be_written_stops_the_next_signature(
    engine: AsyncEngine, signer: Signer, tmp_path: Path, record_factory: RecordFactory
) -> None:
    state = UnwritableRecord(tmp_path / "log.key.signed-tree")
    await append_each(gateway_log(engine, signer, state), record_factory, "kept", 1)
    log = gateway_log(engine, signer, state)
    state.broken = True
    # Committed and answered: the database holds the entry and its signed checkpoint...
    await log.append(record_factory(request_id="committed, record not written"))
    assert await count(engine) == 2
    # ...but the key signs nothing past a tree its record does not hold (tried again first).
    with pytest.raises(AuditUnavailable, match="could not be written: Permission denied"):
        await log.append(record_factory(request_id="refused"))
    assert await count(engine) == 2
    recorded = state.read()
    assert recorded is not None and recorded.size == 1

    state.broken = False  # the disk is back: the record catches up, then the log goes on
    await log.append(record_factory(request_id="after"))
    await log.aclose()
    assert await count(engine) == 3
    recorded = state.read()
    assert recorded is not None and recorded.size == 3


async def test_closing_with_a_record_that_cannot_be_written_logs_it_and_closes(
    engine: AsyncEngine,
    signer: Signer,
    tmp_path: Path,
    record_factory: RecordFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = UnwritableRecord(tmp_path / "log.key.signed-tree")
    log = gateway_log(engine, signer, state)
    state.broken = True
    await log.append(record_factory(request_id="committed"))
    await log.aclose()  # a shutdown goes on to close the rest
    assert "could not be written: Permission denied" in caplog.text
    assert state.read() is None and await count(engine) == 1


class PausedLog(AuditLog):
    """The gateway's log, telling when its writer waits for the signed-state record."""

    def __init__(self, engine: AsyncEngine, signer: Signer, state: SignedTreeState) -> None:
        super().__init__(session_factory(engine), signer=signer, signed_state=state)
        self.waiting = asyncio.Event()

    async def _reached(self, step: str) -> None:
        if step == "awaiting the signed-state record":
            self.waiting.set()


async def test_a_writer_cancelled_while_it_waits_for_the_record_leaves_it_to_be_written(
    engine: AsyncEngine, signer: Signer, tmp_path: Path, record_factory: RecordFactory
) -> None:
    """A record begun holds the file's lock until its write has run in the worker thread:
    a writer cancelled (a shutdown) while it waits must not cancel that write before it
    begins, or the lock would be held for good and the next record would wait forever."""
    state = SignedTreeState(tmp_path / "log.key.signed-tree")
    log = PausedLog(engine, signer, state)
    await log.append(record_factory(request_id="first"))
    await log.append(record_factory(request_id="second"))
    thread_busy = threading.Event()
    assert log._record_writer is not None
    log._record_writer.submit(thread_busy.wait, 30)  # the record of the next batch queues
    await log.append(record_factory(request_id="third"))
    log.waiting.clear()
    cancelled = asyncio.ensure_future(log.append(record_factory(request_id="cancelled")))
    await log.waiting.wait()
    assert log._writer is not None
    log._writer.cancel()
    with pytest.raises(AuditUnavailable, match="stopped"):
        await cancelled
    thread_busy.set()
    await asyncio.wait_for(log.append(record_factory(request_id="after")), timeout=60)
    await log.aclose()
    recorded = state.read()
    assert recorded is not None and recorded.size == await count(engine) == 4
