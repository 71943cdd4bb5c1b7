"""Appends per second on PostgreSQL, synchronous commit on: group commit against one
transaction (and one signed checkpoint) per append, measured in the same run.

    .venv/bin/python bench/append_throughput.py [--appends 20000] [--concurrency 256]

Each append is durable (COMMIT waits for the WAL flush) and covered by a signed checkpoint
before it returns, in both modes. Prints appends/s for each and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._pg import fresh_database
from gateway.audit.checkpoint import Signer
from gateway.audit.log import AuditLog
from gateway.audit.reads import LogReader
from gateway.audit.records import AuditRecord, EventType
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async


def record(i: int) -> AuditRecord:
    return AuditRecord(
        time=datetime.now(UTC),
        request_id=f"bench-{i}",
        event_type=EventType.DECISION,
        agency="metro-pd",
        officer="officer-17",
        vendor="rekognition",
        operation="SearchFacesByImage",
        operation_kind="identify",
        case_number="2026-000123",
        decision="allow",
        reason_codes=["warrant_valid"],
        probe_digests=["sha256:" + "ab" * 32],
        policy_revision="sha256:" + "cd" * 32,
    )


async def run(url: str, *, appends: int, concurrency: int, max_batch: int) -> float:
    await upgrade_async(url)
    engine = create_engine(url)
    log = AuditLog(
        session_factory(engine), signer=Signer.generate("bench/facegate"), max_batch=max_batch
    )
    queue = iter(range(appends))

    async def worker() -> None:
        for i in queue:
            await log.append(record(i))

    await log.append(record(-1))  # warm the pool
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    assert (await LogReader(log.sessions).tree_size()) == appends + 1
    await log.aclose()
    await engine.dispose()
    return appends / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--baseline-appends", type=int, default=2000)
    args = parser.parse_args()
    with fresh_database() as url:
        baseline = await run(
            url, appends=args.baseline_appends, concurrency=args.concurrency, max_batch=1
        )
    with fresh_database() as url:
        batched = await run(url, appends=args.appends, concurrency=args.concurrency, max_batch=512)
    print(f"one transaction per append: {baseline:8.0f} appends/s")
    print(f"group commit:               {batched:8.0f} appends/s")
    print(f"ratio group/one-per-append: {batched / baseline:8.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
