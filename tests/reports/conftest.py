from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.audit.checkpoint import Signer
from gateway.audit.log import AuditLog
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async
from tests.reports.support import Log


async def make_log(url: str, *, signer: Signer | None = None) -> Log:
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    signer = signer or Signer.generate("test.example/facegate")
    return Log(engine, sessions, AuditLog(sessions, signer=signer), signer)


@pytest.fixture
async def log(sqlite_url: str) -> AsyncIterator[Log]:
    """A signed audit log in SQLite, the embedded default."""
    made = await make_log(sqlite_url)
    yield made
    await made.audit.aclose()
    await made.engine.dispose()


@pytest.fixture
async def any_log(database_url: str) -> AsyncIterator[Log]:
    """A signed audit log in each supported database."""
    made = await make_log(database_url)
    yield made
    await made.audit.aclose()
    await made.engine.dispose()
