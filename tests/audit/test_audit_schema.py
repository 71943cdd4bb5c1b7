"""The audit_log table as migrated: matches the model, refuses changes, downgrades cleanly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import cast

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import guards
from gateway.audit.models import AuditLogEntry
from gateway.audit.records import AuditRecord
from gateway.db import create_engine
from gateway.migrate import alembic_config, upgrade_async

AUDIT_LOG = cast(sa.Table, AuditLogEntry.__table__)


def test_every_record_field_is_a_column() -> None:
    columns = set(AUDIT_LOG.columns.keys())
    assert set(AuditRecord.model_fields) <= columns
    assert columns - set(AuditRecord.model_fields) == {"seq", "prev_hash", "record_hash"}


async def test_migration_creates_the_table_the_model_describes(engine: AsyncEngine) -> None:
    def differences(connection: sa.Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        metadata = sa.MetaData()
        AUDIT_LOG.to_metadata(metadata)
        return list(compare_metadata(context, metadata))

    async with engine.connect() as connection:
        diffs = await connection.run_sync(differences)
    audit_diffs = [d for d in diffs if "audit_log" in repr(d)]
    assert audit_diffs == []


async def _seed_one(engine: AsyncEngine) -> None:
    # A row written straight through the table: these tests are about the table alone.
    async with engine.begin() as connection:
        await connection.execute(
            sa.insert(AUDIT_LOG).values(
                seq=1,
                time=datetime.now(UTC),
                request_id="r",
                event_type="decision",
                agency="metro-pd",
                reason_codes=[],
                obligations={},
                probe_digests=[],
                detail={},
                prev_hash="0" * 64,
                record_hash="1" * 64,
            )
        )


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET agency = 'other' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 1"],
)
async def test_database_refuses_update_and_delete(engine: AsyncEngine, statement: str) -> None:
    await _seed_one(engine)
    with pytest.raises(DBAPIError, match=guards.APPEND_ONLY_MESSAGE):
        async with engine.begin() as connection:
            await connection.exec_driver_sql(statement)
    async with engine.connect() as connection:
        agency = await connection.scalar(sa.text("SELECT agency FROM audit_log WHERE seq = 1"))
    assert agency == "metro-pd"


async def test_database_refuses_delete_without_where(engine: AsyncEngine) -> None:
    # SQLite would truncate a whole table without visiting rows, were there no trigger.
    await _seed_one(engine)
    with pytest.raises(DBAPIError, match=guards.APPEND_ONLY_MESSAGE):
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DELETE FROM audit_log")


@pytest.mark.postgres
async def test_postgres_refuses_truncate(postgres_url: str) -> None:
    await upgrade_async(postgres_url)
    engine = create_engine(postgres_url)
    try:
        await _seed_one(engine)
        with pytest.raises(DBAPIError, match=guards.APPEND_ONLY_MESSAGE) as refused:
            async with engine.begin() as connection:
                await connection.exec_driver_sql("TRUNCATE audit_log")
        assert getattr(refused.value.orig, "sqlstate", None) == "42501"
        async with engine.connect() as connection:
            count = await connection.scalar(sa.text("SELECT count(*) FROM audit_log"))
        assert count == 1
    finally:
        await engine.dispose()


def test_guards_refuse_unknown_dialects() -> None:
    with pytest.raises(ValueError, match="mysql"):
        guards.install_statements("mysql")
    with pytest.raises(ValueError, match="mysql"):
        guards.remove_statements("mysql")


async def test_downgrade_removes_table_and_guards(migrated_database_url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(migrated_database_url), "base")
    engine = create_engine(migrated_database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
            if engine.dialect.name == "postgresql":
                functions = await connection.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_proc WHERE proname = 'audit_log_refuse_change'"
                    )
                )
                assert functions == 0
    finally:
        await engine.dispose()
    assert "audit_log" not in tables
