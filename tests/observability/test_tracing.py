"""Tracing is off unless the standard OTEL_* variables switch it on."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator

from gateway.observability import requests, tracing
from gateway.observability.metrics import ReasonCodes
from gateway.observability.tracing import tracing_requested
from gateway.requests import IncomingRequest


@pytest.mark.parametrize(
    ("environ", "exporter"),
    [
        ({}, None),  # the SDK's default is otlp; facegate's is off
        ({"OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, None),
    ],
)
def test_which_exporter_the_environment_asks_for(
    environ: dict[str, str], exporter: str | None
) -> None:
    assert tracing_requested(environ) == exporter


def test_an_exporter_facegate_does_not_know_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="zipkin"):
        tracing_requested({"OTEL_TRACES_EXPORTER": "zipkin"})


CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_with_tracing_off_a_callers_trace_context_still_reaches_the_vendor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No span is started without a tracer provider, but the caller's traceparent goes on
    # to the vendor, as the API's no-op spans passed it on.
    monkeypatch.setattr(tracing, "tracing_on", lambda: False)
    sent: dict[str, str] = {}
    with (
        tracing.caller_context({"traceparent": CALLER, "tracestate": "vendor=x"}),
        tracing.client_span("POST", "http://vendor/", sent) as span,
    ):
        assert not span.is_recording()
    assert sent["traceparent"] == CALLER
    assert sent["tracestate"] == "vendor=x"
    # Nor is anything added to a request that came without one.
    alone: dict[str, str] = {}
    with tracing.caller_context({}), tracing.client_span("POST", "http://vendor/", alone):
        pass
    assert "traceparent" not in alone


def test_a_propagator_installed_later_is_read_for_the_callers_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # caller_context keeps each propagator's header names: one set later (by a test, or an
    # operator's OTEL_PROPAGATORS) is read for its own, not the first one's.
    monkeypatch.setattr(tracing, "tracing_on", lambda: False)

    class Custom(TextMapPropagator):
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
            return otel_context.set_value("custom", carrier["x-custom"], context)

        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            value = otel_context.get_value("custom", context)
            if value is not None:
                carrier["x-custom"] = value

        @property
        def fields(self) -> set[str]:
            return {"x-custom"}

    default = propagate.get_global_textmap()
    with tracing.caller_context({"traceparent": CALLER}):  # the default's names, kept
        pass
    propagate.set_global_textmap(Custom())
    try:
        sent: dict[str, str] = {}
        with (
            tracing.caller_context({"x-custom": "v"}),
            tracing.client_span("POST", "http://vendor/", sent),
        ):
            pass
        assert sent == {"x-custom": "v"}
    finally:
        propagate.set_global_textmap(default)


def test_a_request_observed_is_finished_however_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = IncomingRequest(
        request_id="r-ends",
        received_at=datetime.now(UTC),
        method="POST",
        path="/",
        query="",
        headers={"traceparent": CALLER},
        body=b"",
        client_address=None,
    )
    observing = requests.observe_request(
        "toy", request, known_operations=frozenset(), reasons=ReasonCodes()
    )
    with (
        caplog.at_level(logging.INFO, logger="gateway.requests"),
        pytest.raises(KeyError),
        observing as observed,
    ):
        assert requests._current.get() is observed
        # The caller's context is current inside, and only inside.
        assert trace.get_current_span().get_span_context().trace_id == int(CALLER[3:35], 16)
        raise KeyError("a bug in the pipeline")
    assert requests._current.get() is None
    assert not trace.get_current_span().get_span_context().is_valid
    [line] = [r for r in caplog.records if getattr(r, "request_id", None) == "r-ends"]
    assert getattr(line, "decision", None) == "error"
