"""Two versions of the gateway against one upstream stub, in alternating rounds.

On a shared 2-core machine the same code measures differently from one minute to the next,
so a change is judged against its parent in the same run: each tree's gateway runs as its
own process (PYTHONPATH picks the tree; PostgreSQL or a SQLite file of its own, pattern
limits lifted, no inspection), and the rounds alternate A, B, B, A, ... so drift hits both
alike. Each round sends one load and reads the gateway process's CPU time from /proc.

    git worktree add /tmp/before HEAD~3
    .venv/bin/python bench/compare_trees.py /tmp/before . [--load sequential|rate|closed]
        [--rate 150] [--rounds 6] [--seconds 5] [--database postgresql|sqlite]

Both trees run on this checkout's virtualenv (its dependencies must serve both) and their
databases are prepared by this checkout's code (`gateway_latency.prepare`: an officer, a
warrant bound to the officer's agency registered by an admin, a case session), so the two
trees must share the schema (the same migrations). Every request is signed on its own
(`SignedRequests`) and both gateways keep the replay check on, as deployed; a load stops at
the first answer that is not a 200, so every figure is of allowed, forwarded requests.

Loads: `sequential` (one request at a time: the latency a lone request pays), `rate` (open
loop at --rate requests/s), `closed` (16 callers, each waiting for its answer). Prints per
tree the median over rounds of CPU ms per request and of the load's latency or throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from _pg import fresh_database
from bench_policy import lifted_policy
from gateway_latency import (
    BIN,
    BODY,
    SignedRequests,
    closed_loop,
    gateway_environment,
    open_loop,
    prepare,
    start,
    start_upstream,
)

from gateway.serving import free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# `facegate serve` from whichever tree PYTHONPATH names (the installed script would import
# the tree the virtualenv was installed from).
SERVE = "import sys; sys.argv[0] = 'facegate'; from gateway.cli import app; app()"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def sequential(url: str, headers: SignedRequests, seconds: float) -> tuple[float, int]:
    """Median latency in ms of requests sent one at a time, and how many were sent."""
    latencies = []
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=30) as client:
        while time.perf_counter() < deadline:
            signed = headers()  # the client's work, before the clock starts
            started = time.perf_counter()
            response = await client.post(url + "/", headers=signed, content=BODY)
            response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return statistics.median(latencies), len(latencies)


def one_round(
    load: str, url: str, headers: SignedRequests, options: argparse.Namespace
) -> tuple[dict[str, float], int]:
    """The load's figures (p50 and p99 ms, or requests/s) and how many requests were sent."""
    with _no_collections_in_this_process():
        return _one_round(load, url, headers, options)


@contextlib.contextmanager
def _no_collections_in_this_process() -> Iterator[None]:
    """The load generator's own garbage collector off while a round runs (collected before,
    on again after). Its full collections, over the requests and latencies it keeps, took
    tens of milliseconds on the development machine, which every request in flight then
    waited for: the p99 of one round in three, through whichever proxy was measured."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _one_round(
    load: str, url: str, headers: SignedRequests, options: argparse.Namespace
) -> tuple[dict[str, float], int]:
    if load == "sequential":
        p50, sent = asyncio.run(sequential(url, headers, options.seconds))
        return {"ms p50": p50}, sent
    if load == "rate":
        result = asyncio.run(open_loop("", url, headers, options.rate, options.seconds))
        figures = {"ms p50": result.percentile(0.5), "ms p99": result.percentile(0.99)}
        return figures, len(result.latencies_ms)
    rps = asyncio.run(closed_loop(url, headers, 16, options.seconds))
    return {"requests/s": rps}, int(rps * options.seconds)


@contextlib.contextmanager
def two_databases(kind: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """A database for each tree: fresh PostgreSQL databases, or SQLite files."""
    if kind == "sqlite":
        yield (f"sqlite+aiosqlite:///{workdir / 'a.db'}", f"sqlite+aiosqlite:///{workdir / 'b.db'}")
        return
    with fresh_database() as database_a, fresh_database() as database_b:
        yield database_a, database_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two source trees (A, B)")
    parser.add_argument("--load", choices=["sequential", "rate", "closed"], default="rate")
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="facegate-compare-"))
    upstream, upstream_url = start_upstream()
    gateways = []
    try:
        with two_databases(options.database, workdir) as (database_a, database_b):
            for name, tree, database_url in zip(
                "AB", options.trees, (database_a, database_b), strict=True
            ):
                environment = gateway_environment(
                    workdir, name, database_url, upstream_url, refuse_replays=True
                )
                credentials = asyncio.run(
                    prepare(database_url, Path(environment["FACEGATE_MASTER_KEY_FILE"]))
                )
                port = free_port()
                process = start(
                    # -P: the working directory must not shadow the tree on sys.path.
                    [str(BIN / "python"), "-P", "-c", SERVE, "serve", "--port", str(port)],
                    {
                        **environment,
                        "PYTHONPATH": str(tree.resolve()),
                        # Each tree's own policy: a change to the policy is a change too.
                        "FACEGATE_POLICY_DIR": str(
                            lifted_policy(workdir / f"policy-{name}", tree / "policies")
                        ),
                        "FACEGATE_PROBE_INSPECTION": "false",
                    },
                    port,
                    workdir / f"gateway-{name}.log",
                )
                url = f"http://127.0.0.1:{port}"
                gateways.append((name, tree, process, url, SignedRequests(url, credentials)))
            cpu: dict[str, list[float]] = {"A": [], "B": []}
            figures: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
            for round_number in range(options.rounds):
                order = gateways if round_number % 2 == 0 else gateways[::-1]
                for name, _, process, url, headers in order:
                    before = cpu_seconds(process.pid)
                    values, sent = one_round(options.load, url, headers, options)
                    cpu[name].append((cpu_seconds(process.pid) - before) * 1000 / sent)
                    for unit, value in values.items():
                        figures[name].setdefault(unit, []).append(value)
            print(
                f"{options.load} load, {options.database}, {options.rounds} rounds of"
                f" {options.seconds:g} s, medians"
            )
            for name, tree, *_ in gateways:
                rounds = ", ".join(f"{v:.2f}" for v in cpu[name])
                print(
                    f"  {name} {tree}: CPU {statistics.median(cpu[name]):.2f} ms/request"
                    f"  (rounds: {rounds})"
                )
                for unit, values in figures[name].items():
                    rounds = ", ".join(f"{v:.1f}" for v in values)
                    print(f"      {statistics.median(values):8.2f} {unit}  (rounds: {rounds})")
    finally:
        for *_, process, _, _ in gateways:
            process.terminate()
            process.wait(timeout=30)
        upstream.terminate()
        upstream.wait(timeout=30)


if __name__ == "__main__":
    main()
