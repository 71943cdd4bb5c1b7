"""Graceful shutdown: a real `facegate serve` process gets SIGTERM while a request is at a
slow vendor; the request completes, its outcome record is in the log, the process exits.
Its stderr is JSON lines: the start-up summary and the request's own line; tracing switched
on by OTEL_TRACES_EXPORTER exports the request's spans."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.audit.query import RecordQuery
from gateway.audit.schemas import AuditQuery
from gateway.db import create_engine, session_factory
from gateway.serving import BackgroundServer, free_port
from refvendor import samples
from refvendor.app import create_app as create_refvendor
from tests.e2e.conftest import (
    AZURE_KEY,
    CASE,
    COMPREFACE_KEY,
    VENDOR_KEY,
    VENDOR_SECRET,
    Stack,
    gateway_settings,
)

SLOW_SECONDS = 2.0


class SlowVendor:
    """The reference vendor, holding each DetectFaces request SLOW_SECONDS before answering."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.arrived = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(
            k == b"x-amz-target" and v.endswith(b"DetectFaces") for k, v in scope["headers"]
        ):
            self.arrived.set()
            await asyncio.sleep(SLOW_SECONDS)
        await self.app(scope, receive, send)


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def environment(settings: Any, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEGATE_", "OTEL_"))}
    for name in ("database_url", "master_key_file", "log_key_file", "policy_dir", "vendors_file"):
        env[f"FACEGATE_{name.upper()}"] = str(getattr(settings, name))
    env["FACEGATE_PORT"] = str(port)
    # Tracing switched on the standard way; the console exporter prints spans to stdout.
    env["OTEL_TRACES_EXPORTER"] = "console"
    return env


def start_gateway(settings: Any, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """`facegate serve` in its own process, once it is ready."""
    facegate = shutil.which("facegate", path=str(Path(sys.executable).parent))
    assert facegate is not None
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [facegate, "serve", "--port", str(port)],
            env=environment(settings, port),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/facegate/ready").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the gateway did not start:\n{log_path.read_text()}")
        time.sleep(0.1)


async def test_sigterm_lets_the_request_in_flight_finish_with_its_outcome_record(
    sqlite_url: str, tmp_path: Path
) -> None:
    vendor_app = SlowVendor(
        create_refvendor(
            access_key_id=VENDOR_KEY,
            secret_access_key=VENDOR_SECRET,
            azure_key=AZURE_KEY,
            compreface_key=COMPREFACE_KEY,
        )
    )
    with BackgroundServer(vendor_app) as vendor:
        settings = gateway_settings(sqlite_url, tmp_path, vendor.url)
        port = free_port()
        log_path = tmp_path / "gateway.log"
        process = start_gateway(settings, port, log_path)
        try:
            url = f"http://127.0.0.1:{port}"
            stack = Stack(settings=settings, url=url, vendor=vendor)
            client = stack.rekognition(await stack.session())

            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(
                    client.detect_faces, Image={"Bytes": samples.astronaut_jpeg()}
                )
                assert vendor_app.arrived.wait(timeout=60), "the request never reached the vendor"
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(SLOW_SECONDS / 4)
                assert process.poll() is None  # still draining
                answer = in_flight.result(timeout=60)
            assert len(answer["FaceDetails"]) == 1
            # uvicorn re-raises the SIGTERM it caught once it has shut down cleanly, so the
            # exit status says why it stopped.
            assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    request_id = answer["ResponseMetadata"]["RequestId"]
    engine = create_engine(settings.database_url)
    try:
        page = await RecordQuery(session_factory(engine)).query(AuditQuery(case_number=CASE))
    finally:
        await engine.dispose()
    records = [(e.event_type, e.decision) for e in page.entries if e.request_id == request_id]
    assert records == [("decision", "allow"), ("outcome", "allow")]

    output = log_path.read_text()
    lines = [json.loads(line) for line in output.splitlines() if is_json_object(line)]
    (startup,) = [line for line in lines if line.get("event") == "startup"]
    assert startup["database"] == sqlite_url
    assert startup["policy_engine"] == "embedded"
    assert startup["policy_revision"]
    assert startup["log_origin"] == settings.log_origin
    assert len(startup["log_key_id"]) == 8
    assert {v["protocol"] for v in startup["vendors"]} == {"rekognition", "azure", "compreface"}
    # The lifespan ended (services closed: the audit writer drained) after the request.
    messages = [line["message"] for line in lines]
    assert "Application shutdown complete." in messages
    (request_line,) = [line for line in lines if line.get("request_id") == request_id]
    assert lines.index(request_line) < messages.index("Application shutdown complete.")
    assert request_line["decision"] == "allow"
    assert request_line["operation"] == "DetectFaces"
    # OTEL_TRACES_EXPORTER=console: the request's spans were exported, flushed at shutdown.
    for name in ("facegate.authenticate", "facegate.forward", "facegate.record_outcome"):
        assert f'"name": "{name}"' in output
    assert '"kind": "SpanKind.CLIENT"' in output
