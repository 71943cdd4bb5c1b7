"""Routes that speak vendor protocols. Each hands the request to the pipeline with its adapter."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from gateway.api.deps import ServicesDep
from gateway.errors import MalformedRequest, PayloadTooLarge, RequestError
from gateway.requests import IncomingRequest
from gateway.vendors.base import VendorAdapter
from gateway.vendors.inventory import Protocol

router = APIRouter(include_in_schema=False)


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


async def read_body(request: Request, *, max_body_bytes: int) -> bytes:
    """The body in full, chunked or not, refused as soon as it passes `max_body_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedRequest("Content-Length is not a number")
        if int(declared) > max_body_bytes:
            raise PayloadTooLarge(f"the request body is over the {max_body_bytes}-byte limit")
    body = bytearray()
    # Chunked bodies have no Content-Length: count as they arrive and stop at the cap.
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise PayloadTooLarge(f"the request body is over the {max_body_bytes}-byte limit")
    return bytes(body)


async def handle_vendor_request(
    request: Request, services: ServicesDep, adapter: VendorAdapter
) -> Response:
    incoming = describe(request)
    try:
        body = await read_body(request, max_body_bytes=services.settings.max_body_bytes)
    except RequestError as exc:
        return await services.pipeline.reject(adapter, incoming, exc)
    return await services.pipeline.handle(adapter, dataclasses.replace(incoming, body=body))


async def handle_protocol(request: Request, services: ServicesDep, protocol: Protocol) -> Response:
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


@router.post("/")
async def rekognition(request: Request, services: ServicesDep) -> Response:
    """Amazon Rekognition's JSON 1.1 protocol: boto3 with endpoint_url pointed here."""
    return await handle_protocol(request, services, Protocol.REKOGNITION)


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@router.api_route("/face/{path:path}", methods=_METHODS)
async def azure_face(request: Request, services: ServicesDep) -> Response:
    """Azure AI Face (both SDKs' path families): the Face client's endpoint pointed here."""
    return await handle_protocol(request, services, Protocol.AZURE)


@router.api_route("/api/v1/{path:path}", methods=_METHODS)
async def compreface(request: Request, services: ServicesDep) -> Response:
    """CompreFace's REST API: compreface-sdk's domain and port pointed here."""
    return await handle_protocol(request, services, Protocol.COMPREFACE)
