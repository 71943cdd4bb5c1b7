"""The audit step's share of a request's latency at a steady 500 requests per second on
PostgreSQL, against the floor of any durable append, in the same run.

Each request does what the gateway's pipeline does: append its decision record, wait for a
vendor that answers in 1 ms, append its outcome record. Its audit time is the two appends
together (so 500 requests/s are 1,000 appends/s). The floor does the same with one INSERT
+ COMMIT of a row (no tree, no signature) in place of each append.

    .venv/bin/python bench/append_latency.py [--rate 500] [--seconds 10]

Open loop: requests start on schedule whether or not earlier ones finished, as a gateway's
do. Prints p50/p99/max of each and the p99 ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from bench._pg import fresh_database
from bench.append_throughput import record
from gateway.audit.checkpoint import Signer
from gateway.audit.log import AuditLog
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async

VENDOR_SECONDS = 0.001


async def request(
    decision: Callable[[], Awaitable[object]], outcome: Callable[[], Awaitable[object]]
) -> float:
    """One request's audit time in ms: its decision append, then (after the vendor) its
    outcome append."""
    started = time.perf_counter()
    await decision()
    decided = time.perf_counter()
    await asyncio.sleep(VENDOR_SECONDS)
    answered = time.perf_counter()
    await outcome()
    return (decided - started + time.perf_counter() - answered) * 1000


async def open_loop(
    call: Callable[[int], Awaitable[float]], *, rate: int, seconds: float
) -> list[float]:
    latencies: list[float] = []

    async def one(i: int) -> None:
        latencies.append(await call(i))

    # A task group lets each finished request go, as a server does: holding thousands of
    # finished tasks to gather at the end made this process's own garbage collections the
    # p99 it measured.
    start = time.perf_counter()
    async with asyncio.TaskGroup() as requests:
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            requests.create_task(one(i))
    return latencies


def summary(latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return statistics.median(ordered), p99, ordered[-1]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with fresh_database() as url:
        await upgrade_async(url)
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("CREATE TABLE floor (id bigint primary key, body text not null)")
            )

        async def insert(i: int) -> None:
            async with engine.begin() as connection:
                await connection.execute(
                    sa.text("INSERT INTO floor VALUES (:i, :b)"),
                    {"i": i, "b": record(i).model_dump_json()},
                )

        log = AuditLog(session_factory(engine), signer=Signer.generate("bench/facegate"))

        async def floor(i: int) -> float:
            return await request(lambda: insert(2 * i), lambda: insert(2 * i + 1))

        async def audit(i: int) -> float:
            return await request(
                lambda: log.append(record(2 * i)), lambda: log.append(record(2 * i + 1))
            )

        await log.append(record(-1))
        base = summary(await open_loop(floor, rate=args.rate, seconds=args.seconds))
        ours = summary(await open_loop(audit, rate=args.rate, seconds=args.seconds))
        await log.aclose()
        await engine.dispose()
    print(f"{args.rate} requests/s for {args.seconds:.0f} s, two appends each")
    print(f"{'':<38}p50 ms   p99 ms   max ms")
    for name, (p50, p99, worst) in (
        ("floor (INSERT+COMMIT, twice)", base),
        ("audit step (decision + outcome)", ours),
    ):
        print(f"{name:<36}{p50:7.2f}  {p99:7.2f}  {worst:7.2f}")
    print(f"p99 ratio audit step / floor: {ours[1] / base[1]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
