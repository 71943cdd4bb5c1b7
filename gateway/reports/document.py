"""A report as published: the figures, each with the query that made it, and everything a
verifier needs to recompute them (period, audience, threshold, signal settings) and to tie
them to the log (the signed checkpoint they were computed at, and the log's public key).

Its digest (SHA-256 of its canonical JSON, ``digest_of``) is what the log records when it
is made.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from gateway.reports.templates import Audience, ReportField, ReportSettings

FORMAT = "facegate-report/1"


class ReportCheckpoint(BaseModel):
    """The signed checkpoint the figures were computed at: entries 1..tree_size."""

    model_config = ConfigDict(frozen=True)

    origin: str
    tree_size: int
    root_hash: str  # base64, as in the note
    note: str  # the signed note, byte for byte: its signature is checked by `report verify`


class ReportPeriod(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    kind: str
    start: datetime
    end: datetime  # exclusive


class ReportFigure(BaseModel):
    """One figure: its definition (the template's field, query included) and its value as
    published for the report's audience."""

    model_config = ConfigDict(frozen=True)

    definition: ReportField
    value: Any


class Report(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: str = FORMAT
    template: str
    template_digest: str
    title: str
    law: str
    description: str
    statutory_period: str
    period: ReportPeriod
    audience: Audience
    small_count_threshold: int
    settings: ReportSettings
    generated_at: datetime
    generated_by: str
    checkpoint: ReportCheckpoint
    public_key: str
    figures: list[ReportFigure]

    def document(self) -> dict[str, Any]:
        """The report as JSON (what `--format json` writes and the API returns)."""
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        return digest_of(self.document())


def digest_of(document: Any) -> str:
    """``sha256:<hex>`` of a report's JSON with sorted keys, no whitespace, UTF-8.

    Not RFC 8785 (the log's leaves are): a year's oversight report can list hundreds of
    thousands of searches, and the pure-Python canonicaliser took longer than the figures.
    Maker and verifier both serialise with Python's json, which is deterministic for the
    values a report holds (text, integers, floats from the log, lists, objects)."""
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def load_report(text: str | bytes) -> tuple[Report, str]:
    """A report file, and the digest of the JSON as it stands in the file. ValueError if it
    is not a report."""
    raw = json.loads(text)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} JSON document (only the JSON format is verifiable)")
    return Report.model_validate(raw), digest_of(raw)
