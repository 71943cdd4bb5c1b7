"""Metrics, the per-request log line and traces, after real requests through the gateway
(boto3 -> facegate -> the reference vendor)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app
from gateway.audit.query import RecordQuery
from gateway.audit.schemas import AuditQuery
from gateway.db import create_engine, session_factory
from gateway.observability.logs import json_formatter
from gateway.observability.metrics import STEPS
from gateway.serving import BackgroundServer
from refvendor import samples
from refvendor.app import create_app as create_refvendor
from tests.e2e.conftest import (
    AZURE_KEY,
    CASE,
    COMPREFACE_KEY,
    VENDOR_KEY,
    VENDOR_SECRET,
    Stack,
    gateway_settings,
)

ALLOWED_LABELS = {"vendor", "operation", "decision", "reason", "step", "status_code", "engine"}
ALLOWED_LABELS |= {"review_state", "le", "quantile"}


def facegate_samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(f"{url}/metrics").text
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        if family.name.startswith("facegate_")
        for sample in family.samples
    ]


def value(samples_: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lbl, v in samples_ if n == name and labels.items() <= lbl.items())


async def test_metrics_move_after_real_requests_and_carry_no_identifying_label(
    stack: Stack,
) -> None:
    credentials = await stack.session()
    client = stack.rekognition(credentials)
    undecided = stack.rekognition(
        await stack.session("officer-2", case_number=None, warrant_id=None, legal_basis=None)
    )
    before = facegate_samples(stack.url)

    allowed = client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})
    with pytest.raises(undecided.exceptions.AccessDeniedException) as denied:
        undecided.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
        )
    after = facegate_samples(stack.url)

    # No label carries what identifies a case, a person or a request.
    request_ids = {
        allowed["ResponseMetadata"]["RequestId"],
        denied.value.response["ResponseMetadata"]["RequestId"],
    }
    forbidden = {CASE, "officer-1", "officer-2", "Metro PD", credentials.access_key_id}
    forbidden |= request_ids
    for name, labels, _ in after:
        assert set(labels) <= ALLOWED_LABELS, (name, labels)
        for label_value in labels.values():
            assert not any(secret in label_value for secret in forbidden), (name, labels)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    rekognition = {"vendor": "rekognition"}
    assert (
        delta("facegate_requests_total", **rekognition, operation="DetectFaces", decision="allow")
        == 1
    )
    assert (
        delta(
            "facegate_requests_total",
            **rekognition,
            operation="SearchFacesByImage",
            decision="deny",
        )
        == 1
    )
    assert (
        delta(
            "facegate_request_reasons_total",
            **rekognition,
            operation="SearchFacesByImage",
            reason="missing_case_number",
        )
        == 1
    )
    for step in STEPS:
        # Both requests were authenticated, parsed, gathered, decided and recorded; only the
        # allowed one was forwarded, filtered and its outcome recorded.
        expected = 1 if step in ("forward", "filter", "record_outcome") else 2
        assert delta("facegate_pipeline_step_duration_seconds_count", **rekognition, step=step) == (
            expected
        ), step
    assert delta("facegate_upstream_responses_total", **rekognition, status_code="200") == 1
    assert delta("facegate_request_duration_seconds_count", **rekognition) == 2
    assert delta("facegate_policy_evaluation_duration_seconds_count", engine="embedded") == 2
    # Three records (decision + outcome, decision): in one to three group commits.
    assert 1 <= delta("facegate_audit_batch_records_count") <= 3
    assert delta("facegate_audit_batch_records_sum") == 3
    assert delta("facegate_audit_commit_duration_seconds_count") >= 1


async def test_an_unreachable_vendor_counts_as_an_upstream_failure_and_an_error(
    migrated_database_url: str, tmp_path: Path
) -> None:
    settings = gateway_settings(migrated_database_url, tmp_path, "http://127.0.0.1:9")
    with BackgroundServer(create_app(settings)) as gateway:
        stack = Stack(settings=settings, url=gateway.url, vendor=None)  # type: ignore[arg-type]
        client = stack.rekognition(await stack.session())
        before = facegate_samples(gateway.url)
        with pytest.raises(ClientError):
            client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})
        after = facegate_samples(gateway.url)
    labels = {"vendor": "rekognition"}
    for name, extra in (
        ("facegate_upstream_failures_total", {}),
        ("facegate_requests_total", {"operation": "DetectFaces", "decision": "error"}),
    ):
        assert value(after, name, **labels, **extra) - value(before, name, **labels, **extra) == 1
    assert value(after, "facegate_upstream_responses_total", **labels) == value(
        before, "facegate_upstream_responses_total", **labels
    )


def test_metrics_are_not_taken_by_the_vendor_routes(stack: Stack) -> None:
    # GET /metrics is facegate's, never a vendor request (no audit record, no
    # vendor error shape): the metrics page answers.
    response = httpx.get(f"{stack.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "facegate_requests_total" in response.text


async def test_one_json_line_per_request_leading_to_its_audit_record_and_no_secret(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    api_key = await stack.principal("auditor-1", "auditor")
    credentials = await stack.session()
    client = stack.rekognition(credentials)
    probe = samples.astronaut_jpeg()
    caplog.set_level(logging.INFO)

    answer = client.detect_faces(Image={"Bytes": probe})
    async with httpx.AsyncClient() as http:
        listed = await http.get(
            f"{stack.url}/facegate/v1/vendors", headers={"authorization": f"Bearer {api_key}"}
        )
    assert listed.status_code == 200
    request_id = answer["ResponseMetadata"]["RequestId"]

    # The gateway's own log records, as its JSON formatter writes them (boto3's and
    # urllib3's records are the test's client, not the gateway).
    formatter = json_formatter()
    gateway_records = [
        r for r in caplog.records if not r.name.startswith(("botocore", "boto3", "urllib3"))
    ]
    lines = [formatter.format(record) for record in gateway_records]
    request_lines = [json.loads(line) for line in lines if '"event": "request"' in line]
    mine = [line for line in request_lines if line["request_id"] == request_id]
    assert len(mine) == 1
    line = mine[0]
    assert line["level"] == "INFO"
    assert line["vendor"] == "rekognition"
    assert line["operation"] == "DetectFaces"
    assert line["decision"] == "allow"
    assert line["reason_codes"] == []
    assert line["status"] == 200
    assert line["latency_ms"] > 0

    # The log line's request id is its audit records'.
    engine = create_engine(stack.settings.database_url)
    try:
        page = await RecordQuery(session_factory(engine)).query(AuditQuery(case_number=CASE))
    finally:
        await engine.dispose()
    assert [e.event_type for e in page.entries if e.request_id == request_id] == [
        "decision",
        "outcome",
    ]

    everything = "\n".join(lines)
    for secret in (
        credentials.secret_access_key,
        api_key,
        VENDOR_SECRET,
        base64.b64encode(probe).decode()[:40],
        base64.b64encode(probe[999:1029]).decode(),
        probe[:64].hex(),
    ):
        assert secret not in everything


# --- traces ---------------------------------------------------------------------------------

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """An SDK tracer provider exporting to memory (the global one can be set once per
    process: this module sets it, and clears the exporter for each test). One provider
    for the process, not one per set-up: with --dist worksteal a worker may run this
    module's tests in two stretches, setting this fixture up twice, and the second
    provider could not be installed."""
    trace.set_tracer_provider(_PROVIDER)
    if trace.get_tracer_provider() is not _PROVIDER:
        pytest.skip("another test set the global tracer provider first")
    yield _EXPORTER


class HeaderRecorder:
    """The reference vendor, remembering the headers of each request it receives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


