"""The pipeline's ordering contracts, driven directly: a small fake adapter in front of the
real audit log and activity store, so each contract is seen from inside the step that
depends on it (gateway/pipeline.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.responses import Response

from gateway.audit.log import Unit
from gateway.audit.models import AuditLogEntry
from gateway.audit.records import AuditRecord, EventType
from gateway.auth.principals import Principal, Role
from gateway.auth.sessions import BoundSession
from gateway.case import CaseContext
from gateway.config import Settings
from gateway.context.activity import ActivityEvent, ActivityReads, MemoryActivityStore
from gateway.context.face_sources import IssuedFaces
from gateway.errors import AuditUnavailable, FacegateError
from gateway.leads.book import LeadBook
from gateway.leads.models import LeadRow
from gateway.operations import FaceOperation, OperationKind
from gateway.pipeline import Pipeline
from gateway.policy.contract import Decision, Obligations, PolicyInput
from gateway.requests import IncomingRequest
from gateway.services import Services
from gateway.vendors import descriptor
from gateway.vendors.base import Candidate, Outcome, ParsedRequest, UpstreamResponse, Vendor

REPO = Path(__file__).resolve().parents[2]
PRINCIPAL = Principal(id="officer-1", name="Officer", agency="dpd", roles=(Role.OFFICER,))
ANSWER = b'{"FaceMatches": []}'


class FakeBackend:
    """The fake vendor's inventory entry, as the policy reads it (input.vendor)."""

    name = "fake-backend"

    def policy_view(self) -> dict[str, Any]:
        return {"name": self.name, "protocol": "rekognition", "attestations": {}}


FAKE_BACKEND = FakeBackend()


@dataclass
class FixedPolicy:
    """Decides as told, or fails; keeps what it was given."""

    allow: bool = True
    fail: bool = False
    seen: list[PolicyInput] = field(default_factory=list)
    activity_reads: ActivityReads = None
    gathered_reads: list[ActivityReads] = field(default_factory=list)

    async def decide(
        self, policy_input: PolicyInput, *, gathered_reads: ActivityReads = None
    ) -> Decision:
        self.seen.append(policy_input)
        self.gathered_reads.append(gathered_reads)
        if self.fail:
            raise RuntimeError("the engine broke")
        if self.allow:
            return Decision(allow=True, policy_revision="test", engine="fixed")
        return Decision.deny(
            code="test_denied", message="no", policy_revision="test", engine="fixed"
        )


@dataclass
class FakeAdapter:
    """Parse / forward / filter of a vendor with no protocol; `forward` looks at the log."""

    services: Services
    name: str = "fake"
    forwarded: list[list[str]] = field(default_factory=list)
    request_id: str = ""

    @property
    def backend(self) -> Any:
        return FAKE_BACKEND

    async def authenticate(self, request: IncomingRequest) -> BoundSession:
        return BoundSession(
            access_key_id="AKIAFAKE",
            principal=PRINCIPAL,
            context=CaseContext(purpose="criminal_investigation", case_number="2026-1"),
            expires_at=request.received_at + timedelta(hours=1),
            revoked=False,
        )

    def claimed_key_id(self, request: IncomingRequest) -> str | None:
        return "AKIAFAKE"

    def parse(self, request: IncomingRequest) -> ParsedRequest:
        self.request_id = request.request_id
        operation = FaceOperation(
            vendor="fake", name="SearchFacesByImage", kind=OperationKind.IDENTIFY, collection="c"
        )
        return ParsedRequest(operation=operation, payload={}, body=b"{}")

    async def claim(self, request: IncomingRequest, operation: FaceOperation) -> None:
        return None

    async def forward(self, parsed: ParsedRequest, obligations: Obligations) -> UpstreamResponse:
        # What another reader of the database sees at the moment of forwarding.
        self.forwarded.append(await committed_event_types(self.services, self.request_id))
        return UpstreamResponse(status_code=200, headers={}, body=ANSWER)

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        return Outcome(response=response, match_count=0)

    def issued_faces(self, parsed: ParsedRequest, response: UpstreamResponse) -> IssuedFaces | None:
        return None

    def render(self, outcome: Outcome, *, request_id: str) -> Response:
        return Response(outcome.response.body, status_code=outcome.response.status_code)

    def error_response(self, error: FacegateError, *, request_id: str) -> Response:
        return Response(error.code, status_code=400)

    def as_vendor(self) -> Vendor:
        """This fake as a registered vendor: its own authenticator and adapter."""
        return Vendor(descriptor=descriptor("rekognition"), authenticator=self, adapter=self)

    async def aclose(self) -> None:
        return None


