"""The vendor protocols' routes: a request in a registered vendor's protocol goes to the
pipeline with that vendor; everything else goes on to the management API."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime
from typing import Final

from starlette.datastructures import URL
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import MalformedRequest, PayloadTooLarge, RequestError, RequestTimeout
from gateway.observability.metrics import reason_codes_for
from gateway.observability.requests import observe_request
from gateway.requests import IncomingRequest
from gateway.services import Services
from gateway.vendors import recognise
from gateway.vendors.base import BackendNotConfigured, Vendor

# What Starlette's URL would escape or urlsplit would drop or split on: a path or query
# holding any of these is read through URL, so that `path` and `query` are what they were.
_URL_SPECIAL: Final = re.compile(r"[?#\\\t\r\n]")


def describe(scope: Scope) -> IncomingRequest:
    """Everything about the request but its body.

    Read from the ASGI scope itself: a Starlette Request and its URL (built by joining the
    scope's parts into a string and splitting it again) cost more than the rest of this.
    The path and query are those `request.url` gives."""
    path: str = scope["path"]
    query: str = scope.get("query_string", b"").decode()
    if _URL_SPECIAL.search(path) or _URL_SPECIAL.search(query) or path.startswith("//"):
        url = URL(scope=scope)
        path, query = url.path, url.query
    client = scope.get("client")
    return IncomingRequest(
        request_id=scope["state"]["request_id"],
        received_at=datetime.now(UTC),
        method=scope["method"],
        path=path,
        query=query,
        # ASGI servers hand header names over in lower case.
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        body=b"",
        client_address=client[0] if client else None,
    )


def _declared_length(scope: Scope) -> str | None:
    """The first Content-Length header, as Starlette's Headers.get would find it."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return str(value.decode("latin-1"))
    return None


async def read_body(
    scope: Scope,
    receive: Receive,
    *,
    max_body_bytes: int,
    timeout_seconds: float | None = None,
) -> bytes:
    """The body in full, chunked or not, refused as soon as it passes `max_body_bytes`, or
    as RequestTimeout when it has not all arrived within `timeout_seconds`. A client that
    leaves before it is all sent raises Starlette's ClientDisconnect."""
    declared = _declared_length(scope)
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
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                body += message.get("body", b"")
                if len(body) > max_body_bytes:
                    raise PayloadTooLarge(
                        f"the request body is over the {max_body_bytes}-byte limit"
                    )
                if not message.get("more_body", False):
                    break
    except TimeoutError as exc:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_seconds} seconds"
        ) from exc
    return bytes(body)


async def handle_vendor_request(
    scope: Scope, receive: Receive, services: Services, vendor: Vendor
) -> Response:
    incoming = describe(scope)
    # Its span, steps, metrics and one log line (gateway/observability/requests.py).
    with observe_request(
        vendor.name,
        incoming,
        known_operations=vendor.descriptor.operation_names,
        reasons=reason_codes_for(services.settings.policy_dir),
    ) as observed:
        response = await _answer(scope, receive, incoming, services, vendor)
        observed.answered(response.status_code)
    return response


async def _answer(
    scope: Scope, receive: Receive, incoming: IncomingRequest, services: Services, vendor: Vendor
) -> Response:
    if vendor.adapter is None:
        # Refused in the vendor's own shape and on record, before its body is read: there
        # is nowhere to forward it.
        error = BackendNotConfigured(f"no {vendor.name} backend is configured")
        return await services.pipeline.reject(vendor, incoming, error)
    try:
        body = await read_body(
            scope,
            receive,
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
    request's cost. Everything else passes through to the FastAPI app. (Taking them before
    FastAPI's own middleware, ServerErrorMiddleware and the body limit, was measured too:
    about 5 us a request, within the noise, so they stay in front.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = recognise(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        services: Services = scope["app"].state.services
        response = await handle_vendor_request(
            scope, receive, services, services.vendors[found.protocol]
        )
        await response(scope, receive, send)
