"""One vendor request, start to end: the eight steps, in order, and nothing else.

    1 authenticate  2 parse  3 gather  4 decide  5 record the decision
    6 forward       7 filter 8 record the outcome

Steps 1-5 fail closed: any error there refuses the request in the vendor's own format, and
nothing reaches the vendor. The decision record is durable (committed) before step 6 starts.
Steps 6-8 never answer without an outcome record: a vendor that cannot be reached, an
answer that cannot be read or checked, a vendor's error and an answer the policy does not
allow are each recorded as the outcome, and the client gets facegate's error in the
vendor's format instead of the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from starlette.responses import Response

from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord, EventType
from gateway.auth.sessions import BoundSession
from gateway.case import CaseFields
from gateway.context.activity import (
    ActivityEvent,
    ActivityStore,
    ActivityUnavailable,
    MemoryActivityStore,
    Reservation,
)
from gateway.context.face_sources import (
    FaceSourceStore,
    FaceSourcesUnavailable,
    MemoryFaceSourceStore,
    sources_of,
)
from gateway.context.gather import gather, vendor_facts
from gateway.context.inspection import ProbeInspector
from gateway.db import RequestReader
from gateway.errors import (
    AuditUnavailable,
    AuthenticationError,
    FacegateError,
    PolicyDenied,
    RequestError,
    ServiceUnavailable,
    StorageUnavailable,
    UpstreamError,
    VendorRefused,
)
from gateway.leads.book import LeadBook, Search
from gateway.observability.requests import saw, step
from gateway.policy.contract import (
    Decision,
    PolicyInput,
    require_attribute_codes,
)
from gateway.policy.engine import PolicyService
from gateway.requests import IncomingRequest
from gateway.vendors.base import Outcome, ParsedRequest, UpstreamResponse, Vendor, VendorAdapter

log = logging.getLogger(__name__)

# Bodies up to this size are parsed on the event loop: below it a thread hop costs more than
# the parse (a 20 KB SearchFacesByImage parses in well under a millisecond).
PARSE_ON_LOOP_BYTES = 64 * 1024

LEAD_NOTICE = "matches are investigative leads only and must be verified by a trained reviewer"


@dataclass
class Pipeline:
    audit: AuditLog
    policy: PolicyService
    reads: RequestReader  # the warrant registry
    # Probe inspection (None: probes are not decoded, faces_in_probe stays unknown).
    inspector: ProbeInspector | None = None
    activity: ActivityStore = field(default_factory=MemoryActivityStore)
    # Where every face a vendor handed out came from (see gateway/context/face_sources.py).
    face_sources: FaceSourceStore = field(default_factory=MemoryFaceSourceStore)
    # Where identifications' candidates become leads (None: not recorded, no header).
    leads: LeadBook | None = None

    async def handle(self, vendor: Vendor, request: IncomingRequest) -> Response:
        """One request of a vendor with a backend (`vendor.adapter` is set), answered in
        the vendor's own format whatever happens."""
        started = time.perf_counter()
        try:
            return await self._handle(vendor, request, started)
        except FacegateError as exc:
            return vendor.error_response(exc, request_id=request.request_id)
        except Exception:
            # A bug, not a decision: refuse in the vendor's format; nothing was forwarded
            # unless the decision record had been committed first.
            log.exception("unexpected error handling request %s", request.request_id)
            return vendor.error_response(
                FacegateError("facegate failed to handle the request"),
                request_id=request.request_id,
            )

    async def reject(
        self, vendor: Vendor, request: IncomingRequest, error: RequestError
    ) -> Response:
        """Refuse a request that could not even be read (e.g. an oversized body), or that
        has nowhere to go (no backend for its vendor), on record, in the vendor's format."""
        record = _RecordBuilder(request=request, vendor=vendor.name)
        key_id = vendor.authenticator.claimed_key_id(request)
        try:
            await self._append(record.refusal(EventType.REJECTED, error, key_id=key_id))
        except AuditUnavailable as exc:
            return vendor.error_response(exc, request_id=request.request_id)
        return vendor.error_response(error, request_id=request.request_id)

    async def _handle(self, vendor: Vendor, request: IncomingRequest, started: float) -> Response:
        adapter, authenticator = vendor.adapter, vendor.authenticator
        if adapter is None:
            raise FacegateError(f"no {vendor.name} backend is configured")  # routed in error
        record = _RecordBuilder(request=request, vendor=vendor.name)

        # 1 authenticate
        try:
            with step("authenticate"):
                session = await authenticator.authenticate(request)
        except AuthenticationError as exc:
            key_id = authenticator.claimed_key_id(request)
            await self._append(record.refusal(EventType.AUTH_FAILURE, exc, key_id=key_id))
            raise
        except StorageUnavailable:
            # The session store is the audit log's database: a refusal could not be
            # recorded either. 503, closed (the storage edge named what failed).
            raise
        except ServiceUnavailable as exc:
            # The replay cache could not tell whether this signature was spent: refused,
            # and on record (the audit log is another store, and may still be written).
            key_id = authenticator.claimed_key_id(request)
            await self._append(record.refusal(EventType.AUTH_FAILURE, exc, key_id=key_id))
            raise
        record.session = session

        # 2 parse. A large body (a 5 MB image as base64 JSON or a form) takes milliseconds
        #   to decode; it is parsed on a worker thread so other requests are not held.
        try:
            with step("parse"):
                if len(request.body) > PARSE_ON_LOOP_BYTES:
                    parsed = await asyncio.to_thread(adapter.parse, request)
                else:
                    parsed = adapter.parse(request)
                require_attribute_codes(parsed.operation)
        except RequestError as exc:
            await self._append(record.refusal(EventType.REJECTED, exc))
            raise
        record.parsed = parsed

        # 3 gather: the faces named by id traced, the probes inspected (a probe that is no
        #   image is refused here, on record), the warrant registry, the vendor's facts,
        #   then the activity windows, which count this request provisionally until step 5
        #   has allowed it. From here on this method holds the reservation and releases it
        #   on every path that does not forward.
        try:
            # An X-Facegate-* header of the wrong syntax is refused here, on record.
            with step("gather"):
                gathered = await gather(
                    reads=self.reads,
                    session=session,
                    operation=parsed.operation,
                    images=parsed.images,
                    probe_faces=parsed.probe_faces,
                    target_faces=parsed.target_faces,
                    headers=request.headers,
                    request_id=request.request_id,
                    now=request.received_at,
                    # The backend's inventory entry (attestations included) is input.vendor.
                    vendor=vendor_facts(adapter.backend),
                    face_sources=self.face_sources,
                    activity=self.activity,
                    # Taken now, not when the windows are read: decide() refuses an input
                    # that lacks a count the revision deciding reads.
                    activity_reads=self.policy.activity_reads,
                    inspector=self.inspector,
                )
        except RequestError as exc:
            await self._append(record.refusal(EventType.REJECTED, exc))
            raise
        policy_input, event, reservation = (
            gathered.policy_input,
            gathered.event,
            gathered.reservation,
        )
        record.policy_input = policy_input

        try:
            # 4 decide (PolicyService never raises: errors and timeouts come back as denials)
            with step("decide"):
                decision = await self.policy.decide(
                    policy_input, gathered_reads=gathered.activity_reads
                )

            # 5 record the decision. When append returns, the record is committed; if it
            #   cannot be written, AuditUnavailable propagates and the request is refused.
            with step("record_decision"):
                await self._append(record.decision(decision))
        except BaseException:
            await self._release(reservation)
            raise
        if not decision.allow:
            # Only allowed requests stay counted: a refused one never reached the vendor.
            await self._release(reservation)
            raise PolicyDenied(decision.reasons)

        # A signed request is forwarded at most once: its signature is spent here, where a
        # copy of it would otherwise go to the vendor again (gateway/auth/replay.py).
        try:
            await authenticator.claim(request, parsed.operation)
        except AuthenticationError as exc:
            await self._release(reservation)
            await self._append(record.refusal(EventType.AUTH_FAILURE, exc))
            raise
        except ServiceUnavailable as exc:
            # The replay cache could not tell: not forwarded, and the allowed decision
            # gets its outcome, an error.
            await self._release(reservation)
            await self._append(record.outcome(None, decision, started, error=exc))
            raise
        except BaseException:
            await self._release(reservation)
            raise

        # 6 forward
        try:
            with step("forward"):
                upstream = await adapter.forward(parsed, decision.obligations)
        except UpstreamError as exc:
            await self._append(record.outcome(None, decision, started, error=exc))
            raise

        # 7 filter. The vendor has answered, so from here on whatever happens is recorded as
        #   this request's outcome before the client hears of it: an answer that cannot be
        #   checked (or a check that fails) is withheld, never passed on unchecked.
        with step("filter"):
            outcome = self._filter(adapter, parsed, decision, upstream, request.request_id)
            if outcome.enrolled is not None:
                outcome = await self._count_enrolled(event, outcome)
            outcome = await self._remember_faces(adapter, parsed, upstream, policy_input, outcome)

        # 8 record the outcome (an identification's with its leads, in one transaction).
        #   If this fails the vendor has answered, but the answer is withheld: a match
        #   nobody can account for is not handed out.
        with step("record_outcome"):
            outcome, leads = await self._open_leads(record, decision, request, outcome, started)
            if leads is None:
                await self._append(record.outcome(outcome, decision, started))
        if outcome.withheld is not None:
            raise outcome.withheld  # rendered in the vendor's shape by handle()
        response = adapter.render(outcome, request_id=request.request_id)
        if outcome.match_count is not None:
            response.headers["x-facegate-lead-notice"] = LEAD_NOTICE
        if leads is not None:
            response.headers["x-facegate-leads"] = ",".join(leads)
        return response

    async def _open_leads(
        self,
        record: _RecordBuilder,
        decision: Decision,
        request: IncomingRequest,
        outcome: Outcome,
        started: float,
    ) -> tuple[Outcome, list[str] | None]:
        """Step 8 for an identification's answer: each candidate becomes a lead, committed
        with the outcome record (gateway/leads/book.py). If that fails, the answer is
        withheld and its outcome is still to be recorded. None: not recorded here."""
        if self.leads is None or outcome.candidates is None or outcome.withheld is not None:
            return outcome, None
        search = Search(
            fields=record.common(),
            policy_revision=decision.policy_revision,
            authorisation=getattr(decision.obligations, "authorisation", None),
            received_at=request.received_at,
        )
        try:
            outcome_record: list[AuditRecord] = []

            def outcome_with(ids: list[str]) -> AuditRecord:
                outcome_record.append(record.outcome(outcome, decision, started, leads=ids))
                return outcome_record[-1]

            ids = await self.leads.open_leads(
                search=search, candidates=outcome.candidates, outcome=outcome_with
            )
            for appended in outcome_record:
                saw(appended)  # the request's log line and metrics read its records
            return outcome, ids
        except ServiceUnavailable as exc:
            log.error("could not record the leads of request %s", request.request_id)
            return replace(outcome, withheld=exc), None

    async def _remember_faces(
        self,
        adapter: VendorAdapter,
        parsed: ParsedRequest,
        upstream: UpstreamResponse,
        policy_input: PolicyInput,
        outcome: Outcome,
    ) -> Outcome:
        """After step 7: remember where the face ids the answer hands out came from.

        Before the answer leaves: a face id the caller holds but facegate cannot trace would
        be refused for identification anyway, so an answer whose ids cannot be recorded (or
        read) is withheld rather than handed out untraceable.
        """
        try:
            issued = adapter.issued_faces(parsed, upstream)
            if issued is not None:
                await self.face_sources.remember(sources_of(policy_input.operation, issued))
        except FaceSourcesUnavailable:
            log.error(
                "could not record where the faces of a %s answer came from", parsed.operation.name
            )
            error: FacegateError = ServiceUnavailable(
                "the vendor answered, but facegate could not record where its faces came from"
            )
            return outcome if outcome.withheld is not None else replace(outcome, withheld=error)
        except FacegateError as exc:
            return outcome if outcome.withheld is not None else replace(outcome, withheld=exc)
        return outcome

    @staticmethod
    def _filter(
        adapter: VendorAdapter,
        parsed: ParsedRequest,
        decision: Decision,
        upstream: UpstreamResponse,
        request_id: str,
    ) -> Outcome:
        """The filtered answer; any failure to check it withholds it (never raises)."""
        try:
            return adapter.filter(parsed, decision.obligations, upstream)
        except FacegateError as exc:
            return Outcome(response=upstream, withheld=exc)
        except Exception:
            # A bug, or an answer shaped in a way no check foresaw: not passed on unchecked.
            log.exception("could not check the vendor's answer to request %s", request_id)
            error = UpstreamError("facegate could not check the vendor's answer")
            return Outcome(response=upstream, withheld=error)

    async def _count_enrolled(self, event: ActivityEvent, outcome: Outcome) -> Outcome:
        """Count the faces the vendor says it enrolled, beside those step 3 reserved.

        The reservation counted the faces facegate saw in the image (or 1); the vendor's own
        count may be higher (a detector that missed faces, an image facegate did not inspect).
        If it cannot be recorded, the limits would undercount: the answer is withheld.
        """
        try:
            await self.activity.record_after(
                event, stream="enrolments", count=outcome.enrolled or 0
            )
        except ActivityUnavailable:
            log.error("could not count the faces enrolled by request %s", event.request_id)
            if outcome.withheld is None:
                error = ServiceUnavailable("the faces enrolled could not be counted")
                return replace(outcome, withheld=error)
        return outcome

    async def _release(self, reservation: Reservation) -> None:
        try:
            await self.activity.release(reservation)
        except ActivityUnavailable:
            # Still counted until it ages out of the day window: errs towards refusing.
            log.warning("could not release an activity reservation; it stays counted")

    async def _append(self, record: AuditRecord) -> None:
        try:
            await self.audit.append(record)
            saw(record)  # the request's log line and metrics read its records
        except AuditUnavailable:
            log.error("audit append failed; refusing request %s", record.request_id)
            raise


