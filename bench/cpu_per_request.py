"""facegate's CPU per request and throughput as ratios to a bare forwarding proxy, in one run.

Every configuration stands in front of the same upstream stub (bench/upstream_stub.py), each
proxy in a process of its own: the bare proxy (bench/bare_proxy.py: uvicorn + aiohttp, no
auth, policy or audit), nginx when `nginx` is on PATH, and facegate on PostgreSQL and on
SQLite (embedded engine, one process, probe inspection off, pattern limits lifted, replay
check on). Rounds alternate the order (A B C, C B A, ...) so a shared machine's drift hits
all alike. Each round sends one load and reads the proxy process's CPU time from /proc
(nginx: master and workers). Every request is signed on its own, the same ~20 KB
SearchFacesByImage for all; a load stops at the first answer that is not a 200.

    .venv/bin/python bench/cpu_per_request.py [--load closed|rate|sequential] [--rate 50]
        [--rounds 4] [--seconds 5] [--with-leads] [--profile]

Prints per round CPU ms/request and closed-loop requests/s (or p50/p99 ms at a rate), then
facegate/bare ratios, the CPU facegate adds to the bare proxy's, and, at a rate, the
latency facegate adds (its p50 and p99 less the bare proxy's of the same round): median
(min-max) over rounds, and facegate's mean wall ms per pipeline step over the run (its own
histograms; under load they include waiting for the loop), then the policy service's
within `decide` (inline: about the CPU the decision costs).
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
import time
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


@dataclass
class Proxy:
    name: str
    url: str
    processes: list[subprocess.Popen[bytes]]
    headers: SignedRequests
    pids: list[int] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    figures: dict[str, list[float]] = field(default_factory=dict)

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids or [p.pid for p in self.processes])


def start_bare(upstream_url: str, workdir: Path) -> Proxy:
    port = free_port()
    process = start(
        [
            str(BIN / "uvicorn"),
            "--app-dir",
            str(REPO / "bench"),
            "bare_proxy:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        {"FACEGATE_BARE_UPSTREAM": upstream_url},
        port,
        workdir / "bare.log",
    )
    url = f"http://127.0.0.1:{port}"
    return Proxy("bare proxy", url, [process], SignedRequests(url, None))


def start_nginx(upstream_url: str, workdir: Path) -> Proxy | None:
    nginx = shutil.which("nginx")
    if nginx is None:
        print("nginx is not installed: its rows are skipped")
        return None
    port = free_port()
    # client_body_buffer_size: with the default (16k) the 20 KB request body went to a
    # temporary file on its way to the stub, and each request then waited ~40 ms (45 ms p50
    # at 50 requests/s, 276-339 requests/s closed loop); kept in memory, 1.9 ms and ~480.
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1; daemon off; pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {workdir}; client_body_buffer_size 64k;
  upstream stub {{ server {upstream_url.removeprefix("http://")}; keepalive 32; }}
  server {{ listen 127.0.0.1:{port}; client_max_body_size 1m;
    location / {{ proxy_pass http://stub; proxy_http_version 1.1;
      proxy_set_header Connection ""; }} }} }}
"""
    )
    process = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)])
    time.sleep(1.0)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    url = f"http://127.0.0.1:{port}"
    httpx.get(url + "/", timeout=5)
    proxy = Proxy("nginx", url, [process], SignedRequests(url, None))
    proxy.pids = [process.pid, *map(int, children)]
    return proxy


# cProfile over the whole server process, written when uvicorn exits on SIGTERM (uvicorn
# re-raises the signal after its shutdown, which would kill the process before atexit).
PROFILED = (
    "import atexit, cProfile, os, signal; signal.raise_signal = lambda _: None; "
    "profile = cProfile.Profile(); "
    "atexit.register(lambda: profile.dump_stats(os.environ['FACEGATE_BENCH_PROFILE'])); "
    "profile.enable(); " + SERVE
)


def start_facegate(
    kind: str, database_url: str, upstream_url: str, workdir: Path, profile: bool = False
) -> Proxy:
    environment = gateway_environment(
        workdir, kind, database_url, upstream_url, refuse_replays=True
    )
    credentials = asyncio.run(prepare(database_url, Path(environment["FACEGATE_MASTER_KEY_FILE"])))
    port = free_port()
    command = [str(BIN / "python"), "-P", "-c", PROFILED if profile else SERVE, "serve"]
    process = start(
        [*command, "--port", str(port)],
        {
            **environment,
            "FACEGATE_BENCH_PROFILE": str(workdir / f"facegate-{kind}.prof"),
            "PYTHONPATH": str(REPO),
            "FACEGATE_POLICY_DIR": str(lifted_policy(workdir)),
            "FACEGATE_PROBE_INSPECTION": "false",
        },
        port,
        workdir / f"facegate-{kind}.log",
    )
    url = f"http://127.0.0.1:{port}"
    return Proxy(f"facegate ({kind})", url, [process], SignedRequests(url, credentials))


