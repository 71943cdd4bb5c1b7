"""What probe inspection and activity windows cost, as ratios against the core gateway.

In one run, on loopback:

1. inspection per probe, in process (decode + face count), p50 and p99, for a 640x480
   and a 1920x1080 JPEG of a real face (scikit-image's astronaut, fitted to the frame), with
   each detector: libfacedetection's CNN (the default) and dlib's HOG (the fallback);
2. activity windows per request, in process: `reserve` on the in-memory store and on Redis
   at 127.0.0.1:6379;
3. the gateway (a separate process, SQLite) in front of an upstream stub that answers at
   once, sent the same signed SearchFacesByImage at a fixed rate, in four configurations:
   the core gateway (no inspection, in-process windows) as the baseline, with inspection
   (each detector), and with windows in Redis. Pattern limits are lifted
   (bench/bench_policy.py) so that nothing is refused.

    .venv/bin/python bench/inspection_latency.py [--seconds 20] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis
import skimage.data
from bench_policy import lifted_policy
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from gateway_latency import BIN, Result, gateway_environment, prepare, start, start_upstream
from PIL import Image, ImageOps

from gateway.auth.sessions import IssuedCredentials
from gateway.context.activity import (
    ActivityEvent,
    ActivityStore,
    MemoryActivityStore,
    RedisActivityStore,
)
from gateway.context.face_detection import face_counter
from gateway.context.inspection import ProbeInspector
from gateway.operations import OperationKind
from gateway.serving import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080)}
DETECTORS = ("cnn", "hog")
RATES = {"640x480": 8.0, "1920x1080": 2.0}  # well under what one gateway inspects per second


def probe(size: tuple[int, int]) -> bytes:
    astronaut = Image.fromarray(skimage.data.astronaut())
    buffer = io.BytesIO()
    # Anchored at the top: the astronaut's head is in the upper third of the photo.
    ImageOps.fit(astronaut, size, centering=(0.5, 0.0)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def percentiles(samples: list[float]) -> tuple[float, float]:
    result = Result("", samples, 0, 0.0)
    return result.percentile(0.5), result.percentile(0.99)


def inspection_cost(samples: int) -> None:
    print("1. inspection per probe, in process (decode + face count)")
    for name, size in SIZES.items():
        data = probe(size)
        for detector in DETECTORS:
            inspector = ProbeInspector(counter=face_counter(detector))
            faces = inspector.inspect_image(data).faces  # warm the thread's detector
            timings = []
            for _ in range(samples):
                started = time.perf_counter()
                inspector.inspect_image(data)
                timings.append((time.perf_counter() - started) * 1000)
            inspector.close()
            p50, p99 = percentiles(timings)
            print(
                f"   {name:>9} ({len(data) // 1024} KB, {faces} face), {detector}: "
                f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
            )


async def reserve_cost(store: ActivityStore, samples: int) -> tuple[float, float]:
    timings = []
    for n in range(samples):
        event = ActivityEvent(
            request_id=f"bench-{n}",
            at=datetime.now(UTC),
            officer="bench",
            agency="Bench PD",
            case_number="BENCH-1",
            kind=OperationKind.IDENTIFY,
            probe_digests=(f"sha256:{n % 50:064x}",),
            faces_in_probe=1,
        )
        started = time.perf_counter()
        await store.reserve(event)
        timings.append((time.perf_counter() - started) * 1000)
    await store.aclose()
    return percentiles(timings[samples // 10 :])  # the first tenth warms up


def windows_cost(samples: int) -> None:
    print("2. activity windows per request, in process (reserve: record and count)")
    prefix = f"facegate:bench:{uuid.uuid4().hex}:"
    for name, store in (
        ("memory", MemoryActivityStore()),
        ("redis", RedisActivityStore(REDIS_URL, key_prefix=prefix)),
    ):
        p50, p99 = asyncio.run(reserve_cost(store, samples * 10))
        print(f"   {name:>9}: p50 {p50:6.3f} ms  p99 {p99:6.3f} ms")
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


def signed(url: str, body: bytes, credentials: IssuedCredentials) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "RekognitionService.SearchFacesByImage",
        },
    )
    SigV4Auth(
        Credentials(credentials.access_key_id, credentials.secret_access_key),
        "rekognition",
        "us-east-1",
    ).add_auth(request)
    return dict(request.headers.items())


async def fixed_rate(
    name: str, url: str, body: bytes, credentials: IssuedCredentials, rate: float, seconds: float
) -> Result:
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(5):  # warm connections, caches and the detector threads
            await client.post(url + "/", headers=signed(url, body, credentials), content=body)

        async def one() -> None:
            nonlocal errors
            # Signed now: the request must be fresh, and signing is the client's cost.
            headers = signed(url, body, credentials)
            started = time.perf_counter()
            response = await client.post(url + "/", headers=headers, content=body)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                errors += 1

        tasks = []
        start_at = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = start_at + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start_at
    return Result(name, latencies, errors, len(latencies) / elapsed)


def gateway_cost(seconds: float) -> None:
    print("3. the gateway in front of an instant upstream (SQLite audit log), fixed rate")
    workdir = Path(tempfile.mkdtemp(prefix="facegate-bench-"))
    policy = lifted_policy(workdir)
    upstream, upstream_url = start_upstream()
    configurations = {
        "core (baseline)": {"FACEGATE_PROBE_INSPECTION": "false"},
        "inspection, cnn": {"FACEGATE_PROBE_INSPECTION": "true", "FACEGATE_PROBE_DETECTOR": "cnn"},
        "inspection, hog": {"FACEGATE_PROBE_INSPECTION": "true", "FACEGATE_PROBE_DETECTOR": "hog"},
        "windows in Redis": {
            "FACEGATE_PROBE_INSPECTION": "false",
            "FACEGATE_REDIS_URL": REDIS_URL,
            "FACEGATE_ACTIVITY_KEY_PREFIX": f"facegate:bench:{uuid.uuid4().hex}:",
        },
    }
    try:
        for size_name, size in SIZES.items():
            body = json.dumps(
                {
                    "CollectionId": "mugshots",
                    "Image": {"Bytes": base64.b64encode(probe(size)).decode()},
                    "FaceMatchThreshold": 99,
                    "MaxFaces": 5,
                }
            ).encode()
            rate = RATES[size_name]
            print(f"   {size_name} probe, {rate:.0f} requests/s for {seconds:.0f} s:")
            baseline: Result | None = None
            for config_name, env in configurations.items():
                database = workdir / f"{uuid.uuid4().hex}.db"
                database_url = f"sqlite+aiosqlite:///{database}"
                environment = gateway_environment(
                    workdir, database.stem, database_url, upstream_url
                )
                credentials = asyncio.run(
                    prepare(database_url, Path(environment["FACEGATE_MASTER_KEY_FILE"]))
                )
                port = free_port()
                gateway = start(
                    [str(BIN / "facegate"), "serve", "--port", str(port)],
                    {
                        **environment,
                        "FACEGATE_POLICY_DIR": str(policy),
                        **env,
                    },
                    port,
                    workdir / f"gateway-{database.stem}.log",
                )
                try:
                    result = asyncio.run(
                        fixed_rate(
                            config_name,
                            f"http://127.0.0.1:{port}",
                            body,
                            credentials,
                            rate,
                            seconds,
                        )
                    )
                finally:
                    gateway.terminate()
                    gateway.wait(timeout=30)
                p50, p99 = result.percentile(0.5), result.percentile(0.99)
                line = (
                    f"     {config_name:<17} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                    f"errors {result.errors}"
                )
                if baseline is None:
                    baseline = result
                else:
                    b50, b99 = baseline.percentile(0.5), baseline.percentile(0.99)
                    line += (
                        f"  added p50 {p50 - b50:+7.2f} ms p99 {p99 - b99:+7.2f} ms"
                        f"  (ratio p50 {p50 / b50:4.2f}x, p99 {p99 / b99:4.2f}x)"
                    )
                print(line)
    finally:
        upstream.terminate()
        upstream.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=200)
    options = parser.parse_args()
    print(f"{os.cpu_count()} cores\n")
    inspection_cost(options.samples)
    windows_cost(options.samples)
    gateway_cost(options.seconds)


if __name__ == "__main__":
    main()
