"""The reference vendor under uvicorn on a real loopback socket, and boto3 clients for it.

The face models load once per session (``face_engine``) and every app here
shares them. Helpers are handed to tests as fixtures (``make_client``,
``serve``, ``credentials``), since this directory is not a package.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import uvicorn
from botocore.config import Config
from fastapi import FastAPI

from refvendor.app import create_app
from refvendor.faces import FaceEngine

ACCESS_KEY_ID = "test-vendor-key"
SECRET_ACCESS_KEY = "test-vendor-secret"
REGION = "us-east-1"
# Deadlock guard only: nothing asserts how long anything takes.
STARTUP_LIMIT_SECONDS = 60


@dataclass(frozen=True)
class VendorCredentials:
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    region: str = REGION


@dataclass
class RunningVendor:
    app: FastAPI
    url: str


class _ThreadedServer:
    """uvicorn serving ``app`` from a background thread on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        # Binding port 0 here and handing the socket to uvicorn leaves no
        # window in which another process could take the port.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> _ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the reference vendor did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()


@pytest.fixture(scope="session")
def face_engine() -> FaceEngine:
    return FaceEngine()


@pytest.fixture(scope="session")
def running_vendor(face_engine: FaceEngine) -> Iterator[RunningVendor]:
    app = create_app(
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        region=REGION,
        engine=face_engine,
    )
    with _ThreadedServer(app) as server:
        yield RunningVendor(app=app, url=server.url)


def _make_client(
    url: str,
    *,
    access_key_id: str = ACCESS_KEY_ID,
    secret_access_key: str = SECRET_ACCESS_KEY,
    region: str = REGION,
) -> Any:
    """boto3's own Rekognition client, unchanged but for the endpoint; no retries,
    so every call reaches the vendor exactly once."""
    return boto3.client(
        "rekognition",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="session")
def credentials() -> VendorCredentials:
    return VendorCredentials()


@pytest.fixture(scope="session")
def make_client() -> Callable[..., Any]:
    """``make_client(url, *, access_key_id=..., secret_access_key=..., region=...)``."""
    return _make_client


@pytest.fixture(scope="session")
def serve() -> Callable[[FastAPI], _ThreadedServer]:
    """``with serve(app) as server:`` runs another app; ``server.url`` reaches it."""
    return _ThreadedServer


@pytest.fixture(scope="session")
def rekognition(running_vendor: RunningVendor) -> Any:
    return _make_client(running_vendor.url)
