"""The request path's read of a case session (read_case_session), against a real database:
the same session as the SQLAlchemy read, no cache between a revocation and the next
request, and a failing database refused rather than taken for a session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.models import PrincipalRow
from gateway.auth.principals import Role, create_principal
from gateway.auth.secrets import MasterKey
from gateway.auth.sessions import (
    load_case_session,
    open_case_session,
    read_case_session,
    revoke_case_session,
)
from gateway.case import CaseContext, LegalBasis
from gateway.db import RequestReader, create_engine, session_factory
from gateway.errors import StorageUnavailable

NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
MASTER = MasterKey(b"k" * 32)
CONTEXT = CaseContext(
    purpose="criminal_investigation",
    case_number="2026-1",
    offense="homicide",
    legal_basis=LegalBasis.WARRANT,
    warrant_id="W-1",
)


async def open_session(engine: AsyncEngine, context: CaseContext = CONTEXT) -> str:
    async with session_factory(engine)() as db, db.begin():
        officer = await create_principal(
            db,
            principal_id="officer-1",
            name="Officer One",
            agency="Metro PD",
            roles=[Role.OFFICER, Role.REVIEWER],
            now=NOW,
        )
        issued = await open_case_session(
            db,
            master_key=MASTER,
            principal=officer,
            context=context,
            ttl=timedelta(hours=1),
            max_ttl=timedelta(hours=2),
            now=NOW,
        )
    return issued.access_key_id


@pytest.mark.parametrize("context", [CONTEXT, CaseContext()], ids=["full", "empty"])
async def test_the_driver_read_is_the_sqlalchemy_read(
    engine: AsyncEngine, reads: RequestReader, context: CaseContext
) -> None:
    key = await open_session(engine, context)
    async with engine.connect() as db:
        expected = await load_case_session(db, key)
    read = await read_case_session(reads, key)
    assert read is not None
    assert read == expected
    assert read.expires_at == NOW + timedelta(hours=1)
    assert read.expires_at.tzinfo is UTC
    assert read.context == context
    assert read.principal.roles == (Role.OFFICER, Role.REVIEWER)
    assert read.principal.key_id == key
    assert not read.revoked


async def test_unknown_keys_and_disabled_principals_read_as_none(
    engine: AsyncEngine, reads: RequestReader
) -> None:
    key = await open_session(engine)
    assert await read_case_session(reads, "FGAKNOSUCHKEY") is None
    async with engine.begin() as db:
        await db.execute(sa.update(PrincipalRow).values(disabled_at=NOW))
    assert await read_case_session(reads, key) is None


async def test_a_revocation_is_read_by_the_very_next_request(
    engine: AsyncEngine, reads: RequestReader
) -> None:
    key = await open_session(engine)
    for _ in range(3):  # every pooled connection warm, its statement prepared
        session = await read_case_session(reads, key)
        assert session is not None and not session.revoked
    async with session_factory(engine)() as db, db.begin():
        officer = session.principal
        await revoke_case_session(db, access_key_id=key, by=officer, now=NOW)
    session = await read_case_session(reads, key)
    assert session is not None and session.revoked


async def test_a_database_that_fails_is_refused_and_its_connection_dropped(
    engine: AsyncEngine, reads: RequestReader
) -> None:
    key = await open_session(engine)
    assert await read_case_session(reads, key) is not None
    backend = await backend_of(reads)
    async with engine.begin() as db:
        await db.execute(sa.text("ALTER TABLE case_sessions RENAME TO case_sessions_away"))
    try:
        with pytest.raises(StorageUnavailable, match="session store"):
            await read_case_session(reads, key)
    finally:
        async with engine.begin() as db:
            await db.execute(sa.text("ALTER TABLE case_sessions_away RENAME TO case_sessions"))
    # The pool still serves: the failed connection was not handed out broken.
    assert await read_case_session(reads, key) is not None
    if backend is not None:  # closed, not pooled again: another backend serves
        assert await backend_of(reads) != backend


async def backend_of(reads: RequestReader) -> int | None:
    """The server process behind the reader's pooled connection on PostgreSQL (its pool
    hands out the connection returned last), else None."""
    if not reads.on_asyncpg:
        return None
    row = await reads.fetchrow("SELECT pg_backend_pid()")
    assert row is not None
    pid: int = row[0]
    return pid


async def test_an_unreachable_database_is_refused() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")
    reads = await RequestReader.open(engine)  # opens no connection
    try:
        with pytest.raises(StorageUnavailable, match="session store"):
            await read_case_session(reads, "FGAKANYKEY")
    finally:
        await reads.aclose()
        await engine.dispose()
