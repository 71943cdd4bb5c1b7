"""Tracing is off unless the standard OTEL_* variables switch it on."""

from __future__ import annotations

import pytest

from gateway.observability import tracing
from gateway.observability.tracing import tracing_requested


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