@contextlib.contextmanager
def stopping(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def step_means(url: str) -> str:
    """Mean wall ms per pipeline step over the run, from the gateway's own histograms, then
    the policy service's decision within `decide` (the embedded engine evaluates inline, so
    this is the CPU it spends but for moments the OS gives another process)."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        name, _, value = line.rpartition(" ")
        family, _, labels = name.partition("{")
        totals = sums if family.endswith("_sum") else counts if family.endswith("_count") else None
        if totals is None:
            continue
        family = family.rsplit("_", 1)[0]
        if family == "facegate_pipeline_step_duration_seconds":
            key = labels.split('step="', 1)[1].split('"', 1)[0]
        elif family == "facegate_policy_evaluation_duration_seconds":
            key = "(of which the policy service)"
        else:
            continue
        totals[key] = totals.get(key, 0.0) + float(value)
    steps = sorted(sums, key=lambda key: key.startswith("("))  # the policy's after the steps
    return ", ".join(f"{s} {sums[s] * 1000 / counts[s]:.2f}" for s in steps if counts.get(s))


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", choices=["closed", "rate", "sequential"], default="closed")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile facegate; .prof files in the workdir"
    )
    parser.add_argument("--with-leads", action="store_true", help="the stub answers a match")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="facegate-cpu-"))
    if not options.with_leads:
        # By default the stub answers with no candidate (a negative result): the request path
        # without the leads book, whose per-search transactions cost far more (README).
        os.environ["FACEGATE_STUB_NO_MATCHES"] = "1"
    upstream, upstream_url = start_upstream()
    processes = [upstream]
    with stopping(processes), fresh_database() as postgres_url:
        proxies = [start_bare(upstream_url, workdir)]
        processes += proxies[0].processes
        nginx = start_nginx(upstream_url, workdir)
        if nginx is not None:
            proxies.append(nginx)
            processes += nginx.processes
        for kind, database_url in (
            ("postgresql", postgres_url),
            ("sqlite", f"sqlite+aiosqlite:///{workdir / 'facegate.db'}"),
        ):
            proxies.append(
                start_facegate(kind, database_url, upstream_url, workdir, options.profile)
            )
            processes += proxies[-1].processes
        for round_number in range(options.rounds):
            for proxy in proxies if round_number % 2 == 0 else proxies[::-1]:
                before = proxy.cpu()
                values, sent = one_round(options.load, proxy.url, proxy.headers, options)
                proxy.cpu_ms.append((proxy.cpu() - before) * 1000 / sent)
                for unit, value in values.items():
                    proxy.figures.setdefault(unit, []).append(value)
        load = {"closed": "closed loop, 16 callers", "sequential": "one request at a time"}.get(
            options.load, f"{options.rate:g} req/s"
        )
        if options.profile:
            print(f"profiles (written at exit): {workdir}/facegate-*.prof")
        print(f"{load}; {options.rounds} rounds of {options.seconds:g} s; median (min-max)")
        bare = proxies[0]
        for proxy in proxies:
            rounds = ", ".join(f"{v:.2f}" for v in proxy.cpu_ms)
            print(f"  {proxy.name:<22} CPU ms/request {spread(proxy.cpu_ms)}  rounds: {rounds}")
            for unit, values in proxy.figures.items():
                print(f"  {'':<22} {unit:<14} {spread(values)}")
            if proxy is bare:
                continue
            if proxy.name.startswith("facegate"):
                print(f"  {'':<22} step ms (wall) {step_means(proxy.url)}")
            cpu_ratio = [p / b for p, b in zip(proxy.cpu_ms, bare.cpu_ms, strict=True)]
            print(f"  {'':<22} CPU / bare     {spread(cpu_ratio)}")
            # The CPU a request costs beyond forwarding it, round by round: what the proxy
            # itself does, in ms, which moves less between machines than the ratio (whose
            # denominator is the bare proxy's own efficiency on the machine).
            added_cpu = [p - b for p, b in zip(proxy.cpu_ms, bare.cpu_ms, strict=True)]
            print(f"  {'':<22} added CPU ms   {spread(added_cpu)}")
            if "requests/s" in proxy.figures:
                rps = zip(proxy.figures["requests/s"], bare.figures["requests/s"], strict=True)
                print(f"  {'':<22} rps / bare     {spread([p / b for p, b in rps])}")
            for unit in ("ms p50", "ms p99"):
                if unit in proxy.figures:
                    # Added latency, round by round: the bare proxy's figure of the same
                    # round subtracted, so that the machine's drift between rounds cancels.
                    pairs = zip(proxy.figures[unit], bare.figures[unit], strict=True)
                    print(f"  {'':<22} added {unit[3:]:<8} {spread([p - b for p, b in pairs])}")


if __name__ == "__main__":
    main()
