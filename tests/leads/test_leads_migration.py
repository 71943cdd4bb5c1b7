"""Migration 0006: the lead tables and principals' training, as the models describe them,
on SQLite and PostgreSQL, and a clean downgrade to 0005."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.db import Base, create_engine
from gateway.migrate import alembic_config

TABLES = ("leads", "lead_reviews", "lead_actions", "authorisations")


async def test_the_migration_creates_what_the_models_describe(migrated_database_url: str) -> None:
    def differences(connection: sa.Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    engine = create_engine(migrated_database_url)
    try:
        async with engine.connect() as connection:
            diffs = await connection.run_sync(differences)
    finally:
        await engine.dispose()
    ours = [d for d in diffs if any(t in repr(d) for t in (*TABLES, "trained_until"))]
    assert ours == []


async def test_downgrade_to_0005_removes_them(migrated_database_url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(migrated_database_url), "0005")
    engine = create_engine(migrated_database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
            columns = await connection.run_sync(
                lambda c: [col["name"] for col in sa.inspect(c).get_columns("principals")]
            )
    finally:
        await engine.dispose()
    assert not set(TABLES) & set(tables)
    assert "trained_until" not in columns
