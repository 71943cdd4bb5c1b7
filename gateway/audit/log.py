"""The audit log's writer: append entries to the Merkle tree (and the hash chain) in group
commits, and sign a checkpoint with each batch. Only the writer is here: what it checks
before signing is in ``signing.py``; reads (checkpoints, proofs, entries) are
``reads.LogReader``, record queries ``query.RecordQuery``, whole-log checks and export
``fsck.LogChecker``, each opened over the same session factory by whoever needs it
(``gateway.services.Services``, the CLI's runtime).

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
  gets back only its own entry, only after that commit. A log that committed the last
  batch itself writes the next one in one exchange (``_write_on_head``) if the head is
  still the one it left; anything else takes the full path, checks and all.
* A ``Unit`` (``append_unit``) is several records that must commit with rows of other
  tables (an identification's leads and its outcome), or not at all. It joins the group
  commit like a plain record: its rows are inserted in the batch's transaction, its
  records take contiguous seq, and if any of its records cannot be hashed, none of it is
  written. Were the batch to fail, none of any unit in it is committed, as for records.
* The log never signs two checkpoints that disagree: it signs only while holding the
  sequencer, and first checks that the tree it is about to extend still has the root of
  the latest checkpoint (and that it was signed with this key). If not, it refuses to
  append at all rather than sign a fork.
* With a ``SignedTreeState`` (the record beside the key of the last tree it signed), it
  also signs only a tree that a consistency proof shows to extend that record, so a
  database owner who cuts back or empties the checkpoint table and rebuilds the tree
  cannot make the key sign the rewrite. The record moves forward after each signed
  batch commits, while the batch's callers go on (its write and fdatasync are not theirs
  to wait for): written at once, made durable in a worker thread, and always durable
  before this log signs again or closes. A record that cannot be written fails the next
  batch closed (it is tried once more first), so the key never signs past a tree the file
  does not hold.
* Every database failure is raised as ``AuditUnavailable``, whose message never carries
  the database URL (``stores.map_database_errors``, the one edge). Callers fail closed.
* What is kept in memory between batches is only a cache, checked inside the lock: each
  batch re-reads the head (seq and chain hash) and reuses the tree's edge it committed last
  only if the head is still the one it committed. Another replica's append, a db= append,
  a crash or a rollback changes the head or empties the cache, and the edge is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any, Final, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.schema import sort_tables

from gateway.audit import chain, merkle
from gateway.audit.checkpoint import Checkpoint, CheckpointError, SignedTreeState, Signer
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import AppendedEntry
from gateway.audit.signing import check_latest_checkpoint, check_signed_state, read_compact_range
from gateway.audit.stores import (
    AppendStore,
    Head,
    Row,
    SQLAlchemyStore,
    group_commit_store,
    map_database_errors,
)
from gateway.errors import AuditUnavailable
from gateway.observability.metrics import observe_batch

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT: Final = timedelta(seconds=30)
DEFAULT_MAX_BATCH: Final = 512

_SUPPORTED_DIALECTS: Final = frozenset({"sqlite", "postgresql"})


@dataclass(frozen=True, slots=True)
class Unit:
    """Records that commit together with ``rows`` (table, rows with every column of it), or
    not at all (``AuditLog.append_unit``). The tables must not be the log's own."""

    records: Sequence[AuditRecord]
    rows: Sequence[tuple[Table, Sequence[Row]]] = ()


