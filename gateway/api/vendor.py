"""The vendor protocols' routes: each request goes to the pipeline with its adapter."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import MalformedRequest, PayloadTooLarge, RequestError, RequestTimeout
from gateway.requests import IncomingRequest
from gateway.services import Services
from gateway.vendors.base import VendorAdapter
from gateway.vendors.inventory import Protocol


def describe(request: Request) -> IncomingRequest:
    """Everything about the request but its body."""
    return IncomingRequest(
        request_id=request.state.request_id,
        received_at=datetime.now(UTC),
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        # ASGI servers hand header names over in lower case.
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers.raw},
        body=b"",
        client_address=request.client.host if request.client else None,
    )


async def read_body(
    request: Request, *, max_body_bytes: int, timeout_seconds: float | None = None
) -> bytes:
    """The body in full, chunked or not, refused as soon as it passes `max_body_bytes`, or
    as RequestTimeout when it has not all arrived within `timeout_seconds`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedRequest("Content-Length is not a number")
        if int(declared) > max_body_bytes:
            raise PayloadTooLarge(f"the request body is over the {max_body_bytes}-byte limit")
    body = bytearray()
    try:
        # One deadline for the whole body: a client sending a byte now and then never
        # trips a per-read timeout, and the server has none on request bodies.
        async with asyncio.timeout(timeout_seconds):
            # Chunked bodies have no Content-Length: count as they arrive, stop at the cap.
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body_bytes:
                    raise PayloadTooLarge(
                        f"the request body is over the {max_body_bytes}-byte limit"
                    )
    except TimeoutError as exc:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_seconds} seconds"
        ) from exc
    return bytes(body)


async def handle_vendor_request(
    request: Request, services: Services, adapter: VendorAdapter
) -> Response:
    incoming = describe(request)
    try:
        body = await read_body(
            request,
            max_body_bytes=services.settings.max_body_bytes,
            timeout_seconds=services.settings.client_read_timeout_seconds,
        )
    except RequestError as exc:
        return await services.pipeline.reject(adapter, incoming, exc)
    return await services.pipeline.handle(adapter, dataclasses.replace(incoming, body=body))


async def handle_protocol(request: Request, services: Services, protocol: Protocol) -> Response:
    adapter = services.adapters.get(protocol)
    if adapter is None:
        return JSONResponse(
            {
                "error": {
                    "code": "no_backend",
                    "message": f"no {protocol.value} backend is configured",
                }
            },
            status_code=404,
        )
    return await handle_vendor_request(request, services, adapter)


# Which protocol a request speaks, by method and path: what the vendors' SDKs send.
_KEY_HEADER_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_PATH_PREFIXES = (
    # Azure AI Face (both SDKs' path families): the Face client's endpoint pointed here.
    ("/face/", Protocol.AZURE),
    # CompreFace's REST API: compreface-sdk's domain and port pointed here.
    ("/api/v1/", Protocol.COMPREFACE),
)


def vendor_protocol(method: str, path: str) -> Protocol | None:
    """The vendor protocol a request speaks, or None for facegate's own routes."""
    if path == "/":
        # Amazon Rekognition's JSON 1.1 protocol: boto3 with endpoint_url pointed here.
        return Protocol.REKOGNITION if method == "POST" else None
    if method in _KEY_HEADER_METHODS:
        for prefix, protocol in _PATH_PREFIXES:
            if path.startswith(prefix):
                return protocol
    return None


class VendorRoutes:
    """Pure ASGI middleware: vendor-protocol requests go straight to the pipeline.

    They need none of FastAPI's routing, dependency solving or validation (the adapters
    parse the native request themselves), and skipping them is a measured share of every
    request's cost. Everything else passes through to the FastAPI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        protocol = (
            vendor_protocol(scope["method"], scope["path"]) if scope["type"] == "http" else None
        )
        if protocol is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        services: Services = request.app.state.services
        response = await handle_protocol(request, services, protocol)
        await response(scope, receive, send)
