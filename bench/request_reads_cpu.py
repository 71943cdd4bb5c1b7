"""CPU of steps 1 and 3 together, in process: a SigV4Authenticator reading a real database
authenticates each of N signed requests (signed beforehand), and `gather` completes its
policy input (the warrant judged, the activity windows reserved in memory, then
released). These are the request path's reads of the session and the warrant. Compare two
trees by pointing PYTHONPATH at each, alternating, in one run:

    for round in 1 2 3; do for tree in /tmp/before .; do
        PYTHONPATH=$tree .venv/bin/python bench/request_reads_cpu.py [--database sqlite]
    done; done

`-c` runs that many requests at once (a server's callers), each its own task. CPU is the
process's (every thread), per request, on uvloop as the server runs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from auth_cpu import WARM_UP, authenticating, on_database

import gateway
from gateway.context.activity import MemoryActivityStore
from gateway.context.face_sources import MemoryFaceSourceStore
from gateway.context.gather import gather
from gateway.operations import FaceOperation, OperationKind
from gateway.policy.contract import WarrantStatus
from gateway.requests import IncomingRequest
from gateway.vendors.rekognition import REQUIRED_SIGNED_HEADERS

SEARCH = FaceOperation(
    vendor="rekognition",
    name="SearchFacesByImage",
    kind=OperationKind.IDENTIFY,
    collection="mugshots",
    threshold=80.0,
    probe_digests=["sha256:" + "ab" * 32],
)


async def measure(database_url: str, master_key_file: Path, count: int, callers: int) -> float:
    """CPU ms per authenticate + gather."""
    faces, activity = MemoryFaceSourceStore(), MemoryActivityStore()
    async with authenticating(database_url, master_key_file) as (authenticator, reads, signed):

        async def one(request: IncomingRequest) -> None:
            session = await authenticator.authenticate(
                request, required_headers=REQUIRED_SIGNED_HEADERS
            )
            gathered = await gather(
                reads=reads,
                session=session,
                operation=SEARCH,
                images=(),
                probe_faces=(),
                target_faces=(),
                headers=request.headers,
                request_id=request.request_id,
                now=request.received_at,
                vendor=None,
                face_sources=faces,
                activity=activity,
            )
            assert gathered.policy_input.context.warrant.status is WarrantStatus.ACTIVE
            await activity.release(gathered.reservation)  # the windows stay the same size

        async def caller(requests: list[IncomingRequest]) -> None:
            for request in requests:
                await one(request)

        def batches(total: int) -> list[list[IncomingRequest]]:
            return [[signed() for _ in range(total // callers)] for _ in range(callers)]

        await asyncio.gather(*(caller(batch) for batch in batches(WARM_UP)))
        measured = batches(count)  # signed before the clock starts: the client's work
        started = time.process_time()
        await asyncio.gather(*(caller(batch) for batch in measured))
        return (time.process_time() - started) * 1000 / (count // callers * callers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("-c", type=int, default=1, help="requests at once")
    options = parser.parse_args()
    cpu = on_database(options.database, lambda url, key: measure(url, key, options.n, options.c))
    tree = Path(gateway.__file__).parent.parent
    print(f"{tree} {options.database} c={options.c}: {cpu:.4f} ms CPU per authenticate + gather")


if __name__ == "__main__":
    main()
