"""Alembic environment: runs migrations over the async engine facegate uses at run time."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

import gateway.audit.models
import gateway.auth.models
import gateway.console.sessions
import gateway.context.warrants
import gateway.leads.models
import gateway.policy.revisions  # noqa: F401  (registers every table on Base.metadata)
from gateway.db import Base, create_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


# Replicas that start together all run `facegate db upgrade`. On PostgreSQL (transactional
# DDL) the first takes this lock and upgrades; the others wait for its commit, then find the
# schema at head and do nothing, instead of racing to create the same tables.
MIGRATION_LOCK_ID = 0x66616365_6D696772  # "facemigr"


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
