"""What every audit store is: the tables, the rows a batch writes, the append interface
with its contract, and the one place a database error becomes ``AuditUnavailable``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, NamedTuple, Protocol, cast

from sqlalchemy import Table, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gateway import db as database
from gateway.audit import merkle
from gateway.audit.models import AuditCheckpoint, AuditLogEntry, AuditTreeNode
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


@contextlib.contextmanager
def map_database_errors(action: str = "read") -> Iterator[None]:
    """The edge where a database error becomes ``AuditUnavailable``: every store and every
    read of the audit tables runs inside it, so no caller catches a driver's exception.

    ``gateway.db.map_database_errors`` with the audit log's error: only the failure's type
    goes in the message, the cause stays chained for the server log.
    """
    with database.map_database_errors(
        f"the audit log could not {action} the database ({{cause}})", error=AuditUnavailable
    ):
        yield


class AppendStore(Protocol):
    """Where the append path reads and writes, inside one transaction that the store's
    owner opened and will commit or roll back. ``AuditLog._write`` holds the logic
    (sequencer, head, tree edge, hashing, signing, crash safety); a store only runs its
    statements. A database failure in any method is raised as one of
    ``gateway.db.DATABASE_ERRORS``; the store's owner maps it (``map_database_errors``)."""

    async def take_sequencer(self) -> None:
        """Return once this transaction alone may append: every later read in it sees every
        append committed before. Raises if the lock is not had within the lock timeout
        (the transaction is then unusable and must be rolled back)."""
        ...

    async def read_head(self) -> Head | None:
        """The entry with the highest seq, as of after ``take_sequencer``; None if empty."""
        ...

    async def read_nodes(self, ids: set[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        """The stored tree nodes among ``ids``; a node not stored is absent, never guessed."""
        ...

    async def read_latest_checkpoint(self) -> LatestCheckpoint | None:
        """The checkpoint of the largest tree stored, None before the first."""
        ...

    async def insert(self, entries: list[Row], nodes: list[Row], checkpoint: Row | None) -> None:
        """Write entries, tree nodes and (when given) the checkpoint in this transaction.
        Nothing is visible to anyone before COMMIT, and a primary key refuses a second row
        for any seq, node or tree size, so a store can never fork the log, only fail."""
        ...

    async def insert_rows(self, table: Table, rows: list[Row]) -> None:
        """Write ``rows`` (every column of ``table`` each) in this transaction, converted as
        SQLAlchemy converts the columns' types: the rows a unit commits with its records
        (``AuditLog.append_unit``)."""
        ...


class GroupCommitStore(Protocol):
    """Where the group commit writes its batches: one per database, chosen once, when the
    log is made (``gateway.audit.stores.group_commit_store``)."""

    def batch(self) -> AbstractAsyncContextManager[AppendStore]:
        """One transaction for one batch. When the block exits normally the batch is
        committed and durable (PostgreSQL: COMMIT waited for the WAL flush; SQLite: the
        WAL fsynced, synchronous=FULL). When it exits with any exception, cancellation
        included, the transaction is rolled back before the exception goes on, and no
        lock or transaction outlives the block. A failure while committing leaves the
        outcome unknown: the batch is either wholly in the log or wholly absent.
        Database errors come out raw; the log maps them at its edge."""
        ...

    async def append_on_head(
        self, head: Head, entries: list[Row], nodes: list[Row], checkpoint: Row | None
    ) -> bool:
        """A whole batch in one exchange with the database, for a writer that already knows
        the head: take the sequencer and, only if the entry with the highest seq is then
        ``head`` (its seq and record hash), write entries, nodes and (when given) the
        checkpoint and commit them, durable as ``batch`` commits; return True. If the head
        is another, or a primary key refuses a row because another writer committed it
        meanwhile, write nothing and return False: the caller takes the full path
        (``batch``), which reads what the head now is. A store that cannot do this in one
        exchange returns False at once. When this raises, nothing is left held and, as
        for ``batch``, a failure while committing leaves the outcome unknown. Database
        errors come out raw; the log maps them at its edge."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds of its own (a connection, a thread)."""
        ...


async def read_nodes(
    db: AsyncSession | AsyncConnection, ids: set[merkle.NodeId]
) -> dict[merkle.NodeId, bytes]:
    """The stored tree nodes among ``ids``, read through SQLAlchemy."""
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
