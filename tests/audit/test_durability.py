"""The PostgreSQL group commit is durable whatever the server or database is configured with:
the setting in force on the writer's own connection, inside each batch's transaction, right
before its COMMIT, is what decides whether that COMMIT waits for the WAL flush."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.audit import merkle
from gateway.audit.checkpoint import Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import AppendedEntry
from gateway.audit.stores import AppendStore, AsyncpgStore
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async
from tests.audit.conftest import checker_of

RecordFactory = Callable[..., AuditRecord]


class ObservedLog(AuditLog):
    """Notes, for each group-commit batch, the synchronous_commit in force on the writer's
    connection once everything is written and only COMMIT remains."""

    in_force: list[str]

    async def _write(
        self,
        store: AppendStore,
        records: list[AuditRecord],
        *,
        sign: bool,
        cached: tuple[int, bytes, merkle.CompactRange] | None = None,
    ) -> list[AppendedEntry | ValueError]:
        results = await super()._write(store, records, sign=sign, cached=cached)
        assert isinstance(store, AsyncpgStore), "not the group commit path"
        connection: Any = store._connection
        self.in_force.append(
            await connection.fetchval("SELECT current_setting('synchronous_commit')")
        )
        return results


@pytest.mark.postgres
@pytest.mark.parametrize("configured", ["off", "local"])
async def test_group_commit_waits_for_the_wal_flush_even_if_configured_off(
    postgres_url: str, record_factory: RecordFactory, configured: str
) -> None:
    await upgrade_async(postgres_url)
    database = postgres_url.rsplit("/", 1)[1]
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(
                f'ALTER DATABASE "{database}" SET synchronous_commit = {configured}'
            )
            await connection.commit()
        await engine.dispose()  # new connections pick up the database's setting
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("SHOW synchronous_commit")) == configured

        log = ObservedLog(session_factory(engine), signer=Signer.generate("test.example/log"))
        log.in_force = []
        await asyncio.gather(*(log.append(record_factory(request_id=f"r{i}")) for i in range(20)))
        await log.append(record_factory(request_id="last"))
        await log.aclose()

        assert log.in_force, "no batch was observed"
        # "off" would acknowledge a batch before its WAL is on disk; "local" and stronger
        # levels flush it locally, and are kept as configured.
        expected = "on" if configured == "off" else configured
        assert log.in_force == [expected] * len(log.in_force)
        assert (await checker_of(log).verify()).entries_checked == 21
    finally:
        await engine.dispose()
