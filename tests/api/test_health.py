"""Liveness and readiness: /facegate/ready fails, naming what, when the database, Redis or
the log key goes away. Its own PostgreSQL database and its own redis-server: the shared
ones are never stopped."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.app import create_app
from gateway.audit.checkpoint import Signer
from gateway.migrate import upgrade_async
from gateway.serving import BackgroundServer, free_port
from tests.conftest import _drop_postgres_database
from tests.e2e.conftest import gateway_settings


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own on a free port (stopped by the test or after it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    try:
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def ready(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{url}/facegate/ready", timeout=10)
    return response.status_code, response.json()


def live(url: str) -> int:
    return httpx.get(f"{url}/facegate/health", timeout=10).status_code


@pytest.mark.postgres
async def test_ready_fails_naming_the_database_or_redis_when_either_goes_away(
    postgres_url: str, tmp_path: Path, own_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    redis_url, redis_process = own_redis
    await upgrade_async(postgres_url)
    settings = gateway_settings(postgres_url, tmp_path, "http://127.0.0.1:9", redis_url=redis_url)
    with BackgroundServer(create_app(settings)) as gateway:
        status, body = ready(gateway.url)
        assert (status, body["status"], body["failed"]) == (200, "ready", [])
        assert set(body["checks"]) == {"database", "redis", "policy", "log_key"}

        redis_process.terminate()
        redis_process.wait(timeout=10)
        status, body = ready(gateway.url)
        assert (status, body["failed"]) == (503, ["redis"])
        assert body["checks"]["redis"]["ok"] is False
        # Liveness still answers: the process serves, it just should not be sent requests.
        assert live(gateway.url) == 200

        _drop_postgres_database(postgres_url.rsplit("/", 1)[1])
        status, body = ready(gateway.url)
        assert (status, body["failed"]) == (503, ["database", "redis"])
        # A driver's message may carry the URL: only the failure's type is said.
        assert "postgres" not in body["checks"]["database"]["error"].lower()


async def test_ready_fails_on_a_database_not_migrated_and_on_a_log_key_replaced(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = gateway_settings(sqlite_url, tmp_path, "http://127.0.0.1:9")
    with BackgroundServer(create_app(settings)) as gateway:
        status, body = ready(gateway.url)
        assert (status, body["failed"]) == (503, ["database"])
        assert "not migrated" in body["checks"]["database"]["error"]
        assert set(body["checks"]) == {"database", "policy", "log_key"}  # no Redis configured

        await upgrade_async(sqlite_url)
        assert ready(gateway.url)[0] == 200

        # Another key in the key file (a rotation this process has not picked up): it must
        # not sign on with the old one.
        settings.log_key_file.write_text(str(Signer.generate(settings.log_origin)) + "\n")
        status, body = ready(gateway.url)
        assert (status, body["failed"]) == (503, ["log_key"])
        assert "another key" in body["checks"]["log_key"]["error"]
