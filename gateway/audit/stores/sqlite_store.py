"""The sqlite3 store: SQLite's group commit on a connection of its own, in a thread of its
own: two hand-offs to that thread a batch (BEGIN IMMEDIATE with the head; the INSERTs
with COMMIT) where aiosqlite under SQLAlchemy made one per statement, and one when the
writer committed the last batch itself (``append_on_head``)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.engine import Dialect

from gateway.audit import merkle
from gateway.audit.stores.base import (
    CHECKPOINT_TABLE,
    LOG_TABLE,
    TREE_TABLE,
    AppendStore,
    Head,
    LatestCheckpoint,
    Row,
)
from gateway.db import apply_sqlite_pragmas

_T = TypeVar("_T")
_READ_HEAD = "SELECT seq, record_hash FROM audit_log ORDER BY seq DESC LIMIT 1"

# An INSERT statement and how a row is bound to it (``_Binding``).
_Insert = tuple[str, "_Binding"]


def _sqlite_insert(table: Table, dialect: Dialect) -> str:
    names = ", ".join(dialect.identifier_preparer.quote(column.name) for column in table.c)
    marks = ", ".join("?" for _ in table.c)
    return f"INSERT INTO {dialect.identifier_preparer.quote(table.name)} ({names}) VALUES ({marks})"  # noqa: S608


class SqliteStore:
    """The audit log's own connection to a SQLite file, used only from one thread of its own.

    A batch hands work to that thread twice: ``take_sequencer`` (BEGIN IMMEDIATE, which
    takes SQLite's write lock, then the head, read under it) and ``commit`` (every row
    ``insert`` was given, then COMMIT). Through SQLAlchemy on aiosqlite each statement was
    a hand-off, and the hand-offs, not SQLite, were most of an append's time. Values are
    converted by the columns' own SQLAlchemy types (``bind_processor``), so rows are stored
    exactly as the SQLAlchemy path stores them and read back the same by everything else.

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
        # What insert() and insert_rows() were given, written by commit() in the hand-off
        # that commits it.
        self._inserts_due: list[tuple[str, list[tuple[Any, ...]]]] = []
        self._dialect = dialect
        self._row_inserts: dict[Table, _Insert] = {}
        # dialect_impl: SQLite's own DateTime processor. The generic type has none, and
        # sqlite3's default adapter would write datetimes in another format than the
        # SQLAlchemy path, which every query compares against.
        self._inserts = [self._insert(table) for table in (LOG_TABLE, TREE_TABLE, CHECKPOINT_TABLE)]

    def _insert(self, table: Table) -> _Insert:
        dialect = self._dialect
        return (
            _sqlite_insert(table, dialect),
            _Binding(
                [
                    (column.name, column.type.dialect_impl(dialect).bind_processor(dialect))
                    for column in table.c
                ]
            ),
        )

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
            row = connection.execute(_READ_HEAD).fetchone()
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
        # Run by commit(), in the same hand-off as COMMIT: each hand-off to the store's thread
        # cost the event loop more than the INSERTs themselves. Nothing was visible before
        # COMMIT anyway; a failing INSERT fails the commit, and the batch rolls back.
        self._inserts_due.extend(self._log_statements(entries, nodes, checkpoint))

    def _log_statements(
        self, entries: list[Row], nodes: list[Row], checkpoint: Row | None
    ) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """The log's own INSERTs of a batch, each with its rows bound."""
        batches = [entries, nodes, [checkpoint] if checkpoint is not None else []]
        return [
            (sql, [bind(row) for row in rows])
            for (sql, bind), rows in zip(self._inserts, batches, strict=True)
            if rows
        ]

    async def insert_rows(self, table: Table, rows: list[Row]) -> None:
        if table not in self._row_inserts:
            self._row_inserts[table] = self._insert(table)  # once a table: ~60 us to build
        sql, bind = self._row_inserts[table]
        # Written by commit() like insert()'s rows, in the order given: the log calls this
        # before insert(), and a table before those whose foreign keys point at it.
        self._inserts_due.append((sql, [bind(row) for row in rows]))

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[AppendStore]:
        try:
            yield self
            await self.commit()
        except BaseException:
            # Queued behind whatever the store's thread is still running, so it runs
            # even if this task was cancelled mid-batch: no transaction outlives it.
            await asyncio.shield(self.rollback())
            raise

    async def append_on_head(
        self, head: Head, entries: list[Row], nodes: list[Row], checkpoint: Row | None
    ) -> bool:
        # One hand-off to the store's thread where the full path makes two.
        statements = self._log_statements(entries, nodes, checkpoint)

        def append() -> bool:
            connection = self._open()
            connection.execute("BEGIN IMMEDIATE")  # the sequencer: SQLite's write lock
            try:
                row = connection.execute(_READ_HEAD).fetchone()
                if row is None or Head(row[0], row[1]) != head:
                    connection.execute("ROLLBACK")
                    return False
                for sql, rows in statements:
                    connection.executemany(sql, rows)
                connection.execute("COMMIT")
            except sqlite3.IntegrityError:
                # A seq, node or tree size stored already: under the write lock, with the
                # head as given, only a damaged log does that. The full path finds it.
                connection.rollback()
                return False
            except BaseException:
                if connection.in_transaction:
                    connection.rollback()
                raise
            return True

        return await self._run(append)

    async def commit(self) -> None:
        statements, self._inserts_due = self._inserts_due, []

        def commit() -> None:
            connection = self._open()
            for sql, rows in statements:
                connection.executemany(sql, rows)
            connection.execute("COMMIT")

        await self._run(commit)

    async def rollback(self) -> None:
        self._inserts_due = []

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


class _Binding:
    """A row's values in its INSERT's column order, each converted by its column's bind
    processor if it has one (few do: times and JSON). The values are taken in one C call
    (``itemgetter``) and only those columns converted in Python: a batch binds every
    column of every row, and a Python expression per column cost ~1 % of the CPU."""

    def __init__(self, processors: Sequence[tuple[str, Callable[[Any], Any] | None]]) -> None:
        names = [name for name, _ in processors]
        self._values = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
        self._processors = [
            (index, process) for index, (_, process) in enumerate(processors) if process is not None
        ]

    def __call__(self, row: Row) -> tuple[Any, ...]:
        values: tuple[Any, ...] = self._values(row)
        if not self._processors:
            return values
        bound = list(values)
        for index, process in self._processors:
            bound[index] = process(bound[index])
        return tuple(bound)
