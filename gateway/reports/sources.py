"""Where a report's records come from: the live log, or an export. Both give the same dicts:
an entry's canonical JSON (``chain.canonical_bytes``) as parsed, restricted to the names the
figures read. Records beyond the checkpoint's tree size are never read.

The database path selects only the columns the figures need and only the event types and
time range they can count (a narrowing the engine repeats, so it only saves work): a year
of a million entries is read in seconds without building a million ORM objects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.chain import format_time
from gateway.audit.models import AuditLogEntry
from gateway.audit.stores import map_database_errors
from gateway.audit.verifier import ENTRIES_FILE
from gateway.reports.periods import Period

BATCH: Final = 20_000


async def database_records(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tree_size: int,
    period: Period,
    names: set[str],
    event_types: frozenset[str] | None,
) -> AsyncIterator[dict[str, Any]]:
    """Entries 1..tree_size of the period, in seq order, as canonical-JSON dicts with only
    ``names`` (plus seq, time, event_type). AuditUnavailable if the database fails."""
    wanted = sorted({"seq", "time", "event_type"} | names)
    columns = [getattr(AuditLogEntry, name) for name in wanted]
    last = 0
    with map_database_errors():
        async with sessions() as session:
            while True:
                statement = (
                    select(*columns)
                    .where(AuditLogEntry.seq > last, AuditLogEntry.seq <= tree_size)
                    .where(AuditLogEntry.time >= period.start, AuditLogEntry.time < period.end)
                    .order_by(AuditLogEntry.seq)
                    .limit(BATCH)
                )
                if event_types is not None:
                    statement = statement.where(AuditLogEntry.event_type.in_(sorted(event_types)))
                rows = (await session.execute(statement)).all()
                for row in rows:
                    record = {k: v for k, v in zip(wanted, row, strict=True) if v is not None}
                    record["time"] = format_time(record["time"])
                    yield record
                if len(rows) < BATCH:
                    return
                last = rows[-1].seq


def export_records(directory: Path, *, tree_size: int) -> Iterator[dict[str, Any]]:
    """Entries 1..tree_size of an export (``entries.jsonl``), parsed. The export is checked
    against the checkpoint first (``verify.py``); this only reads."""
    with (directory / ENTRIES_FILE).open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number > tree_size:
                return
            record = json.loads(line)
            if isinstance(record, dict):
                yield record
