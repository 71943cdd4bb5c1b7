"""Tracing is off unless the standard OTEL_* variables switch it on."""

from __future__ import annotations

import pytest

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
