"""Searches whose answers open leads at once (issue 17: found by the CPU benchmark)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from gateway.audit.checkpoint import Signer
from gateway.audit.fsck import LogChecker
from gateway.audit.log import AuditLog, Unit
from gateway.audit.models import AuditCheckpoint, AuditLogEntry
from gateway.audit.records import AuditRecord, EventType
from gateway.db import create_engine, session_factory
from gateway.errors import AuditUnavailable
from gateway.leads.book import LeadBook, Search
from gateway.leads.models import AuthorisationRow, LeadRow
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


class Injected(OSError):
    """Stands for a dropped connection in the middle of a batch."""


class WatchedLog(AuditLog):
    """The real log; remembers what each batch held, and fails a batch when told to."""

    fail_at: str | None = None
    batches: list[list[str]]

    async def _commit_batch(self, records: list[AuditRecord | Unit]) -> list[object]:  # type: ignore[override]
        self.batches.append([type(item).__name__ for item in records])
        return await super()._commit_batch(records)  # type: ignore[return-value]

    async def _reached(self, step: str) -> None:
        if step == self.fail_at:
            raise Injected(f"fault injected at {step}")


def outcome_of(search: Search) -> object:
    return lambda ids: AuditRecord(
        **search.fields, event_type=EventType.OUTCOME, detail={"leads": ids}
    )


async def open_at_once(
    book: LeadBook, searches: Sequence[Search], found: Sequence[Candidate]
) -> list[list[str] | BaseException]:
    return await asyncio.gather(
        *(
            book.open_leads(search=search, candidates=found, outcome=outcome_of(search))  # type: ignore[arg-type]
            for search in searches
        ),
        return_exceptions=True,
    )


async def test_concurrent_searches_with_leads_share_one_batch(migrated_database_url: str) -> None:
    # Issue 17: each search's leads, their records and its outcome used to be a transaction
    # of its own, one at a time under the sequencer. Now they join the group commit: both
    # searches in one batch and one checkpoint, each with its own leads, its records
    # contiguous, and the log verifies.
    engine = create_engine(migrated_database_url)
    sessions = session_factory(engine)
    signer = Signer.generate("facegate.test/leads")
    audit = WatchedLog(sessions, signer=signer)
    audit.batches = []
    book = LeadBook(sessions=sessions, audit=audit)
    found = [Candidate(id="face-1", similarity=99.4), Candidate(id="face-2", similarity=91.2)]
    exigent = Search(
        **(vars(a_search("req-b")) | {"authorisation": {"basis": "exigent", "hours": 48}})
    )
    try:
        first, second = await open_at_once(book, [a_search("req-a"), exigent], found)
        assert audit.batches == [["Unit", "Unit"]]
        assert isinstance(first, list) and isinstance(second, list)
        assert len(set(first) | set(second)) == 4
        async with sessions() as db:
            leads = (await db.scalars(select(LeadRow).order_by(LeadRow.rank))).all()
            entries = (await db.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq))).all()
            authorisation = (await db.scalars(select(AuthorisationRow))).one()
            checkpoints = await db.scalar(select(func.count()).select_from(AuditCheckpoint))
        assert {lead.id for lead in leads if lead.search_request_id == "req-a"} == set(first)
        assert {lead.id for lead in leads if lead.search_request_id == "req-b"} == set(second)
        assert {lead.authorisation_id for lead in leads if lead.id in second} == {authorisation.id}
        assert authorisation.search_request_id == "req-b"
        assert [(e.request_id, e.event_type) for e in entries] == [
            ("req-a", "lead"),
            ("req-a", "lead"),
            ("req-a", "outcome"),
            ("req-b", "authorisation"),
            ("req-b", "lead"),
            ("req-b", "lead"),
            ("req-b", "outcome"),
        ]
        assert entries[2].detail["leads"] == first
        assert entries[6].detail["leads"] == second
        assert checkpoints == 1
        report = await LogChecker(sessions).verify_tree(signer.verifier, all_checkpoints=True)
        assert report.ok, report
    finally:
        await audit.aclose()
        await engine.dispose()


async def test_a_failed_batch_withholds_every_search_in_it_and_commits_nothing(
    migrated_database_url: str,
) -> None:
    engine = create_engine(migrated_database_url)
    sessions = session_factory(engine)
    audit = WatchedLog(sessions, signer=Signer.generate("facegate.test/leads"))
    audit.batches = []
    book = LeadBook(sessions=sessions, audit=audit)
    found = [Candidate(id="face-1", similarity=99.4)]
    audit.fail_at = "inserted"  # the rows and entries are written, not yet committed
    try:
        results = await open_at_once(book, [a_search("req-a"), a_search("req-b")], found)
        assert audit.batches == [["Unit", "Unit"]]
        assert all(isinstance(result, AuditUnavailable) for result in results)
        async with sessions() as db:
            for table in (LeadRow, AuditLogEntry, AuditCheckpoint):
                assert await db.scalar(select(func.count()).select_from(table)) == 0
    finally:
        await audit.aclose()
        await engine.dispose()


async def test_a_search_whose_record_cannot_be_hashed_commits_nothing_of_its_own(
    migrated_database_url: str,
) -> None:
    # A vendor's similarity JSON cannot carry: that search fails (and is withheld) alone,
    # with none of its leads or records written; the other search in its batch commits.
    engine = create_engine(migrated_database_url)
    sessions = session_factory(engine)
    audit = WatchedLog(sessions, signer=Signer.generate("facegate.test/leads"))
    audit.batches = []
    book = LeadBook(sessions=sessions, audit=audit)
    searches = [a_search("req-a"), a_search("req-b")]
    try:
        results = await asyncio.gather(
            book.open_leads(
                search=searches[0],
                candidates=[
                    Candidate(id="face-1", similarity=90.0),
                    Candidate(id="face-2", similarity=float("nan")),
                ],
                outcome=outcome_of(searches[0]),  # type: ignore[arg-type]
            ),
            book.open_leads(
                search=searches[1],
                candidates=[Candidate(id="face-3", similarity=92.0)],
                outcome=outcome_of(searches[1]),  # type: ignore[arg-type]
            ),
            return_exceptions=True,
        )
        assert audit.batches == [["Unit", "Unit"]]
        assert isinstance(results[0], ValueError)
        assert isinstance(results[1], list)
        async with sessions() as db:
            leads = (await db.scalars(select(LeadRow))).all()
            entries = (await db.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq))).all()
        assert [lead.id for lead in leads] == results[1]
        assert [(e.seq, e.request_id, e.event_type) for e in entries] == [
            (1, "req-b", "lead"),
            (2, "req-b", "outcome"),
        ]
        assert (await LogChecker(sessions).verify()).ok
    finally:
        await audit.aclose()
        await engine.dispose()


async def test_a_unit_needs_a_record(migrated_database_url: str) -> None:
    engine = create_engine(migrated_database_url)
    audit = AuditLog(session_factory(engine))
    try:
        with pytest.raises(ValueError, match="at least one record"):
            await audit.append_unit(Unit(records=[]))
    finally:
        await audit.aclose()
        await engine.dispose()
