"""A process that appends to the audit log until it is killed (the crash-safety test).

    python -m tests.audit.append_worker DATABASE_URL KEY_FILE ORIGIN CONCURRENCY

Prints the seq of every append it was told is committed, one per line, flushed at once:
what it printed is what a gateway would have forwarded.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from gateway.audit.checkpoint import Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord, EventType
from gateway.db import create_engine, session_factory


async def main(url: str, key_file: str, origin: str, concurrency: int) -> None:
    engine = create_engine(url)
    log = AuditLog(session_factory(engine), signer=Signer.load_or_create(Path(key_file), origin))

    async def appender(worker: int) -> None:
        count = 0
        while True:
            count += 1
            entry = await log.append(
                AuditRecord(
                    time=datetime.now(UTC),
                    request_id=f"w{worker}-{count}",
                    event_type=EventType.DECISION,
                    decision="allow",
                )
            )
            sys.stdout.write(f"{entry.seq}\n")
            sys.stdout.flush()

    await asyncio.gather(*(appender(i) for i in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
