"""The vendor registry end to end: a fourth vendor is one module plus one registry line, and
a protocol with no backend is refused in its own shape, on record."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import gateway.vendors
from gateway.app import create_app
from gateway.auth.key_header import vendor_key
from gateway.auth.sessions import IssuedCredentials
from gateway.serving import BackgroundServer
from refvendor import samples
from tests.e2e.conftest import (
    AZURE_KEY,
    COMPREFACE_KEY,
    VENDOR_KEY,
    VENDOR_SECRET,
    Stack,
    gateway_settings,
    vendor_calls,
)
from tests.e2e.test_bad_input import records_of
from tests.vendors import toy_vendor

TOY_SECRET = "toy-vendor-secret"


@pytest.fixture
def toy_upstream() -> Iterator[tuple[BackgroundServer, list[dict[str, Any]]]]:
    """The toy vendor's service: records what reached it, answers with one face (and a
    template, which the gateway must strip)."""
    calls: list[dict[str, Any]] = []

    async def detect(request: Request) -> Response:
        calls.append({"key": request.headers.get("x-toy-vendor-key"), "body": await request.json()})
        face = {"box": [1, 2, 3, 4], "embedding": [0.5] * 128}
        return JSONResponse({"faces": [face]}, headers={"x-upstream-secret": "not for clients"})

    with BackgroundServer(Starlette(routes=[Route("/detect", detect, methods=["POST"])])) as server:
        yield server, calls


def http(method: str, url: str, **options: Any) -> httpx.Response:
    return httpx.request(method, url, timeout=30, **options)


def key(credentials: IssuedCredentials) -> str:
    return vendor_key(credentials.access_key_id, credentials.secret_access_key)


def inventory(tmp_path: Path, *entries: dict[str, Any]) -> Path:
    """A vendors file of exactly `entries` (secrets in files beside it)."""
    vendors = []
    for entry in entries:
        secret = tmp_path / f"{entry['name']}.secret"
        secret.write_text(entry.pop("secret") + "\n")
        credentials = {"secret_file": str(secret)} | entry.pop("credentials", {})
        vendors.append(entry | {"credentials": credentials})
    path = tmp_path / "vendors-only.yaml"
    path.write_text(yaml.safe_dump({"vendors": vendors}))
    return path


async def test_a_fourth_vendor_is_one_module_and_one_registry_line(
    migrated_database_url: str,
    tmp_path: Path,
    vendor: BackgroundServer,
    toy_upstream: tuple[BackgroundServer, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream, calls = toy_upstream
    # The one line a product vendor adds to gateway/vendors/__init__.py.
    monkeypatch.setitem(gateway.vendors.REGISTRY, toy_vendor.VENDOR, toy_vendor.DESCRIPTOR)
    vendors_file = inventory(
        tmp_path,
        {"name": "toy-1", "protocol": "toy", "base_url": upstream.url, "secret": TOY_SECRET},
    )
    settings = gateway_settings(
        migrated_database_url, tmp_path, vendor.url, vendors_file=vendors_file
    )
    image = samples.astronaut_jpeg()
    body = json.dumps({"image": base64.b64encode(image).decode()}).encode()
    with BackgroundServer(create_app(settings)) as server:
        stack = Stack(settings=settings, url=server.url, vendor=vendor)
        credentials = await stack.session()

        refused = http("POST", f"{server.url}/toy/v1/detect", content=body)
        answer = http(
            "POST",
            f"{server.url}/toy/v1/detect",
            content=body,
            headers={"x-toy-key": key(credentials), "content-type": "application/json"},
        )

    # Unauthenticated: refused in the toy's own shape, on record, never forwarded.
    assert refused.status_code == 401
    assert refused.json()["toy_error"] == "who_are_you"
    # Authenticated, decided, forwarded with the backend's key (not the caller's), checked
    # and rendered by the toy adapter: its request-id header, no other vendor's.
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"faces": [{"box": [1, 2, 3, 4]}]}
    assert answer.headers[toy_vendor.REQUEST_ID_HEADER]
    assert "x-amzn-requestid" not in answer.headers
    assert "x-upstream-secret" not in answer.headers
    assert calls == [{"key": TOY_SECRET, "body": {"image": base64.b64encode(image).decode()}}]
    records = [r for r in await records_of(stack) if r.event_type != "policy"]
    assert [(r.event_type, r.decision, r.vendor) for r in records] == [
        ("auth_failure", "deny", "toy"),
        ("decision", "allow", "toy"),
        ("outcome", "allow", "toy"),
    ]
    assert records[1].operation == "Detect"
    assert records[2].detail["dropped"] == {"face_template": 1}


async def test_a_protocol_without_a_backend_is_refused_in_its_own_shape_on_record(
    migrated_database_url: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    # Only Rekognition is configured; Azure and CompreFace have no backend.
    vendors_file = inventory(
        tmp_path,
        {
            "name": "only-rekognition",
            "protocol": "rekognition",
            "base_url": vendor.url,
            "secret": VENDOR_SECRET,
            "credentials": {"access_key_id": VENDOR_KEY},
        },
    )
    settings = gateway_settings(
        migrated_database_url, tmp_path, vendor.url, vendors_file=vendors_file
    )
    before = vendor_calls(vendor)
    with BackgroundServer(create_app(settings)) as server:
        stack = Stack(settings=settings, url=server.url, vendor=vendor)
        credentials = await stack.session()
        azure = http(
            "POST",
            f"{server.url}/face/v1.0/detect",
            content=samples.astronaut_jpeg(),
            headers={
                "ocp-apim-subscription-key": key(credentials),
                "content-type": "application/octet-stream",
            },
        )
        compreface = http(
            "GET",
            f"{server.url}/api/v1/recognition/subjects",
            headers={"x-api-key": key(credentials)},
        )

    assert azure.status_code == 404
    assert azure.json()["error"]["code"] == "NotFound"
    assert "no azure backend" in azure.json()["error"]["message"]
    assert azure.headers["apim-request-id"]
    assert compreface.status_code == 404
    assert compreface.json()["code"] == 404
    assert "no compreface backend" in compreface.json()["message"]
    assert vendor_calls(vendor) == before
    records = await records_of(stack, event_type="rejected")
    assert sorted((r.vendor, r.reason_codes[0], r.key_id) for r in records) == [
        ("azure", "no_backend", credentials.access_key_id),
        ("compreface", "no_backend", credentials.access_key_id),
    ]


async def test_rekognition_without_a_backend_is_a_boto3_error_on_record(
    migrated_database_url: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    vendors_file = inventory(
        tmp_path,
        {"name": "only-azure", "protocol": "azure", "base_url": vendor.url, "secret": AZURE_KEY},
        {
            "name": "only-compreface",
            "protocol": "compreface",
            "base_url": vendor.url,
            "secret": COMPREFACE_KEY,
            "collection": "mugshots",
        },
    )
    settings = gateway_settings(
        migrated_database_url, tmp_path, vendor.url, vendors_file=vendors_file
    )
    with BackgroundServer(create_app(settings)) as server:
        stack = Stack(settings=settings, url=server.url, vendor=vendor)
        credentials = await stack.session()
        client = boto3.client(
            "rekognition",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )
        with pytest.raises(ClientError) as raised:
            client.list_collections()

    assert raised.value.response["Error"]["Code"] == "UnknownOperationException"
    assert "no rekognition backend" in raised.value.response["Error"]["Message"]
    [record] = await records_of(stack, event_type="rejected")
    assert (record.vendor, record.reason_codes, record.key_id) == (
        "rekognition",
        ["no_backend"],
        credentials.access_key_id,
    )
