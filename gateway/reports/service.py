"""The reports service: list the templates, make a report, verify one against an export.
Keyword-only functions; the management API (gateway/api/reports.py) and the CLI
(gateway/cli/report.py) are thin callers.

Making a report, in order:
1. the latest signed checkpoint is read and opened with the log's key: the report covers
   exactly entries 1..tree_size of that checkpoint, whatever is appended meanwhile;
2. the figures are computed in one streaming pass over those entries (engine.py);
3. the report, with its digest, is recorded in the log (a ``report`` event: template,
   period, audience, tree size, digest) and only then returned. If the record cannot be
   written the report is not given out: an unrecorded report is one nobody can account for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.admin import Recorder
from gateway.audit.checkpoint import Checkpoint, CheckpointError, Verifier
from gateway.audit.log import AuditLog
from gateway.audit.reads import LogReader
from gateway.errors import AuditUnavailable, MalformedRequest, ServiceUnavailable
from gateway.reports.disclosure import published
from gateway.reports.document import Report, ReportCheckpoint, ReportFigure, ReportPeriod
from gateway.reports.engine import Evaluator
from gateway.reports.periods import Period, parse_period
from gateway.reports.query import Record
from gateway.reports.sources import (
    database_records,
    postgres_engine,
    postgres_records,
    sqlite_file,
    sqlite_records,
)
from gateway.reports.templates import (
    AUDIENCES,
    Audience,
    ReportField,
    ReportSettings,
    ReportTemplate,
    TemplateError,
    load_settings,
    load_templates,
)


class TemplateSummary(BaseModel):
    id: str
    title: str
    law: str
    period: str
    audiences: list[str]
    description: str
    fields: list[dict[str, str]]


def _templates(policy_dir: Path) -> dict[str, ReportTemplate]:
    try:
        return load_templates(policy_dir)
    except TemplateError as exc:
        # An installed template that does not load: no report until it is fixed.
        raise ServiceUnavailable(f"the report templates cannot be used: {exc}") from None


def list_templates(*, policy_dir: Path) -> list[TemplateSummary]:
    """Every template installed under ``policies/reports/templates``."""
    return [
        TemplateSummary(
            id=t.id,
            title=t.title,
            law=t.law,
            period=t.period,
            audiences=list(t.audiences),
            description=t.description,
            fields=[{"id": f.id, "label": f.label, "source": f.source} for f in t.fields],
        )
        for t in _templates(policy_dir).values()
    ]


def _choose(
    policy_dir: Path, template_id: str, period: str, audience: str
) -> tuple[ReportTemplate, Period, Audience]:
    templates = _templates(policy_dir)
    template = templates.get(template_id)
    if template is None:
        raise MalformedRequest(
            f"no report template {template_id!r} (installed: {', '.join(sorted(templates))})"
        )
    try:
        parsed = parse_period(period)
    except ValueError as exc:
        raise MalformedRequest(str(exc)) from None
    if audience not in AUDIENCES:
        raise MalformedRequest(f"audience must be one of {', '.join(AUDIENCES)}")
    chosen: Audience = "public" if audience == "public" else "oversight"
    if chosen not in template.audiences:
        raise MalformedRequest(
            f"template {template_id!r} is made for {', '.join(template.audiences)}, not {audience}"
        )
    return template, parsed, chosen


def compute(
    fields: Iterable[ReportField],
    *,
    period: Period,
    audience: Audience,
    settings: ReportSettings,
    records: Iterable[Record],
) -> dict[str, Any]:
    """Each field's value as published for ``audience``, from ``records`` (in log order).
    The one computation `make` (through ``Evaluator``) and `verify` share."""
    chosen = list(fields)
    evaluator = Evaluator(chosen, period, settings)
    evaluator.add_all(records)
    return _publish(evaluator, audience, settings)


def _publish(evaluator: Evaluator, audience: Audience, settings: ReportSettings) -> dict[str, Any]:
    threshold = settings.small_count_threshold
    return {
        name: published(result, audience=audience, threshold=threshold)
        for name, result in evaluator.results().items()
    }


async def make_report(
    *,
    template_id: str,
    period: str,
    audience: str,
    policy_dir: Path,
    audit: AuditLog,
    sessions: async_sessionmaker[AsyncSession],
    generated_by: str,
    now: datetime,
    record: Recorder,
) -> Report:
    """Compute a report at the latest signed checkpoint and record that it was made
    (``record("report.make", ...)``, a ``report`` event) before returning it.

    MalformedRequest for an unknown template, a bad period or an audience the template is
    not made for; AuditUnavailable before the first checkpoint, for a checkpoint the log's
    key does not open, or when the record cannot be written (the report is then not given).
    """
    template, parsed, chosen = _choose(policy_dir, template_id, period, audience)
    try:
        settings = load_settings(policy_dir)
    except TemplateError as exc:
        raise ServiceUnavailable(f"the report settings cannot be used: {exc}") from None
    signer = audit.signer
    if signer is None:
        raise AuditUnavailable("this gateway has no log signing key: reports cite its checkpoints")
    latest = await LogReader(audit.sessions).latest_checkpoint()
    if latest is None:
        raise AuditUnavailable("the log has signed no checkpoint yet: nothing to report on")
    try:
        checkpoint = Checkpoint.open(latest.note, signer.verifier)
    except CheckpointError as exc:
        raise AuditUnavailable(
            f"the latest checkpoint does not open with the log's key: {exc}"
        ) from None
    fields = template.fields_for(chosen)
    evaluator = Evaluator(fields, parsed, settings)
    size, names, types = checkpoint.size, evaluator.names, evaluator.event_types
    path, postgres = sqlite_file(sessions), postgres_engine(sessions)
    if path is not None:
        # The whole pass on a worker thread: the event loop keeps serving meanwhile.
        rows = sqlite_records(
            path,
            tree_size=size,
            period=parsed,
            names=names,
            event_types=types,
            reads=evaluator.reads,
        )
        await asyncio.to_thread(evaluator.add_all, rows)
    elif postgres is not None:
        # Fetched on the loop, decoded and counted on a worker thread, one batch at a time.
        async with contextlib.aclosing(
            postgres_records(
                postgres,
                tree_size=size,
                period=parsed,
                names=names,
                event_types=types,
                reads=evaluator.reads,
            )
        ) as batches:
            async for records in batches:
                await asyncio.to_thread(evaluator.add_all, records)
    else:
        async for batch in database_records(
            sessions, tree_size=size, period=parsed, names=names, event_types=types
        ):
            await asyncio.to_thread(evaluator.add_all, batch)  # one thread at a time, in order
    values = _publish(evaluator, chosen, settings)
    report = Report(
        template=template.id,
        template_digest=template.digest(),
        title=template.title,
        law=template.law,
        description=template.description,
        statutory_period=template.period,
        period=ReportPeriod(
            label=parsed.label, kind=parsed.kind, start=parsed.start, end=parsed.end
        ),
        audience=chosen,
        small_count_threshold=settings.small_count_threshold,
        settings=settings,
        generated_at=now,
        generated_by=generated_by,
        checkpoint=ReportCheckpoint(
            origin=checkpoint.origin,
            tree_size=checkpoint.size,
            root_hash=base64.b64encode(checkpoint.root_hash).decode("ascii"),
            note=latest.note,
        ),
        public_key=str(signer.verifier),
        figures=[ReportFigure(definition=f, value=values[f.id]) for f in fields],
    )
    await record(
        "report.make",
        template=template.id,
        period=parsed.label,
        audience=chosen,
        tree_size=checkpoint.size,
        digest=report.digest(),
    )
    return report


def public_key_of(text: str) -> Verifier:
    try:
        return Verifier.parse(text)
    except CheckpointError as exc:
        raise MalformedRequest(f"the public key: {exc}") from None
