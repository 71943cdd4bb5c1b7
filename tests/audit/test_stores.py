"""The store interface: the driver is chosen once, from the engine, and a database error
leaves a store only as AuditUnavailable, without the database's own words."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from gateway.audit.stores import group_commit_store, map_database_errors
from gateway.audit.stores.asyncpg_store import AsyncpgGroupCommit
from gateway.audit.stores.sqlalchemy_store import SQLAlchemyGroupCommit
from gateway.audit.stores.sqlite_store import SqliteStore
from gateway.errors import AuditUnavailable


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:///{tmp}/audit.db", SqliteStore),
        ("sqlite+aiosqlite:///:memory:", SQLAlchemyGroupCommit),
        ("sqlite+aiosqlite:///file:audit?mode=memory&uri=true", SQLAlchemyGroupCommit),
        ("sqlite+aiosqlite:///{tmp}/audit.db?timeout=5", SQLAlchemyGroupCommit),
        ("postgresql+asyncpg://nobody@127.0.0.1:1/none", AsyncpgGroupCommit),
        # The group commit's own connection is asyncpg's, from asyncpg's connect arguments.
        ("postgresql+psycopg://nobody@127.0.0.1:1/none", SQLAlchemyGroupCommit),
    ],
    ids=["sqlite-file", "sqlite-memory", "sqlite-uri", "sqlite-query", "postgresql", "psycopg"],
)
async def test_the_group_commit_store_is_chosen_from_the_engine(
    tmp_path: Path, url: str, expected: type
) -> None:
    # The library's engine: gateway.db's pool settings do not fit an in-memory database.
    engine = create_async_engine(url.format(tmp=tmp_path), poolclass=NullPool)
    try:
        store = group_commit_store(engine, lock_timeout_ms=1000)
        assert type(store) is expected
        await store.aclose()
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError("unable to open /secret/path.db"),
        OperationalError("SELECT 1", {}, ConnectionRefusedError("postgres://u:pw@host")),
        ConnectionRefusedError("postgres://u:pw@host"),
    ],
    ids=["sqlite3", "sqlalchemy", "oserror"],
)
def test_a_database_error_becomes_audit_unavailable_without_its_text(error: Exception) -> None:
    with pytest.raises(AuditUnavailable) as raised, map_database_errors("read"):
        raise error
    assert raised.value.__cause__ is error
    assert "secret" not in raised.value.message and "pw" not in raised.value.message
    assert raised.value.message.startswith("the audit log could not read the database (")


def test_other_errors_pass_the_edge_unchanged() -> None:
    with pytest.raises(ValueError, match="not a database error"), map_database_errors():
        raise ValueError("not a database error")


def test_the_sqlite_binding_converts_as_the_column_types_do() -> None:
    # Each column's value in the INSERT's order, through its own bind processor only.
    from datetime import UTC, datetime

    from sqlalchemy.dialects import sqlite

    from gateway.audit.stores.base import LOG_TABLE
    from gateway.audit.stores.sqlite_store import SqliteStore

    store = SqliteStore(":memory:", dialect=sqlite.dialect(), lock_timeout_ms=1000)
    row = {column.name: None for column in LOG_TABLE.c}
    row |= {"seq": 3, "time": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "detail": {"a": [1]}}
    row |= {"reason_codes": ["x"], "request_id": "r"}
    (_, bind), (_, tree_bind), _ = store._inserts
    expected = []
    for column in LOG_TABLE.c:
        process = column.type.dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
        expected.append(row[column.name] if process is None else process(row[column.name]))
    assert bind(row) == tuple(expected)
    assert tree_bind({"level": 0, "idx": 1, "hash": b"h"}) == (0, 1, b"h")
