"""The per-request log line, byte for byte as python-json-logger's JsonFormatter wrote it
before the formatter reused one encoder (issue 17)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

import pytest
from pythonjsonlogger.json import JsonFormatter

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


@pytest.mark.parametrize(
    ("msg", "args", "extra"),
    [
        ("%s %s %s", ("azure", "detect", "allow"), {"event": "request", "latency_ms": 0.5}),
        ("plain", (), {}),
        ("caf\u00e9 %d%%", (3,), {"_private": 1, "nested": {"a": [1, None, True]}}),
        ("when", (), {"when": datetime(2026, 1, 2, tzinfo=UTC), "big": 10**30}),
        ("surrogate \ud800", (), {"status": None, "ratio": float("inf")}),
    ],
)
def test_a_plain_record_is_laid_out_as_jsonformatters_general_path_does(
    msg: str, args: tuple[object, ...], extra: dict[str, object]
) -> None:
    formatter = json_formatter()
    fast, general = (
        _record("gateway.x", msg, args, **extra),
        _record("gateway.x", msg, args, **extra),
    )
    assert formatter.format(fast) == JsonFormatter.format(formatter, general)
    assert fast.message == general.message  # logging.Formatter's side effect, kept


def test_records_with_an_exception_or_a_dict_take_the_general_path() -> None:
    formatter = json_formatter()
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.getLogger("gateway.x").makeRecord(
            "gateway.x", logging.ERROR, "x.py", 1, "failed", (), sys.exc_info()
        )
    failed.created = CREATED
    line = json.loads(formatter.format(failed))
    assert line["message"] == "failed" and "ValueError: boom" in line["exc_info"]
    as_dict = _record("gateway.x", {"k": "v"}, ())  # type: ignore[arg-type]
    assert json.loads(formatter.format(as_dict))["k"] == "v"
