"""Logs: one JSON object per line on stderr, through the standard library's logging.

python-json-logger rather than structlog: every module here, uvicorn, Alembic and httpx
already log through `logging.getLogger(__name__)`; a formatter on the root handler turns
all of them into JSON without touching a call site or adding a second logging API.
Fields a caller passes in `extra=` become keys of the object (the per-request line of
gateway/observability/requests.py is built that way).

What must never be logged (a secret, an image, a template, a probe's bytes) is kept out
where log lines are written: requests.py writes a fixed set of fields, and `startup`
below writes the database URL without its user, password or query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.core import RESERVED_ATTRS, LogData
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.startup")

_FORMAT = "{levelname}{name}{message}"
_TIMESTAMP = "time"


class _JsonLines(JsonFormatter):
    """JsonFormatter writing the same bytes for less: every request writes a line.

    json.dumps(cls=...) builds an encoder per line and hands the timestamp, a datetime, to
    the encoder's Python `default`, which tries seven kinds of value before `isoformat()`.
    Here one encoder of the same class and options serves every line (encoding keeps no
    state between calls), and the timestamp is turned into the text `default` would give.

    A plain record (a text message, no exception or stack: every request's line) is laid
    out by `format` itself, in JsonFormatter's order: the format's fields (renamed), the
    record's extra attributes, the timestamp. JsonFormatter's general path (defaults,
    static fields, a dict message, a prefix, hooks) costs twice as much for the same dict;
    anything else, or options this formatter was not built with, goes that way.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        encoder = self.json_encoder if self.json_default is None else None
        self._encoder: json.JSONEncoder | None = (
            encoder(ensure_ascii=self.json_ensure_ascii, indent=self.json_indent)
            if encoder is not None and self.json_serializer is json.dumps
            else None
        )
        # (record attribute, key written) for the format's fields, in the format's order.
        self._fields = [
            (name, self.rename_fields.get(name, name)) for name in self._required_fields
        ]
        self._plain = (
            self._encoder is not None
            and self.timestamp == _TIMESTAMP
            and "asctime" not in self._required_fields
            and not (self.defaults or self.static_fields or self.prefix)
            and not self.rename_fields_keep_missing
            and type(self).process_log_record is JsonFormatter.process_log_record
        )

    def format(self, record: logging.LogRecord) -> str:
        encoder = self._encoder
        if (
            not self._plain
            or encoder is None
            or isinstance(record.msg, dict)
            or record.exc_info
            or record.exc_text
            or record.stack_info
        ):
            return super().format(record)
        record.message = record.getMessage()
        attributes = record.__dict__
        log_data: LogData = {key: attributes.get(name) for name, key in self._fields}
        skip, rename = self._skip_fields, self.rename_fields
        for key, value in attributes.items():  # as pythonjsonlogger's merge_record_extra
            if key not in skip and not (hasattr(key, "startswith") and key.startswith("_")):
                log_data[rename.get(key, key)] = value
        log_data[_TIMESTAMP] = datetime.fromtimestamp(record.created, tz=UTC).isoformat()
        return encoder.encode(log_data)

    def jsonify_log_record(self, log_data: LogData) -> str:
        if self._encoder is None:
            return super().jsonify_log_record(log_data)
        stamp = log_data.get(_TIMESTAMP)
        if type(stamp) is datetime:
            log_data[_TIMESTAMP] = stamp.isoformat()  # what JsonEncoder.default writes
        return self._encoder.encode(log_data)


def json_formatter() -> logging.Formatter:
    return _JsonLines(
        _FORMAT,
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=_TIMESTAMP,  # ISO 8601, UTC
        # uvicorn adds the message again with terminal colour codes: not for a log file.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for every logger (uvicorn's included), at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn installs its own text handlers; its records go to the root's instead.
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every forwarded request at INFO: noise, and work, on the request path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The process id, thread and process names each record would look up (a system call
    # and two lookups, on every request's log line) are reserved attributes: the JSON
    # formatter never writes them.
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False


def database_without_credentials(url: str) -> str:
    """The database URL with no user, password or query (which may carry either)."""
    try:
        parsed = make_url(url)
    except Exception:
        return "(unparseable database URL)"
    bare = URL.create(
        parsed.drivername, host=parsed.host, port=parsed.port, database=parsed.database
    )
    return bare.render_as_string(hide_password=True)


def startup(services: Services) -> None:
    """Say, once, what this process serves with: which database, policy and log key."""
    settings = services.settings
    signer = services.audit.signer
    verifier = signer.verifier if signer is not None else None
    log.info(
        "facegate started",
        extra={
            "event": "startup",
            "database": database_without_credentials(settings.database_url),
            "policy_engine": services.policy.engine_name,
            "policy_revision": services.policy.revision,
            "log_origin": settings.log_origin,
            "log_key_id": verifier.key_id.hex() if verifier is not None else None,
            "log_public_key_sha256": (
                hashlib.sha256(verifier.public_key).hexdigest() if verifier is not None else None
            ),
            "vendors": [
                {"name": b.name, "protocol": b.protocol, "base_url": b.base_url}
                for b in services.inventory.backends
            ],
            "redis": settings.redis_url is not None,
        },
    )
