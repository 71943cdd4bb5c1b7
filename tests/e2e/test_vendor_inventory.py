"""The vendor inventory end to end: SSRF attempts, attestations, and the auditor's listing.

The gateway only ever talks to the base URLs in the vendors file. A decoy server stands in
for the host an attacker names; it must never see a request.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.auth.key_header import vendor_key
from gateway.auth.principals import Role
from gateway.auth.sessions import IssuedCredentials
from gateway.serving import BackgroundServer
from refvendor import samples
from tests.e2e.conftest import Stack, compreface_sdk, gateway_settings, vendor_calls


@pytest.fixture(scope="module")
def decoy() -> Iterator[tuple[BackgroundServer, list[str]]]:
    """A server that records every request it gets: the host an attacker wants reached."""
    hits: list[str] = []

    async def record(request: Request) -> Response:
        hits.append(f"{request.method} {request.url.path}")
        return Response(samples.astronaut_jpeg(), media_type="image/jpeg")

    app = Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])
    with BackgroundServer(app) as server:
        yield server, hits


def raw_request(url: str, head: str, body: bytes) -> tuple[int, bytes]:
    """Send bytes as they are, so the request line and Host header say what we want."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
            if b"\r\n\r\n" in response:
                headers, _, rest = response.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in headers.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
    return int(response.split(b" ", 2)[1]), response.partition(b"\r\n\r\n")[2]


def http(method: str, url: str, **options: Any) -> httpx.Response:
    return httpx.request(method, url, timeout=30, **options)


def key(credentials: IssuedCredentials) -> str:
    return vendor_key(credentials.access_key_id, credentials.secret_access_key)


async def test_an_absolute_url_and_host_header_naming_another_host_are_ignored(
    stack: Stack, decoy: tuple[BackgroundServer, list[str]]
) -> None:
    server, hits = decoy
    image = samples.astronaut_jpeg()
    credentials = await stack.session()
    before = vendor_calls(stack.vendor)

    status, body = raw_request(
        stack.url,
        f"POST {server.url}/face/v1.0/detect HTTP/1.1\n"
        f"Host: {server.url.removeprefix('http://')}\n"
        f"Ocp-Apim-Subscription-Key: {key(credentials)}\n"
        "Content-Type: application/octet-stream\n"
        f"Content-Length: {len(image)}\n"
        "Connection: close\n",
        image,
    )

    assert status == 200, body
    assert hits == []
    assert vendor_calls(stack.vendor) == before + 1  # served by the inventory's backend


async def test_a_url_to_detect_from_is_refused_and_never_fetched(
    stack: Stack, decoy: tuple[BackgroundServer, list[str]]
) -> None:
    server, hits = decoy
    credentials = await stack.session()
    before = vendor_calls(stack.vendor)

    response = http(
        "POST",
        f"{stack.url}/face/v1.0/detect",
        json={"url": f"{server.url}/internal/admin.jpg"},
        headers={"Ocp-Apim-Subscription-Key": key(credentials)},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadArgument"
    assert "does not fetch URLs" in response.json()["error"]["message"]
    assert hits == []
    assert vendor_calls(stack.vendor) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/recognition/subjects/..%2F..%2F..%2Fadmin",
        "/api/v1/recognition/faces/x/img",  # CompreFace's download of a stored face image
        "/face/v1.0/largepersongroups/g/persons/p/persistedfaces/f/../../../../../../x",
    ],
)
async def test_paths_outside_the_route_table_are_refused(stack: Stack, path: str) -> None:
    credentials = await stack.session()
    before = vendor_calls(stack.vendor)

    response = http(
        "GET",
        stack.url + path,
        headers={"x-api-key": key(credentials), "Ocp-Apim-Subscription-Key": key(credentials)},
    )

    assert response.status_code in (400, 404)
    assert vendor_calls(stack.vendor) == before


