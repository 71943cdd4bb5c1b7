"""Database engine and session factory. One database holds every facegate table."""

from __future__ import annotations

import contextlib
import sqlite3
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


# Connections kept open. A request holds up to two at once (a read, and its turn in the audit
# log's batch); connections past the pool are opened and closed per checkout, which costs a
# thread and the pragmas on SQLite and a backend on PostgreSQL, so the pool is sized for
# the concurrency one process serves rather than the library's default of 5.
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


def request_reader(engine: AsyncEngine) -> AsyncEngine:
    """The engine for the request path's single-statement reads (a case session, a warrant).

    On PostgreSQL it runs them in autocommit: one statement needs no transaction, and
    skipping BEGIN and the ROLLBACK on return saves two of its three round trips (a read
    measured 0.52 ms through an ORM session, 0.21 ms this way). SQLite keeps the engine as
    it is: switching its isolation level per checkout costs more than it saves.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


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
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