@dataclass(slots=True)
class _Pending:
    record: AuditRecord | Unit
    future: asyncio.Future[Any]  # AppendedEntry for a record, list of them for a Unit


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
        self._lock_timeout_ms = max(1, int(lock_timeout.total_seconds() * 1000))
        self._signer = signer
        self._signed_state = signed_state
        self._max_batch = max_batch
        # Appends with db= queue here, in order, instead of all holding a connection while
        # they wait on the database's lock. Appends without db= queue in _pending.
        self._append_lock = asyncio.Lock()
        # Transactions that already hold the sequencer (an append with db= took it): their
        # next append must not queue behind _append_lock, whose holder may be waiting on
        # the very sequencer they hold (a deadlock until lock_timeout).
        self._holding: weakref.WeakSet[SessionTransaction] = weakref.WeakSet()
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        # (head seq, head chain hash, tree edge) as of this process's last committed batch,
        # and what the batch being written will leave if it commits.
        self._committed: tuple[int, bytes, merkle.CompactRange] | None = None
        self._staged: tuple[int, bytes, merkle.CompactRange] | None = None
        self._staged_checkpoint: Checkpoint | None = None  # signed in the batch being written
        # The signed-state record of the last committed batch, being written in a worker
        # thread (None once settled): the next signature waits for it (_settle_record).
        # A future of the thread's own, not the event loop's: the loop is told nothing when
        # the write ends (no wake-up from the thread, no callbacks, ~7 % of the writer's
        # CPU), and the next signature finds it done, or waits for it then.
        self._recording: tuple[Checkpoint, Future[None]] | None = None
        self._record_writer: ThreadPoolExecutor | None = None  # its thread, made on first use
        # The database is chosen once, here: the commit path only asks the store for a batch.
        self._store = group_commit_store(engine, lock_timeout_ms=self._lock_timeout_ms)

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The session factory this log writes through: a ``LogReader``, ``RecordQuery`` or
        ``LogChecker`` of the same log is opened over it."""
        return self._sessions

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
        wait on the caller's own lock until ``lock_timeout``). Further appends in that
        transaction hold the sequencer already and do not queue behind other callers'.
        After AuditUnavailable the caller must roll back.

        Raises AuditUnavailable if the database fails, the sequencer is not obtained in
        time, or the stored tree no longer matches its latest checkpoint; ValueError for a
        record that cannot be hashed (a naive ``time``, or a value JSON cannot carry
        exactly). Nothing is written for that caller then, except that a failure while
        committing leaves the outcome unknown (see step 7 below).
        """
        if db is not None:
            transaction = db.sync_session.get_transaction()
            async with contextlib.AsyncExitStack() as queue:
                if transaction is None or transaction not in self._holding:
                    await queue.enter_async_context(self._append_lock)
                with map_database_errors("append to"):
                    store = SQLAlchemyStore(
                        await db.connection(), lock_timeout_ms=self._lock_timeout_ms
                    )
                    (result,) = await self._write(store, [record], sign=False)
                transaction = db.sync_session.get_transaction()
                if transaction is not None:
                    self._holding.add(transaction)
            if isinstance(result, ValueError):
                raise result
            return cast(AppendedEntry, result)  # one record given, so one entry back
        future: asyncio.Future[AppendedEntry] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(record, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        # Cancelling the caller does not cancel the batch: the entry may still be written,
        # which only ever makes the log say more was asked than was done.
        return await future

    async def append_unit(self, unit: Unit) -> list[AppendedEntry]:
        """Add ``unit.records`` as consecutive entries and insert ``unit.rows``, in the next
        group commit: when this returns, all of them are committed and durable together,
        and a signed checkpoint covering the entries is committed with them. Nothing of
        the unit is committed otherwise: raises AuditUnavailable as ``append`` does (the
        whole batch failed, rows included; a failure while committing leaves it unknown
        whether the batch is in), or ValueError, and then nothing of it was written, if
        one of its records cannot be hashed. The rows share the batch's transaction: rows a
        table refuses (a key taken, a foreign key missing) fail every caller in the batch,
        so give only rows that are new and whose references are committed or in the unit.
        Returns the entries in the order of ``unit.records``."""
        if not unit.records:
            raise ValueError("a unit needs at least one record")
        future: asyncio.Future[list[AppendedEntry]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(unit, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        return await future

    async def aclose(self) -> None:
        """Wait for the batch being written, if any, write the record of the last signed
        tree, and close the log's own connection (call before disposing the engine). Does
        not raise for a record that cannot be written: it logs it, and closes anyway."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        try:
            # What this log signed last is on disk when it is closed (a restart, a CLI
            # command that appended). A record left behind is only one batch old, which the
            # next signature still proves consistency from: worth an error in the log, not
            # a shutdown that stops before closing the rest.
            await self._settle_record()
        except AuditUnavailable as exc:
            log.error("closing the audit log: %s", exc)
        finally:
            if self._record_writer is not None:
                self._record_writer.shutdown(wait=False)  # idle: the record is settled
                self._record_writer = None
            await self._store.aclose()

    async def _write_batches(self) -> None:
        # One writer per process at a time; it exits when nothing is pending, and append
        # starts a new one. Whatever arrives while a batch commits forms the next batch.
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            try:
                with (
                    observe_batch(len(batch), waiting=len(self._pending)),
                    map_database_errors("append to"),
                ):
                    results = await self._commit_batch([p.record for p in batch])
            except BaseException as exc:
                error: BaseException = exc
                if not isinstance(exc, Exception):
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

    async def _commit_batch(
        self, records: list[AuditRecord | Unit]
    ) -> list[AppendedEntry | list[AppendedEntry] | ValueError]:
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
        #    The store rolls back on any exception, cancellation included, so no
        #    transaction or sequencer outlives the batch (GroupCommitStore.batch).
        results = None
        if committed is not None:
            results = await self._write_on_head(records, sign=sign, cached=committed)
        if results is None:
            async with self._store.batch() as store:
                results = await self._write(store, records, sign=sign, cached=committed)
        # 8. Committed and durable: PostgreSQL's COMMIT waited for the WAL flush,
        #    SQLite's for the fsync of its WAL (both ensured in step 1). Only now do
        #    the callers learn their seq, and only then may a request be forwarded.
        self._committed = self._staged
        # 9. Move the record of the last signed tree forward while the callers go on: its
        #    slot is written here (to the page cache, SignedTreeState.begin_record) and
        #    made durable in a worker thread. What the callers were promised (committed,
        #    durable, signed in the database) holds already, and the record guards only
        #    the key's next signature, which waits for it (step 3b, _settle_record). A
        #    crash before the record is durable leaves it one batch behind, which is still
        #    a tree the key signed: the next batch proves consistency from there, as it did
        #    when the callers waited.
        signed = self._staged_checkpoint
        if signed is not None and self._signed_state is not None:
            if self._record_writer is None:
                self._record_writer = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="facegate-signed-state"
                )
            writing = self._record_writer.submit(self._signed_state.begin_record(signed))
            self._recording = (signed, writing)
        await self._reached("committed")
        return results

    async def _settle_record(self) -> None:
        """Wait until the record of the last signed tree holds what this log signed last.
        A write that failed is tried once more here; if that fails too, raise
        AuditUnavailable: the caller (the next signing batch) must not sign past it. The
        entries of the batch it records are committed either way (the log may say more
        was asked than was done, never less)."""
        if self._recording is None or self._signed_state is None:
            return
        signed, writing = self._recording
        await self._reached("awaiting the signed-state record")
        try:
            if not writing.done():
                # Shielded: a batch cancelled while it waits must not cancel the write
                # before it begins. begin_record holds the file's lock until the write has
                # run, and the retry below would wait for that lock forever.
                await asyncio.shield(asyncio.wrap_future(writing))
            writing.result()
        except (OSError, CheckpointError):
            try:
                await asyncio.to_thread(self._signed_state.record, signed)
            except (OSError, CheckpointError) as exc:
                # OSError: the file cannot be written; CheckpointError: what it holds now
                # cannot be read, so it cannot be told whether this tree is larger.
                why = exc.strerror if isinstance(exc, OSError) else str(exc)
                raise AuditUnavailable(
                    f"the record of the last signed tree ({self._signed_state.path}) could not"
                    f" be written: {why}; refusing to sign until it can"
                ) from exc
        self._recording = None

    async def _reached(self, step: str) -> None:
        """A seam for fault-injection tests: raise here to crash at ``step``."""

    async def _write(
        self,
        store: AppendStore,
        records: Sequence[AuditRecord | Unit],
        *,
        sign: bool,
        cached: tuple[int, bytes, merkle.CompactRange] | None = None,
    ) -> list[AppendedEntry | list[AppendedEntry] | ValueError]:
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
            compact = await read_compact_range(store, size)
            # 3. Before extending a tree we did not just sign, check it is the tree the
            #    latest checkpoint signed. Were it not (rows changed behind the guards, a
            #    replica with another key), a new checkpoint would contradict an old one
            #    that auditors may hold: refuse.
            if sign and self._signer is not None:
                await check_latest_checkpoint(store, compact, self._signer)
        # 3b. And check it extends the last tree this key signed, as recorded beside the key:
        #    the database's own checkpoints may have been cut back with the tree. Every
        #    signing batch checks; after our own batch the sizes match and it is a compare.
        #    The record this log's previous batch is still writing must be on disk first,
        #    else the check would be against a tree one batch old, and a failure to write
        #    it would go unseen; it was written while this batch took the sequencer.
        if sign and self._signer is not None and self._signed_state is not None:
            await self._settle_record()
            await check_signed_state(store, compact, self._signer, self._signed_state)

        # 4. Sequence and hash each record, in memory (_sequence).
        results, rows = self._sequence(records, size, prev_hash, compact)
        if not rows.entries:
            return results
        # 5. Sign the new tree head, in memory (_sign).
        checkpoint_row = self._sign(compact) if sign else None

        # 6. Insert the entries, every tree node they complete and the checkpoint, visible
        #    to no one before COMMIT. Were the sequencer ever bypassed, the primary keys
        #    (seq; level, idx; tree_size) would refuse a second n+1: the log cannot fork,
        #    the late append fails.
        #    Units' rows go first, in the same transaction: they commit with the entries
        #    that record them, or roll back with them.
        for table, unit_rows in _by_table(rows.units):
            await store.insert_rows(table, unit_rows)
        await store.insert(rows.entries, rows.nodes, checkpoint_row)
        await self._reached("inserted")
        if checkpoint_row is not None:
            await self._reached("signed")
            self._staged = (compact.size, rows.head_hash, compact.copy())
        return results

    async def _write_on_head(
        self,
        records: Sequence[AuditRecord | Unit],
        *,
        sign: bool,
        cached: tuple[int, bytes, merkle.CompactRange],
    ) -> list[AppendedEntry | list[AppendedEntry] | ValueError] | None:
        """The batch in one exchange (``GroupCommitStore.append_on_head``) when this process
        committed the log's last batch and signed its latest checkpoint: the rows are made
        from the edge it committed, and the store writes them only if the head is still
        the one it left. None when this path does not apply or the head moved: nothing was
        written, and the caller takes the full path (``_write``), which reads the head.

        The full path's checks hold here as they would there: with the head unchanged,
        the latest checkpoint is this log's own (step 3 is skipped there too), and the
        record beside the key must be exactly the tree this log signed last (step 3b's
        compare), else the full path runs them. Units with rows of other tables take the
        full path: their tables are not in the one statement."""
        if any(isinstance(item, Unit) and item.rows for item in records):
            return None
        size, prev_hash, edge = cached
        compact = edge.copy()
        if sign and self._signer is not None and self._signed_state is not None:
            await self._settle_record()
            ours = Checkpoint(self._signer.name, size, compact.root())
            try:
                recorded = self._signed_state.read()
            except (CheckpointError, OSError):
                return None  # the full path refuses it, naming why
            if recorded != ours:
                return None
        results, rows = self._sequence(records, size, prev_hash, compact)
        if not rows.entries:
            return results
        checkpoint_row = self._sign(compact) if sign else None
        # The fault-injection seams of the full path, at the last moment nothing is sent:
        # a failure here leaves the log as it was, as one between INSERT and COMMIT does.
        await self._reached("inserted")
        if checkpoint_row is not None:
            await self._reached("signed")
        head = Head(size, prev_hash.hex())
        if not await self._store.append_on_head(head, rows.entries, rows.nodes, checkpoint_row):
            self._staged_checkpoint = None  # never stored, so never served
            return None
        if checkpoint_row is not None:
            self._staged = (compact.size, rows.head_hash, compact.copy())
        return results

    def _sequence(
        self,
        records: Sequence[AuditRecord | Unit],
        size: int,
        prev_hash: bytes,
        compact: merkle.CompactRange,
    ) -> tuple[list[AppendedEntry | list[AppendedEntry] | ValueError], _BatchRows]:
        """Step 4: sequence and hash each record after the head (``size``, ``prev_hash``),
        extending ``compact`` in place. A record that cannot be hashed is refused alone and
        takes no seq, so the others keep contiguous ones. A unit's records are all encoded
        before any takes a seq: one that cannot be hashed refuses the whole unit (its rows
        too), never part of it."""
        results: list[AppendedEntry | list[AppendedEntry] | ValueError] = []
        rows = _BatchRows(head_hash=prev_hash)
        for item in records:
            group = item.records if isinstance(item, Unit) else (item,)
            first = size + len(rows.entries) + 1
            try:
                # One JSON dump a record, for its canonical bytes and its columns alike.
                dumped = [chain.json_fields(r) for r in group]
                canonicals = [
                    chain.canonical_bytes(seq, r, fields)
                    for seq, r, fields in zip(count(first), group, dumped)
                ]
            except ValueError as exc:
                results.append(exc)
                continue
            appended = []
            for seq, record, canonical, entry in zip(count(first), group, canonicals, dumped):
                record_hash = chain.chain_hash(rows.head_hash, canonical)
                record_hex = record_hash.hex()
                entry = _column_values(record, entry)
                entry["seq"] = seq
                entry["prev_hash"] = rows.head_hash.hex()
                entry["record_hash"] = record_hex
                rows.entries.append(entry)
                for level, index, value in compact.append(merkle.leaf_hash(canonical)):
                    rows.nodes.append({"level": level, "idx": index, "hash": value})
                rows.head_hash = record_hash
                appended.append(AppendedEntry(seq=seq, record_hash=record_hex))
            if isinstance(item, Unit):
                results.append(appended)
                rows.units.extend(item.rows)
            else:
                results.append(appended[0])
        return results, rows

    def _sign(self, compact: merkle.CompactRange) -> Row | None:
        """Step 5: the signed checkpoint row of the tree ``compact``, made in memory. A
        signature made here and lost to a crash or rollback was never served: the note
        exists only in this batch, and the next batch signs the size it finds. So no two
        checkpoints anyone can see disagree."""
        if self._signer is None:
            return None
        checkpoint = Checkpoint(self._signer.name, compact.size, compact.root())
        self._staged_checkpoint = checkpoint
        return {
            "tree_size": checkpoint.size,
            "root_hash": checkpoint.root_hash,
            "note": checkpoint.sign(self._signer),
            "created_at": datetime.now(UTC),
        }


@dataclass(slots=True)
class _BatchRows:
    """What step 4 makes of a batch's records: the rows to insert, and the chain hash of
    the last entry among them (the head's, if none)."""

    head_hash: bytes
    entries: list[Row] = field(default_factory=list)
    nodes: list[Row] = field(default_factory=list)
    units: list[tuple[Table, Sequence[Row]]] = field(default_factory=list)


def _by_table(parts: list[tuple[Table, Sequence[Row]]]) -> list[tuple[Table, list[Row]]]:
    """The units' rows, one insert a table, a table before those whose foreign keys point at
    it (a search's authorisation before its leads), each table's rows in the units' order."""
    by_table: dict[Table, list[Row]] = {}
    for table, rows in parts:
        by_table.setdefault(table, []).extend(rows)
    return [(table, by_table[table]) for table in sort_tables(by_table) if by_table[table]]


def _column_values(record: AuditRecord, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record's columns; ``fields`` (``chain.json_fields(record)``, if the caller has
    it) is taken over and returned with them."""
    # The JSON form, exactly what chain.canonical_bytes hashes, so that reading a row back
    # gives the same hash (e.g. a NaN becomes null in both). Only time keeps its type: the
    # column stores the instant, which hashes identically once read back in UTC.
    values = chain.json_fields(record) if fields is None else fields
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
