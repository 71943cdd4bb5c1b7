"""The request path's read of a case session (read_case_session), against a real database:
the same session as the SQLAlchemy read, no cache between a revocation and the next
request, and a failing database refused rather than taken for a session."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from gateway.db import create_engine, request_reader, session_factory
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


@pytest.fixture
async def engine(migrated_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_database_url)
    yield engine
    await engine.dispose()


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
    engine: AsyncEngine, context: CaseContext
) -> None:
    key = await open_session(engine, context)
    async with engine.connect() as db:
        expected = await load_case_session(db, key)
    read = await read_case_session(request_reader(engine), key)
    assert read is not None
    assert read == expected
    assert read.expires_at == NOW + timedelta(hours=1)
    assert read.expires_at.tzinfo is UTC
    assert read.context == context
    assert read.principal.roles == (Role.OFFICER, Role.REVIEWER)
    assert read.principal.key_id == key
    assert not read.revoked


async def test_unknown_keys_and_disabled_principals_read_as_none(engine: AsyncEngine) -> None:
    key = await open_session(engine)
    reads = request_reader(engine)
    assert await read_case_session(reads, "FGAKNOSUCHKEY") is None
    async with engine.begin() as db:
        await db.execute(sa.update(PrincipalRow).values(disabled_at=NOW))
    assert await read_case_session(reads, key) is None


async def test_a_revocation_is_read_by_the_very_next_request(engine: AsyncEngine) -> None:
    key = await open_session(engine)
    reads = request_reader(engine)
    for _ in range(3):  # every pooled connection warm, its statement prepared
        session = await read_case_session(reads, key)
        assert session is not None and not session.revoked
    async with session_factory(engine)() as db, db.begin():
        officer = session.principal
        await revoke_case_session(db, access_key_id=key, by=officer, now=NOW)
    session = await read_case_session(reads, key)
    assert session is not None and session.revoked


async def test_a_database_that_fails_is_refused_and_its_connection_dropped(
    engine: AsyncEngine,
) -> None:
    key = await open_session(engine)
    reads = request_reader(engine)
    assert await read_case_session(reads, key) is not None
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


async def test_an_unreachable_database_is_refused() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")
    try:
        with pytest.raises(StorageUnavailable, match="session store"):
            await read_case_session(request_reader(engine), "FGAKANYKEY")
    finally:
        await engine.dispose()
