"""The asyncpg store: PostgreSQL's group commit on an asyncpg connection of its own.

Four round trips a batch (BEGIN with the sequencer, the head, one INSERT of entries, nodes
and checkpoint, COMMIT) and none of SQLAlchemy's per-statement work, which cost more than
the statements themselves (bench/append_latency.py). One round trip when the writer
committed the last batch itself (``append_on_head``: a statement that takes the sequencer,
checks the head and inserts, committed on its own), the usual case for a lone replica;
its entries go as scalar parameters, not arrays, up to ``_SCALAR_ENTRIES`` of them.
The connection is the group commit's own, not a checkout of the engine's pool: a checkout
and its return cost about 0.26 ms of wall time a batch, and each batch had to set the
session settings again.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
from sqlalchemy import JSON, Table, TypeDecorator
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import merkle
from gateway.audit.stores.base import (
    CHECKPOINT_TABLE,
    LOG_TABLE,
    SEQUENCER_LOCK_ID,
    TREE_TABLE,
    AppendStore,
    Head,
    LatestCheckpoint,
    Row,
)
from gateway.audit.stores.sqlalchemy_store import PG_SETTINGS
from gateway.db import DATABASE_ERRORS, asyncpg_connect_args

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


# Batches of up to this many entries bind them as scalar parameters, one statement a size
# (each prepared once a connection, kept in asyncpg's statement cache); larger ones bind
# one array a column. asyncpg checks every array, and every element it encodes, against
# the collections ABCs, one or two Python-level isinstance calls a value: most of the
# statement's encoding (callgrind, a batch of one entry: 384k instructions as arrays, 74k
# as scalars; of eight: 1.25M and 330k).
_SCALAR_ENTRIES: Final = 16


@functools.cache
def _casts(table: Table) -> tuple[str, ...]:
    return tuple(column.type.compile(dialect=_PG_DIALECT) for column in table.c)


def _scalar_insert(table: Table, first_parameter: int, rows: int) -> str:
    """INSERT of ``rows`` rows from one scalar parameter per column and row, row after row,
    each cast as ``_unnest_insert`` casts its array's elements, so the rows stored are the
    same."""
    names = ", ".join(_quote(column.name) for column in table.c)
    casts = _casts(table)
    values = ", ".join(
        "("
        + ", ".join(
            f"${first_parameter + row * len(casts) + i}::{cast}" for i, cast in enumerate(casts)
        )
        + ")"
        for row in range(rows)
    )
    return f"INSERT INTO {_quote(table.name)} ({names}) SELECT * FROM (VALUES {values}) AS v"  # noqa: S608


def _insert_on_head(*, with_checkpoint: bool, scalar_entries: int) -> str:
    """A whole batch as one statement, committed on its own (``append_on_head``): the
    sequencer, a guard that the head is $1 (seq) and $2 (record hash), and the inserts, each
    made only if the guard holds (the settings a batch needs are the connection's, set when
    it connected). Returns how many entries were written: all of them, or none.

    The parameters after the head: the nodes' arrays, the checkpoint's values if signed,
    then the entries: ``scalar_entries`` rows of scalars, or (0) one array a column.

    The statement's snapshot is taken before the lock is waited for, so a guard may pass on
    a head that another writer has since extended; its INSERT of the same seq then fails on
    the primary key (a unique check sees committed rows), and the statement rolls back."""
    guarded = " WHERE EXISTS (SELECT FROM ok)"
    checkpoint_first = 3 + len(TREE_TABLE.c)
    entries_first = checkpoint_first + (len(CHECKPOINT_TABLE.c) if with_checkpoint else 0)
    if scalar_entries:
        entries = _scalar_insert(LOG_TABLE, entries_first, scalar_entries)
    else:
        entries = _unnest_insert(LOG_TABLE, entries_first)
    parts = [
        f"lock AS (SELECT pg_advisory_xact_lock({SEQUENCER_LOCK_ID:d}))",
        "ok AS (SELECT FROM lock, (SELECT seq, record_hash FROM audit_log"
        " ORDER BY seq DESC LIMIT 1) AS head WHERE head.seq = $1 AND head.record_hash = $2)",
        f"entries AS ({entries}{guarded} RETURNING 1)",
        f"nodes AS ({_unnest_insert(TREE_TABLE, 3)}{guarded})",
    ]
    if with_checkpoint:
        checkpoint = _scalar_insert(CHECKPOINT_TABLE, checkpoint_first, 1)
        parts.append(f"checkpoint AS ({checkpoint}{guarded})")
    return "WITH " + ", ".join(parts) + " SELECT count(*) FROM entries"  # noqa: S608


_PG_INSERT_SIGNED: Final = _insert_everything(with_checkpoint=True)
# By (signed, number of entries bound as scalars: 0 for arrays).
_PG_INSERT_ON_HEAD: Final = {
    (signed, entries): _insert_on_head(with_checkpoint=signed, scalar_entries=entries)
    for signed in (False, True)
    for entries in range(_SCALAR_ENTRIES + 1)
}
_PG_INSERT_UNSIGNED: Final = _insert_everything(with_checkpoint=False)
# One round trip: BEGIN, then the lock, in that order (a script of two statements). The
# lock's wait is bounded by the connection's lock_timeout (AsyncpgGroupCommit sets it).
_PG_TAKE_SEQUENCER: Final = f"BEGIN; SELECT pg_advisory_xact_lock({SEQUENCER_LOCK_ID:d})"
_PG_READ_HEAD: Final = "SELECT seq, record_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_PG_READ_LATEST_CHECKPOINT: Final = (
    "SELECT tree_size, root_hash, note FROM audit_checkpoint ORDER BY tree_size DESC LIMIT 1"
)
_PG_READ_NODES: Final = (
    "SELECT t.level, t.idx, t.hash FROM audit_tree AS t"
    " JOIN unnest($1::smallint[], $2::bigint[]) AS wanted (level, idx) USING (level, idx)"
)
# Each column's name, in the statements' order, and whether it is JSON: JSON columns go to
# asyncpg as text, encoded as SQLAlchemy's JSON type would encode them (json.dumps with its
# defaults). Worked out once, not per batch: iterating a Table's columns costs more than
# copying the values.
_ColumnPlan = tuple[tuple[str, bool], ...]


def _column_plan(table: Table) -> _ColumnPlan:
    return tuple((column.name, isinstance(column.type, JSON)) for column in table.c)


_LOG_COLUMNS: Final = _column_plan(LOG_TABLE)
_TREE_COLUMNS: Final = _column_plan(TREE_TABLE)
_CHECKPOINT_COLUMNS: Final = tuple(column.name for column in CHECKPOINT_TABLE.c)


class AsyncpgStore:
    """A store on asyncpg's connection. The caller has opened no transaction, and has set
    the session's settings (``PG_SETTINGS``, as ``AsyncpgGroupCommit`` does when it
    connects): this store's ``take_sequencer`` sends BEGIN with the lock, and the caller
    sends COMMIT (or drops the connection) afterwards."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def take_sequencer(self) -> None:
        await self._connection.execute(_PG_TAKE_SEQUENCER)

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
        arguments = [*_columns(_LOG_COLUMNS, entries), *_columns(_TREE_COLUMNS, nodes)]
        if checkpoint is None:
            await self._connection.execute(_PG_INSERT_UNSIGNED, *arguments)
            return
        arguments.extend(checkpoint[name] for name in _CHECKPOINT_COLUMNS)
        await self._connection.execute(_PG_INSERT_SIGNED, *arguments)

    async def insert_rows(self, table: Table, rows: list[Row]) -> None:
        # One statement for all the rows, as for the entries; few tables, so few statements.
        await self._connection.execute(_rows_insert(table), *_bound_columns(table, rows))


