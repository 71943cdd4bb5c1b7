"""``python -m refvendor`` serves the vendor with the credentials it is given."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

STARTUP_LIMIT_SECONDS = 60  # deadlock guard, not a timing assertion


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_python_m_refvendor_serves_with_the_given_credentials(
    make_client: Callable[..., Any],
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "refvendor",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--access-key-id",
            "cli-key",
            "--secret-access-key",
            "cli-secret",
            "--region",
            "eu-west-1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"refvendor exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                httpx.get(f"{url}/__refvendor/calls")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail("refvendor did not start listening")
                time.sleep(0.1)

        client = make_client(
            url, access_key_id="cli-key", secret_access_key="cli-secret", region="eu-west-1"
        )
        assert client.list_collections()["CollectionIds"] == []

        with pytest.raises(ClientError) as raised:
            make_client(url, region="eu-west-1").list_collections()
        assert raised.value.response["Error"]["Code"] == "UnrecognizedClientException"
    finally:
        process.terminate()
        process.wait(STARTUP_LIMIT_SECONDS)
