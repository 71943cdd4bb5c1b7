"""User-space instructions per request of whole proxies, counted by callgrind.

On a shared 2-core machine CPU time per request moves by 20 % from one round to the next
(other tenants, caches), so a cut of a few per cent is invisible in it. Instructions are
not: valgrind's callgrind counts the same number for the same code and inputs whatever
else the machine does (two runs of one tree agreed within 0.4 %). Each proxy runs under
`valgrind --tool=callgrind --instr-atstart=no`; counting is switched on only after a warm-up
(`callgrind_control -i on`) and off after N requests, so start-up is not counted.

    .venv/bin/python bench/instructions_per_request.py [TREE ...] [--database sqlite]
        [--requests 96] [--callers 8] [--bare]

Each TREE (default: this checkout) is a facegate source tree run as compare_trees.py runs
it (its own database, the pattern limits lifted, no inspection, the replay check on, the
stub answering no match); `--bare` adds the bare forwarding proxy (bench/bare_proxy.py).
Prints instructions per request and, apart, those in OpenSSL's SHA-256: valgrind hides the
CPU's SHA extensions, so hashing costs several times more instructions under it than it
does natively, and the figure without it is the one to compare.

What this does not count: the kernel (system calls, the network stack), which is most of a
bare proxy's CPU, and waiting. So it measures cuts to facegate's own work; the CPU ratio
to the bare proxy comes from cpu_per_request.py.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from _pg import fresh_database
from bench_policy import lifted_policy
from compare_trees import SERVE
from gateway_latency import (
    BIN,
    BODY,
    REPO,
    SignedRequests,
    gateway_environment,
    prepare,
    start_upstream,
)

from gateway.serving import free_port

WARM_UP_REQUESTS = 40
START_SECONDS = 900  # start-up under valgrind runs some 50 times slower
_SHA256 = re.compile(r":SHA256_(Update|Final) ")
_COST = re.compile(r"\s*(?P<cost>[\d,]+) \([\s\d.]+%\)\s+(?P<where>.*)$")


async def send(url: str, headers: SignedRequests, count: int, callers: int) -> None:
    """`count` requests (rounded down to a multiple of `callers`), `callers` at a time."""
    async with httpx.AsyncClient(timeout=600) as client:

        async def caller(requests: int) -> None:
            for _ in range(requests):
                response = await client.post(url + "/", headers=headers(), content=BODY)
                response.raise_for_status()

        await asyncio.gather(*(caller(count // callers) for _ in range(callers)))


def counted(
    command: list[str], env: dict[str, str], url: str, headers: SignedRequests, out: Path,
    options: argparse.Namespace,
) -> tuple[float, float]:  # fmt: skip
    """Instructions per request of the server `command` starts, and those in SHA-256."""
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    with out.with_suffix(".log").open("wb") as log:  # a file: a full pipe stalls a server
        process = subprocess.Popen(
            [*valgrind, f"--callgrind-out-file={out}", *command],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                httpx.get(url + "/facegate/health", timeout=5)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start; see {log.name}") from None
                time.sleep(1)
        asyncio.run(send(url, headers, WARM_UP_REQUESTS, options.callers))
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(process.pid)], check=True, capture_output=True)
        asyncio.run(send(url, headers, options.requests, options.callers))
        subprocess.run([*control, "off", str(process.pid)], check=True, capture_output=True)
    finally:
        process.terminate()
        process.wait(timeout=300)
    sent = options.requests // options.callers * options.callers
    total, sha256 = _totals(out)
    return total / sent, sha256 / sent


def _totals(out: Path) -> tuple[int, int]:
    """All instructions counted, and those spent in OpenSSL's SHA-256 (the inclusive cost
    of SHA256_Update and SHA256_Final, whose block function has no symbol of its own)."""
    files = sorted(glob.glob(f"{out}*"))
    report = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", *files],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    total = sha256 = 0
    for line in report.splitlines():
        found = _COST.match(line)
        if found is None:
            continue
        cost = int(found["cost"].replace(",", ""))
        if "PROGRAM TOTALS" in found["where"]:
            total = cost
        elif _SHA256.search(found["where"]):
            sha256 += cost
    return total, sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, default=[REPO])
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--bare", action="store_true", help="count the bare proxy too")
    options = parser.parse_args()
    os.environ["FACEGATE_STUB_NO_MATCHES"] = "1"
    workdir = Path(tempfile.mkdtemp(prefix="facegate-instructions-"))
    upstream, upstream_url = start_upstream()
    rows: list[tuple[str, float, float]] = []
    try:
        if options.bare:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            uvicorn = [str(BIN / "python"), str(BIN / "uvicorn"), "--app-dir", str(REPO / "bench")]
            command = [*uvicorn, "bare_proxy:app", "--port", str(port), "--log-level", "warning"]
            env = {"FACEGATE_BARE_UPSTREAM": upstream_url}
            figures = counted(command, env, url, SignedRequests(url, None), workdir / "bare.out",
                              options)  # fmt: skip
            rows.append(("bare proxy", *figures))
        for number, tree in enumerate(options.trees):
            with fresh_database() as postgres_url:
                run = workdir / f"tree-{number}"
                run.mkdir()
                database = (
                    postgres_url
                    if options.database == "postgresql"
                    else f"sqlite+aiosqlite:///{run / 'facegate.db'}"
                )
                env = gateway_environment(
                    run, options.database, database, upstream_url, refuse_replays=True
                )
                key_file = Path(env["FACEGATE_MASTER_KEY_FILE"])
                credentials = asyncio.run(prepare(database, key_file))
                env |= {
                    "PYTHONPATH": str(tree.resolve()),
                    "FACEGATE_POLICY_DIR": str(lifted_policy(run, tree.resolve() / "policies")),
                    "FACEGATE_PROBE_INSPECTION": "false",
                    # Under valgrind on a loaded machine a decision can take longer than
                    # the default 1 s, and a late answer is refused: a denial, which stops
                    # the load. The count does not depend on the limit.
                    "FACEGATE_POLICY_TIMEOUT_SECONDS": "120",
                }
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                command = [str(BIN / "python"), "-P", "-c", SERVE, "serve", "--port", str(port)]
                headers = SignedRequests(url, credentials)
                figures = counted(command, env, url, headers, run / "callgrind.out", options)
                rows.append((str(tree), *figures))
    finally:
        upstream.terminate()
    print(
        f"{options.database}, {options.requests} requests, {options.callers} callers;"
        " instructions per request (callgrind)"
    )
    for name, total, sha256 in rows:
        print(f"  {name:<40} {total:>12,.0f}   without SHA-256 {total - sha256:>12,.0f}")


if __name__ == "__main__":
    main()