_CASE_FIELDS: Final = tuple(CaseFields.model_fields)


@dataclass
class _RecordBuilder:
    """Builds the audit records of one request from what the steps have learned so far."""

    request: IncomingRequest
    vendor: str
    session: BoundSession | None = None
    parsed: ParsedRequest | None = None
    policy_input: PolicyInput | None = None

    # The fields every record of the request shares but `time`, as of the steps that set
    # them: computed once per stage rather than once per record (a decision and its outcome
    # share them, three model_dumps among them). Session, parsed request and policy input
    # are frozen, so the same three objects always give the same fields.
    _shared: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _shared_for: tuple[object, object, object] = field(
        default=(None, None, None), init=False, repr=False
    )

    def common(self) -> dict[str, Any]:
        """The fields of this request's next record, `time` now: a new dict each call."""
        shared, (session, parsed, policy_input) = self._shared, self._shared_for
        if (
            shared is None
            or session is not self.session
            or parsed is not self.parsed
            or policy_input is not self.policy_input
        ):
            shared = self._shared = self._shared_fields()
            self._shared_for = (self.session, self.parsed, self.policy_input)
        fields = {"time": datetime.now(UTC), **shared}
        if "probe_digests" in shared:
            fields["probe_digests"] = list(shared["probe_digests"])  # each caller's own
        return fields

    def _shared_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "request_id": self.request.request_id,
            "client_address": self.request.client_address,
            "vendor": self.vendor,
        }
        if self.session is not None:
            principal = self.session.principal
            fields |= {
                "agency": principal.agency,
                "officer": principal.id,
                "key_id": principal.key_id,
            }
            if self.policy_input is None:
                fields |= self.session.context.model_dump(mode="json")
        if self.policy_input is not None:
            # The case fields as judged (the session's, completed by headers), in place of
            # the session's. Read off the model rather than dumped: gather validated them
            # into PolicyContext's plain `str | None` fields, which are already what
            # model_dump(mode="json") writes (two dumps were 0.5 % of the main thread).
            context = self.policy_input.context
            fields |= {name: getattr(context, name) for name in _CASE_FIELDS}
        if self.parsed is not None:
            # As gathered when it has been: probes include the images faces named by id
            # came from.
            operation = (
                self.policy_input.operation
                if self.policy_input is not None
                else self.parsed.operation
            )
            fields |= {
                "operation": operation.name,
                "operation_kind": operation.kind.value,
                "collection": operation.collection,
                "probe_digests": list(operation.probe_digests),
            }
        return fields

    def refusal(
        self, event_type: EventType, error: FacegateError, *, key_id: str | None = None
    ) -> AuditRecord:
        fields = self.common()
        if key_id is not None:
            fields["key_id"] = key_id
        return AuditRecord(
            **fields,
            event_type=event_type,
            decision="deny",
            reason_codes=[error.code],
            detail={"message": error.message},
        )

    def decision(self, decision: Decision) -> AuditRecord:
        return AuditRecord(
            **self.common(),
            event_type=EventType.DECISION,
            decision="allow" if decision.allow else "deny",
            reason_codes=[r.code for r in decision.reasons],
            obligations=decision.obligations.model_dump(mode="json", exclude_defaults=True),
            policy_revision=decision.policy_revision,
            detail=self._decision_detail(decision),
        )

    def _decision_detail(self, decision: Decision) -> dict[str, Any]:
        detail: dict[str, Any] = {"engine": decision.engine}
        if self.policy_input is not None:
            faces = self.policy_input.operation.faces_in_probe
            if faces is not None:
                detail["faces_in_probe"] = faces
            if self.policy_input.context.locations:
                detail["location_stated"] = True
            operation = self.policy_input.operation
            if operation.compared_identities:
                detail["compared_identities"] = list(operation.compared_identities)
            if operation.face_sources:
                detail["face_sources"] = [f.model_dump(mode="json") for f in operation.face_sources]
        return detail

    def outcome(
        self,
        outcome: Outcome | None,
        decision: Decision,
        started: float,
        *,
        error: FacegateError | None = None,
        leads: list[str] | None = None,
    ) -> AuditRecord:
        detail: dict[str, Any] = {}
        if leads is not None:
            # An identification's leads; none is a negative result, disclosed as one.
            detail |= {"leads": leads, "negative_result": not leads}
        if outcome is not None and outcome.withheld is not None:
            error = outcome.withheld
            # Why the client got an error rather than the answer: a stable code.
            detail["withheld"] = getattr(error, "reason", error.code)
            if isinstance(error, VendorRefused) and error.vendor_code is not None:
                detail["vendor_error"] = error.vendor_code
        if error is not None:
            detail["error"] = error.message
        if outcome is not None:
            if outcome.dropped:
                detail["dropped"] = outcome.dropped
            if outcome.faces is not None:
                detail["faces_in_answer"] = outcome.faces
            if outcome.enrolled is not None:
                detail["faces_enrolled"] = outcome.enrolled
        answered = outcome is not None and outcome.withheld is None
        return AuditRecord(
            **self.common(),
            event_type=EventType.OUTCOME,
            decision="allow" if error is None else "error",
            policy_revision=decision.policy_revision,
            upstream_status=outcome.response.status_code if outcome else None,
            match_count=outcome.match_count if answered and outcome else None,
            top_similarity=outcome.top_similarity if answered and outcome else None,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            detail=detail,
        )
