"""Which requests GatewayApp hands to a vendor adapter, and which go on to FastAPI; what a
vendor request gets on the way (its request id, an answer to a bug)."""

from __future__ import annotations

import logging
import random
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from gateway import requests as requests_module
from gateway.api.middleware import RequestIdMiddleware
from gateway.api.vendor_routes import GatewayApp, describe
from gateway.config import Settings
from gateway.requests import IncomingRequest
from gateway.vendors import descriptor, recognise
from gateway.vendors.base import Vendor
from gateway.vendors.inventory import Protocol
from gateway.vendors.rekognition.errors import error_response


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/", Protocol.REKOGNITION),
        ("POST", "/face/v1.0/detect", Protocol.AZURE),
        ("DELETE", "/face/v1.2-preview.1/largepersongroups/g", Protocol.AZURE),
        ("POST", "/api/v1/recognition/recognize", Protocol.COMPREFACE),
        ("GET", "/api/v1/recognition/faces", Protocol.COMPREFACE),
        # facegate's own routes, and what no vendor SDK sends, are FastAPI's to answer.
        ("GET", "/", None),
        ("GET", "/facegate/health", None),
        ("GET", "/facegate/ready", None),
        ("GET", "/metrics", None),
        ("POST", "/metrics", None),
        ("POST", "/facegate/v1/sessions", None),
        ("HEAD", "/face/v1.0/detect", None),
        ("POST", "/face", None),
        ("POST", "/api/v2/recognition", None),
    ],
)
def test_requests_are_routed_by_method_and_path(
    method: str, path: str, expected: Protocol | None
) -> None:
    found = recognise(method, path)
    assert (found and found.protocol) == expected


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/", b""),
        ("/face/v1.0/largepersongroups/g%20x/persons", b"top=10&start=a%2Fb"),
        ("/face/v1.0/persongroups/a?b#c\\d", b"x=\xc3\xa9"),  # what the URL escapes
        ("//face/v1.0/detect", b"returnFaceId=true"),
        ("/face/v1.0/detect", b"a=1\tb#frag"),  # what urlsplit drops or splits on
    ],
)
def test_describe_reads_path_and_query_as_starlettes_url_does(path: str, query: bytes) -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": query,
        "headers": [(b"host", b"gateway:8000"), (b"x-amz-target", b"T")],
        "client": ("10.0.0.1", 5000),
        "server": ("10.0.0.2", 8000),
        "scheme": "http",
    }
    described = describe(scope, "r-1")
    url = Request(scope).url
    assert (described.path, described.query) == (url.path, url.query)
    assert described.headers == {"host": "gateway:8000", "x-amz-target": "T"}
    assert (described.request_id, described.client_address) == ("r-1", "10.0.0.1")


class _Pipeline:
    """A pipeline stand-in: answers 200 with the request id it was handed, or fails as a bug
    outside the pipeline's own guard would (`broken`)."""

    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken
        self.handled: list[IncomingRequest] = []

    async def handle(self, vendor: Vendor, request: IncomingRequest) -> Response:
        if self.broken:
            raise RuntimeError("a bug")
        self.handled.append(request)
        return Response(b"{}", headers={"x-amzn-RequestId": request.request_id})


def _gateway(pipeline: _Pipeline, tmp_path: Path) -> GatewayApp:
    app = GatewayApp()
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    # The adapter renders errors as Rekognition's does; nothing else of it is reached.
    adapter = SimpleNamespace(
        error_response=lambda error, *, request_id: error_response(error, request_id)
    )
    vendor = Vendor(
        descriptor=descriptor(Protocol.REKOGNITION), authenticator=None, adapter=adapter
    )  # type: ignore[arg-type]
    app.state.services = SimpleNamespace(
        settings=settings, vendors={Protocol.REKOGNITION: vendor}, pipeline=pipeline
    )
    return app


def _client(app: GatewayApp, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


SEARCH = {"x-amz-target": "RekognitionService.SearchFacesByImage"}


async def test_a_vendor_request_gets_a_fresh_uuid4_request_id(tmp_path: Path) -> None:
    pipeline = _Pipeline()
    async with _client(_gateway(pipeline, tmp_path)) as client:
        first = await client.post("/", content=b"{}", headers=SEARCH)
        second = await client.post("/", content=b"{}", headers=SEARCH)
    assert (first.status_code, second.status_code) == (200, 200)
    ids = [request.request_id for request in pipeline.handled]
    assert ids == [first.headers["x-amzn-requestid"], second.headers["x-amzn-requestid"]]
    assert ids[0] != ids[1]
    for request_id in ids:
        assert (
            uuid.UUID(hex=request_id).version == 4 and uuid.UUID(hex=request_id).hex == request_id
        )
    assert pipeline.handled[0].body == b"{}"


def test_new_request_id_is_uuid4_hex_of_the_same_random_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for seed in range(200):
        raw = random.Random(seed).randbytes(16)
        monkeypatch.setattr(requests_module, "urandom", lambda n, raw=raw: raw)
        assert requests_module.new_request_id() == uuid.UUID(bytes=raw, version=4).hex


async def test_a_bug_outside_the_pipeline_is_answered_in_the_vendors_format_and_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _gateway(_Pipeline(broken=True), tmp_path)
    # Raised on to the server, which logs it and closes the connection (as it did when
    # Starlette's ServerErrorMiddleware answered it).
    async with _client(app) as client:
        with pytest.raises(RuntimeError, match="a bug"):
            await client.post("/", content=b"{}", headers=SEARCH)
    async with _client(app, raise_app_exceptions=False) as client:
        with caplog.at_level(logging.INFO, logger="gateway.requests"):
            answer = await client.post("/", content=b"{}", headers=SEARCH)
    assert answer.status_code == 500
    assert answer.headers["x-amzn-errortype"] == "InternalServerError"
    assert answer.json() == {
        "__type": "InternalServerError",
        "Message": "facegate failed to handle the request",
    }
    request_id = answer.headers["x-amzn-requestid"]
    assert uuid.UUID(hex=request_id).version == 4
    # Its log line and metrics are written all the same, as an error.
    (line,) = [r for r in caplog.records if r.name == "gateway.requests"]
    assert (line.request_id, line.decision) == (request_id, "error")  # type: ignore[attr-defined]


async def test_other_requests_go_on_to_fastapi(tmp_path: Path) -> None:
    app = _gateway(_Pipeline(), tmp_path)

    @app.get("/facegate/probe")
    async def probe(request: Request) -> dict[str, str]:
        return {"request_id": request.state.request_id}

    app.add_middleware(RequestIdMiddleware)
    async with _client(app) as client:
        answer = await client.get("/facegate/probe")
        missing = await client.get("/")  # GET / is no vendor's
    assert answer.status_code == 200
    assert uuid.UUID(hex=answer.json()["request_id"]).version == 4
    assert missing.status_code == 404
