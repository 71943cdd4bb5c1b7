"""Where a report's records come from: the live log, or an export. Both give the same dicts:
an entry's canonical JSON (``chain.canonical_bytes``) as parsed, restricted to the names the
figures read. Records beyond the checkpoint's tree size are never read.

The database paths select only the columns the figures need and only the event types and
time range they can count (a narrowing the engine repeats, so it only saves work), and
build no ORM objects. Each reads with its driver directly: SQLAlchemy's result processing
cost about 100 us a row, ten times the driver's own. SQLite, the embedded default, is read
with the standard library's driver on a worker thread (``sqlite_records``); PostgreSQL with
asyncpg on a server-side cursor, a batch at a time (``postgres_records``). SQLAlchemy
remains only for a SQLite database that is not a file (``database_records``).
"""

from __future__ import annotations

import json
import json.scanner
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit.chain import format_time
from gateway.audit.models import AuditLogEntry
from gateway.audit.stores import map_database_errors
from gateway.audit.verifier import ENTRIES_FILE
from gateway.errors import AuditUnavailable
from gateway.reports.periods import Period

BATCH: Final = 20_000


Reads = Callable[[str], frozenset[str] | None]


async def database_records(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tree_size: int,
    period: Period,
    names: set[str],
    event_types: frozenset[str] | None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Entries 1..tree_size of the period, in seq order, as canonical-JSON dicts with only
    ``names`` (plus seq, time, event_type), a batch at a time, through SQLAlchemy (any
    database; used for a SQLite database that is not a file). AuditUnavailable if the
    database fails."""
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
                batch = []
                for row in rows:
                    record = {k: v for k, v in zip(wanted, row, strict=True) if v is not None}
                    record["time"] = format_time(record["time"])
                    batch.append(record)
                yield batch
                if len(rows) < BATCH:
                    return
                last = rows[-1].seq


def sqlite_file(sessions: async_sessionmaker[AsyncSession]) -> str | None:
    """The database file behind ``sessions`` if it is a SQLite file, else None."""
    engine = sessions.kw.get("bind")
    url = getattr(engine, "url", None)
    if url is None or url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return str(database)


def postgres_engine(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine | None:
    """The engine behind ``sessions`` if it is PostgreSQL over asyncpg, else None."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine):
        return None
    url = engine.url
    if url.get_backend_name() != "postgresql" or url.get_driver_name() != "asyncpg":
        return None
    return engine


_JSON_COLUMNS: Final = frozenset({"reason_codes", "obligations", "probe_digests", "detail"})
# 'YYYY-MM-DD HH:MM:SS.ffffff' (how SQLAlchemy stores a UTC time) as RFC 3339.
_RFC3339: Final = "substr(time, 1, 10) || 'T' || substr(time, 12) || 'Z'"


# typeshed types the C scanner's context as the scanner itself; it is the decoder.
_scan: Final = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _loads(text: str) -> Any:
    """``json.loads``, calling the C scanner straight: the wrapper and its two whitespace
    matches were half of decoding a one-element list. Anything else (whitespace around the
    value, bad JSON) goes to ``json.loads``, which decodes it or raises as usual."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


class _Decoder:
    """Rows (values in ``wanted`` order) into records, as the export's entries parse: a JSON
    column decoded only in records of the event types ``reads`` says a figure reads it of
    (None: all), and left out (None) of the others (``Evaluator.reads``). Checks that the
    rows come in seq order, across batches."""

    def __init__(self, wanted: list[str], reads: Reads) -> None:
        self.wanted = wanted
        self._decode = [(name, reads(name)) for name in wanted if name in _JSON_COLUMNS]
        self._last = 0

    def records(self, rows: Iterable[Sequence[Any]]) -> Iterator[dict[str, Any]]:
        wanted, decode, loads = self.wanted, self._decode, _loads
        last = self._last
        for row in rows:
            # A null column stays None here where the export leaves the name out: the
            # engine reads both alike (``query.getter``), and dict(zip()) runs in C.
            record = dict(zip(wanted, row, strict=True))
            for name, types in decode:
                text = record[name]
                if text is None:
                    continue
                if types is not None and record["event_type"] not in types:
                    record[name] = None  # no figure reads it of this record: not decoded
                    continue
                # Most lists and details are empty: spare the decoder (a third of the
                # read's time went to json.loads).
                record[name] = [] if text == "[]" else {} if text == "{}" else loads(text)
            seq = record["seq"]
            if seq <= last:
                raise AuditUnavailable("the audit log's rows are not in seq order")
            self._last = last = seq
            yield record


def sqlite_records(
    path: str,
    *,
    tree_size: int,
    period: Period,
    names: set[str],
    event_types: frozenset[str] | None,
    reads: Reads = lambda name: None,
) -> Iterator[dict[str, Any]]:
    """As ``database_records``, from a SQLite file, synchronously (run it on a thread).
    SQLAlchemy writes a time there as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC (``UTCDateTime``),
    which orders as text and becomes the export's RFC 3339 by two edits. A JSON column is
    decoded only where ``reads`` says a figure reads it (``_Decoder``).
    Raises AuditUnavailable if the file cannot be read."""
    decoder = _Decoder(sorted({"seq", "time", "event_type"} | names), reads)
    # The export's RFC 3339 time is made by SQLite: two edits, in C.
    columns = [_RFC3339 if name == "time" else name for name in decoder.wanted]
    # A plain scan in rowid order, which is seq order: the log only ever inserts the next
    # seqs (under its sequencer) and the database refuses UPDATE and DELETE. Checked by the
    # decoder all the same. Measured: twice as fast as walking an index and sorting by seq.
    sql = (
        f"SELECT {', '.join(columns)} FROM audit_log NOT INDEXED"  # noqa: S608 (model columns)
        " WHERE seq <= ? AND time >= ? AND time < ?"
    )
    params: list[Any] = [tree_size, _sqlite_time(period.start_text), _sqlite_time(period.end_text)]
    if event_types is not None:
        sql += f" AND event_type IN ({', '.join('?' * len(event_types))})"
        params += sorted(event_types)
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise AuditUnavailable(f"the audit log could not read the database ({exc})") from exc
    try:
        cursor = connection.execute(sql, params)
        while rows := cursor.fetchmany(BATCH):
            yield from decoder.records(rows)
    except sqlite3.Error as exc:
        raise AuditUnavailable(f"the audit log could not read the database ({exc})") from exc
    finally:
        connection.close()


# The export's RFC 3339 time (``chain.format_time``), made by the server.
_PG_RFC3339: Final = "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


async def postgres_records(
    engine: AsyncEngine,
    *,
    tree_size: int,
    period: Period,
    names: set[str],
    event_types: frozenset[str] | None,
    reads: Reads = lambda name: None,
) -> AsyncGenerator[Iterator[dict[str, Any]], None]:
    """As ``database_records``, from PostgreSQL: asyncpg on a server-side cursor (one
    statement, so one snapshot), on a connection of ``engine``'s pool. Each batch is
    yielded undecoded, as an iterator that builds its records when walked (``_Decoder``):
    walk it on a worker thread, and wholly, before asking for the next. The server writes
    the time as the export does. AuditUnavailable if the database fails."""
    decoder = _Decoder(sorted({"seq", "time", "event_type"} | names), reads)
    # JSON columns as text: the pool's connections decode json (SQLAlchemy sets the codec),
    # and the decoder decodes only what a figure reads.
    columns = [
        _PG_RFC3339 if name == "time" else f"{name}::text" if name in _JSON_COLUMNS else name
        for name in decoder.wanted
    ]
    sql = (
        f"SELECT {', '.join(columns)} FROM audit_log"  # noqa: S608 (model columns)
        " WHERE seq <= $1 AND time >= $2 AND time < $3"
    )
    params: list[Any] = [tree_size, period.start, period.end]
    if event_types is not None:
        sql += " AND event_type = ANY($4::text[])"
        params.append(sorted(event_types))
    sql += " ORDER BY seq"
    with map_database_errors():
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection  # the asyncpg connection (untyped)
            async with driver.transaction(readonly=True):
                cursor = await driver.cursor(sql, *params)
                while rows := await cursor.fetch(BATCH):
                    yield decoder.records(rows)
                    if len(rows) < BATCH:
                        return


def _sqlite_time(rfc3339: str) -> str:
    return rfc3339.replace("T", " ").removesuffix("Z")


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
