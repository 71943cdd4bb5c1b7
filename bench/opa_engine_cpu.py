"""The OPA-server engine's all-in CPU per request against the embedded engine's, in one run.

For each source tree given (default: this checkout), two gateways stand in front of one
upstream stub: one with the embedded engine and one with FACEGATE_POLICY_ENGINE=opa, which
launches its own `opa run --server` as a child process (no FACEGATE_OPA_URL), so the OPA
server's CPU is counted with the gateway's. Each gateway has its own database, the pattern
limits lifted, probe inspection off and the replay check on (compare_trees.py's set-up).
Rounds alternate the order (A B C D, D C B A, ...) so a shared machine's drift hits all
alike; each round sends one load and reads from /proc the CPU time of the gateway process
and of every process under it (the OPA server).

    .venv/bin/python bench/opa_engine_cpu.py [TREE ...] [--load closed|rate|sequential]
        [--rate 50] [--rounds 4] [--seconds 4] [--database postgresql|sqlite] [--opa PATH]

Two trees give a before/after of a change to the engine in the same run, e.g.
`git worktree add /tmp/before HEAD~1` then `bench/opa_engine_cpu.py /tmp/before .`.
All trees run on this checkout's virtualenv and share the schema (see compare_trees.py).

Prints per gateway CPU ms/request (all-in, and the OPA server's part) and the load's figure,
then per tree the OPA/embedded ratio of all-in CPU per request, taken round by round:
median (min-max) over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _pg import fresh_database
from bench_policy import lifted_policy
from compare_trees import SERVE, cpu_seconds, one_round
from gateway_latency import (
    BIN,
    REPO,
    SignedRequests,
    gateway_environment,
    prepare,
    start,
    start_upstream,
)

from gateway.serving import free_port

ENGINES = ("embedded", "opa")


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (its children's children too), from /proc."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(FileNotFoundError):
                children = [int(child) for child in task.read_text().split()]
                found += children
                pending += children
    return found


def cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except FileNotFoundError:  # exited between listing and reading
        return 0.0


@dataclass
class Gateway:
    tree: Path
    engine: str
    url: str
    process: subprocess.Popen[bytes]
    headers: SignedRequests
    log: Path
    cpu_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    figures: dict[str, list[float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.tree} {self.engine}"

    def cpu(self) -> tuple[float, float]:
        """(gateway process, processes under it) CPU seconds so far."""
        under = sum(cpu_or_zero(pid) for pid in descendants(self.process.pid))
        return cpu_seconds(self.process.pid), under


def start_gateway(
    name: str,
    tree: Path,
    engine: str,
    *,
    database_url: str,
    upstream_url: str,
    workdir: Path,
    opa: str,
) -> Gateway:
    environment = gateway_environment(
        workdir, name, database_url, upstream_url, refuse_replays=True
    )
    credentials = asyncio.run(prepare(database_url, Path(environment["FACEGATE_MASTER_KEY_FILE"])))
    port = free_port()
    process = start(
        # -P: the working directory must not shadow the tree on sys.path.
        [str(BIN / "python"), "-P", "-c", SERVE, "serve", "--port", str(port)],
        {
            **environment,
            "PYTHONPATH": str(tree.resolve()),
            # The engine launches the `opa` it finds on PATH.
            "PATH": f"{Path(opa).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "FACEGATE_POLICY_ENGINE": engine,
            # Trees before 2026-11-30 bounded the push of the policy to OPA by the policy
            # timeout (1 s), which a loaded machine overruns at start; no decision nears it.
            "FACEGATE_POLICY_TIMEOUT_SECONDS": "10",
            "FACEGATE_POLICY_DIR": str(lifted_policy(workdir)),
            "FACEGATE_PROBE_INSPECTION": "false",
        },
        port,
        workdir / f"gateway-{name}.log",
    )
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"gateway-{name}.log"
    gateway = Gateway(tree, engine, url, process, SignedRequests(url, credentials), log)
    if (engine == "opa") != bool(descendants(process.pid)):
        process.terminate()
        raise RuntimeError(f"{gateway.name}: expected an OPA server under the gateway only")
    return gateway


@contextlib.contextmanager
def databases(kind: str, count: int, workdir: Path) -> Iterator[list[str]]:
    """A database for each gateway: fresh PostgreSQL databases, or SQLite files."""
    if kind == "sqlite":
        yield [f"sqlite+aiosqlite:///{workdir / f'{n}.db'}" for n in range(count)]
        return
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(fresh_database()) for _ in range(count)]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, default=[REPO], help="source trees")
    parser.add_argument("--load", choices=["closed", "rate", "sequential"], default="closed")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--opa",
        default=shutil.which("opa") or str(REPO.parent / "shared" / "bin" / "opa"),
        help="the opa binary the OPA-server engine launches (default: on PATH)",
    )
    options = parser.parse_args()
    if not Path(options.opa).is_file():
        parser.error(f"no opa binary at {options.opa}; pass --opa")

    # The stub answers with no candidate: the request path without the leads book.
    os.environ.setdefault("FACEGATE_STUB_NO_MATCHES", "1")
    workdir = Path(tempfile.mkdtemp(prefix="facegate-opa-cpu-"))
    upstream, upstream_url = start_upstream()
    gateways: list[Gateway] = []
    count = len(options.trees) * len(ENGINES)
    try:
        with databases(options.database, count, workdir) as database_urls:
            pairs = [(tree, engine) for tree in options.trees for engine in ENGINES]
            for number, ((tree, engine), database_url) in enumerate(
                zip(pairs, database_urls, strict=True)
            ):
                gateways.append(
                    start_gateway(
                        f"{number}-{engine}",
                        tree,
                        engine,
                        database_url=database_url,
                        upstream_url=upstream_url,
                        workdir=workdir,
                        opa=options.opa,
                    )
                )
            for round_number in range(options.rounds):
                for gateway in gateways if round_number % 2 == 0 else gateways[::-1]:
                    own, under = gateway.cpu()
                    try:
                        values, sent = one_round(
                            options.load, gateway.url, gateway.headers, options
                        )
                    except httpx.HTTPStatusError as exc:
                        raise SystemExit(
                            f"{gateway.name}: {exc} {exc.response.text}; see {gateway.log}"
                        ) from exc
                    own_after, under_after = gateway.cpu()
                    server = (under_after - under) * 1000 / sent
                    gateway.server_ms.append(server)
                    gateway.cpu_ms.append((own_after - own) * 1000 / sent + server)
                    for unit, value in values.items():
                        gateway.figures.setdefault(unit, []).append(value)
            load = {"closed": "closed loop, 16 callers", "sequential": "one request at a time"}
            print(
                f"{load.get(options.load, f'{options.rate:g} req/s')}, {options.database},"
                f" {options.rounds} rounds of {options.seconds:g} s; median (min-max)"
                f"; load average {os.getloadavg()[0]:.1f}"
            )
            for gateway in gateways:
                rounds = ", ".join(f"{v:.2f}" for v in gateway.cpu_ms)
                print(f"  {gateway.name}: all-in CPU ms/request {spread(gateway.cpu_ms)}")
                print(f"      rounds: {rounds}")
                if gateway.engine == "opa":
                    print(f"      of which the OPA server {spread(gateway.server_ms)}")
                for unit, values in gateway.figures.items():
                    print(f"      {unit:<14} {spread(values)}")
            for tree in options.trees:
                embedded, opa = (g for g in gateways if g.tree == tree)
                ratios = [o / e for o, e in zip(opa.cpu_ms, embedded.cpu_ms, strict=True)]
                print(f"  {tree}: OPA / embedded all-in CPU per request {spread(ratios)}")
    finally:
        for gateway in gateways:
            gateway.process.terminate()
            gateway.process.wait(timeout=30)
        upstream.terminate()
        upstream.wait(timeout=30)


if __name__ == "__main__":
    main()
