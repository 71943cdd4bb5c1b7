"""Where the audit log reads and writes: one interface (``base.AppendStore`` and
``base.GroupCommitStore``, each method's contract written on it), one module per driver,
and the factory that picks the driver once, when the log is made.

base.py              the tables, the interfaces and their contracts, the error edge
sqlalchemy_store.py  appends in a caller's transaction (db=), and SQLite that is not a file
asyncpg_store.py     PostgreSQL's group commit on an asyncpg connection of its own
sqlite_store.py      SQLite's group commit on a sqlite3 connection in a thread of its own
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.stores.asyncpg_store import AsyncpgGroupCommit, AsyncpgStore
from gateway.audit.stores.base import (
    SEQUENCER_LOCK_ID,
    AppendStore,
    GroupCommitStore,
    Head,
    LatestCheckpoint,
    Row,
    map_database_errors,
    read_nodes,
)
from gateway.audit.stores.sqlalchemy_store import SQLAlchemyGroupCommit, SQLAlchemyStore
from gateway.audit.stores.sqlite_store import SqliteStore
from gateway.db import sqlite_file

__all__ = [
    "SEQUENCER_LOCK_ID",
    "AppendStore",
    "AsyncpgStore",
    "GroupCommitStore",
    "Head",
    "LatestCheckpoint",
    "Row",
    "SQLAlchemyStore",
    "SqliteStore",
    "group_commit_store",
    "map_database_errors",
    "read_nodes",
]


def group_commit_store(engine: AsyncEngine, *, lock_timeout_ms: int) -> GroupCommitStore:
    """The store the group commit of ``engine``'s database uses, chosen once.

    PostgreSQL on asyncpg: an asyncpg connection of the log's own. A SQLite file: a sqlite3
    connection of the log's own. An in-memory or URI SQLite database is reachable only
    through the engine, and so is PostgreSQL on another driver.
    """
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg":
        return AsyncpgGroupCommit(engine, lock_timeout_ms=lock_timeout_ms)
    path = sqlite_file(engine)
    if path is not None:
        return SqliteStore(path, dialect=engine.dialect, lock_timeout_ms=lock_timeout_ms)
    return SQLAlchemyGroupCommit(engine, lock_timeout_ms=lock_timeout_ms)
