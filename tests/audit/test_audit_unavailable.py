"""An audit log that cannot reach its database raises AuditUnavailable, and says no secrets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord, EventType
from gateway.audit.schemas import AuditQuery
from gateway.db import create_engine, session_factory
from gateway.errors import AuditUnavailable
from tests.audit.conftest import checker_of, records_of

SECRET = "s3cret-pa55"


def _record() -> AuditRecord:
    return AuditRecord(time=datetime.now(UTC), request_id="r", event_type=EventType.DECISION)


async def assert_every_operation_unavailable(url: str) -> None:
    engine = create_engine(url)
    try:
        audit_log = AuditLog(session_factory(engine))
        for operation in (
            lambda: audit_log.append(_record()),
            lambda: records_of(audit_log).query(AuditQuery()),
            lambda: checker_of(audit_log).verify(),
        ):
            with pytest.raises(AuditUnavailable) as raised:
                await operation()
            assert raised.value.__cause__ is not None
            assert SECRET not in str(raised.value)
            assert url not in str(raised.value)
            assert raised.value.status_code == 503
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_on_a_closed_port() -> None:
    await assert_every_operation_unavailable(
        f"postgresql+asyncpg://facegate:{SECRET}@127.0.0.1:1/facegate"
    )


@pytest.mark.postgres
async def test_postgres_database_that_does_not_exist() -> None:
    await assert_every_operation_unavailable(
        f"postgresql+asyncpg://postgres:{SECRET}@127.0.0.1:5432/facegate_no_such_database"
    )


async def test_sqlite_in_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    await assert_every_operation_unavailable(
        f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / SECRET / 'facegate.db'}"
    )


@pytest.fixture
async def unmigrated_url(database_url: str) -> AsyncIterator[str]:
    yield database_url


async def test_database_without_the_audit_table(unmigrated_url: str) -> None:
    # Reachable but never migrated: the log must not pretend to have written anything.
    await assert_every_operation_unavailable(unmigrated_url)
