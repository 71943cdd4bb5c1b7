"""The live log's sources give the records the export gives: the same names, the same
values (time as RFC 3339 with microseconds, JSON columns decoded), on each database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.audit.fsck import LogChecker
from gateway.audit.records import EventType
from gateway.audit.verifier import ENTRIES_FILE
from gateway.reports.periods import parse_period
from gateway.reports.sources import (
    export_records,
    postgres_engine,
    postgres_records,
    sqlite_file,
    sqlite_records,
)
from tests.reports.support import Log, at, contract_record, search

NAMES = {
    "agency", "officer", "case_number", "operation_kind", "decision", "reason_codes",
    "probe_digests", "detail", "match_count", "top_similarity", "legal_basis", "vendor",
}  # fmt: skip


async def _live(log: Log, tree_size: int) -> list[dict[str, Any]]:
    period = parse_period("2026")
    path, postgres = sqlite_file(log.sessions), postgres_engine(log.sessions)
    if path is not None:
        rows = sqlite_records(
            path, tree_size=tree_size, period=period, names=NAMES, event_types=None
        )
        return await asyncio.to_thread(list, rows)
    assert postgres is not None
    records: list[dict[str, Any]] = []
    async for batch in postgres_records(
        postgres, tree_size=tree_size, period=period, names=NAMES, event_types=None
    ):
        records.extend(batch)
    return records


async def test_the_live_log_reads_as_its_export(any_log: Log, tmp_path: Path) -> None:
    odd = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)  # microseconds that show
    await any_log.add(search(when=odd, probe="sha256:" + "ab" * 32))
    await any_log.add(search(when=at(5), allow=False, reasons=("warrant_unknown",)))
    await any_log.add(
        [
            contract_record(
                EventType.AUTHORISATION,
                when=at(6),
                detail={"authorisation_id": "a-1", "state": "refused", "nested": {"x": [1]}},
                agency="Metro PD",
            )
        ]
    )
    export = tmp_path / "export"
    await LogChecker(any_log.audit.sessions).export(export)
    size = sum(1 for _ in (export / ENTRIES_FILE).open())
    live = await _live(any_log, size)

    expected = []
    for entry in export_records(export, tree_size=size):
        wanted = NAMES | {"seq", "time", "event_type"}
        expected.append({k: v for k, v in entry.items() if k in wanted})
    got = [{k: v for k, v in r.items() if v is not None} for r in live]
    assert len(got) == size == 4
    assert got == expected
    assert got[0]["time"] == "2026-03-04T05:06:07.890123Z"
