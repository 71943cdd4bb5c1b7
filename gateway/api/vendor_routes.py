"""The vendor protocols' routes: a request in a registered vendor's protocol goes to the
pipeline with that vendor; everything else goes on to the management API."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import MalformedRequest, PayloadTooLarge, RequestError, RequestTimeout
from gateway.observability.metrics import reason_codes_for
from gateway.observability.requests import observe_request
from gateway.requests import IncomingRequest
from gateway.services import Services
from gateway.vendors import recognise
from gateway.vendors.base import BackendNotConfigured, Vendor


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


async def handle_vendor_request(request: Request, services: Services, vendor: Vendor) -> Response:
    incoming = describe(request)
    # Its span, steps, metrics and one log line (gateway/observability/requests.py).
    with observe_request(
        vendor.name,
        incoming,
        known_operations=vendor.descriptor.operation_names,
        reasons=reason_codes_for(services.settings.policy_dir),
    ) as observed:
        response = await _answer(request, incoming, services, vendor)
        observed.answered(response.status_code)
    return response


async def _answer(
    request: Request, incoming: IncomingRequest, services: Services, vendor: Vendor
) -> Response:
    if vendor.adapter is None:
        # Refused in the vendor's own shape and on record, before its body is read: there
        # is nowhere to forward it.
        error = BackendNotConfigured(f"no {vendor.name} backend is configured")
        return await services.pipeline.reject(vendor, incoming, error)
    try:
        body = await read_body(
            request,
            max_body_bytes=services.settings.max_body_bytes,
            timeout_seconds=services.settings.client_read_timeout_seconds,
        )
    except RequestError as exc:
        return await services.pipeline.reject(vendor, incoming, exc)
    return await services.pipeline.handle(vendor, dataclasses.replace(incoming, body=body))


class VendorRoutes:
    """Pure ASGI middleware: vendor-protocol requests go straight to the pipeline.

    They need none of FastAPI's routing, dependency solving or validation (the adapters
    parse the native request themselves), and skipping them is a measured share of every
    request's cost. Everything else passes through to the FastAPI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = recognise(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        services: Services = request.app.state.services
        response = await handle_vendor_request(request, services, services.vendors[found.protocol])
        await response(scope, receive, send)
