"""The SQLAlchemy store: appends made in a caller's transaction (``append(db=...)``), and
the group commit of SQLite databases that are not a plain file (in-memory, URI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from sqlalchemy import Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
    read_nodes,
)
from gateway.errors import AuditUnavailable

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
# The settings of an append: the lock wait is bounded, and a server or role configured
# with synchronous_commit=off cannot make this commit non-durable. {lock_timeout} is a
# bind parameter or a literal; {is_local} is true for the transaction only (a pooled
# connection, which others use next), false for the session (the group commit's connection
# of its own, asyncpg_store.AsyncpgGroupCommit, which sets them once when it connects).
PG_SETTINGS: Final = (
    "set_config('lock_timeout', {lock_timeout}, {is_local}),"
    " set_config('synchronous_commit',"
    "  CASE current_setting('synchronous_commit')"
    "   WHEN 'off' THEN 'on' ELSE current_setting('synchronous_commit') END,"
    "  {is_local})"
)
# The settings sit in a subquery that OFFSET 0 keeps from being flattened, so they take
# effect before the lock is waited for, in the same round trip.
_PG_TAKE_SEQUENCER: Final = text(
    "SELECT pg_advisory_xact_lock(:lock_id) FROM ("  # noqa: S608 (constants only)
    f" SELECT {PG_SETTINGS.format(lock_timeout=':lock_timeout', is_local='true')} OFFSET 0"
    ") AS settings"
)
# Marks a pooled SQLite connection whose busy_timeout and synchronous are set for appends.
_SQLITE_SETTINGS_APPLIED: Final = "facegate_audit_sqlite_settings"


class SQLAlchemyStore:
    """An ``AppendStore`` on a SQLAlchemy connection whose transaction its owner controls."""

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

    async def insert_rows(self, table: Table, rows: list[Row]) -> None:
        await self._connection.execute(insert(table), rows)


class SQLAlchemyGroupCommit:
    """The group commit through the engine: one ``engine.begin()`` per batch."""

    def __init__(self, engine: AsyncEngine, *, lock_timeout_ms: int) -> None:
        self._engine = engine
        self._lock_timeout_ms = lock_timeout_ms

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[AppendStore]:
        # engine.begin() commits when the block exits normally and rolls back otherwise.
        async with self._engine.begin() as connection:
            yield SQLAlchemyStore(connection, lock_timeout_ms=self._lock_timeout_ms)

    async def append_on_head(
        self, head: Head, entries: list[Row], nodes: list[Row], checkpoint: Row | None
    ) -> bool:
        # The databases this store serves (in-memory and URI SQLite) gain nothing from it.
        return False

    async def aclose(self) -> None:
        return None
