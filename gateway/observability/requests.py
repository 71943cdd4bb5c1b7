"""One vendor request observed: its span, its steps, its metrics and its one log line.

    with observe_request(vendor, operations, reasons, request) as observed:   # the route
        with step("forward"): ...                                            # each step
        saw(record)                                                          # each record
        observed.answered(response.status_code)

What the request did is read from the audit records the pipeline appends for it (`saw`,
called by `Pipeline._append`): the last one says how it ended (allow, deny, error), all
of them give the reason codes, the operation and the vendor's status. So the log line,
the metrics and the audit log cannot disagree, and the pipeline itself keeps no second
account. The log line's `request_id` is the audit records' and the vendor-format
request-id header's (x-amzn-RequestId, apim-request-id): a log line leads to its entries.

Only bounded, non-identifying fields leave here (see metrics.py): the log line adds the
request id and latency, never a case number, officer, credential, image or template.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final

from opentelemetry import trace

from gateway.audit.records import AuditRecord
from gateway.observability import metrics
from gateway.observability.tracing import TRACER, extract
from gateway.requests import IncomingRequest

REQUEST_LOG: Final = logging.getLogger("gateway.requests")
log = logging.getLogger(__name__)

_current: ContextVar[Observation | None] = ContextVar("facegate_request", default=None)


@dataclass
class Observation:
    vendor: str
    request_id: str
    known_operations: frozenset[str]
    reasons: metrics.ReasonCodes
    started: float = field(default_factory=time.perf_counter)
    operation: str | None = None
    decision: str | None = None
    reason_codes: list[str] = field(default_factory=list)
    upstream_status: int | None = None
    forwarded: bool = False  # the forward step ran (an outcome may come without one)
    status: int | None = None

    def saw(self, record: AuditRecord) -> None:
        if record.operation:
            self.operation = record.operation
        self.decision = record.decision
        for code in record.reason_codes:
            if code not in self.reason_codes:
                self.reason_codes.append(code)
        withheld = record.detail.get("withheld")
        if isinstance(withheld, str) and withheld not in self.reason_codes:
            self.reason_codes.append(withheld)
        if record.event_type == "outcome":
            self.upstream_status = record.upstream_status

    def answered(self, status: int) -> None:
        self.status = status


def saw(record: AuditRecord) -> None:
    """Note an audit record appended for the request being handled (if one is observed)."""
    observed = _current.get()
    if observed is not None:
        observed.saw(record)


@contextmanager
def observe_request(
    vendor: str,
    request: IncomingRequest,
    *,
    known_operations: frozenset[str],
    reasons: metrics.ReasonCodes,
) -> Iterator[Observation]:
    observed = Observation(
        vendor=vendor,
        request_id=request.request_id,
        known_operations=known_operations,
        reasons=reasons,
    )
    token = _current.set(observed)
    try:
        with TRACER.start_as_current_span(
            f"facegate {vendor}",
            context=extract(request.headers),
            kind=trace.SpanKind.SERVER,
            attributes={"facegate.vendor": vendor, "facegate.request_id": request.request_id},
        ) as span:
            try:
                yield observed
            finally:
                operation = metrics.operation_label(observed.operation, known_operations)
                span.update_name(f"facegate {vendor} {operation}")
                span.set_attribute("facegate.operation", operation)
                span.set_attribute("facegate.decision", observed.decision or metrics.NONE)
    finally:
        _current.reset(token)
        try:
            _finish(observed)
        except Exception:
            # Observing never costs the client its answer.
            log.exception(
                "could not record the metrics or log line of request %s", observed.request_id
            )


@contextmanager
def step(name: str) -> Iterator[None]:
    """Time one pipeline step (a histogram per vendor and step) inside its own span."""
    observed = _current.get()
    vendor = observed.vendor if observed is not None else metrics.NONE
    if observed is not None and name == "forward":
        observed.forwarded = True
    started = time.perf_counter()
    try:
        with TRACER.start_as_current_span(f"facegate.{name}", attributes={"facegate.step": name}):
            yield
    finally:
        metrics.STEP_SECONDS.labels(vendor=vendor, step=name).observe(time.perf_counter() - started)


def _finish(observed: Observation) -> None:
    latency = time.perf_counter() - observed.started
    vendor = observed.vendor
    operation = metrics.operation_label(observed.operation, observed.known_operations)
    # A request that ended with no record (a bug caught by the pipeline) is an error.
    decision = observed.decision if observed.decision in metrics.DECISIONS else "error"
    metrics.REQUESTS.labels(vendor=vendor, operation=operation, decision=decision).inc()
    for code in observed.reason_codes:
        metrics.REQUEST_REASONS.labels(
            vendor=vendor,
            operation=operation,
            decision=decision,
            reason=observed.reasons.label(code),
        ).inc()
    metrics.REQUEST_SECONDS.labels(vendor=vendor).observe(latency)
    if observed.forwarded:
        if observed.upstream_status is None:
            metrics.UPSTREAM_FAILURES.labels(vendor=vendor).inc()
        else:
            metrics.UPSTREAM_RESPONSES.labels(
                vendor=vendor, status_code=metrics.status_label(observed.upstream_status)
            ).inc()
    # One line per request. The reason codes are the audit records' own (stable codes,
    # never free text); the operation is the native name as parsed, or none.
    REQUEST_LOG.info(
        "%s %s %s",
        vendor,
        operation,
        decision,
        extra={
            "event": "request",
            "request_id": observed.request_id,
            "vendor": vendor,
            "operation": operation,
            "decision": decision,
            "reason_codes": list(observed.reason_codes),
            "status": observed.status,
            "upstream_status": observed.upstream_status,
            "latency_ms": round(latency * 1000, 3),
        },
    )
