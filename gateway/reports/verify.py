"""`facegate report verify`: recompute every figure of a report from an export of the log.

What is checked, in order; every failure is said, none stops the others being tried:

1. the report's checkpoint is a note signed by the log's key, and the origin, tree size and
   root hash the report states are the ones the note signs (a forged checkpoint fails);
2. the export is the log that checkpoint signs: the export verifies against its own
   checkpoint and the report's checkpoint is a prefix of it, i.e. the root of the export's
   first tree_size entries is the report's root (``verifier.verify_export`` with the
   report's checkpoint as an older one);
3. every figure recomputes, from entries 1..tree_size, with the query, period, audience,
   threshold and signal settings the report states, to the value it states (one altered
   digit fails, naming the figure);
4. if the export reaches past the report, that the log recorded a report with this
   digest (a report altered anywhere, title or label included, then fails when the export
   holds the record of its making, and no record with its digest).

Only the given public key is trusted: a report, or an export, carrying another key proves
nothing. Pure: reads files, writes nothing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.audit.checkpoint import Checkpoint, CheckpointError, Verifier
from gateway.audit.verifier import ENTRIES_FILE, verify_export
from gateway.reports.document import Report, load_report
from gateway.reports.periods import parse_period
from gateway.reports.service import compute
from gateway.reports.sources import export_records


class FigureDifference(BaseModel):
    id: str
    stated: Any
    recomputed: Any


class ReportCheck(BaseModel):
    ok: bool
    checkpoint_ok: bool = False
    export_ok: bool = False
    figures_checked: int = 0
    differing: list[FigureDifference] = []
    recorded_at_seq: int | None = None
    problems: list[str] = []


def verify_report(*, report_text: bytes, export_dir: Path, verifier: Verifier) -> ReportCheck:
    """Check a report file against an export directory and the log's public key."""
    try:
        report, digest = load_report(report_text)
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        return ReportCheck(ok=False, problems=[f"the report cannot be read: {first}"])
    problems: list[str] = []
    checkpoint_ok = _checkpoint_ok(report, verifier, problems)
    if report.public_key != str(verifier):
        problems.append("the report names another public key than the one given: not trusted")
        checkpoint_ok = False
    tree = verify_export(
        export_dir, verifier, older=[report.checkpoint.note.encode()] if checkpoint_ok else []
    )
    export_ok = tree.ok and checkpoint_ok
    if not tree.ok:
        problems.append(f"the export does not match the checkpoint: {tree.problem} ({tree.detail})")
    differing: list[FigureDifference] = []
    recorded: int | None = None
    if export_ok:
        differing = _recompute(report, export_dir)
        problems.extend(f"figure {d.id!r} does not recompute" for d in differing)
        recorded, seen_other = _recorded(report, digest, export_dir)
        if recorded is None and seen_other:
            problems.append(
                "the log recorded the making of a report of this template, period, audience"
                " and checkpoint, but none with this report's digest: it was altered"
            )
    return ReportCheck(
        ok=not problems,
        checkpoint_ok=checkpoint_ok,
        export_ok=export_ok,
        figures_checked=len(report.figures) if export_ok else 0,
        differing=differing,
        recorded_at_seq=recorded,
        problems=problems,
    )


def _checkpoint_ok(report: Report, verifier: Verifier, problems: list[str]) -> bool:
    stated = report.checkpoint
    try:
        signed = Checkpoint.open(stated.note, verifier)
    except CheckpointError as exc:
        problems.append(f"the report's checkpoint is not signed by the log's key: {exc}")
        return False
    root = base64.b64encode(signed.root_hash).decode("ascii")
    if (signed.origin, signed.size, root) != (stated.origin, stated.tree_size, stated.root_hash):
        problems.append(
            "the report states a checkpoint (origin, tree size or root hash) other than the"
            " one its signed note signs"
        )
        return False
    return True


def _recompute(report: Report, export_dir: Path) -> list[FigureDifference]:
    period = parse_period(report.period.label)
    values = compute(
        [figure.definition for figure in report.figures],
        period=period,
        audience=report.audience,
        settings=report.settings,
        records=export_records(export_dir, tree_size=report.checkpoint.tree_size),
    )
    differing = []
    for figure in report.figures:
        recomputed = values[figure.definition.id]
        if _canonical(recomputed) != _canonical(figure.value):
            differing.append(
                FigureDifference(
                    id=figure.definition.id, stated=figure.value, recomputed=recomputed
                )
            )
    return differing


def _canonical(value: Any) -> Any:
    """Numbers compare by value (a similarity of 99 is written 99 in an export and read
    99.0 from a database column); everything else exactly."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def _recorded(report: Report, digest: str, export_dir: Path) -> tuple[int | None, bool]:
    """The seq of the log's record of this report's making, if the export reaches it; and
    whether a record of a report like it (same template, period, audience, tree size) is
    there with another digest."""
    seen_other = False
    size = report.checkpoint.tree_size
    with (export_dir / ENTRIES_FILE).open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= size or b'"report"' not in line:
                continue
            record = json.loads(line)
            detail = record.get("detail") or {}
            if record.get("event_type") != "report" or detail.get("action") != "report.make":
                continue
            if detail.get("digest") == digest:
                return int(record["seq"]), False
            same = (
                detail.get("template") == report.template
                and detail.get("period") == report.period.label
                and detail.get("audience") == report.audience
                and detail.get("tree_size") == size
            )
            seen_other = seen_other or same
    return None, seen_other
