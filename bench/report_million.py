"""Every report template over a year of a log of 1,000,000 entries, each against a plain
scan of the same rows in the same run: time and peak memory (RSS high-water mark, reset
before each run).

    .venv/bin/python bench/report_million.py [--records 1000000] [--database sqlite|postgres]
        [--keep DIR]

``--keep DIR`` keeps the built log (SQLite: DIR/facegate.db; PostgreSQL: the database named
in DIR/postgres-database) with its signing key (DIR/log.key), and a later run with the same
DIR and record count measures the templates again without rebuilding (about 5 minutes at
1,000,000 entries). A kept PostgreSQL database is the caller's to drop.

The log is written straight into the audit tables (not through the gateway): realistic
searches (a decision record, and an outcome when allowed), the leads contract's lead,
review, action and authorisation records, admin actions and reads, spread over 2026, each
entry hashed as the log hashes it (RFC 8785 leaves) and a checkpoint signed over them. The
tree's inner nodes are not written (reports read entries and the checkpoint only), so the
report's own record is not appended here: the service is given a recorder that keeps it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rfc8785
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._pg import fresh_database, kept_database
from gateway.audit import merkle
from gateway.audit.chain import GENESIS_HASH, chain_hash, format_time
from gateway.audit.checkpoint import Checkpoint, Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord
from gateway.audit.stores.base import CHECKPOINT_TABLE, LOG_TABLE
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async
from gateway.reports.service import make_report
from gateway.reports.sources import sqlite_file
from gateway.reports.templates import load_templates

POLICIES = Path(__file__).resolve().parents[1] / "policies"
OFFENSES = ["homicide", "robbery", "carjacking", "sexual_assault", "arson", "burglary"]
REASONS = ["warrant_unknown", "offense_not_allowed", "missing_case_number", "burst"]
START = datetime(2026, 1, 1, tzinfo=UTC)
EMPTY: dict[str, Any] = {name: None for name in AuditRecord.model_fields} | {
    "reason_codes": [],
    "obligations": {},
    "probe_digests": [],
    "detail": {},
}


def entries(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` records in their JSON form (time as a datetime), in time order."""
    rng = random.Random(seed)
    step = timedelta(days=365) / count
    made = 0
    when = START

    def emit(**fields: Any) -> dict[str, Any]:
        return (
            EMPTY | {"time": when, "request_id": uuid.UUID(int=rng.getrandbits(128)).hex} | fields
        )

    while True:
        agency = f"agency-{rng.randrange(5)}"
        officer = f"{agency}-officer-{rng.randrange(40)}"
        search = {
            "agency": agency,
            "officer": officer,
            "vendor": rng.choice(["rekognition", "azure", "compreface"]),
            "operation": "SearchFacesByImage",
            "operation_kind": "identify",
            "collection": rng.choice(["mugshots", "mugshots", "dmv"]),
            "purpose": "criminal_investigation",
            "case_number": f"2026-{rng.randrange(20_000):05d}",
            "offense": rng.choice(OFFENSES),
            "legal_basis": "exigent" if rng.random() < 0.02 else "warrant",
            "probe_digests": [f"sha256:{rng.getrandbits(256):064x}"],
        }
        batch: list[dict[str, Any]] = []
        allowed = rng.random() < 0.9
        decision = emit(
            **search,
            event_type="decision",
            decision="allow" if allowed else "deny",
            reason_codes=[] if allowed else [rng.choice(REASONS)],
            policy_revision="sha256:" + "cd" * 32,
        )
        batch.append(decision)
        if allowed:
            matches = rng.choice([0, 1, 1, 2, 3])
            batch.append(
                emit(
                    **search,
                    event_type="outcome",
                    request_id=decision["request_id"],
                    decision="allow",
                    upstream_status=200,
                    match_count=matches,
                    top_similarity=99.1 if matches else None,
                    latency_ms=12.5,
                    detail={"leads": [], "negative_result": matches == 0},
                )
            )
            for rank in range(1, matches + 1):
                lead_id = uuid.UUID(int=rng.getrandbits(128)).hex
                batch.append(
                    emit(
                        **search,
                        event_type="lead",
                        match_count=1,
                        top_similarity=99.1 - rank,
                        detail={"lead_id": lead_id, "rank": rank, "status": "pending"},
                    )
                )
                if rng.random() < 0.2:
                    verdict = rng.choice(["confirmed", "rejected", "inconclusive"])
                    batch.append(
                        emit(
                            **search | {"officer": f"{agency}-reviewer"},
                            event_type="lead_review",
                            decision="allow",
                            detail={"lead_id": lead_id, "verdict": verdict},
                        )
                    )
                    if verdict == "confirmed" and rng.random() < 0.3:
                        kind = rng.choice(["arrest", "lineup", "convicted", "contacted"])
                        batch.append(
                            emit(
                                **search,
                                event_type="lead_action",
                                decision="allow",
                                detail={"lead_id": lead_id, "kind": kind},
                            )
                        )
            if search["legal_basis"] == "exigent":
                state = rng.choice(["granted", "granted", "refused", "overdue"])
                for step_state in ("opened", state):
                    batch.append(
                        emit(
                            **search,
                            event_type="authorisation",
                            detail={
                                "authorisation_id": decision["request_id"],
                                "state": step_state,
                            },
                        )
                    )
        if rng.random() < 0.03:
            batch.append(
                emit(event_type="audit_read", officer="auditor-1", detail={"action": "audit.list"})
            )
        for entry in batch:
            yield entry
            made += 1
            when += step
            if made == count:
                return