def _columns(plan: _ColumnPlan, rows: Sequence[Row]) -> list[list[Any]]:
    dumps = json.dumps
    return [
        [dumps(row[name]) for row in rows] if is_json else [row[name] for row in rows]
        for name, is_json in plan
    ]


def _values(plan: _ColumnPlan, row: Row) -> list[Any]:
    """One row's parameters, converted as ``_columns`` converts each column's."""
    dumps = json.dumps
    return [dumps(row[name]) if is_json else row[name] for name, is_json in plan]


@functools.cache
def _rows_insert(table: Table) -> str:
    # Built once a table: compiling the column types cost ~150 us a statement.
    return _unnest_insert(table, 1)


def _bound_columns(table: Table, rows: Sequence[Row]) -> list[list[Any]]:
    """A unit's rows as ``_columns`` gives the log's, for any table: JSON as text, and a
    column type's own conversion applied (``UTCDateTime`` refuses a naive time)."""
    columns = []
    for column in table.c:
        values = [row[column.name] for row in rows]
        if isinstance(column.type, JSON):
            values = [json.dumps(value) for value in values]
        elif isinstance(column.type, TypeDecorator):
            values = [column.type.process_bind_param(value, _PG_DIALECT) for value in values]
        columns.append(values)
    return columns


class AsyncpgGroupCommit:
    """The group commit on PostgreSQL, on one asyncpg connection of its own.

    The connection is opened by the first batch, from the engine's URL as the engine would
    open it (``gateway.db.asyncpg_connect_args``), and the append's settings
    (``PG_SETTINGS``: lock_timeout, synchronous_commit never off) are set on its session
    then, once, so a batch's first round trip is BEGIN with the sequencer. It is one
    connection a process beside the engine's pool: the log's one writer task writes one
    batch at a time, so batches never overlap (an overlapping batch raises RuntimeError).

    Whatever fails in a batch, the connection is terminated and a later batch opens
    another (see ``batch``). ``aclose`` closes it; a batch after that opens another.
    """

    def __init__(self, engine: AsyncEngine, *, lock_timeout_ms: int) -> None:
        self._connect_args = asyncpg_connect_args(engine)
        # Literals from integers, not parameters: the settings are one simple statement.
        self._settings = "SELECT " + PG_SETTINGS.format(
            lock_timeout=f"'{lock_timeout_ms:d}ms'", is_local="false"
        )
        self._connection: asyncpg.Connection | None = None
        self._in_batch = False

    async def append_on_head(
        self, head: Head, entries: list[Row], nodes: list[Row], checkpoint: Row | None
    ) -> bool:
        """``GroupCommitStore.append_on_head``: one round trip where ``batch`` makes four
        (BEGIN with the lock, the head, the INSERT, COMMIT), the statement its own
        transaction, on the same connection and as fail-closed as ``batch``."""
        arguments: list[Any] = [head.seq, head.record_hash, *_columns(_TREE_COLUMNS, nodes)]
        if checkpoint is not None:
            arguments.extend(checkpoint[name] for name in _CHECKPOINT_COLUMNS)
        scalar_entries = len(entries) if len(entries) <= _SCALAR_ENTRIES else 0
        if scalar_entries:
            for entry in entries:
                arguments += _values(_LOG_COLUMNS, entry)
        else:
            arguments += _columns(_LOG_COLUMNS, entries)
        statement = _PG_INSERT_ON_HEAD[checkpoint is not None, scalar_entries]
        async with self._turn() as connection:
            try:
                written = await connection.fetchval(statement, *arguments)
            except asyncpg.UniqueViolationError:
                return False  # another writer took this seq since the statement's snapshot
        return bool(written)

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[AppendStore]:
        """``GroupCommitStore.batch``, fail-closed: on any exception or cancellation in the
        batch (a statement refused, the server gone, the writer cancelled mid-statement)
        the connection is terminated before the exception goes on, which ends the
        transaction and frees the sequencer on the server, and the next batch connects
        again. A connection the server closed while it sat idle is passed over when
        asyncpg has read the close, else it fails the batch that takes it, closed."""
        async with self._turn() as connection:
            yield AsyncpgStore(connection)
            await connection.execute("COMMIT")

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[asyncpg.Connection]:
        """The connection for one batch, whichever path it takes. Batches never overlap
        (the log's one writer task): an overlapping one raises RuntimeError. Any exception
        or cancellation inside terminates the connection before it goes on."""
        if self._in_batch:
            raise RuntimeError("the group commit's batches must not overlap")
        self._in_batch = True
        try:
            connection = await self._connected()
            try:
                yield connection
            except BaseException:
                # The transaction must not outlive this batch, nor the connection be used
                # again in an unknown state: terminating it (synchronous, so a second
                # cancellation cannot interrupt it) makes the server roll back and free
                # the sequencer.
                self._connection = None
                connection.terminate()
                raise
        finally:
            self._in_batch = False

    async def _connected(self) -> asyncpg.Connection:
        connection = self._connection
        if connection is not None and not connection.is_closed():
            return connection
        self._connection = None
        connection = await asyncpg.connect(**self._connect_args)
        try:
            await connection.execute(self._settings)
        except BaseException:
            connection.terminate()
            raise
        self._connection = connection
        return connection

    async def aclose(self) -> None:
        """Close the connection, if one is open (``AuditLog.aclose`` calls this once its
        writer has finished; the engine's disposal does not reach this connection)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        # A connection that cannot be closed politely is aborted by asyncpg before it
        # raises: either way it is gone, and shutdown goes on.
        with contextlib.suppress(TimeoutError, *DATABASE_ERRORS):
            await connection.close(timeout=5)
