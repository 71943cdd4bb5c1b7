"""Added latency and throughput of the gateway, as a ratio against calling the upstream directly.

In one run, on loopback: an upstream stub that answers at once; the gateway in front of it
(SQLite, then PostgreSQL), each a separate process; open-loop load at a fixed rate from this
process. The same signed SearchFacesByImage request (a 20 KB probe) goes to the gateway and,
as the baseline, straight to the stub. Every gateway request commits its decision record
before it is forwarded and its outcome record after.

    .venv/bin/python bench/gateway_latency.py [--rate 200] [--seconds 10] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from _pg import fresh_database
from bench_policy import lifted_policy
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.auth.principals import Role, create_principal
from gateway.auth.secrets import MasterKey
from gateway.auth.sessions import IssuedCredentials, open_case_session
from gateway.case import CaseContext, LegalBasis
from gateway.context.warrants import WarrantCreate, WarrantKind, create_warrant
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async
from gateway.operations import OperationKind
from gateway.serving import free_port
from refvendor.inventory import write_reference_inventory

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BODY = json.dumps(
    {
        "CollectionId": "mugshots",
        "Image": {"Bytes": base64.b64encode(os.urandom(20_000)).decode()},
        "FaceMatchThreshold": 99,
        "MaxFaces": 5,
    }
).encode()


@dataclass
class Result:
    name: str
    latencies_ms: list[float]
    errors: int
    throughput: float

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def prepare(database_url: str, master_key_file: Path) -> IssuedCredentials:
    """An officer with a session under an active warrant, as the gateway will see them."""
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    try:
        async with session_factory(engine)() as db, db.begin():
            officer = await create_principal(
                db,
                principal_id="bench",
                name="Bench",
                agency="Bench PD",
                roles=[Role.OFFICER],
                now=now,
            )
            await create_warrant(
                db,
                warrant=WarrantCreate(
                    id="W-BENCH",
                    kind=WarrantKind.WARRANT,
                    issuing_court="Bench Court",
                    case_number="BENCH-1",
                    operations=[OperationKind.IDENTIFY],
                    collections=["mugshots"],
                    agency="Bench PD",
                    valid_from=now - timedelta(days=1),
                    valid_until=now + timedelta(days=1),
                ),
                created_by="bench-admin",
                now=now,
            )
            return await open_case_session(
                db,
                master_key=MasterKey.load_or_create(master_key_file),
                principal=officer,
                context=CaseContext(
                    purpose="criminal_investigation",
                    case_number="BENCH-1",
                    offense="homicide",
                    legal_basis=LegalBasis.WARRANT,
                    warrant_id="W-BENCH",
                ),
                ttl=timedelta(hours=1),
                max_ttl=timedelta(hours=2),
                now=now,
            )
    finally:
        await engine.dispose()


class SignedRequests:
    """The headers of one request at each call, signed as an SDK signs each call.

    A gateway forwards one signature once (its replay cache refuses it after), so each
    request gets a signature of its own: the body stays the same probe, and a signed
    invocation id, like the one boto3 sends, makes each signature distinct. Without
    credentials (the stub, called directly) every call gets the same unsigned headers.
    """

    def __init__(self, url: str, credentials: IssuedCredentials | None) -> None:
        self._url = url + "/"
        self._signer = (
            None
            if credentials is None
            else SigV4Auth(
                Credentials(credentials.access_key_id, credentials.secret_access_key),
                "rekognition",
                "us-east-1",
            )
        )

    def __call__(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.SearchFacesByImage",
        }
        if self._signer is None:
            return headers
        headers["amz-sdk-invocation-id"] = str(uuid.uuid4())
        request = AWSRequest(method="POST", url=self._url, data=BODY, headers=headers)
        self._signer.add_auth(request)
        return dict(request.headers.items())


async def open_loop(
    name: str, url: str, headers: Callable[[], dict[str, str]], rate: float, seconds: float
) -> Result:
    """Send at a fixed rate whatever the answers' speed, so queueing shows in the tail."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for _ in range(20):  # warm connections and caches
            await client.post(url + "/", headers=headers(), content=BODY)

        async def one() -> None:
            nonlocal errors
            signed = headers()  # the client's work, before the clock starts
            started = time.perf_counter()
            response = await client.post(url + "/", headers=signed, content=BODY)
            if response.status_code != 200:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

        total = int(rate * seconds)
        start = time.perf_counter()
        # A task group lets each finished request go: thousands of finished tasks held for
        # a gather at the end would make this process's garbage collections part of the tail.
        async with asyncio.TaskGroup() as requests:
            for index in range(total):
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                requests.create_task(one())
        elapsed = time.perf_counter() - start
    return Result(name, latencies, errors, len(latencies) / elapsed)


async def closed_loop(
    url: str, headers: Callable[[], dict[str, str]], concurrency: int, seconds: float
) -> float:
    """Requests per second with `concurrency` callers each waiting for its answer."""
    done = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=30) as client:

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                response = await client.post(url + "/", headers=headers(), content=BODY)
                response.raise_for_status()
                done += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done / seconds