async def test_identification_through_an_unattested_vendor_is_refused_on_every_protocol(
    migrated_database_url: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    stale = datetime.now(UTC).date() - timedelta(days=800)
    settings = gateway_settings(migrated_database_url, tmp_path, vendor.url, attested_on=stale)
    with BackgroundServer(create_app(settings)) as gateway:
        stack = Stack(settings=settings, url=gateway.url, vendor=vendor)
        await stack.warrant("W-1")
        credentials = await stack.session()
        before = vendor_calls(vendor)

        compreface = compreface_sdk(gateway.url, key(credentials)).recognition
        refused = compreface.recognize(samples.astronaut_variant_jpeg())
        assert refused["code"] == 403 and "vendor_attestation_stale" in refused["message"]

        client = stack.rekognition(credentials)
        with pytest.raises(client.exceptions.AccessDeniedException) as raised:
            client.search_faces_by_image(
                CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
            )
        assert "vendor_attestation_stale" in str(raised.value)

        identify = http(
            "POST",
            f"{gateway.url}/face/v1.0/identify",
            json={
                "faceIds": ["00000000-0000-0000-0000-000000000000"],
                "largePersonGroupId": "mugshots",
            },
            headers={"Ocp-Apim-Subscription-Key": key(credentials)},
        )
        assert identify.status_code == 403
        assert "vendor_attestation_stale" in identify.json()["error"]["message"]
        assert vendor_calls(vendor) == before

        # Detection needs no attestation.
        assert compreface_sdk(gateway.url, key(credentials)).detection.detect(
            samples.astronaut_jpeg()
        )["result"]


async def test_an_auditor_lists_the_inventory_without_secrets(stack: Stack) -> None:
    auditor = await stack.principal("auditor-inv", Role.AUDITOR)
    officer = await stack.principal("officer-inv", Role.OFFICER)

    listed = http(
        "GET", f"{stack.url}/facegate/v1/vendors", headers={"Authorization": f"Bearer {auditor}"}
    )
    forbidden = http(
        "GET", f"{stack.url}/facegate/v1/vendors", headers={"Authorization": f"Bearer {officer}"}
    )

    assert listed.status_code == 200
    vendors = {v["name"]: v for v in listed.json()["vendors"]}
    assert {v["protocol"] for v in vendors.values()} == {"rekognition", "azure", "compreface"}
    azure = vendors["refvendor-azure"]
    assert azure["base_url"] == stack.vendor.url
    assert azure["credentials_source"].startswith("file:")
    assert "demographic_accuracy_test" in azure["attestations"]
    text = json.dumps(listed.json())
    assert "refvendor-azure-test-key" not in text and "refvendor-secret" not in text
    assert forbidden.status_code == 403


async def test_the_session_api_hands_out_the_key_header_form_and_it_works(stack: Stack) -> None:
    officer = await stack.principal("officer-api-key", Role.OFFICER)
    opened = http(
        "POST",
        f"{stack.url}/facegate/v1/sessions",
        headers={"Authorization": f"Bearer {officer}"},
        json={
            "purpose": "criminal_investigation",
            "case_number": "2026-HOM-0042",
            "offense": "homicide",
            "legal_basis": "warrant",
            "warrant_id": "W-1",
        },
    )
    assert opened.status_code == 201, opened.text
    issued = opened.json()
    assert issued["vendor_key"] == f"{issued['access_key_id']}.{issued['secret_access_key']}"

    answer = compreface_sdk(stack.url, issued["vendor_key"]).detection.detect(
        samples.astronaut_jpeg()
    )

    assert len(answer["result"]) == 1
    records = http(
        "GET",
        f"{stack.url}/facegate/v1/audit/records",
        headers={"Authorization": f"Bearer {await stack.principal('aud-k', Role.AUDITOR)}"},
        params={"event_type": "outcome", "vendor": "compreface"},
    )
    assert issued["secret_access_key"] not in records.text