def build(url: str, count: int, signer: Signer) -> None:
    """Write ``count`` entries and a checkpoint signed over them, in batches."""
    engine = sa.create_engine(url)
    compact = merkle.CompactRange()
    prev = GENESIS_HASH
    rows: list[dict[str, Any]] = []
    with engine.begin() as connection:
        for seq, entry in enumerate(entries(count), start=1):
            canonical = {k: v for k, v in entry.items() if v is not None}
            canonical |= {"time": format_time(entry["time"]), "seq": seq}
            leaf = rfc8785.dumps(canonical)
            prev = chain_hash(prev, leaf)
            compact.append(merkle.leaf_hash(leaf))
            rows.append(entry | {"seq": seq, "prev_hash": "00" * 32, "record_hash": prev.hex()})
            if len(rows) == 20_000:
                connection.execute(LOG_TABLE.insert(), rows)
                rows.clear()
        if rows:
            connection.execute(LOG_TABLE.insert(), rows)
        checkpoint = Checkpoint(signer.name, compact.size, compact.root())
        connection.execute(
            CHECKPOINT_TABLE.insert(),
            [
                {
                    "tree_size": checkpoint.size,
                    "root_hash": checkpoint.root_hash,
                    "note": checkpoint.sign(signer),
                    "created_at": datetime.now(UTC),
                }
            ],
        )
    engine.dispose()


