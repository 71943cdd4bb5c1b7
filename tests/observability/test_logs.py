"""The per-request log line, byte for byte as python-json-logger's JsonFormatter wrote it
before the formatter reused one encoder (issue 17)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from gateway.observability.logs import json_formatter

CREATED = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC).timestamp()


def _record(name: str, msg: str, args: tuple[object, ...], **extra: object) -> logging.LogRecord:
    record = logging.getLogger(name).makeRecord(
        name, logging.INFO, "requests.py", 1, msg, args, None, extra=extra
    )
    record.created = CREATED
    return record


def test_the_request_line_is_written_as_before() -> None:
    record = _record(
        "gateway.requests",
        "%s %s %s",
        ("rekognition", "SearchFacesByImage", "deny"),
        event="request",
        request_id="req-1",
        vendor="rekognition",
        operation="SearchFacesByImage",
        decision="deny",
        reason_codes=["no_warrant", "caf\u00e9"],
        status=403,
        upstream_status=None,
        latency_ms=12.345,
    )
    assert json_formatter().format(record) == (
        '{"level": "INFO", "logger": "gateway.requests", "message": "rekognition'
        ' SearchFacesByImage deny", "event": "request", "request_id": "req-1", "vendor":'
        ' "rekognition", "operation": "SearchFacesByImage", "decision": "deny",'
        ' "reason_codes": ["no_warrant", "caf\\u00e9"], "status": 403, "upstream_status":'
        ' null, "latency_ms": 12.345, "time": "2026-11-30T12:00:00.123456+00:00"}'
    )


def test_other_values_still_go_through_the_encoders_default() -> None:
    record = _record("gateway.startup", "started", (), when=datetime(2026, 1, 2, tzinfo=UTC))
    line = json_formatter().format(record)
    assert '"when": "2026-01-02T00:00:00+00:00"' in line
