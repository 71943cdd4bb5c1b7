"""The audit log service: append entries to the hash chain, query them, verify the chain.

Contract:

* ``append`` returns only once the entry is committed and durable (PostgreSQL: commit
  flushed to the WAL; SQLite: WAL with synchronous=FULL). Entries get contiguous ``seq``
  from 1, each chained to the one before, even with several processes appending to one
  database: a single sequencer (a PostgreSQL advisory lock, SQLite's write lock) is held
  from reading the head to committing the new entry.
* Every database failure in ``append``, ``query`` and ``verify`` is raised as
  ``AuditUnavailable``, whose message never carries the database URL. Callers fail closed.
* Nothing is kept in memory between calls: each append re-reads the head inside the lock,
  so a crash, a rollback or another replica's append can never leave this process chaining
  onto a stale hash.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import ColumnElement, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit import chain
from gateway.audit.models import AuditLogEntry
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import (
    AppendedEntry,
    AuditEntryRead,
    AuditPage,
    AuditQuery,
    VerifyProblem,
    VerifyReport,
)
from gateway.db import DATABASE_ERRORS
from gateway.errors import AuditUnavailable, MalformedRequest

# The one PostgreSQL advisory lock every replica takes to append: "facegate" in ASCII.
SEQUENCER_LOCK_ID: Final = 0x6661636567617465
DEFAULT_LOCK_TIMEOUT: Final = timedelta(seconds=30)
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
VERIFY_BATCH_SIZE: Final = 1000
_MAX_CURSOR_LENGTH: Final = 32

_SUPPORTED_DIALECTS: Final = frozenset({"sqlite", "postgresql"})


class AuditLog:
    """The append-only, hash-chained audit log over one database.

    ``sessions`` must be bound to the AsyncEngine of that database (``gateway.db``); the
    dialect, which decides how the sequencer is taken, is read from it. ``lock_timeout``
    bounds how long an append waits for the sequencer before failing closed: a replica that
    hangs while holding it makes the others refuse requests rather than hang with it.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        engine = sessions.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise ValueError("AuditLog needs a session factory bound to an AsyncEngine")
        if engine.dialect.name not in _SUPPORTED_DIALECTS:
            raise ValueError(f"the audit log does not support {engine.dialect.name!r} databases")
        if lock_timeout <= timedelta(0):
            raise ValueError("lock_timeout must be positive")
        self._sessions = sessions
        self._dialect = engine.dialect.name
        self._lock_timeout_ms = max(1, int(lock_timeout.total_seconds() * 1000))
        # Coroutines of this process queue here, in order, instead of all holding a
        # connection while they wait on the database's lock.
        self._append_lock = asyncio.Lock()

    async def append(self, record: AuditRecord, *, db: AsyncSession | None = None) -> AppendedEntry:
        """Add ``record`` as the next entry.

        Without ``db``, the entry gets a transaction of its own: when this returns it is
        committed and durable.

        With ``db``, it is written in that session's transaction, so that a change and its
        record commit together or not at all: it becomes durable when, and only if, the
        caller commits. The sequencer stays held until then and every other append on the
        database waits, so commit or roll back promptly, and do not call ``append``
        without ``db`` before that (it would wait on the caller's own lock until
        ``lock_timeout``). After AuditUnavailable the caller must roll back.

        Raises AuditUnavailable if the database fails or the sequencer is not obtained in
        time, and ValueError for a record that cannot be hashed (a naive ``time``, or a
        value JSON cannot carry exactly). Nothing is written then, except that a failure
        while committing leaves the outcome unknown (see step 4 below).
        """
        async with self._append_lock:
            try:
                if db is not None:
                    return await self._append_in(db, record)
                async with self._sessions() as session, session.begin():
                    entry = await self._append_in(session, record)
                    # 4. COMMIT, on leaving this block. If the process dies or the connection
                    #    drops after COMMIT was sent but before it was acknowledged, the log
                    #    holds 1..n or 1..n+1, each a valid chain. The caller got no
                    #    AppendedEntry, so it treats the record as not written and forwards
                    #    nothing: the log may say more was asked than was done, never less.
                # 5. Committed and durable: PostgreSQL's COMMIT waited for the WAL flush,
                #    SQLite's for the fsync of its WAL (both ensured in step 1).
                return entry
            except DATABASE_ERRORS as exc:
                raise AuditUnavailable(_failure("append to", exc)) from exc

    async def _append_in(self, session: AsyncSession, record: AuditRecord) -> AppendedEntry:
        # Crash safety, step by step. At every point the stored log is a valid chain 1..n:
        # the only write is one INSERT of n+1, made visible by one COMMIT.

        # 1. Take the sequencer. A crash from here until COMMIT leaves the log at n: the
        #    database rolls the transaction back and the lock dies with it (PostgreSQL
        #    ends the backend's transaction and its advisory lock; SQLite ignores WAL
        #    frames that were never committed, and the OS drops a dead process's locks).
        await self._take_sequencer(session)

        # 2. Read the head. Holding the sequencer, no one else can add n+1 before we
        #    commit, and the read comes after the lock, so it sees every earlier commit.
        head = (
            await session.execute(
                select(AuditLogEntry.seq, AuditLogEntry.record_hash)
                .order_by(AuditLogEntry.seq.desc())
                .limit(1)
            )
        ).one_or_none()
        if head is None:
            seq, prev_hash = 1, chain.GENESIS_HASH
        else:
            seq, prev_hash = head.seq + 1, _head_hash(head.seq, head.record_hash)

        # 3. Hash and insert n+1, visible to no one before COMMIT. Were the sequencer ever
        #    bypassed, the seq primary key would still refuse a second n+1: the chain
        #    cannot fork, the late append fails.
        record_hash = chain.entry_hash(seq, record, prev_hash)
        await session.execute(
            insert(AuditLogEntry).values(
                seq=seq,
                prev_hash=prev_hash.hex(),
                record_hash=record_hash.hex(),
                **_column_values(record),
            )
        )
        return AppendedEntry(seq=seq, record_hash=record_hash.hex())

    async def _take_sequencer(self, session: AsyncSession) -> None:
        if self._dialect == "postgresql":
            # Transaction-scoped settings: the lock wait is bounded, and a server or role
            # configured with synchronous_commit=off cannot make this commit non-durable.
            await session.execute(
                text(
                    "SELECT set_config('lock_timeout', :lock_timeout, true),"
                    " set_config('synchronous_commit',"
                    "  CASE current_setting('synchronous_commit')"
                    "   WHEN 'off' THEN 'on' ELSE current_setting('synchronous_commit') END,"
                    "  true)"
                ),
                {"lock_timeout": f"{self._lock_timeout_ms}ms"},
            )
            # A statement of its own: under READ COMMITTED each statement takes a fresh
            # snapshot, so the head read after this one sees the previous holder's commit.
            # Re-entrant: a caller's transaction may append several times.
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:lock_id)"), {"lock_id": SEQUENCER_LOCK_ID}
            )
            return

        # SQLite. The sqlite3 driver's legacy transaction control, which SQLAlchemy keeps,
        # opens a (deferred) transaction only before INSERT/UPDATE/DELETE, so a head SELECT
        # would run outside any lock and two processes could read the same head.
        # SQLAlchemy's documented recipe fixes that engine-wide with event hooks emitting
        # BEGIN for every transaction; that belongs to gateway.db and would change every
        # table's transactions. Instead the append alone opens its transaction with
        # BEGIN IMMEDIATE, which takes the write lock before the head is read. The driver's
        # commit() and rollback() act on whatever transaction SQLite has open.
        connection = await session.connection()
        driver_connection: Any = (await connection.get_raw_connection()).driver_connection
        if not driver_connection.in_transaction:
            # Connection settings, refused inside a transaction: they must precede BEGIN.
            # busy_timeout stays on the pooled connection, as the engine's own would.
            await session.execute(text(f"PRAGMA busy_timeout = {self._lock_timeout_ms:d}"))
            await session.execute(text("PRAGMA synchronous = FULL"))
            await session.execute(text("BEGIN IMMEDIATE"))
            return
        # A caller's transaction is open (append with db=). Under legacy control it opened
        # for a write, so it holds the write lock already. Were it opened otherwise (a
        # driver in non-legacy mode), SQLite refuses our INSERT if another writer committed
        # since it began (SQLITE_BUSY_SNAPSHOT), and the seq key refuses a duplicate: a
        # stale head fails the append, it never forks the chain. Durability can no longer
        # be set here, only checked (2 = FULL, 3 = EXTRA).
        synchronous = await session.scalar(text("PRAGMA synchronous"))
        if not isinstance(synchronous, int) or synchronous < 2:
            raise AuditUnavailable(
                "the audit log refuses to append on a SQLite connection whose commits are not"
                " durable (PRAGMA synchronous is below FULL)"
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
