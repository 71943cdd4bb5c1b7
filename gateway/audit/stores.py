"""Where the append path reads and writes: one narrow interface, two implementations.

``AuditLog._write`` holds the logic (sequencer, head, tree edge, hashing, signing, crash
safety); a store only runs its statements inside one transaction that the caller opened
and will commit or roll back. Contract of every store:

* ``take_sequencer`` returns once this transaction alone may append: every later read
  sees every append committed before it. It raises if the lock is not had in time.
* ``insert`` writes entries, tree nodes and (when given) the checkpoint in this
  transaction. Nothing is visible to anyone before COMMIT, and a primary key refuses a
  second row for any seq or node, so a store can never fork the log, only fail.
* Every database failure surfaces as one of ``gateway.db.DATABASE_ERRORS``.

``SQLAlchemyStore`` serves appends made in a caller's transaction (``db=``), and SQLite
databases that are not a plain file. ``AsyncpgStore`` serves PostgreSQL's group commit on
the driver's own connection: four round trips a batch (BEGIN with the sequencer, the head,
one INSERT of entries, nodes and checkpoint, COMMIT) and none of SQLAlchemy's per-statement
work, which cost more than the statements themselves (bench/append_latency.py).
``SqliteStore`` serves SQLite's group commit on a connection of its own in a thread of its
own: three hand-offs to that thread a batch (BEGIN IMMEDIATE with the head, the INSERTs,
COMMIT) where aiosqlite under SQLAlchemy made one per statement.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, NamedTuple, Protocol, TypeVar, cast

import asyncpg
from sqlalchemy import JSON, Table, insert, select, text, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gateway.audit import merkle
from gateway.audit.models import AuditCheckpoint, AuditLogEntry, AuditTreeNode
from gateway.db import apply_sqlite_pragmas
from gateway.errors import AuditUnavailable

# The one PostgreSQL advisory lock every replica takes to append: "facegate" in ASCII.
SEQUENCER_LOCK_ID: Final = 0x6661636567617465

LOG_TABLE: Final = cast(Table, AuditLogEntry.__table__)
TREE_TABLE: Final = cast(Table, AuditTreeNode.__table__)
CHECKPOINT_TABLE: Final = cast(Table, AuditCheckpoint.__table__)

Row = dict[str, Any]


class Head(NamedTuple):
    seq: int
    record_hash: str  # hex


class LatestCheckpoint(NamedTuple):
    tree_size: int
    root_hash: bytes
    note: str  # the signed note


class AppendStore(Protocol):
    async def take_sequencer(self) -> None: ...

    async def read_head(self) -> Head | None: ...

    async def read_nodes(self, ids: set[merkle.NodeId]) -> dict[merkle.NodeId, bytes]: ...

    async def read_latest_checkpoint(self) -> LatestCheckpoint | None: ...

    async def insert(
        self, entries: list[Row], nodes: list[Row], checkpoint: Row | None
    ) -> None: ...


# -- SQLAlchemy: SQLite, and appends in a caller's transaction -----------------------------

# Built once: constructing them per batch cost as much CPU as executing them.
_READ_HEAD: Final = (
    select(LOG_TABLE.c.seq, LOG_TABLE.c.record_hash).order_by(LOG_TABLE.c.seq.desc()).limit(1)
)
_READ_LATEST_CHECKPOINT: Final = (
    select(CHECKPOINT_TABLE.c.tree_size, CHECKPOINT_TABLE.c.root_hash, CHECKPOINT_TABLE.c.note)
    .order_by(CHECKPOINT_TABLE.c.tree_size.desc())
    .limit(1)
)
_INSERT_ENTRIES: Final = insert(LOG_TABLE)
_INSERT_NODES: Final = insert(TREE_TABLE)
_INSERT_CHECKPOINT: Final = insert(CHECKPOINT_TABLE)
# Transaction-scoped settings: the lock wait is bounded, and a server or role configured
# with synchronous_commit=off cannot make this commit non-durable. {lock_timeout} is a
# bind parameter or a literal.
_PG_SETTINGS: Final = (
    "set_config('lock_timeout', {lock_timeout}, true),"
    " set_config('synchronous_commit',"
    "  CASE current_setting('synchronous_commit')"
    "   WHEN 'off' THEN 'on' ELSE current_setting('synchronous_commit') END,"
    "  true)"
)
# The settings sit in a subquery that OFFSET 0 keeps from being flattened, so they take
# effect before the lock is waited for, in the same round trip.
_PG_TAKE_SEQUENCER: Final = text(
    "SELECT pg_advisory_xact_lock(:lock_id) FROM ("  # noqa: S608 (constants only)
    f" SELECT {_PG_SETTINGS.format(lock_timeout=':lock_timeout')} OFFSET 0"
    ") AS settings"
)
# Marks a pooled SQLite connection whose busy_timeout and synchronous are set for appends.
_SQLITE_SETTINGS_APPLIED: Final = "facegate_audit_sqlite_settings"


class SQLAlchemyStore:
    def __init__(self, connection: AsyncConnection, *, lock_timeout_ms: int) -> None:
        self._connection = connection
        self._lock_timeout_ms = lock_timeout_ms

    async def take_sequencer(self) -> None:
        connection = self._connection
        if connection.dialect.name == "postgresql":
            # The head is read by the next statement: under READ COMMITTED each statement
            # takes a fresh snapshot, so it sees the previous holder's commit.
            # Re-entrant: a caller's transaction may append several times.
            await connection.execute(
                _PG_TAKE_SEQUENCER,
                {"lock_timeout": f"{self._lock_timeout_ms}ms", "lock_id": SEQUENCER_LOCK_ID},
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
        pooled = await connection.get_raw_connection()
        driver_connection: Any = pooled.driver_connection
        if not driver_connection.in_transaction:
            # Connection settings, refused inside a transaction: they must precede BEGIN.
            # They stay on the pooled connection, so each is set once per connection (its
            # `info` lives as long as the connection does), not once per batch.
            if not pooled.info.get(_SQLITE_SETTINGS_APPLIED):
                await connection.exec_driver_sql(f"PRAGMA busy_timeout = {self._lock_timeout_ms:d}")
                await connection.exec_driver_sql("PRAGMA synchronous = FULL")
                pooled.info[_SQLITE_SETTINGS_APPLIED] = True
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        # A caller's transaction is open (append with db=). Under legacy control it opened
        # for a write, so it holds the write lock already. Were it opened otherwise (a
        # driver in non-legacy mode), SQLite refuses our INSERT if another writer committed
        # since it began (SQLITE_BUSY_SNAPSHOT), and the seq key refuses a duplicate: a
        # stale head fails the append, it never forks the chain. Durability can no longer
        # be set here, only checked (2 = FULL, 3 = EXTRA).
        synchronous = await connection.scalar(text("PRAGMA synchronous"))
        if not isinstance(synchronous, int) or synchronous < 2:
            raise AuditUnavailable(
                "the audit log refuses to append on a SQLite connection whose commits are not"
                " durable (PRAGMA synchronous is below FULL)"
            )

    async def read_head(self) -> Head | None:
        row = (await self._connection.execute(_READ_HEAD)).one_or_none()
        return None if row is None else Head(row.seq, row.record_hash)

    async def read_nodes(self, ids: set[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        return await read_nodes(self._connection, ids)

    async def read_latest_checkpoint(self) -> LatestCheckpoint | None:
        row = (await self._connection.execute(_READ_LATEST_CHECKPOINT)).one_or_none()
        return (
            None if row is None else LatestCheckpoint(row.tree_size, bytes(row.root_hash), row.note)
        )

    async def insert(self, entries: list[Row], nodes: list[Row], checkpoint: Row | None) -> None:
        await self._connection.execute(_INSERT_ENTRIES, entries)
        await self._connection.execute(_INSERT_NODES, nodes)
        if checkpoint is not None:
            await self._connection.execute(_INSERT_CHECKPOINT, checkpoint)


async def read_nodes(
    db: AsyncSession | AsyncConnection, ids: set[merkle.NodeId]
) -> dict[merkle.NodeId, bytes]:
    if not ids:
        return {}
    rows = (
        await db.execute(
            select(AuditTreeNode.level, AuditTreeNode.idx, AuditTreeNode.hash).where(
                tuple_(AuditTreeNode.level, AuditTreeNode.idx).in_(sorted(ids))
            )
        )
    ).all()
    return {(row.level, row.idx): bytes(row.hash) for row in rows}


# -- asyncpg: PostgreSQL's group commit -----------------------------------------------------

_PG_DIALECT: Final = postgresql.dialect()  # type: ignore[no-untyped-call]


# The statements below are assembled from the table definitions and integers only, never
# from values: those go as parameters.
def _quote(name: str) -> str:
    return _PG_DIALECT.identifier_preparer.quote(name)


def _unnest_insert(table: Table, first_parameter: int) -> str:
    """INSERT of any number of rows in one statement: one array parameter per column."""
    names = ", ".join(_quote(column.name) for column in table.c)
    arrays = ", ".join(
        f"${first_parameter + i}::{column.type.compile(dialect=_PG_DIALECT)}[]"
        for i, column in enumerate(table.c)
    )
    return f"INSERT INTO {_quote(table.name)} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608


def _values_insert(table: Table, first_parameter: int) -> str:
    names = ", ".join(_quote(column.name) for column in table.c)
    values = ", ".join(f"${first_parameter + i}" for i in range(len(table.c)))
    return f"INSERT INTO {_quote(table.name)} ({names}) VALUES ({values})"  # noqa: S608


def _insert_everything(*, with_checkpoint: bool) -> str:
    """Entries, nodes and (optionally) the checkpoint in one statement, so one round trip.
    Data-modifying CTEs all run, in one snapshot; the tables do not read each other."""
    entries = _unnest_insert(LOG_TABLE, 1)
    nodes = _unnest_insert(TREE_TABLE, len(LOG_TABLE.c) + 1)
    if not with_checkpoint:
        return f"WITH entries AS ({entries}) {nodes}"
    checkpoint = _values_insert(CHECKPOINT_TABLE, len(LOG_TABLE.c) + len(TREE_TABLE.c) + 1)
    return f"WITH entries AS ({entries}), nodes AS ({nodes}) {checkpoint}"


_PG_INSERT_SIGNED: Final = _insert_everything(with_checkpoint=True)
_PG_INSERT_UNSIGNED: Final = _insert_everything(with_checkpoint=False)
_PG_READ_HEAD: Final = "SELECT seq, record_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_PG_READ_LATEST_CHECKPOINT: Final = (
    "SELECT tree_size, root_hash, note FROM audit_checkpoint ORDER BY tree_size DESC LIMIT 1"
)
_PG_READ_NODES: Final = (
    "SELECT t.level, t.idx, t.hash FROM audit_tree AS t"
    " JOIN unnest($1::smallint[], $2::bigint[]) AS wanted (level, idx) USING (level, idx)"
)
# JSON columns go to asyncpg as text, encoded as SQLAlchemy's JSON type would encode them.
_JSON_COLUMNS: Final = frozenset(c.name for c in LOG_TABLE.c if isinstance(c.type, JSON))


class AsyncpgStore:
    """A store on asyncpg's connection. The caller has opened no transaction: this store's
    ``take_sequencer`` sends BEGIN with the lock, and the caller sends COMMIT (or drops
    the connection) afterwards."""

    def __init__(self, connection: asyncpg.Connection, *, lock_timeout_ms: int) -> None:
        self._connection = connection
        # Literals from integers, not parameters: a script of several statements takes none.
        settings = _PG_SETTINGS.format(lock_timeout=f"'{lock_timeout_ms:d}ms'")
        self._begin = (
            f"BEGIN; SELECT {settings}; SELECT pg_advisory_xact_lock({SEQUENCER_LOCK_ID:d})"
        )

    async def take_sequencer(self) -> None:
        # One round trip: BEGIN, the settings, then the lock, in that order.
        await self._connection.execute(self._begin)

    async def read_head(self) -> Head | None:
        row = await self._connection.fetchrow(_PG_READ_HEAD)
        return None if row is None else Head(row["seq"], row["record_hash"])

    async def read_nodes(self, ids: set[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        if not ids:
            return {}
        wanted = sorted(ids)
        rows = await self._connection.fetch(
            _PG_READ_NODES, [level for level, _ in wanted], [idx for _, idx in wanted]
        )
        return {(row["level"], row["idx"]): bytes(row["hash"]) for row in rows}

    async def read_latest_checkpoint(self) -> LatestCheckpoint | None:
        row = await self._connection.fetchrow(_PG_READ_LATEST_CHECKPOINT)
        if row is None:
            return None
        return LatestCheckpoint(row["tree_size"], bytes(row["root_hash"]), row["note"])

    async def insert(self, entries: list[Row], nodes: list[Row], checkpoint: Row | None) -> None:
        arguments = [*_columns(LOG_TABLE, entries), *_columns(TREE_TABLE, nodes)]
        if checkpoint is None:
            await self._connection.execute(_PG_INSERT_UNSIGNED, *arguments)
            return
        arguments.extend(checkpoint[column.name] for column in CHECKPOINT_TABLE.c)
        await self._connection.execute(_PG_INSERT_SIGNED, *arguments)


def _columns(table: Table, rows: Sequence[Row]) -> list[list[Any]]:
    columns = []
    for column in table.c:
        values = [row[column.name] for row in rows]
        if column.name in _JSON_COLUMNS:
            values = [json.dumps(value) for value in values]
        columns.append(values)
    return columns


# -- sqlite3: SQLite's group commit ------------------------------------------------------------

_T = TypeVar("_T")


def _sqlite_insert(table: Table, dialect: Dialect) -> str:
    names = ", ".join(dialect.identifier_preparer.quote(column.name) for column in table.c)
    marks = ", ".join("?" for _ in table.c)
    return f"INSERT INTO {dialect.identifier_preparer.quote(table.name)} ({names}) VALUES ({marks})"  # noqa: S608


class SqliteStore:
    """The audit log's own connection to a SQLite file, used only from one thread of its own.

    A batch hands work to that thread three times: ``take_sequencer`` (BEGIN IMMEDIATE,
    which takes SQLite's write lock, then the head, read under it), ``insert`` (every row),
    ``commit``. Through SQLAlchemy on aiosqlite each statement was a hand-off, and the
    hand-offs, not SQLite, were most of an append's time. Values are converted by the
    columns' own SQLAlchemy types (``bind_processor``), so rows are stored exactly as the
    SQLAlchemy path stores them and read back the same by everything else.

    The connection has the settings every SQLite connection gets
    (`gateway.db.apply_sqlite_pragmas`) and waits for the write lock at most
    ``lock_timeout_ms``. Other processes and the engine's own connections take the same
    lock, so the sequencer is still SQLite's one write lock.
    """

    def __init__(self, path: str, *, dialect: Dialect, lock_timeout_ms: int) -> None:
        self._path = path
        self._lock_timeout_ms = lock_timeout_ms
        self._connection: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facegate-audit")
        self._head: Head | None = None
        # dialect_impl: SQLite's own DateTime processor. The generic type has none, and
        # sqlite3's default adapter would write datetimes in another format than the
        # SQLAlchemy path, which every query compares against.
        self._inserts = [
            (
                _sqlite_insert(table, dialect),
                [
                    (column.name, column.type.dialect_impl(dialect).bind_processor(dialect))
                    for column in table.c
                ],
            )
            for table in (LOG_TABLE, TREE_TABLE, CHECKPOINT_TABLE)
        ]

    async def _run(self, function: Callable[[], _T]) -> _T:
        # One thread, so calls run in the order they were made, cancelled or not: a
        # rollback asked for after a cancelled insert runs after that insert.
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self._path,
                timeout=self._lock_timeout_ms / 1000,
                isolation_level=None,  # transactions are this store's BEGIN and COMMIT
                check_same_thread=False,  # opened and used in this store's thread only
            )
            apply_sqlite_pragmas(connection)
            self._connection = connection
        return self._connection

    async def take_sequencer(self) -> None:
        def begin() -> Head | None:
            connection = self._open()
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute(
                "SELECT seq, record_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            return None if row is None else Head(row[0], row[1])

        self._head = await self._run(begin)

    async def read_head(self) -> Head | None:
        return self._head  # read by take_sequencer, under the lock

    async def read_nodes(self, ids: set[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        def read() -> dict[merkle.NodeId, bytes]:
            connection = self._open()
            found = {}
            for level, idx in sorted(ids):
                row = connection.execute(
                    "SELECT hash FROM audit_tree WHERE level = ? AND idx = ?", (level, idx)
                ).fetchone()
                if row is not None:
                    found[(level, idx)] = bytes(row[0])
            return found

        return await self._run(read) if ids else {}

    async def read_latest_checkpoint(self) -> LatestCheckpoint | None:
        def read() -> LatestCheckpoint | None:
            row = (
                self._open()
                .execute(
                    "SELECT tree_size, root_hash, note FROM audit_checkpoint"
                    " ORDER BY tree_size DESC LIMIT 1"
                )
                .fetchone()
            )
            return None if row is None else LatestCheckpoint(row[0], bytes(row[1]), row[2])

        return await self._run(read)

    async def insert(self, entries: list[Row], nodes: list[Row], checkpoint: Row | None) -> None:
        batches = [entries, nodes, [checkpoint] if checkpoint is not None else []]
        statements = [
            (sql, [_bound(row, processors) for row in rows])
            for (sql, processors), rows in zip(self._inserts, batches, strict=True)
            if rows
        ]

        def write() -> None:
            connection = self._open()
            for sql, rows in statements:
                connection.executemany(sql, rows)

        await self._run(write)

    async def commit(self) -> None:
        await self._run(lambda: self._open().execute("COMMIT"))

    async def rollback(self) -> None:
        def rollback() -> None:
            if self._connection is not None and self._connection.in_transaction:
                self._connection.rollback()

        await self._run(rollback)

    async def aclose(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await self._run(close)
        self._executor.shutdown(wait=False)


def _bound(
    row: Row, processors: Sequence[tuple[str, Callable[[Any], Any] | None]]
) -> tuple[Any, ...]:
    return tuple(
        row[name] if process is None else process(row[name]) for name, process in processors
    )
