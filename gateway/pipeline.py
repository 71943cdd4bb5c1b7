"""One vendor request, start to end: the eight steps, in order, and nothing else.

    1 authenticate  2 parse  3 gather  4 decide  5 record the decision
    6 forward       7 filter 8 record the outcome

Steps 1-5 fail closed: any error there refuses the request in the vendor's own format, and
nothing reaches the vendor. The decision record is durable (committed) before step 6 starts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord, EventType
from gateway.auth.sessions import BoundSession
from gateway.context.activity import (
    ActivityEvent,
    ActivityStore,
    ActivityUnavailable,
    MemoryActivityStore,
    Reservation,
)
from gateway.context.gather import gather_policy_input
from gateway.context.inspection import (
    LOCATION_HEADER,
    ProbeInspection,
    ProbeInspector,
    parse_location_header,
)
from gateway.db import DATABASE_ERRORS
from gateway.errors import (
    AuditUnavailable,
    AuthenticationError,
    FacegateError,
    PolicyDenied,
    RequestError,
    ServiceUnavailable,
    UpstreamError,
)
from gateway.policy.contract import Decision, PolicyInput, VendorFacts
from gateway.policy.engine import PolicyService
from gateway.requests import IncomingRequest
from gateway.vendors.base import Outcome, ParsedRequest, VendorAdapter

log = logging.getLogger(__name__)

LEAD_NOTICE = "matches are investigative leads only and must be verified by a trained reviewer"


@dataclass
class Pipeline:
    audit: AuditLog
    policy: PolicyService
    reads: AsyncEngine  # gateway.db.request_reader: the warrant registry
    # Probe inspection (None: probes are not decoded, faces_in_probe stays unknown).
    inspector: ProbeInspector | None = None
    activity: ActivityStore = field(default_factory=MemoryActivityStore)

    async def handle(self, adapter: VendorAdapter, request: IncomingRequest) -> Response:
        started = time.perf_counter()
        try:
            return await self._handle(adapter, request, started)
        except FacegateError as exc:
            return adapter.error_response(exc, request_id=request.request_id)
        except Exception:
            # A bug, not a decision: refuse in the vendor's format; nothing was forwarded
            # unless the decision record had been committed first.
            log.exception("unexpected error handling request %s", request.request_id)
            return adapter.error_response(
                FacegateError("facegate failed to handle the request"),
                request_id=request.request_id,
            )

    async def reject(
        self, adapter: VendorAdapter, request: IncomingRequest, error: RequestError
    ) -> Response:
        """Refuse a request that could not even be read (e.g. an oversized body), on record."""
        record = _RecordBuilder(request=request, vendor=adapter.name)
        try:
            await self._append(
                record.refusal(EventType.REJECTED, error, key_id=adapter.claimed_key_id(request))
            )
        except AuditUnavailable as exc:
            return adapter.error_response(exc, request_id=request.request_id)
        return adapter.error_response(error, request_id=request.request_id)

    async def _handle(
        self, adapter: VendorAdapter, request: IncomingRequest, started: float
    ) -> Response:
        record = _RecordBuilder(request=request, vendor=adapter.name)

        # 1 authenticate
        try:
            session = await adapter.authenticate(request)
        except AuthenticationError as exc:
            await self._append(
                record.refusal(EventType.AUTH_FAILURE, exc, key_id=adapter.claimed_key_id(request))
            )
            raise
        except DATABASE_ERRORS as exc:
            raise ServiceUnavailable("the session store could not be read") from exc
        record.session = session

        # 2 parse
        try:
            parsed = adapter.parse(request)
        except RequestError as exc:
            await self._append(record.refusal(EventType.REJECTED, exc))
            raise
        record.parsed = parsed

        # 3 gather: the probes inspected (a probe that is no image is refused here, on
        #   record), the warrant registry, then the activity windows, which count this
        #   request provisionally until step 5 has allowed it.
        try:
            inspection = await self._inspect(parsed, request)
        except RequestError as exc:
            await self._append(record.refusal(EventType.REJECTED, exc))
            raise
        policy_input = await gather_policy_input(
            self.reads,
            session=session,
            operation=parsed.operation,
            headers=request.headers,
            now=request.received_at,
            inspection=inspection,
        )
        # The backend's inventory entry (attestations included) is the policy's input.vendor.
        policy_input.vendor = VendorFacts.model_validate(adapter.backend.policy_view())
        reservation = await self._reserve(policy_input, request)
        policy_input = policy_input.model_copy(update={"activity": reservation.counts})
        record.policy_input = policy_input

        try:
            # 4 decide (PolicyService never raises: errors and timeouts come back as denials)
            decision = await self.policy.decide(policy_input)

            # 5 record the decision. When append returns, the record is committed; if it
            #   cannot be written, AuditUnavailable propagates and the request is refused.
            await self._append(record.decision(decision))
        except BaseException:
            await self._release(reservation)
            raise
        if not decision.allow:
            # Only allowed requests stay counted: a refused one never reached the vendor.
            await self._release(reservation)
            raise PolicyDenied(decision.reasons)

        # 6 forward
        try:
            upstream = await adapter.forward(parsed, decision.obligations)
        except UpstreamError as exc:
            await self._append(record.outcome(None, decision, started, error=exc))
            raise

        # 7 filter
        outcome = adapter.filter(parsed, decision.obligations, upstream)

        # 8 record the outcome. If this fails the vendor has answered, but the answer is
        #   withheld: a match nobody can account for is not handed out.
        await self._append(record.outcome(outcome, decision, started))
        headers = {**outcome.response.headers, "x-amzn-RequestId": request.request_id}
        if outcome.match_count is not None:
            headers["x-facegate-lead-notice"] = LEAD_NOTICE
        return Response(
            outcome.response.body,
            status_code=outcome.response.status_code,
            headers=headers,
            media_type=upstream.headers.get("content-type", "application/x-amz-json-1.1"),
        )

    async def _inspect(self, parsed: ParsedRequest, request: IncomingRequest) -> ProbeInspection:
        if self.inspector is not None:
            return await self.inspector.inspect(parsed.images, request.headers)
        header = request.headers.get(LOCATION_HEADER, "").strip()
        return ProbeInspection(locations=(parse_location_header(header),) if header else ())

    async def _reserve(self, policy_input: PolicyInput, request: IncomingRequest) -> Reservation:
        principal, operation = policy_input.principal, policy_input.operation
        event = ActivityEvent(
            request_id=request.request_id,
            at=request.received_at,
            officer=principal.id,
            agency=principal.agency,
            case_number=policy_input.context.case_number,
            kind=operation.kind,
            probe_digests=tuple(operation.probe_digests),
            faces_in_probe=operation.faces_in_probe,
            probe_identities=tuple(i.identity for i in operation.images if i.identity),
        )
        try:
            return await self.activity.reserve(event)
        except ActivityUnavailable as exc:
            raise ServiceUnavailable("the activity windows could not be read") from exc

    async def _release(self, reservation: Reservation) -> None:
        try:
            await self.activity.release(reservation)
        except ActivityUnavailable:
            # Still counted until it ages out of the day window: errs towards refusing.
            log.warning("could not release an activity reservation; it stays counted")

    async def _append(self, record: AuditRecord) -> None:
        try:
            await self.audit.append(record)
        except AuditUnavailable:
            log.error("audit append failed; refusing request %s", record.request_id)
            raise


@dataclass
class _RecordBuilder:
    """Builds the audit records of one request from what the steps have learned so far."""

    request: IncomingRequest
    vendor: str
    session: BoundSession | None = None
    parsed: ParsedRequest | None = None
    policy_input: PolicyInput | None = None

    def _common(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "time": datetime.now(UTC),
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
            fields |= self.session.context.model_dump(mode="json")
        if self.policy_input is not None:
            context = self.policy_input.context
            fields |= {
                "purpose": context.purpose,
                "case_number": context.case_number,
                "offense": context.offense,
                "legal_basis": context.legal_basis,
                "warrant_id": context.warrant_id,
            }
        if self.parsed is not None:
            operation = self.parsed.operation
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
        fields = self._common()
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
            **self._common(),
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
        return detail

    def outcome(
        self,
        outcome: Outcome | None,
        decision: Decision,
        started: float,
        *,
        error: FacegateError | None = None,
    ) -> AuditRecord:
        detail: dict[str, Any] = {}
        if error is not None:
            detail["error"] = error.message
        if outcome is not None and outcome.dropped:
            detail["dropped"] = outcome.dropped
        return AuditRecord(
            **self._common(),
            event_type=EventType.OUTCOME,
            decision="allow" if error is None else "error",
            policy_revision=decision.policy_revision,
            upstream_status=outcome.response.status_code if outcome else None,
            match_count=outcome.match_count if outcome else None,
            top_similarity=outcome.top_similarity if outcome else None,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            detail=detail,
        )
