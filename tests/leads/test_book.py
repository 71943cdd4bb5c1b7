"""Searches whose answers open leads at once (issue 17: found by the CPU benchmark)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from gateway.audit.log import AuditLog
from gateway.audit.models import AuditLogEntry
from gateway.audit.records import AuditRecord, EventType
from gateway.db import create_engine, session_factory
from gateway.leads.book import LeadBook, Search
from gateway.vendors.base import Candidate


def a_search(request_id: str) -> Search:
    return Search(
        fields={
            "time": datetime.now(UTC),
            "request_id": request_id,
            "agency": "Metro PD",
            "officer": "officer-1",
            "vendor": "rekognition",
            "operation": "SearchFacesByImage",
            "collection": "mugshots",
            "probe_digests": ["sha256:00"],
        },
        policy_revision="sha256:test",
        authorisation=None,
        received_at=datetime.now(UTC),
    )


async def test_concurrent_searches_with_leads_all_commit(migrated_database_url: str) -> None:
    # Each search appends several records in its own transaction. A second search must not
    # take the log's append queue and then wait on the sequencer the first one holds while
    # the first waits on that queue for its next record (a deadlock until lock_timeout,
    # after which every search but one failed closed).
    engine = create_engine(migrated_database_url)
    sessions = session_factory(engine)
    audit = AuditLog(sessions, lock_timeout=timedelta(seconds=5))
    book = LeadBook(sessions=sessions, audit=audit)
    found = [Candidate(id="face-1", similarity=99.4), Candidate(id="face-2", similarity=91.2)]

    async def one(index: int) -> list[str]:
        search = a_search(f"req-{index}")
        return await book.open_leads(
            search=search,
            candidates=found,
            outcome=lambda ids: AuditRecord(
                **search.fields, event_type=EventType.OUTCOME, detail={"leads": ids}
            ),
        )

    try:
        leads = await asyncio.gather(*(one(index) for index in range(4)))
        assert [len(ids) for ids in leads] == [2, 2, 2, 2]
        async with sessions() as db:
            entries = await db.scalar(select(func.count()).select_from(AuditLogEntry))
        assert entries == 4 * 3  # two leads and an outcome each
    finally:
        await audit.aclose()
        await engine.dispose()