def raw_scan(path: str, count: int) -> None:
    """Every row, every column, in seq order, through the standard library's driver."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = 0
    cursor = connection.execute("SELECT * FROM audit_log ORDER BY seq")
    while batch := cursor.fetchmany(20_000):
        rows += len(batch)
    connection.close()
    assert rows == count


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets the RSS high-water mark to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")


async def measured(run: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[float, float, float]:
    """(seconds, peak RSS MB, RSS MB before) of one run."""
    reset_peak()
    before = peak_mb()
    started = time.perf_counter()
    await run()
    return time.perf_counter() - started, peak_mb(), before


def built_size(sync_url: str) -> int:
    """The tree size of the latest checkpoint of a kept log (0: none)."""
    engine = sa.create_engine(sync_url)
    try:
        with engine.connect() as connection:
            size = connection.execute(sa.select(sa.func.max(CHECKPOINT_TABLE.c.tree_size)))
            return int(size.scalar() or 0)
    except sa.exc.DBAPIError:
        return 0
    finally:
        engine.dispose()


async def bench(
    async_url: str,
    sync_url: str,
    count: int,
    audience_wanted: str,
    kept_dir: Path | None,
    only: set[str] | None,
) -> None:
    if kept_dir is None:
        signer = Signer.generate("bench/facegate")
    else:
        signer = Signer.load_or_create(kept_dir / "log.key", "bench/facegate")
    size = built_size(sync_url) if kept_dir is not None else 0
    if size == count:
        print(f"reusing the kept log of {count} entries")
    elif size:
        raise SystemExit(f"the kept log holds {size} entries, not {count}: use another --keep")
    else:
        await upgrade_async(async_url)
        started = time.perf_counter()
        await asyncio.to_thread(build, sync_url, count, signer)
        print(f"built {count} entries in {time.perf_counter() - started:.0f} s")
    print("load average before the runs: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    engine = create_engine(async_url)
    sessions = session_factory(engine)
    audit = AuditLog(sessions, signer=signer)
    kept: list[dict[str, Any]] = []

    async def keep(action: str, **detail: Any) -> None:
        kept.append(detail)

    sqlite_path = sqlite_file(sessions)

    async def plain_scan() -> None:
        if sqlite_path is not None:  # the driver the reports use on SQLite, on a thread
            await asyncio.to_thread(raw_scan, sqlite_path, count)
            return
        # The driver the reports use on PostgreSQL: asyncpg, a server-side cursor.
        rows = 0
        async with engine.connect() as connection:
            driver: Any = (await connection.get_raw_connection()).driver_connection
            async with driver.transaction(readonly=True):
                cursor = await driver.cursor("SELECT * FROM audit_log ORDER BY seq")
                while batch := await cursor.fetch(20_000):
                    rows += len(batch)
        assert rows == count

    seconds, peak, before = await measured(plain_scan)
    print(
        f"{'plain scan: every row, all columns':40} {seconds:6.2f} s  peak {peak:5.0f} MB"
        f" (from {before:.0f})  load {os.getloadavg()[0]:.1f}"
    )
    for template, made in load_templates(POLICIES).items():
        if only is not None and template not in only:
            continue
        audience = audience_wanted if audience_wanted in made.audiences else made.audiences[0]

        async def run(template: str = template, audience: str = audience) -> None:
            await make_report(
                template_id=template,
                period="2026",
                audience=audience,
                policy_dir=POLICIES,
                audit=audit,
                sessions=sessions,
                generated_by="bench",
                now=datetime.now(UTC),
                record=keep,
            )

        seconds, peak, before = await measured(run)
        print(
            f"{template + ' (2026, ' + audience + ')':40} {seconds:6.2f} s  peak {peak:5.0f} MB"
            f" (from {before:.0f})  load {os.getloadavg()[0]:.1f}"
        )
    await audit.aclose()
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--audience",
        choices=["public", "oversight"],
        default="public",
        help="where a template offers it (the misuse signals are for oversight only)",
    )
    parser.add_argument("--templates", help="only these templates, comma-separated")
    parser.add_argument("--keep", type=Path, help="keep the built log here, or reuse it")
    args = parser.parse_args()
    keep: Path | None = args.keep
    only = set(args.templates.split(",")) if args.templates else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    if args.database == "postgres":
        if keep is not None:
            url = kept_database(keep / "postgres-database")
            sync_url = url.replace("postgresql+asyncpg", "postgresql+psycopg")
            asyncio.run(bench(url, sync_url, args.records, args.audience, keep, only))
            return
        with fresh_database() as url:
            sync_url = url.replace("postgresql+asyncpg", "postgresql+psycopg")
            asyncio.run(bench(url, sync_url, args.records, args.audience, None, only))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = (keep or Path(tmp)) / "facegate.db"
        sqlite = f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}"
        asyncio.run(bench(*sqlite, args.records, args.audience, keep, only))


if __name__ == "__main__":
    main()