@dataclass
class OutcomeRefusingAudit:
    """The real log, except that outcome records cannot be written."""

    services: Services

    async def append(self, record: AuditRecord) -> Any:
        if record.event_type is EventType.OUTCOME:
            raise AuditUnavailable("the log is down")
        return await self.services.audit.append(record)


async def committed_event_types(services: Services, request_id: str) -> list[str]:
    """The records of one request another reader of the database sees, in order."""
    async with services.sessions() as db:
        rows = await db.scalars(
            select(AuditLogEntry)
            .where(AuditLogEntry.request_id == request_id)
            .order_by(AuditLogEntry.seq)
        )
        return [row.event_type for row in rows]


@pytest.fixture
async def services(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    from gateway.migrate import upgrade_async

    await upgrade_async(sqlite_url)
    built = await Services.build(
        Settings(
            database_url=sqlite_url,
            master_key_file=tmp_path / "master.key",
            log_key_file=tmp_path / "log.key",
            policy_dir=REPO / "policies",
        )
    )
    try:
        yield built
    finally:
        await built.aclose()


def pipeline_of(services: Services, policy: FixedPolicy, **overrides: Any) -> Pipeline:
    fields: dict[str, Any] = {
        "audit": services.audit,
        "policy": policy,
        "reads": services.reads,
        "activity": MemoryActivityStore(),
    }
    return Pipeline(**(fields | overrides))


def incoming() -> IncomingRequest:
    return IncomingRequest(
        request_id=str(uuid.uuid4()),
        received_at=datetime.now(UTC),
        method="POST",
        path="/",
        query="",
        headers={},
        body=b"{}",
        client_address="127.0.0.1",
    )


def requests_counted(activity: MemoryActivityStore, request: IncomingRequest) -> Any:
    """How many requests the officer's day window holds, besides a probe request."""

    async def probe() -> Any:
        event = ActivityEvent(
            request_id=str(uuid.uuid4()),
            at=request.received_at,
            officer=PRINCIPAL.id,
            agency=PRINCIPAL.agency,
            case_number=None,
            kind=OperationKind.DETECT,
        )
        reservation = await activity.reserve(event)
        await activity.release(reservation)
        return reservation.counts["officer"]["requests"]["day"] - 1

    return probe()


async def test_nothing_is_forwarded_before_its_decision_record_is_committed(
    services: Services,
) -> None:
    adapter = FakeAdapter(services)
    response = await pipeline_of(services, FixedPolicy()).handle(adapter.as_vendor(), incoming())
    assert response.status_code == 200
    assert adapter.forwarded == [["decision"]]


async def test_the_outcome_is_recorded_before_the_answer_is_returned(services: Services) -> None:
    adapter, request = FakeAdapter(services), incoming()
    response = await pipeline_of(services, FixedPolicy()).handle(adapter.as_vendor(), request)
    assert response.body == ANSWER
    assert await committed_event_types(services, request.request_id) == ["decision", "outcome"]


async def test_an_answer_whose_outcome_cannot_be_recorded_is_withheld(services: Services) -> None:
    adapter = FakeAdapter(services)
    pipeline = pipeline_of(services, FixedPolicy(), audit=OutcomeRefusingAudit(services))
    response = await pipeline.handle(adapter.as_vendor(), incoming())
    assert adapter.forwarded == [["decision"]]
    assert response.body != ANSWER
    assert response.status_code == 400


@pytest.mark.parametrize("policy", [FixedPolicy(allow=False), FixedPolicy(fail=True)])
async def test_a_refused_or_failed_decision_releases_its_activity_reservation(
    services: Services, policy: FixedPolicy
) -> None:
    activity = MemoryActivityStore()
    adapter = FakeAdapter(services)
    request = incoming()
    response = await pipeline_of(services, policy, activity=activity).handle(
        adapter.as_vendor(), request
    )
    assert response.status_code == 400
    assert adapter.forwarded == []
    # The policy was shown the request counted (1), and it is no longer counted.
    assert policy.seen[-1].activity["officer"]["requests"]["day"] == 1
    assert await requests_counted(activity, request) == 0


async def test_an_allowed_request_stays_counted(services: Services) -> None:
    activity = MemoryActivityStore()
    request = incoming()
    await pipeline_of(services, FixedPolicy(), activity=activity).handle(
        FakeAdapter(services).as_vendor(), request
    )
    assert await requests_counted(activity, request) == 1


async def test_the_policy_input_is_complete_and_frozen(services: Services) -> None:
    policy = FixedPolicy()
    await pipeline_of(services, policy).handle(FakeAdapter(services).as_vendor(), incoming())
    judged = policy.seen[-1]
    assert judged.vendor is not None and judged.vendor.name == FAKE_BACKEND.name
    assert judged.activity["officer"]["requests"]["day"] == 1
    assert judged.context.case_number == "2026-1"
    with pytest.raises(ValueError, match="frozen"):
        judged.activity = {}  # type: ignore[misc]


async def test_the_policy_is_sent_only_the_counts_it_reads_and_told_which(
    services: Services,
) -> None:
    reads = frozenset({("officer", "requests", "second"), ("agency", "probes", "day")})
    policy = FixedPolicy(activity_reads=reads)
    await pipeline_of(services, policy).handle(FakeAdapter(services).as_vendor(), incoming())
    assert policy.seen[-1].activity == {
        "officer": {"requests": {"second": 1}},
        "agency": {"probes": {"day": 0}},
    }
    # decide() hears what the input was gathered with, to refuse it to a revision reading more.
    assert policy.gathered_reads == [reads]


@dataclass
class CandidateAdapter(FakeAdapter):
    """An identification whose answer names two candidates."""

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        found = (Candidate(id="face-a", similarity=99.5), Candidate(id="face-b", similarity=91.0))
        return Outcome(response=response, match_count=2, top_similarity=99.5, candidates=found)


@dataclass
class LeadRefusingAudit:
    services: Services

    async def append(self, record: AuditRecord, *, db: Any = None) -> Any:
        if record.event_type is EventType.LEAD:
            raise AuditUnavailable("the log is down")
        return await self.services.audit.append(record, db=db)

    async def append_unit(self, unit: Unit) -> Any:
        if any(record.event_type is EventType.LEAD for record in unit.records):
            raise AuditUnavailable("the log is down")
        return await self.services.audit.append_unit(unit)


async def test_the_leads_are_recorded_before_the_answer_with_their_ids(services: Services) -> None:
    adapter, request = CandidateAdapter(services), incoming()
    pipeline = pipeline_of(services, FixedPolicy(), leads=services.pipeline.leads)
    response = await pipeline.handle(adapter.as_vendor(), request)
    assert response.body == ANSWER
    leads = response.headers["x-facegate-leads"].split(",")
    assert len(leads) == 2
    types = await committed_event_types(services, request.request_id)
    assert types == ["decision", "lead", "lead", "outcome"]


async def test_concurrent_answers_with_candidates_each_get_their_own_leads(
    services: Services,
) -> None:
    # Both searches' leads join the log's group commit (issue 17): each answer still leaves
    # only after its own leads and outcome are committed, naming its own leads.
    adapter, requests = CandidateAdapter(services), [incoming(), incoming()]
    pipeline = pipeline_of(services, FixedPolicy(), leads=services.pipeline.leads)
    responses = await asyncio.gather(
        *(pipeline.handle(adapter.as_vendor(), request) for request in requests)
    )
    named = [set(response.headers["x-facegate-leads"].split(",")) for response in responses]
    assert all(response.body == ANSWER for response in responses)
    assert len(named[0]) == len(named[1]) == 2 and not named[0] & named[1]
    for request, leads in zip(requests, named, strict=True):
        types = await committed_event_types(services, request.request_id)
        assert types == ["decision", "lead", "lead", "outcome"]
        async with services.sessions() as db:
            rows = await db.scalars(
                select(LeadRow.id).where(LeadRow.search_request_id == request.request_id)
            )
            assert set(rows) == leads


async def test_an_answer_whose_leads_cannot_be_recorded_is_withheld(services: Services) -> None:
    adapter, request = CandidateAdapter(services), incoming()
    book = LeadBook(sessions=services.sessions, audit=LeadRefusingAudit(services))  # type: ignore[arg-type]
    pipeline = pipeline_of(services, FixedPolicy(), leads=book)
    response = await pipeline.handle(adapter.as_vendor(), request)
    assert response.body != ANSWER
    assert "x-facegate-leads" not in response.headers
    assert await committed_event_types(services, request.request_id) == ["decision", "outcome"]


@dataclass
class OutcomeRefusingLeadAudit:
    services: Services

    async def append(self, record: AuditRecord, *, db: Any = None) -> Any:
        if record.event_type is EventType.OUTCOME:
            raise AuditUnavailable("the log is down")
        return await self.services.audit.append(record, db=db)

    async def append_unit(self, unit: Unit) -> Any:
        if any(record.event_type is EventType.OUTCOME for record in unit.records):
            raise AuditUnavailable("the log is down")
        return await self.services.audit.append_unit(unit)


async def test_no_lead_is_on_record_for_an_answer_whose_outcome_failed(
    services: Services,
) -> None:
    adapter, request = CandidateAdapter(services), incoming()
    audit = OutcomeRefusingLeadAudit(services)
    book = LeadBook(sessions=services.sessions, audit=audit)  # type: ignore[arg-type]
    pipeline = pipeline_of(services, FixedPolicy(), audit=audit, leads=book)
    response = await pipeline.handle(adapter.as_vendor(), request)
    assert response.body != ANSWER
    assert await committed_event_types(services, request.request_id) == ["decision"]


class NoCandidateAdapter(FakeAdapter):
    """An identification whose answer names no candidate: a negative result."""

    def filter(
        self, parsed: ParsedRequest, obligations: Obligations, response: UpstreamResponse
    ) -> Outcome:
        return Outcome(response=response, match_count=0, top_similarity=None, candidates=())


@dataclass
class OutcomeWatchingAudit:
    """The real log; remembers whether each outcome came in a caller's transaction, and
    refuses outcomes when told to."""

    services: Services
    refuse: bool = False
    outcome_in_transaction: list[bool] = field(default_factory=list)

    async def append(self, record: AuditRecord, *, db: Any = None) -> Any:
        if record.event_type is EventType.OUTCOME:
            self.outcome_in_transaction.append(db is not None)
            if self.refuse:
                raise AuditUnavailable("the log is down")
        return await self.services.audit.append(record, db=db)


async def test_a_negative_result_joins_the_group_commit_before_the_answer(
    services: Services,
) -> None:
    # No lead to commit with it: the outcome takes the log's batched path (issue 17), and
    # is still committed, with the same detail, before the answer leaves.
    adapter, request = NoCandidateAdapter(services), incoming()
    audit = OutcomeWatchingAudit(services)
    book = LeadBook(sessions=services.sessions, audit=audit)  # type: ignore[arg-type]
    pipeline = pipeline_of(services, FixedPolicy(), leads=book)
    response = await pipeline.handle(adapter.as_vendor(), request)
    assert response.body == ANSWER
    assert response.headers["x-facegate-leads"] == ""
    assert audit.outcome_in_transaction == [False]
    assert await committed_event_types(services, request.request_id) == ["decision", "outcome"]
    async with services.sessions() as db:
        outcome = await db.scalar(
            select(AuditLogEntry).where(
                AuditLogEntry.request_id == request.request_id,
                AuditLogEntry.event_type == "outcome",
            )
        )
    assert outcome is not None
    assert outcome.detail["leads"] == []
    assert outcome.detail["negative_result"] is True


async def test_a_negative_result_whose_outcome_fails_is_withheld(services: Services) -> None:
    adapter, request = NoCandidateAdapter(services), incoming()
    audit = OutcomeWatchingAudit(services, refuse=True)
    book = LeadBook(sessions=services.sessions, audit=audit)  # type: ignore[arg-type]
    pipeline = pipeline_of(services, FixedPolicy(), leads=book)
    response = await pipeline.handle(adapter.as_vendor(), request)
    assert response.body != ANSWER
    assert "x-facegate-leads" not in response.headers
