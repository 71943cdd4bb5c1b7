"""The audit log service: append entries to the Merkle tree (and the hash chain), sign
checkpoints, serve proofs, query entries, verify.

Contract:

* ``append`` returns only once the entry is committed and durable (PostgreSQL: commit
  flushed to the WAL; SQLite: WAL with synchronous=FULL), and, without ``db``, once a
  checkpoint signing a tree that contains it is committed with it. Entries get contiguous
  ``seq`` from 1, leaf index ``seq - 1`` of one RFC 6962 tree, each also chained to the
  one before, even with several processes appending to one database: a single sequencer
  (a PostgreSQL advisory lock, SQLite's write lock) is held from reading the head to
  committing.
* Group commit: appends without ``db`` that arrive while a batch is being written queue
  for the next one, so a batch is whatever arrived during the previous commit (up to
  ``max_batch``). One transaction, one fsync, one signature per batch; each caller still
  gets back only its own entry, only after that commit.
* The log never signs two checkpoints that disagree: it signs only while holding the
  sequencer, and first checks that the tree it is about to extend still has the root of
  the latest checkpoint (and that it was signed with this key). If not, it refuses to
  append at all rather than sign a fork.
* With a ``SignedTreeState`` (the record beside the key of the last tree it signed), it
  also signs only a tree that a consistency proof shows to extend that record, so a
  database owner who cuts back or empties the checkpoint table and rebuilds the tree
  cannot make the key sign the rewrite. The record moves forward after each signed
  batch commits.
* Every database failure is raised as ``AuditUnavailable``, whose message never carries
  the database URL. Callers fail closed.
* What is kept in memory between batches is only a cache, checked inside the lock: each
  batch re-reads the head (seq and chain hash) and reuses the tree's edge it committed last
  only if the head is still the one it committed. Another replica's append, a db= append,
  a crash or a rollback changes the head or empties the cache, and the edge is read again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit import chain, merkle
from gateway.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    SignedTreeState,
    Signer,
    Verifier,
    open_note,
)
from gateway.audit.models import AuditCheckpoint, AuditLogEntry, AuditTreeNode
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import (
    AppendedEntry,
    AuditEntryRead,
    AuditPage,
    AuditQuery,
    ConsistencyProof,
    InclusionProof,
    LogEntry,
    LogEntryPage,
    StoredCheckpoint,
    TreeReport,
    VerifyProblem,
    VerifyReport,
)
from gateway.audit.stores import (
    AppendStore,
    AsyncpgStore,
    SQLAlchemyStore,
    SqliteStore,
    read_nodes,
)
from gateway.audit.verifier import (
    CHECKPOINT_FILE,
    ENTRIES_FILE,
    LEAF_HASHES_FILE,
    TreeVerifier,
    bad_checkpoint,
    open_checkpoint,
)
from gateway.db import DATABASE_ERRORS
from gateway.errors import AuditUnavailable, MalformedRequest

DEFAULT_LOCK_TIMEOUT: Final = timedelta(seconds=30)
DEFAULT_MAX_BATCH: Final = 512
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
VERIFY_BATCH_SIZE: Final = 1000
_MAX_CURSOR_LENGTH: Final = 32

_SUPPORTED_DIALECTS: Final = frozenset({"sqlite", "postgresql"})


@dataclass(slots=True)
class _Pending:
    record: AuditRecord
    future: asyncio.Future[AppendedEntry]


class AuditLog:
    """The append-only audit log over one database: a Merkle tree with signed checkpoints.

    ``sessions`` must be bound to the AsyncEngine of that database (``gateway.db``); the
    dialect, which decides how the sequencer is taken, is read from it. ``signer`` signs a
    checkpoint after each batch; without one (tools that only read, some tests) entries
    are still sequenced into the tree, and the next log with a signer signs a checkpoint
    covering them. ``lock_timeout`` bounds how long an append waits for the sequencer
    before failing closed: a replica that hangs while holding it makes the others refuse
    requests rather than hang with it.

    ``signed_state`` is where the last tree ``signer`` signed is kept, out of the
    database's reach (``SignedTreeState.beside(key file)``; the gateway and the CLI always
    pass it). A missing file is deliberate only for a log that has never signed: if the
    database holds checkpoints and the file is gone (lost, or a gateway upgraded from a
    version without it), the log refuses to sign until an operator checks the log and
    pins a checkpoint (``facegate audit pin-head``), because trusting whatever the
    database now holds is exactly what a rewrite would need.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        signer: Signer | None = None,
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
        max_batch: int = DEFAULT_MAX_BATCH,
        signed_state: SignedTreeState | None = None,
    ) -> None:
        engine = sessions.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise ValueError("AuditLog needs a session factory bound to an AsyncEngine")
        if engine.dialect.name not in _SUPPORTED_DIALECTS:
            raise ValueError(f"the audit log does not support {engine.dialect.name!r} databases")
        if lock_timeout <= timedelta(0):
            raise ValueError("lock_timeout must be positive")
        if max_batch < 1:
            raise ValueError("max_batch must be positive")
        self._sessions = sessions
        self._engine = engine
        self._dialect = engine.dialect.name
        self._lock_timeout_ms = max(1, int(lock_timeout.total_seconds() * 1000))
        self._signer = signer
        self._signed_state = signed_state
        self._max_batch = max_batch
        # Appends with db= queue here, in order, instead of all holding a connection while
        # they wait on the database's lock. Appends without db= queue in _pending.
        self._append_lock = asyncio.Lock()
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        # (head seq, head chain hash, tree edge) as of this process's last committed batch,
        # and what the batch being written will leave if it commits.
        self._committed: tuple[int, bytes, merkle.CompactRange] | None = None
        self._staged: tuple[int, bytes, merkle.CompactRange] | None = None
        self._staged_checkpoint: Checkpoint | None = None  # signed in the batch being written
        # A SQLite file gets group commits on a connection of the log's own (SqliteStore);
        # an in-memory or URI database is reachable only through the engine.
        database = engine.url.database
        self._sqlite_store = (
            SqliteStore(database, dialect=engine.dialect, lock_timeout_ms=self._lock_timeout_ms)
            if self._dialect == "sqlite"
            and database
            and database != ":memory:"
            and not database.startswith("file:")
            and not engine.url.query
            else None
        )

    @property
    def signer(self) -> Signer | None:
        return self._signer

    @property
    def signed_state(self) -> SignedTreeState | None:
        return self._signed_state

    async def append(self, record: AuditRecord, *, db: AsyncSession | None = None) -> AppendedEntry:
        """Add ``record`` as the next entry.

        Without ``db``, the entry joins the next group commit: when this returns it is
        committed, durable, and covered by a signed checkpoint committed with it.

        With ``db``, it is written in that session's transaction, so that a change and its
        record commit together or not at all: it becomes durable when, and only if, the
        caller commits, and the next batch's checkpoint covers it. The sequencer stays
        held until then and every other append on the database waits, so commit or roll
        back promptly, and do not call ``append`` without ``db`` before that (it would
        wait on the caller's own lock until ``lock_timeout``). After AuditUnavailable the
        caller must roll back.

        Raises AuditUnavailable if the database fails, the sequencer is not obtained in
        time, or the stored tree no longer matches its latest checkpoint; ValueError for a
        record that cannot be hashed (a naive ``time``, or a value JSON cannot carry
        exactly). Nothing is written for that caller then, except that a failure while
        committing leaves the outcome unknown (see step 7 below).
        """
        if db is not None:
            async with self._append_lock:
                try:
                    store = SQLAlchemyStore(
                        await db.connection(), lock_timeout_ms=self._lock_timeout_ms
                    )
                    (result,) = await self._write(store, [record], sign=False)
                except DATABASE_ERRORS as exc:
                    raise AuditUnavailable(_failure("append to", exc)) from exc
            if isinstance(result, ValueError):
                raise result
            return result
        future: asyncio.Future[AppendedEntry] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(record, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        # Cancelling the caller does not cancel the batch: the entry may still be written,
        # which only ever makes the log say more was asked than was done.
        return await future

    async def aclose(self) -> None:
        """Wait for the batch being written, if any, and close the log's own connection (call
        before disposing the engine)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._sqlite_store is not None:
            await self._sqlite_store.aclose()

    async def _write_batches(self) -> None:
        # One writer per process at a time; it exits when nothing is pending, and append
        # starts a new one. Whatever arrives while a batch commits forms the next batch.
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            try:
                results = await self._commit_batch([p.record for p in batch])
            except BaseException as exc:
                error: BaseException = exc
                if isinstance(exc, DATABASE_ERRORS):
                    error = AuditUnavailable(_failure("append to", exc))
                    error.__cause__ = exc
                elif not isinstance(exc, Exception):
                    error = AuditUnavailable("the audit log writer was stopped")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                if not isinstance(exc, Exception):
                    raise  # cancelled or exiting: the callers of this batch were told
                continue
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, ValueError):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    async def _commit_batch(self, records: list[AuditRecord]) -> list[AppendedEntry | ValueError]:
        self._committed, committed = None, self._committed  # unknown until this commits
        self._staged = None
        self._staged_checkpoint = None
        sign = self._signer is not None
        # 7. COMMIT, when _write has returned. If the process dies or the connection drops
        #    after COMMIT was sent but before it was acknowledged, the log holds either the
        #    old tree with its old checkpoint or the new tree with its new checkpoint:
        #    entries, nodes and checkpoint are one transaction. The callers got no
        #    AppendedEntry, so they treat their records as not written and forward
        #    nothing: the log may say more was asked than was done, never less.
        if self._dialect == "postgresql":
            async with self._engine.connect() as connection:
                driver_connection: Any = (await connection.get_raw_connection()).driver_connection
                try:
                    results = await self._write(
                        AsyncpgStore(driver_connection, lock_timeout_ms=self._lock_timeout_ms),
                        records,
                        sign=sign,
                        cached=committed,
                    )
                    await driver_connection.execute("COMMIT")
                except BaseException:
                    # Whatever failed, the transaction must not outlive this batch, nor the
                    # connection go back to the pool inside it: closing the connection
                    # ends both (the server rolls back and frees the sequencer).
                    await connection.invalidate()
                    raise
        elif self._sqlite_store is not None:
            store = self._sqlite_store
            try:
                results = await self._write(store, records, sign=sign, cached=committed)
                await store.commit()
            except BaseException:
                # Queued behind whatever the store's thread is still running, so it runs
                # even if this task was cancelled mid-batch: no transaction outlives it.
                await asyncio.shield(store.rollback())
                raise
        else:
            async with self._engine.begin() as connection:
                results = await self._write(
                    SQLAlchemyStore(connection, lock_timeout_ms=self._lock_timeout_ms),
                    records,
                    sign=sign,
                    cached=committed,
                )
        # 8. Committed and durable: PostgreSQL's COMMIT waited for the WAL flush,
        #    SQLite's for the fsync of its WAL (both ensured in step 1). Only now do
        #    the callers learn their seq, and only then may a request be forwarded.
        self._committed = self._staged
        # 9. Move the record of the last signed tree forward. A crash before this leaves
        #    the record one batch behind, which is still a tree the key signed: the next
        #    batch proves consistency from there. Were the file unwritable, the callers
        #    hear AuditUnavailable though their entries are committed (the log says more
        #    was asked than was done, never less), and the record stays behind.
        signed = self._staged_checkpoint
        if signed is not None and self._signed_state is not None:
            try:
                await asyncio.to_thread(self._signed_state.record, signed)
            except OSError as exc:
                raise AuditUnavailable(
                    f"the record of the last signed tree ({self._signed_state.path}) could not"
                    f" be written: {exc.strerror}"
                ) from exc
        await self._reached("committed")
        return results

    async def _reached(self, step: str) -> None:
        """A seam for fault-injection tests: raise here to crash at ``step``."""

    async def _write(
        self,
        store: AppendStore,
        records: list[AuditRecord],
        *,
        sign: bool,
        cached: tuple[int, bytes, merkle.CompactRange] | None = None,
    ) -> list[AppendedEntry | ValueError]:
        # Crash safety, step by step. At every point the stored log is a valid tree of
        # 1..n with a checkpoint for some size <= n: the only writes are INSERTs of n+1..m
        # (entries, their tree nodes, one checkpoint), made visible by one COMMIT.

        # 1. Take the sequencer. A crash from here until COMMIT leaves the log at n: the
        #    database rolls the transaction back and the lock dies with it (PostgreSQL
        #    ends the backend's transaction and its advisory lock; SQLite ignores WAL
        #    frames that were never committed, and the OS drops a dead process's locks).
        await store.take_sequencer()

        # 2. Read the head, and the tree's right edge unless it is the one this process
        #    committed last. Holding the sequencer, no one else can add n+1 before we
        #    commit, and the reads come after the lock, so they see every earlier commit.
        head = await store.read_head()
        if head is None:
            size, prev_hash = 0, chain.GENESIS_HASH
        else:
            size, prev_hash = head.seq, _head_hash(head.seq, head.record_hash)
        if cached is not None and cached[0] == size and cached[1] == prev_hash:
            # Nobody appended since our last commit (the head's chain hash covers every
            # entry), so nobody signed since either: the latest checkpoint is ours, of
            # exactly this edge.
            compact = cached[2].copy()
        else:
            compact = await _read_compact_range(store, size)
            # 3. Before extending a tree we did not just sign, check it is the tree the
            #    latest checkpoint signed. Were it not (rows changed behind the guards, a
            #    replica with another key), a new checkpoint would contradict an old one
            #    that auditors may hold: refuse.
            if sign:
                await self._check_latest_checkpoint(store, compact)
        # 3b. And check it extends the last tree this key signed, as recorded beside the key:
        #    the database's own checkpoints may have been cut back with the tree. Every
        #    signing batch checks; after our own batch the sizes match and it is a compare.
        if sign and self._signed_state is not None:
            await self._check_signed_state(store, compact)

        # 4. Sequence and hash each record, in memory. A record that cannot be hashed is
        #    refused alone and takes no seq, so the others keep contiguous ones.
        results: list[AppendedEntry | ValueError] = []
        entry_rows: list[dict[str, Any]] = []
        node_rows: list[dict[str, Any]] = []
        for record in records:
            seq = size + len(entry_rows) + 1
            try:
                canonical = chain.canonical_bytes(seq, record)
            except ValueError as exc:
                results.append(exc)
                continue
            record_hash = chain.chain_hash(prev_hash, canonical)
            entry_rows.append(
                {
                    "seq": seq,
                    "prev_hash": prev_hash.hex(),
                    "record_hash": record_hash.hex(),
                    **_column_values(record),
                }
            )
            for level, index, value in compact.append(merkle.leaf_hash(canonical)):
                node_rows.append({"level": level, "idx": index, "hash": value})
            prev_hash = record_hash
            results.append(AppendedEntry(seq=seq, record_hash=record_hash.hex()))
        if not entry_rows:
            return results

        # 5. Sign the new tree head, in memory. A signature made here and lost to a crash
        #    or rollback was never served: the note exists only in this transaction, and
        #    the next batch signs the size it finds. So no two checkpoints anyone can see
        #    disagree.
        checkpoint_row: dict[str, Any] | None = None
        if sign and self._signer is not None:
            checkpoint = Checkpoint(self._signer.name, compact.size, compact.root())
            checkpoint_row = {
                "tree_size": checkpoint.size,
                "root_hash": checkpoint.root_hash,
                "note": checkpoint.sign(self._signer),
                "created_at": datetime.now(UTC),
            }
            self._staged_checkpoint = checkpoint

        # 6. Insert the entries, every tree node they complete and the checkpoint, visible
        #    to no one before COMMIT. Were the sequencer ever bypassed, the primary keys
        #    (seq; level, idx; tree_size) would refuse a second n+1: the log cannot fork,
        #    the late append fails.
        await store.insert(entry_rows, node_rows, checkpoint_row)
        await self._reached("inserted")
        if checkpoint_row is not None:
            await self._reached("signed")
            self._staged = (compact.size, prev_hash, compact.copy())
        return results

    async def _check_signed_state(self, store: AppendStore, compact: merkle.CompactRange) -> None:
        """Raise AuditUnavailable unless the stored tree ``compact`` (the one about to be
        extended and signed) is a consistent extension of the last tree the key signed."""
        assert self._signed_state is not None and self._signer is not None
        state = self._signed_state
        refusing = "refusing to sign: run `facegate audit verify`"
        try:
            # A read of a few dozen bytes, from the page cache: not worth a thread hop.
            recorded = state.read()
        except (CheckpointError, OSError) as exc:
            raise AuditUnavailable(
                f"the record of the last signed tree cannot be read ({exc}); {refusing}"
            ) from None
        if recorded is None:
            latest = await store.read_latest_checkpoint()
            if latest is None:
                return  # this log has never signed: its first signature starts the record
            raise AuditUnavailable(
                f"there is no record of the last tree this key signed ({state.path}), yet the"
                f" database holds a checkpoint of {latest.tree_size} entries; refusing to sign"
                " until an operator checks the log and pins a checkpoint"
                " (`facegate audit pin-head`)"
            )
        if recorded.origin != self._signer.name:
            raise AuditUnavailable(
                f"{state.path} records a tree of log {recorded.origin!r}, not"
                f" {self._signer.name!r}; {refusing}"
            )
        if recorded.size > compact.size:
            raise AuditUnavailable(
                f"this key signed a tree of {recorded.size} entries but the database holds"
                f" {compact.size}: entries were removed; {refusing}"
            )
        if recorded.size == compact.size:
            consistent = compact.root() == recorded.root_hash
        else:
            ranges = merkle.consistency_ranges(recorded.size, compact.size)
            ids = merkle.proof_node_ids(ranges)
            nodes = await store.read_nodes(ids)
            consistent = len(nodes) == len(ids)
            if consistent:
                try:
                    merkle.verify_consistency(
                        recorded.size,
                        compact.size,
                        recorded.root_hash,
                        compact.root(),
                        merkle.hashes_for(ranges, nodes.__getitem__),
                    )
                except merkle.ProofError:
                    consistent = False
        if not consistent:
            raise AuditUnavailable(
                f"the stored tree of {compact.size} entries does not extend the tree of"
                f" {recorded.size} this key last signed: the log was rewritten; {refusing}"
            )

    async def _check_latest_checkpoint(
        self, store: AppendStore, compact: merkle.CompactRange
    ) -> None:
        assert self._signer is not None
        latest = await store.read_latest_checkpoint()
        if latest is None:
            return
        try:
            open_note(latest.note, self._signer.verifier)
        except CheckpointError as exc:
            raise AuditUnavailable(
                f"the latest checkpoint (tree size {latest.tree_size}) is not one this log's key"
                f" signed ({exc}); refusing to sign another"
            ) from None
        if latest.tree_size > compact.size:
            raise AuditUnavailable(
                f"the latest checkpoint signs {latest.tree_size} entries but the log holds"
                f" {compact.size}: entries are missing; run `facegate audit verify`"
            )
        if latest.tree_size == compact.size:
            root = compact.root()
        else:
            root = (await _read_compact_range(store, latest.tree_size)).root()
        if root != latest.root_hash:
            raise AuditUnavailable(
                f"the stored tree no longer has the root the checkpoint of size"
                f" {latest.tree_size} signed; refusing to sign a fork: run `facegate audit verify`"
            )

    async def query(
        self,
        filters: AuditQuery,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> AuditPage:
        """Entries matching ``filters``, ascending by seq, at most ``limit`` per page.

        ``cursor`` is the ``next_cursor`` of the previous page. Raises MalformedRequest
        for a cursor this log did not issue or a limit outside 1..MAX_PAGE_SIZE, and
        AuditUnavailable if the database fails.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise MalformedRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        after = 0 if cursor is None else decode_cursor(cursor)
        statement = (
            select(AuditLogEntry)
            .where(AuditLogEntry.seq > after, *_conditions(filters))
            .order_by(AuditLogEntry.seq)
            .limit(limit + 1)  # one more than asked shows whether a next page exists
        )
        try:
            async with self._sessions() as session:
                rows = (await session.scalars(statement)).all()
                entries = [AuditEntryRead.model_validate(row) for row in rows[:limit]]
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(_failure("read", exc)) from exc
        more = len(rows) > limit
        return AuditPage(
            entries=entries,
            next_cursor=encode_cursor(entries[-1].seq) if more else None,
        )

    async def verify(self, *, batch_size: int = VERIFY_BATCH_SIZE) -> VerifyReport:
        """Re-check the whole chain from seq 1 and report the first bad entry.

        Reads ``batch_size`` entries at a time in seq order, so memory stays flat however
        long the log. Checks that seqs run 1, 2, 3... without a gap, that each prev_hash
        is the previous record_hash, and that each record_hash recomputes from the stored
        fields. Entries appended while it runs are checked too. Cutting entries off the
        end leaves a valid shorter chain: compare ``head_hash`` with a head noted before.
        Raises AuditUnavailable if the database fails.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        expected_seq = 1
        prev_hash = chain.GENESIS_HASH
        last_seq: int | None = None  # no lower bound at first: a stray seq 0 is found too
        try:
            async with self._sessions() as session:
                while True:
                    batch = await _read_batch(session, after=last_seq, size=batch_size)
                    for row in batch:
                        found = _check_entry(row, expected_seq, prev_hash)
                        if found is not None:
                            problem, bad_seq, detail = found
                            return VerifyReport(
                                ok=False,
                                entries_checked=expected_seq - 1,
                                head_hash=_hex_or_none(expected_seq, prev_hash),
                                first_bad_seq=bad_seq,
                                problem=problem,
                                detail=detail,
                            )
                        assert isinstance(row, AuditLogEntry)  # _check_entry passed it
                        prev_hash = bytes.fromhex(row.record_hash)
                        expected_seq += 1
                        last_seq = row.seq
                    # The entries checked are not needed again: keep the session small.
                    session.expunge_all()
                    if len(batch) < batch_size:
                        break
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(_failure("read", exc)) from exc
        return VerifyReport(
            ok=True,
            entries_checked=expected_seq - 1,
            head_hash=_hex_or_none(expected_seq, prev_hash),
        )

    # Reads for auditors: checkpoints, proofs, entries. None takes the sequencer: every
    # row they read was committed with the nodes and checkpoint that cover it.

    async def tree_size(self) -> int:
        """The number of entries committed (the size of the current tree)."""
        try:
            async with self._sessions() as session:
                size = await session.scalar(
                    select(AuditLogEntry.seq).order_by(AuditLogEntry.seq.desc()).limit(1)
                )
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(_failure("read", exc)) from exc
        return int(size or 0)

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint of the largest tree signed so far, None before the first."""
        statement = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
        try:
            async with self._sessions() as session:
                row = (await session.scalars(statement)).one_or_none()
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(_failure("read", exc)) from exc
        return None if row is None else _stored_checkpoint(row)

    async def checkpoints(self) -> AsyncIterator[StoredCheckpoint]:
        """Every checkpoint ever signed, smallest tree first."""
        last = -1
        try:
            async with self._sessions() as session:
                while True:
                    rows = (
                        await session.scalars(
                            select(AuditCheckpoint)
                            .where(AuditCheckpoint.tree_size > last)
                            .order_by(AuditCheckpoint.tree_size)
                            .limit(VERIFY_BATCH_SIZE)
                        )
                    ).all()
                    for row in rows:
                        yield _stored_checkpoint(row)
                        last = row.tree_size
                    session.expunge_all()
                    if len(rows) < VERIFY_BATCH_SIZE:
                        return
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(_failure("read", exc)) from exc

    async def inclusion_proof(self, seq: int, tree_size: int) -> InclusionProof:
        """The RFC 9162 inclusion proof of entry ``seq`` (leaf ``seq - 1``) in the tree of
        ``tree_size`` entries. MalformedRequest if either is outside the log."""
        current = await self.tree_size()
        _check_size(tree_size, current, "tree_size")
        if not 1 <= seq <= tree_size:
            raise MalformedRequest(
                f"seq {seq} is not in a tree of size {tree_size} (seqs 1..{tree_size})"
            )
        ranges = merkle.inclusion_ranges(seq - 1, tree_size)
        nodes = await self._nodes(merkle.proof_node_ids([*ranges, (seq - 1, seq)]))
        return InclusionProof(
            seq=seq,
            leaf_index=seq - 1,
            tree_size=tree_size,
            leaf_hash=_b64(nodes[(0, seq - 1)]),
            hashes=[_b64(h) for h in merkle.hashes_for(ranges, nodes.__getitem__)],
        )

    async def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """The RFC 9162 consistency proof from the tree of ``first`` entries to the tree of
        ``second``. MalformedRequest if the sizes are reversed or beyond the log."""
        current = await self.tree_size()
        _check_size(second, current, "second")
        if not 0 <= first <= second:
            raise MalformedRequest(f"first ({first}) must be between 0 and second ({second})")
        ranges = merkle.consistency_ranges(first, second)
        nodes = await self._nodes(merkle.proof_node_ids(ranges))
        return ConsistencyProof(
            first=first,
            second=second,
            hashes=[_b64(h) for h in merkle.hashes_for(ranges, nodes.__getitem__)],
        )

    async def entries(self, start: int, end: int) -> LogEntryPage:
        """Entries ``start`` <= seq < ``end`` as their leaf bytes (at most MAX_PAGE_SIZE)."""
        current = await self.tree_size()
        if not 1 <= start < end:
            raise MalformedRequest(f"need 1 <= start < end, got start={start} end={end}")
        if end - start > MAX_PAGE_SIZE:
            raise MalformedRequest(f"at most {MAX_PAGE_SIZE} entries per request")
        if end - 1 > current:
            raise MalformedRequest(f"end {end} is beyond the log ({current} entries)")
        leaves = [leaf async for leaf in self.leaves(start=start, end=end)]
        return LogEntryPage(
            entries=[LogEntry(seq=start + i, leaf=leaf.decode()) for i, leaf in enumerate(leaves)]
        )

    async def leaves(
        self, *, start: int = 1, end: int | None = None, batch_size: int = VERIFY_BATCH_SIZE
    ) -> AsyncIterator[bytes]:
        """The leaf bytes (``chain.canonical_bytes``) of entries start <= seq < end, in seq
        order, recomputed from the stored fields. Stops at a gap; raises ValueError for a
        row that no longer makes a valid record (verify names such rows)."""
        last = start - 1
        try:
            async with self._sessions() as session:
                while end is None or last + 1 < end:
                    size = batch_size if end is None else min(batch_size, end - 1 - last)
                    rows = (
                        await session.scalars(
                            select(AuditLogEntry)
                            .where(AuditLogEntry.seq > last)
                            .order_by(AuditLogEntry.seq)
                            .limit(size)
                        )
                    ).all()
                    for row in rows:
                        if row.seq != last + 1:
                            return
                        yield chain.canonical_bytes(row.seq, _record_of(row))
                        last = row.seq
                    session.expunge_all()
                    if len(rows) < size:
                        return
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(_failure("read", exc)) from exc

    async def logged_leaf_hashes(self, *, end: int, batch_size: int = 10_000) -> bytes:
        """The leaf hashes stored when entries 1..end-1 were appended, concatenated."""
        chunks: list[bytes] = []
        last = -1
        try:
            async with self._sessions() as session:
                while last + 1 < end - 1:
                    rows = (
                        await session.execute(
                            select(AuditTreeNode.idx, AuditTreeNode.hash)
                            .where(AuditTreeNode.level == 0, AuditTreeNode.idx > last)
                            .where(AuditTreeNode.idx < end - 1)
                            .order_by(AuditTreeNode.idx)
                            .limit(batch_size)
                        )
                    ).all()
                    if not rows:
                        break
                    chunks.extend(row.hash for row in rows)
                    last = rows[-1].idx
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(_failure("read", exc)) from exc
        return b"".join(chunks)

    async def verify_tree(
        self,
        verifier: Verifier,
        *,
        checkpoint: str | bytes | None = None,
        older: Sequence[str | bytes] = (),
        all_checkpoints: bool = False,
    ) -> TreeReport:
        """Check the stored entries against ``checkpoint`` (default: the latest stored) and
        ``verifier``, with ``gateway.audit.verifier.TreeVerifier``. ``older`` checkpoints,
        and with ``all_checkpoints`` every stored one, must be prefixes of the same tree.
        Bad input gives a report that says what is wrong, never an exception."""
        if checkpoint is None:
            latest = await self.latest_checkpoint()
            if latest is None:
                return TreeReport(
                    ok=False,
                    problem=VerifyProblem.BAD_CHECKPOINT,
                    detail="the log has signed no checkpoint yet: nothing to verify against",
                )
            checkpoint = latest.note
        try:
            target = open_checkpoint(checkpoint, verifier, "checkpoint")
            olders = [
                open_checkpoint(n, verifier, f"older checkpoint {i + 1}")
                for i, n in enumerate(older)
            ]
            if all_checkpoints:
                olders.extend(
                    [
                        open_checkpoint(c.note, verifier, f"stored checkpoint {c.tree_size}")
                        async for c in self.checkpoints()
                        if c.tree_size <= target.size
                    ]
                )
        except CheckpointError as exc:
            return bad_checkpoint(exc)
        tree = TreeVerifier(
            target,
            older=olders,
            logged_leaf_hashes=await self.logged_leaf_hashes(end=target.size + 1),
        )
        try:
            async for leaf in self.leaves(end=target.size + 1):
                tree.add(leaf)
        except (ValueError, TypeError) as exc:
            bad = _next_seq(tree)
            return TreeReport(
                ok=False,
                tree_size=target.size,
                entries_checked=bad - 1,
                first_bad_seq=bad,
                problem=VerifyProblem.ALTERED,
                detail=f"seq {bad} (or a row soon after) no longer makes a valid record:"
                f" {str(exc).splitlines()[0]}",
            )
        return tree.finish()

    async def export(self, directory: Path) -> StoredCheckpoint:
        """Write the latest checkpoint and the entries it signs to ``directory`` (see
        ``gateway.audit.verifier`` for the files). Raises AuditUnavailable before the first
        checkpoint. Reads only: a damaged log is exported as found, up to a row that no
        longer makes a record (``verify_tree`` names it), so that an auditor gets the
        evidence."""
        latest = await self.latest_checkpoint()
        if latest is None:
            raise AuditUnavailable("the log has signed no checkpoint yet: nothing to export")
        # Blocking file I/O on purpose: an export is a CLI job with a loop of its own.
        directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        with (
            (directory / ENTRIES_FILE).open("wb") as handle,
            contextlib.suppress(ValueError, TypeError),  # an unreadable row: stop there
        ):
            async for leaf in self.leaves(end=latest.tree_size + 1):
                handle.write(leaf + b"\n")
        logged = await self.logged_leaf_hashes(end=latest.tree_size + 1)
        (directory / LEAF_HASHES_FILE).write_bytes(logged)
        (directory / CHECKPOINT_FILE).write_text(latest.note)
        return latest

    async def _nodes(self, ids: set[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        try:
            async with self._sessions() as session:
                nodes = await read_nodes(session, ids)
        except DATABASE_ERRORS as exc:
            raise AuditUnavailable(_failure("read", exc)) from exc
        if len(nodes) != len(ids):
            raise AuditUnavailable("the audit tree is missing nodes: run `facegate audit verify`")
        return nodes


@dataclass(frozen=True, slots=True)
class _UnreadableRow:
    """A row whose stored values its column types cannot read back."""

    seq: object
    error: str


async def _read_batch(
    session: AsyncSession, *, after: int | None, size: int
) -> Sequence[AuditLogEntry | _UnreadableRow]:
    statement = select(AuditLogEntry).order_by(AuditLogEntry.seq).limit(size)
    if after is not None:
        statement = statement.where(AuditLogEntry.seq > after)
    try:
        return (await session.scalars(statement)).all()
    except (ValueError, TypeError):
        # SQLite keeps whatever was written behind the triggers (text in a time column,
        # broken JSON), and reading it back raises. Find the row, so verify can name it.
        session.expunge_all()
    seqs = (await session.scalars(statement.with_only_columns(AuditLogEntry.seq))).all()
    rows: list[AuditLogEntry | _UnreadableRow] = []
    for seq in seqs:
        try:
            one = select(AuditLogEntry).where(AuditLogEntry.seq == seq)
            rows.append((await session.scalars(one)).one())
        except (ValueError, TypeError) as exc:
            rows.append(_UnreadableRow(seq=seq, error=f"{type(exc).__name__}: {exc}"))
    return rows


def encode_cursor(seq: int) -> str:
    """An opaque page cursor: the last seq a page returned, urlsafe base64 without padding."""
    return base64.urlsafe_b64encode(str(seq).encode("ascii")).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The seq inside a cursor from ``encode_cursor``; MalformedRequest for anything else."""
    if not cursor or len(cursor) > _MAX_CURSOR_LENGTH:
        raise MalformedRequest("the audit log cursor is not valid")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        decoded = raw.decode("ascii")
    except (binascii.Error, ValueError):
        raise MalformedRequest("the audit log cursor is not valid") from None
    if not decoded.isdigit() or encode_cursor(int(decoded)) != cursor:
        raise MalformedRequest("the audit log cursor is not valid")
    return int(decoded)


def _column_values(record: AuditRecord) -> dict[str, Any]:
    # The JSON form, exactly what chain.canonical_bytes hashes, so that reading a row back
    # gives the same hash (e.g. a NaN becomes null in both). Only time keeps its type: the
    # column stores the instant, which hashes identically once read back in UTC.
    values = record.model_dump(mode="json")
    values["time"] = record.time
    return values


def _head_hash(seq: int, record_hash: str) -> bytes:
    try:
        value = bytes.fromhex(record_hash)
    except ValueError:
        value = b""
    if len(value) != chain.HASH_SIZE:
        # Chaining onto garbage would bury the damage under a valid-looking entry.
        raise AuditUnavailable(f"the audit log head (seq {seq}) is corrupt: run verify")
    return value


def _conditions(filters: AuditQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    # Pairs, not a dict: column attributes overload == and are not safe as dict keys.
    equal = (
        (AuditLogEntry.agency, filters.agency),
        (AuditLogEntry.officer, filters.officer),
        (AuditLogEntry.case_number, filters.case_number),
        (AuditLogEntry.decision, filters.decision),
        (AuditLogEntry.vendor, filters.vendor),
        (AuditLogEntry.operation, filters.operation),
        (AuditLogEntry.event_type, filters.event_type),
    )
    conditions.extend(column == value for column, value in equal if value is not None)
    if filters.time_from is not None:
        conditions.append(AuditLogEntry.time >= filters.time_from)
    if filters.time_until is not None:
        conditions.append(AuditLogEntry.time < filters.time_until)
    return conditions


def _check_entry(
    row: AuditLogEntry | _UnreadableRow, expected_seq: int, prev_hash: bytes
) -> tuple[VerifyProblem, int, str] | None:
    """What is wrong with ``row``, read where ``expected_seq`` should be, as (problem, the
    first bad seq, detail); None if nothing is."""
    after = "the start" if expected_seq == 1 else f"seq {expected_seq - 1}"
    if not isinstance(row.seq, int):  # SQLite stores any value in any column
        return VerifyProblem.MISSING, expected_seq, f"the entry after {after} has seq {row.seq!r}"
    if row.seq < expected_seq:
        # Only possible for the first row read (seqs are unique and ascending).
        return VerifyProblem.OUT_OF_ORDER, row.seq, f"seq {row.seq} comes before seq 1"
    if row.seq > expected_seq:
        gap = f"seq {expected_seq}"
        if row.seq > expected_seq + 1:
            gap = f"seqs {expected_seq}..{row.seq - 1}"
        return VerifyProblem.MISSING, expected_seq, f"{gap} missing: seq {row.seq} follows {after}"
    if isinstance(row, _UnreadableRow):
        return VerifyProblem.ALTERED, row.seq, f"seq {row.seq} cannot be read: {row.error}"
    if row.prev_hash != prev_hash.hex():
        before = "the genesis hash" if row.seq == 1 else f"the record_hash of seq {row.seq - 1}"
        return (
            VerifyProblem.OUT_OF_ORDER,
            row.seq,
            f"the prev_hash of seq {row.seq} is not {before}",
        )
    try:
        record = AuditRecord.model_validate(
            {name: getattr(row, name) for name in AuditRecord.model_fields}
        )
        recomputed = chain.entry_hash(row.seq, record, prev_hash)
    except (ValidationError, ValueError) as exc:
        first_line = str(exc).splitlines()[0]
        return VerifyProblem.ALTERED, row.seq, f"seq {row.seq} is not a valid record: {first_line}"
    if recomputed.hex() != row.record_hash:
        return (
            VerifyProblem.ALTERED,
            row.seq,
            f"the stored fields of seq {row.seq} do not match its hash",
        )
    return None


def _hex_or_none(next_seq: int, head: bytes) -> str | None:
    return None if next_seq == 1 else head.hex()


def _failure(action: str, exc: BaseException) -> str:
    # The exception's text may hold the URL or SQL; only its type goes in the message.
    # The cause stays chained (raise ... from exc) for the server log.
    cause = getattr(exc, "orig", None) or exc
    return f"the audit log could not {action} the database ({type(cause).__name__})"


async def _read_compact_range(store: AppendStore, size: int) -> merkle.CompactRange:
    ids = merkle.CompactRange.node_ids(size)
    nodes = await store.read_nodes(set(ids))
    if len(nodes) != len(ids):
        # The entries say n, the tree lacks the nodes of n: building on it would sign a
        # root nobody can reproduce. Fail closed.
        raise AuditUnavailable(
            f"the audit tree does not cover the {size} entries logged: run `facegate audit verify`"
        )
    return merkle.CompactRange(size, [nodes[i] for i in ids])


def _check_size(size: int, current: int, name: str) -> None:
    if not 1 <= size <= current:
        raise MalformedRequest(
            f"{name} {size} is outside the log: it holds {current} entries"
            if size > current
            else f"{name} must be at least 1"
        )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _stored_checkpoint(row: AuditCheckpoint) -> StoredCheckpoint:
    return StoredCheckpoint(
        tree_size=row.tree_size,
        root_hash=_b64(bytes(row.root_hash)),
        note=row.note,
        created_at=row.created_at,
    )


def _record_of(row: AuditLogEntry) -> AuditRecord:
    return AuditRecord.model_validate(
        {name: getattr(row, name) for name in AuditRecord.model_fields}
    )


def _next_seq(tree: TreeVerifier) -> int:
    return tree.entries_added + 1
