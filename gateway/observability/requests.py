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
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

from opentelemetry import trace

from gateway.audit.records import AuditRecord
from gateway.observability import metrics
from gateway.observability.tracing import TRACER, caller_context, extract, tracing_on
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
    traced: bool = False  # spans are recorded (`tracing_on`, asked once a request)

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


def request_traced() -> bool:
    """Whether the request being handled records spans, as `observe_request` decided when
    it began (so its steps and its forward agree, and the tracer provider is asked once a
    request: with none installed, asking costs an environment lookup); outside a request,
    `tracing_on`."""
    observed = _current.get()
    return tracing_on() if observed is None else observed.traced


def saw(record: AuditRecord) -> None:
    """Note an audit record appended for the request being handled (if one is observed)."""
    observed = _current.get()
    if observed is not None:
        observed.saw(record)


class observe_request:  # lower case: used as `with observe_request(...) as observed:`
    """Observe one vendor request for the length of a `with` block: its Observation is the
    current one (`saw`, `step`, `request_traced` find it), inside its SERVER span when
    tracing is on, else inside the caller's trace context (`caller_context`); at the end,
    however the block ends, its metrics and its one log line (`_finish`).

    A class rather than a generator-based context manager, as `step` is: once a request,
    contextlib's machinery cost more than what it wraps."""

    __slots__ = ("_observed", "_request", "_scope", "_token")

    def __init__(
        self,
        vendor: str,
        request: IncomingRequest,
        *,
        known_operations: frozenset[str],
        reasons: metrics.ReasonCodes,
    ) -> None:
        self._observed = Observation(
            vendor=vendor,
            request_id=request.request_id,
            known_operations=known_operations,
            reasons=reasons,
        )
        self._request = request

    def __enter__(self) -> Observation:
        observed = self._observed
        observed.traced = tracing_on()
        self._scope: AbstractContextManager[None] = (
            _server_span(observed.vendor, self._request, observed)
            if observed.traced
            else caller_context(self._request.headers)
        )
        self._token = _current.set(observed)
        try:
            self._scope.__enter__()
        except BaseException:
            _current.reset(self._token)
            raise
        return observed

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._scope.__exit__(exc_type, exc, traceback)
        finally:
            _current.reset(self._token)
            try:
                _finish(self._observed)
            except Exception:
                # Observing never costs the client its answer.
                log.exception(
                    "could not record the metrics or log line of request %s",
                    self._observed.request_id,
                )


@contextmanager
def _server_span(vendor: str, request: IncomingRequest, observed: Observation) -> Iterator[None]:
    with TRACER.start_as_current_span(
        f"facegate {vendor}",
        context=extract(request.headers),
        kind=trace.SpanKind.SERVER,
        attributes={"facegate.vendor": vendor, "facegate.request_id": request.request_id},
    ) as span:
        try:
            yield
        finally:
            operation = metrics.operation_label(observed.operation, observed.known_operations)
            span.update_name(f"facegate {vendor} {operation}")
            span.set_attribute("facegate.operation", operation)
            span.set_attribute("facegate.decision", observed.decision or metrics.NONE)


class step:  # lower case: used as `with step("forward"):`, like a function
    """Time one pipeline step (a histogram per vendor and step) inside its own span (when
    tracing is on).

    A class rather than a generator-based context manager: eight steps a request, and
    contextlib's generator machinery cost more than the timing it wraps.
    """

    __slots__ = ("_histogram", "_name", "_span", "_started", "_traced")

    def __init__(self, name: str) -> None:
        observed = _current.get()
        if observed is None:
            vendor, self._traced = metrics.NONE, tracing_on()
        else:
            vendor, self._traced = observed.vendor, observed.traced
            if name == "forward":
                observed.forwarded = True
        self._name = name
        self._histogram = metrics.labelled(metrics.STEP_SECONDS, vendor, name)
        self._span: AbstractContextManager[object] | None = None
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()
        if self._traced:
            name = self._name
            self._span = TRACER.start_as_current_span(
                f"facegate.{name}", attributes={"facegate.step": name}
            )
            self._span.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._span is not None:
                self._span.__exit__(exc_type, exc, traceback)
        finally:
            self._histogram.observe(time.perf_counter() - self._started)


def _finish(observed: Observation) -> None:
    latency = time.perf_counter() - observed.started
    vendor = observed.vendor
    operation = metrics.operation_label(observed.operation, observed.known_operations)
    # A request that ended with no record (a bug caught by the pipeline) is an error.
    decision = observed.decision if observed.decision in metrics.DECISIONS else "error"
    labelled = metrics.labelled  # label values in the order the metrics name them
    labelled(metrics.REQUESTS, vendor, operation, decision).inc()
    for code in observed.reason_codes:
        reason = observed.reasons.label(code)
        labelled(metrics.REQUEST_REASONS, vendor, operation, decision, reason).inc()
    labelled(metrics.REQUEST_SECONDS, vendor).observe(latency)
    if observed.forwarded:
        if observed.upstream_status is None:
            labelled(metrics.UPSTREAM_FAILURES, vendor).inc()
        else:
            status_code = metrics.status_label(observed.upstream_status)
            labelled(metrics.UPSTREAM_RESPONSES, vendor, status_code).inc()
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
