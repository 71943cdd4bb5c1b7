"""CPU of the authenticate and claim steps alone, in process: a SigV4Authenticator reading
a real database authenticates and spends each of N signed requests (signed beforehand, so
the client's signing is not counted). Compare two trees by pointing PYTHONPATH at each:

    PYTHONPATH=/tmp/before .venv/bin/python bench/auth_cpu.py [--database sqlite] [-n 2000]
    PYTHONPATH=. .venv/bin/python bench/auth_cpu.py [--database sqlite] [-n 2000]

CPU is the process's (every thread: aiosqlite's too), per request, on uvloop as the
server runs.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvloop
from _pg import fresh_database
from gateway_latency import BODY, SignedRequests, prepare

from gateway.auth.authenticator import SigV4Authenticator
from gateway.auth.replay import MemoryReplayCache
from gateway.auth.secrets import MasterKey
from gateway.db import RequestReader, create_engine
from gateway.requests import IncomingRequest
from gateway.vendors.rekognition import REQUIRED_SIGNED_HEADERS

HOST = "127.0.0.1:1"
WARM_UP = 200


@contextlib.asynccontextmanager
async def authenticating(
    database_url: str, master_key_file: Path
) -> AsyncIterator[tuple[SigV4Authenticator, RequestReader, Callable[[], IncomingRequest]]]:
    """An officer's case session in a fresh database (`gateway_latency.prepare`), an
    authenticator reading it as the server does, its reader, and a maker of requests
    signed with that session's key (the client's work: call it before the clock starts).
    """
    credentials = await prepare(database_url, master_key_file)
    engine = create_engine(database_url)
    reads = await RequestReader.open(engine)
    authenticator = SigV4Authenticator(
        reads=reads,
        master_key=MasterKey.load_or_create(master_key_file),
        max_clock_skew=timedelta(minutes=5),
        replays=MemoryReplayCache(),
    )
    sign = SignedRequests(f"http://{HOST}", credentials)

    def signed() -> IncomingRequest:
        headers = {name.lower(): value for name, value in sign().items()} | {"host": HOST}
        return IncomingRequest(
            request_id=uuid.uuid4().hex,
            received_at=datetime.now(UTC),
            method="POST",
            path="/",
            query="",
            headers=headers,
            body=BODY,
            client_address=None,
        )

    try:
        yield authenticator, reads, signed
    finally:
        await reads.aclose()
        await engine.dispose()


def on_database(database: str, measure: Callable[[str, Path], Awaitable[float]]) -> float:
    """`measure(database_url, master_key_file)` on a fresh PostgreSQL database or a SQLite
    file, on uvloop as the server runs."""
    with tempfile.TemporaryDirectory() as directory:
        key = Path(directory) / "master.key"
        if database == "postgresql":
            with fresh_database() as url:
                return uvloop.run(measure(url, key))
        return uvloop.run(measure(f"sqlite+aiosqlite:///{directory}/g.db", key))


async def measure(database_url: str, master_key_file: Path, count: int) -> float:
    """CPU ms per authenticate + spend."""
    async with authenticating(database_url, master_key_file) as (authenticator, _, signed):
        requests = [signed() for _ in range(count + WARM_UP)]
        started = 0.0
        for number, request in enumerate(requests):
            if number == WARM_UP:
                started = time.process_time()
            await authenticator.authenticate(request, required_headers=REQUIRED_SIGNED_HEADERS)
            await authenticator.spend(request)
        return (time.process_time() - started) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("-n", type=int, default=2000)
    options = parser.parse_args()
    cpu = on_database(options.database, lambda url, key: measure(url, key, options.n))
    print(f"{options.database}: {cpu:.3f} ms CPU per authenticate + spend")


if __name__ == "__main__":
    main()