async def test_a_trace_has_the_eight_steps_and_its_traceparent_reaches_the_vendor(
    spans: InMemorySpanExporter, migrated_database_url: str, tmp_path: Path
) -> None:
    recorder = HeaderRecorder(
        create_refvendor(
            access_key_id=VENDOR_KEY,
            secret_access_key=VENDOR_SECRET,
            azure_key=AZURE_KEY,
            compreface_key=COMPREFACE_KEY,
        )
    )
    with BackgroundServer(recorder) as vendor:
        settings = gateway_settings(migrated_database_url, tmp_path, vendor.url)
        with BackgroundServer(create_app(settings)) as gateway:
            stack = Stack(settings=settings, url=gateway.url, vendor=vendor)
            client = stack.rekognition(await stack.session())
            spans.clear()
            # Answered by the vendor, so its SigV4 check passed with traceparent added.
            answer = client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})
    assert len(answer["FaceDetails"]) == 1

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    (root,) = [
        s for s in finished if s.kind is trace.SpanKind.SERVER and s.name.startswith("facegate ")
    ]
    trace_id = root.context.trace_id
    mine = [s for s in finished if s.context.trace_id == trace_id]
    steps = [s.name for s in sorted(mine, key=lambda s: s.start_time or 0) if s.name != root.name]
    assert [name for name in steps if name.startswith("facegate.")] == [
        f"facegate.{step}" for step in STEPS
    ]
    assert root.attributes is not None
    assert root.attributes["facegate.operation"] == "DetectFaces"
    assert root.attributes["facegate.request_id"] == answer["ResponseMetadata"]["RequestId"]
    (client_span,) = [s for s in mine if s.kind is trace.SpanKind.CLIENT]
    assert root.parent is None  # boto3 sent no traceparent: the gateway starts the trace
    (forward,) = [s for s in mine if s.name == "facegate.forward"]
    assert client_span.parent is not None
    assert client_span.parent.span_id == forward.context.span_id
    assert client_span.attributes is not None
    assert client_span.attributes["http.response.status_code"] == 200

    (received,) = [h for h in recorder.headers if h.get("x-amz-target", "").endswith("DetectFaces")]
    version, sent_trace, sent_parent, _flags = received["traceparent"].split("-")
    assert version == "00"
    assert int(sent_trace, 16) == trace_id
    assert int(sent_parent, 16) == client_span.context.span_id
    # Not a signed header: the signature the vendor checked covers what it did before.
    assert "traceparent" not in received["authorization"]
    # No span carries the case number, the officer or the caller's key.
    for span in mine:
        for attribute in (span.attributes or {}).values():
            assert CASE not in str(attribute)
            assert "officer-1" not in str(attribute)
