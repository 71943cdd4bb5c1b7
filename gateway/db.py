"""Database engine and session factory. One database holds every facegate table."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
from sqlalchemy import DateTime, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from gateway.errors import ServiceUnavailable, StorageUnavailable

# What a failing database raises: SQLAlchemy's errors, the driver's OSError for a
# connection refused before SQLAlchemy could wrap it (asyncpg does this), and asyncpg's own
# errors where facegate talks to the driver directly (the audit log's group commit).
DATABASE_ERRORS: Final = (
    SQLAlchemyError,
    sqlite3.Error,  # the audit log's own SQLite connection (gateway.audit.stores.sqlite_store)
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # Not an InterfaceError: what asyncpg raises for a statement sent on a connection whose
    # server went away mid-protocol ("another operation is in progress"); SQLAlchemy maps
    # it to its InternalError, so only a read on the driver itself sees it.
    asyncpg.exceptions.InternalClientError,
)


@contextlib.contextmanager
def map_database_errors(
    message: str, *, error: type[ServiceUnavailable] = StorageUnavailable
) -> Iterator[None]:
    """The storage edge: a database error raised inside becomes ``error(message)``, the
    driver's exception chained as its cause for the server log. ``message`` may name the
    failure's type as ``{cause}`` (the exception's text is never used: it may hold the URL
    or SQL). Every read and write of the database runs inside one, so no caller catches
    ``DATABASE_ERRORS``; the pipeline and the API handle one exception of the tree."""
    try:
        yield
    except DATABASE_ERRORS as exc:
        cause = getattr(exc, "orig", None) or exc
        raise error(message.format(cause=type(cause).__name__)) from exc


class Base(DeclarativeBase):
    """Declarative base for every facegate table."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The path of `engine`'s database when it is a SQLite file, which a sqlite3 connection
    of facegate's own may open beside the engine's (the audit log's group commit, the
    request path's reads); else None. An in-memory or URI SQLite database is None: another
    connection would not reach the same database, so it is reachable only through the engine."""
    database = engine.url.database
    if (
        engine.dialect.name == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not engine.url.query
    ):
        return database
    return None


# Connections kept open. A request holds up to two at once (a read, and its turn in the audit
# log's batch where that goes through the engine: an in-memory SQLite database; a SQLite file
# and PostgreSQL on asyncpg have the group commit write on a connection of its own);
# connections past the pool are opened and closed per checkout, which costs a thread and the
# pragmas on SQLite and a backend on PostgreSQL, so the pool is sized for the concurrency
# one process serves rather than the library's default of 5.
POOL_SIZE = 32


def create_engine(url: str) -> AsyncEngine:
    """An async engine. SQLite gets WAL with full fsync: an audit commit must survive power loss."""
    if is_sqlite(url):
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=POOL_SIZE, max_overflow=POOL_SIZE
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            apply_sqlite_pragmas(dbapi_connection)

        return engine
    # No pre-ping: it costs a round trip on every checkout of the request path. A connection
    # gone stale after a database restart fails one request, closed (503), and is replaced.
    return create_async_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_SIZE)


def apply_sqlite_pragmas(connection: Any) -> None:
    """What every SQLite connection facegate opens needs: WAL, a full fsync per commit (an
    audit commit must survive power loss), foreign keys. `connection` is a DB-API one."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# The request path's own PostgreSQL connections (RequestReader): at most this many per process,
# opened on demand, on top of the engine's. Each holds one short SELECT at a time, so a few
# serve many concurrent requests (a read waits its turn rather than opening one more); the
# database's max_connections (100 by default) is shared by every replica and the engine.
# A gateway process holds at most 2 * POOL_SIZE + READ_POOL_SIZE + 1 PostgreSQL connections:
# the engine's pool and overflow, these, and the audit log's group commit's one
# (gateway.audit.stores.asyncpg_store.AsyncpgGroupCommit).
READ_POOL_SIZE: Final = 8

# What SQLAlchemy's asyncpg dialect takes from the URL for itself, not for asyncpg.connect.
_SQLALCHEMY_ONLY_ARGS: Final = ("prepared_statement_cache_size", "prepared_statement_name_func")


def asyncpg_connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """``asyncpg.connect``'s (and ``asyncpg.create_pool``'s) keyword arguments for the
    database of `engine`, a PostgreSQL engine on asyncpg: what SQLAlchemy's dialect derives
    from the URL (host, port, user, password, database, the query's driver options), less
    what the dialect keeps for itself. For the connections facegate opens beside the
    engine's pool (`RequestReader`, the audit log's group commit), so they reach the same
    database as the engine, however its URL is written."""
    if engine.dialect.driver != "asyncpg":
        raise ValueError(f"not an asyncpg engine: {engine.dialect.driver}")
    _, connect_args = engine.dialect.create_connect_args(engine.url)
    for name in _SQLALCHEMY_ONLY_ARGS:
        connect_args.pop(name, None)
    return dict(connect_args)


class RequestReader:
    """The request path's single-statement reads: a case session, a warrant, a case's
    refused authorisations. Every one is read from the database when it is asked for,
    never from a cache, so what was committed before the call (a revocation) is seen.

    Each read takes the first of these its database allows; the callers hold the SQL for
    each (gateway.auth.sessions, gateway.context.warrants, gateway.leads.refusals):

    - PostgreSQL on asyncpg (`on_asyncpg`, `fetchrow`): a pool of the reader's own
      (`_ReadConnections`, configured from the engine's URL, lent without asyncpg's
      pool or its reset on return). A checkout from SQLAlchemy's pool around the driver's
      connection (Engine.raw_connection, the pool's fairy, a greenlet hop each way) cost
      about 0.1 ms of CPU a read, as much as the prepared SELECT itself (issue 17).
    - A SQLite file (`on_sqlite_file`, `sqlite_fetchall`): a sqlite3 connection of the
      reader's own, the statement run on the calling thread (`_SqliteReads`). Through
      SQLAlchemy on aiosqlite each statement was a hand-off to the connection's thread and
      back, and the hand-offs, not SQLite, were most of a read's cost (issue 17).
    - Anything else (an in-memory or URI SQLite database, another driver): `engine`,
      through SQLAlchemy; on PostgreSQL in autocommit (one statement needs no transaction;
      skipping BEGIN and the ROLLBACK on return saves two of three round trips).

    Open the reader with `open`, close it with `aclose` (gateway.services does both with
    the app's lifespan).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        connections: _ReadConnections | None,
        sqlite: _SqliteReads | None = None,
    ) -> None:
        self.engine = engine
        self._connections = connections
        self._sqlite = sqlite

    @classmethod
    async def open(cls, engine: AsyncEngine) -> RequestReader:
        """A reader over `engine`'s database. Opens no connection: the first read does, and
        a database that cannot be reached fails that read (StorageUnavailable), not this."""
        if engine.dialect.name != "postgresql":
            path = sqlite_file(engine)
            return cls(engine, None, None if path is None else _SqliteReads(path))
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        if engine.dialect.driver != "asyncpg":
            return cls(engine, None)
        connections = await _ReadConnections.open(asyncpg_connect_args(engine), size=READ_POOL_SIZE)
        return cls(engine, connections)

    @property
    def on_asyncpg(self) -> bool:
        """Whether `fetchrow` may be called: the database is PostgreSQL on asyncpg."""
        return self._connections is not None

    @property
    def on_sqlite_file(self) -> bool:
        """Whether `sqlite_fetchall` may be called: the database is a SQLite file."""
        return self._sqlite is not None

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        """The first row of one statement in asyncpg's SQL (prepared once per connection by
        its statement cache), or None; in autocommit (asyncpg opens no transaction). Only
        when `on_asyncpg`.

        Raises what the driver raised (the caller's storage edge, `map_database_errors`,
        maps it). Whatever broke (the server gone, the statement refused, the task
        cancelled mid-read), the connection is in an unknown state: closed, never used
        again; a later read opens another. One the server closed while it sat idle is
        passed over when the close has been read, else it fails the read that takes it."""
        if self._connections is None:
            raise RuntimeError("fetchrow reads PostgreSQL on asyncpg only (see on_asyncpg)")
        return await self._connections.fetchrow(query, *args)

    def sqlite_fetchall(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        """Every row of one SELECT in SQLite's SQL (`?` parameters), as sqlite3 returns
        them (times as the text UTCDateTime stored, JSON as text, booleans as 0 or 1). Only
        when `on_sqlite_file`; the contract is `_SqliteReads.fetchall`'s.

        Synchronous: it runs on the calling thread, the event loop's, for as long as the
        statement takes (one indexed SELECT: tens of microseconds), and at most
        `SQLITE_READ_BUSY_TIMEOUT_MS` more when the database is locked against readers.
        Raises what sqlite3 raised (the caller's storage edge maps it)."""
        if self._sqlite is None:
            raise RuntimeError("sqlite_fetchall reads a SQLite file only (see on_sqlite_file)")
        return self._sqlite.fetchall(query, args)

    async def aclose(self) -> None:
        """Close the reader's connections; a read still running closes its own when it
        returns. The engine is its owner's to dispose of."""
        if self._connections is not None:
            await self._connections.aclose()
        if self._sqlite is not None:
            self._sqlite.close()


# How long a read of a SQLite file waits for a lock before it fails (closed: the request
# is refused, 503). It waits on the event loop's thread, stopping every request meanwhile,
# so it is short. In WAL mode a reader takes no lock a writer or a checkpoint holds: it
# waits only while a connection recovers the WAL after a crash or the last connection of
# another process closes the database (https://www.sqlite.org/wal.html, "Sometimes
# Queries Return SQLITE_BUSY"), each a matter of milliseconds.
SQLITE_READ_BUSY_TIMEOUT_MS: Final = 100


class _SqliteReads:
    """One sqlite3 connection to a SQLite file, opened by the first read, used only for
    SELECTs (`PRAGMA query_only`), each run to completion on the calling thread.

    Fresh, never cached: the connection is in autocommit (sqlite3 opens no transaction),
    and `fetchall` steps every statement to its end, which ends its read transaction. So
    each statement reads the newest snapshot when it starts: everything committed before
    it was asked for, through the engine, the audit log's connection or another process.
    A statement left unfinished would keep its snapshot for the statements after it.

    Not blocked by writers: the database is in WAL mode (`apply_sqlite_pragmas`, as every
    connection of facegate's), where a reader reads the last commit while a writer writes
    and commits (and fsyncs) and while a checkpoint copies the WAL into the database.
    Statements stay prepared in sqlite3's statement cache, keyed by their text. Measured
    (issue 17): two other processes committing with a full fsync and checkpointing
    (TRUNCATE) made none of 6,400 reads wait for a lock, with a busy timeout of 0.

    A lock (threading) serialises the rare case of two threads reading at once (tests
    whose client runs the app in threads of its own); the event loop is the only reader in
    a server, so it never waits on it. A statement that failed leaves the connection in an
    unknown state: it is closed, and the next read opens another.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._path,
            timeout=SQLITE_READ_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # autocommit: no transaction outlives a statement
            check_same_thread=False,  # used under self._lock, from whichever thread reads
        )
        try:
            apply_sqlite_pragmas(connection)
            connection.execute("PRAGMA query_only=ON")
        except BaseException:
            connection.close()
            raise
        return connection

    def fetchall(self, query: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._connection is None:
                self._connection = self._open()
            connection = self._connection
            try:
                rows: list[tuple[Any, ...]] = connection.execute(query, args).fetchall()
            except BaseException:
                self._connection = None
                connection.close()
                raise
            return rows

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class _ReadConnections:
    """At most `size` asyncpg connections of the reader's own, opened on demand, each
    lent to one read at a time and taken back when it has finished.

    Not asyncpg's Pool, whose every checkout went through a holder and a proxy and whose
    every return ran in a task of its own (asyncio.shield) under a timeout, with a timer
    set for the idle connection (issue 17). A read needs less of a pool: nothing it does
    outlives its statement (no transaction, no session setting), so a connection goes back
    as it is, without a reset (asyncpg's is a round trip of RESET ALL, UNLISTEN and advisory
    unlocks), and goes back at once, in the reading task.

    - A read that fails, or is cancelled mid-statement, leaves its connection in an
      unknown state: it is terminated, never lent again, and its place freed for another.
    - One the server closed while it sat idle is passed over when the close has been read
      (`is_closed`), else it fails the read that takes it.
    - A read finding all `size` connections lent waits for one to come back (or for a
      place to open one in), in turn.
    - The last connection returned is lent first, as asyncpg's pool does: the fewest stay
      warm. Idle ones stay open until `aclose` (asyncpg's pool closed one idle for five
      minutes): at most `size` of them, inside the connection budget above.
    """

    def __init__(self, connect_args: dict[str, Any], *, size: int) -> None:
        self._connect_args = connect_args
        self._size = size
        self._idle: list[asyncpg.Connection] = []
        self._counted = 0  # connections open or being opened, idle or lent
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @classmethod
    async def open(cls, connect_args: dict[str, Any], *, size: int) -> _ReadConnections:
        return cls(connect_args, size=size)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        connection = self._idle.pop() if self._idle else None
        if connection is None or connection.is_closed():
            connection = await self._take(connection)
        try:
            row: asyncpg.Record | None = await connection.fetchrow(query, *args)
        except BaseException:
            self._drop(connection)
            raise
        if self._closed:
            self._drop(connection)
        else:
            self._idle.append(connection)
            if self._waiting:
                self._wake()
        return row

    async def _take(self, closed: asyncpg.Connection | None) -> asyncpg.Connection:
        """A connection for one read: an idle one still open, else a new one if there is
        room, else the first to come back. `closed`: one taken idle and found closed."""
        if closed is not None:
            self._drop(closed)
        first = True
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection
                self._drop(connection)
            if self._closed:
                raise asyncpg.InterfaceError("the request reader is closed")
            if self._counted < self._size:
                self._counted += 1
                try:
                    opened: asyncpg.Connection = await asyncpg.connect(**self._connect_args)
                except BaseException:
                    self._counted -= 1
                    self._wake()
                    raise
                return opened
            # Woken, but another read took the connection first: first in line again.
            waiter = asyncio.get_running_loop().create_future()
            (self._waiting.append if first else self._waiting.appendleft)(waiter)
            first = False
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken and cancelled at once: the turn passes on
                else:
                    self._waiting.remove(waiter)
                raise

    def _drop(self, connection: asyncpg.Connection) -> None:
        connection.terminate()
        self._counted -= 1
        self._wake()

    def _wake(self) -> None:
        """Let the first waiting read look again: a connection came back or a place freed."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        # A connection that cannot be closed politely is aborted by asyncpg before it
        # raises: either way it is gone, and shutdown goes on. A read still running
        # terminates its own when it ends.
        self._closed = True
        idle, self._idle = self._idle, []
        self._counted -= len(idle)
        for connection in idle:
            with contextlib.suppress(TimeoutError, *DATABASE_ERRORS):
                await connection.close(timeout=5)
        while self._waiting:
            self._wake()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant, stored in UTC and always read back aware in UTC.

    SQLite has no time zone type and SQLAlchemy writes only the wall-clock digits there,
    so converting to UTC before writing is what keeps the instant (and string order in
    range filters) right. Naive values are refused rather than guessed at. The one column
    type of every facegate time (audit log, principals, keys, sessions, warrants).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("facegate stores only timezone-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else stored_utc(value)


def stored_utc(value: datetime | str) -> datetime:
    """A UTCDateTime column's value as a driver returns it, read back as UTCDateTime reads
    it: aware, in UTC. asyncpg returns timestamptz as an aware datetime; sqlite3 returns
    the text SQLAlchemy's SQLite DateTime wrote (UTC digits, no offset)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