def start(args: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:  # a file, not a pipe: a full pipe would stall the server
        process = subprocess.Popen(
            args, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/facegate/health", timeout=1)
            return process
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(f"the server died; see {log}") from None
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def start_upstream() -> tuple[subprocess.Popen[bytes], str]:
    """The upstream stub in a process of its own, and its URL.

    It keeps an idle connection open for 60 s, as a vendor's endpoint keeps one longer than
    facegate's own pool does (5 s): with both at uvicorn's default of 5 s, a gateway slowed
    down (under valgrind, bench/instructions_per_request.py) reused a connection the stub
    had just closed, and the request failed (ClientOSError)."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "uvicorn"),
            "--app-dir",
            str(REPO / "bench"),
            "upstream_stub:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-keep-alive",
            "60",
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    return process, f"http://127.0.0.1:{port}"


def gateway_environment(
    workdir: Path, name: str, database_url: str, upstream_url: str, *, refuse_replays: bool = False
) -> dict[str, str]:
    """FACEGATE_* for a benchmarked gateway: its own keys, and an attested inventory whose
    one Rekognition backend is the stub (the stub checks no signature).

    ``refuse_replays`` keeps the replay check on, as deployed: for a load generator that
    signs each request on its own (``SignedRequests``)."""
    inventory = write_reference_inventory(
        workdir / f"vendors-{name}",
        upstream_url,
        rekognition=("stub", "stub-secret"),
        azure_key="stub",
        compreface_key="stub",
        attested_on=datetime.now(UTC).date(),
    )
    return {
        "FACEGATE_DATABASE_URL": database_url,
        "FACEGATE_MASTER_KEY_FILE": str(workdir / f"{name}.key"),
        "FACEGATE_LOG_KEY_FILE": str(workdir / f"{name}-log.key"),
        "FACEGATE_VENDORS_FILE": str(inventory),
        # A load generator that resends one signed request would be refused as a replay:
        # the check is off unless each request is signed on its own.
        "FACEGATE_REFUSE_REPLAYED_SIGNATURES": "true" if refuse_replays else "false",
    }


def report(baseline: Result, gateway: Result) -> None:
    p50, p99 = gateway.percentile(0.5), gateway.percentile(0.99)
    base50, base99 = baseline.percentile(0.5), baseline.percentile(0.99)
    print(
        f"  {gateway.name:<22} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        f"  errors {gateway.errors}  achieved {gateway.throughput:6.1f}/s"
    )
    print(
        f"  {'  added by the gateway':<22} p50 {p50 - base50:6.2f} ms  p99 {p99 - base99:6.2f} ms"
        f"  (ratio p50 {p50 / base50:4.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=1, help="gateway processes on PostgreSQL (SQLite: one)"
    )
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="facegate-bench-"))
    databases = {"sqlite": f"sqlite+aiosqlite:///{workdir / 'bench.db'}"}
    upstream, upstream_url = start_upstream()
    processes = [upstream]
    with fresh_database() as postgres_url:
        databases["postgresql"] = postgres_url
        try:
            print(
                f"gateway latency: {options.rate:.0f} requests/s for {options.seconds:.0f} s, "
                f"{len(BODY) // 1024} KB SearchFacesByImage, {os.cpu_count()} cores\n"
            )
            baseline = asyncio.run(
                open_loop(
                    "upstream directly",
                    upstream_url,
                    SignedRequests(upstream_url, None),
                    options.rate,
                    options.seconds,
                )
            )
            direct_rps = asyncio.run(
                closed_loop(
                    upstream_url, SignedRequests(upstream_url, None), options.concurrency, 5
                )
            )
            print(
                f"  {baseline.name:<22} p50 {baseline.percentile(0.5):6.2f} ms  "
                f"p99 {baseline.percentile(0.99):6.2f} ms  closed-loop {direct_rps:7.1f}/s\n"
            )
            for kind, database_url in databases.items():
                # SQLite is the single-process default: a second process would wait for its
                # file lock in SQLite's busy handler, which sleeps for milliseconds at a time.
                workers = options.workers if kind == "postgresql" else 1
                environment = gateway_environment(
                    workdir, kind, database_url, upstream_url, refuse_replays=True
                )
                credentials = asyncio.run(
                    prepare(database_url, Path(environment["FACEGATE_MASTER_KEY_FILE"]))
                )
                port = free_port()
                gateway = start(
                    [
                        str(BIN / "facegate"),
                        "serve",
                        "--port",
                        str(port),
                        "--workers",
                        str(workers),
                    ],
                    {
                        **environment,
                        # The probe is random bytes and one officer sends hundreds a second: this
                        # measures the core gateway, so no inspection and the pattern limits lifted
                        # (bench/inspection_latency.py measures inspection and windows).
                        "FACEGATE_POLICY_DIR": str(lifted_policy(workdir)),
                        "FACEGATE_PROBE_INSPECTION": "false",
                    },
                    port,
                    workdir / f"gateway-{kind}.log",
                )
                processes.append(gateway)
                url = f"http://127.0.0.1:{port}"
                headers = SignedRequests(url, credentials)
                result = asyncio.run(
                    open_loop(f"gateway ({kind})", url, headers, options.rate, options.seconds)
                )
                print(f"  {kind}: {workers} gateway process(es)")
                report(baseline, result)
                rps = asyncio.run(closed_loop(url, headers, options.concurrency, 5))
                print(
                    f"  {'  closed-loop':<22} {rps:7.1f}/s with {options.concurrency} callers "
                    f"({rps / direct_rps:.2f} of direct)\n"
                )
                gateway.terminate()
                gateway.wait(timeout=30)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
                    process.wait(timeout=30)


if __name__ == "__main__":
    main()
