"""The vendor protocols' routes: a request in a registered vendor's protocol goes to the
pipeline with that vendor; everything else goes on to the management API (FastAPI)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Final

from fastapi import FastAPI
from starlette.datastructures import URL
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.api.bodies import read_body
from gateway.errors import (
    FacegateError,
    RequestError,
)
from gateway.observability.metrics import reason_codes_for
from gateway.observability.requests import observe_request
from gateway.requests import IncomingRequest, new_request_id
from gateway.services import Services
from gateway.vendors import recognise
from gateway.vendors.base import BackendNotConfigured, Vendor

# What Starlette's URL would escape or urlsplit would drop or split on: a path or query
# holding any of these is read through URL, so that `path` and `query` are what they were.
_URL_SPECIAL: Final = re.compile(r"[?#\\\t\r\n]")


def describe(scope: Scope, request_id: str) -> IncomingRequest:
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
        request_id=request_id,
        received_at=datetime.now(UTC),
        method=scope["method"],
        path=path,
        query=query,
        # ASGI servers hand header names over in lower case.
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        body=b"",
        client_address=client[0] if client else None,
    )


async def handle_vendor_request(
    scope: Scope, receive: Receive, services: Services, vendor: Vendor, request_id: str
) -> Response:
    incoming = describe(scope, request_id)
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


class GatewayApp(FastAPI):
    """The app uvicorn runs: FastAPI, with the vendor protocols' requests taken before it.

    A request in a registered vendor's protocol goes straight to its vendor's handler:
    it needs none of FastAPI's routing, dependency solving or validation (the adapters
    parse the native request themselves), nor any of the middleware FastAPI and Starlette
    wrap around every request, which cost more CPU than the routing itself (issue 17).
    Everything else, lifespan and management API included, is FastAPI's as before.

    What the skipped layers did for a vendor request is done here: its request id
    (RequestIdMiddleware, for the management API), and the answer to a bug no step
    caught (ServerErrorMiddleware's 500): see `_serve_vendor_request`. Their other jobs
    do not concern vendor requests: the body limit and read timeout are `read_body`'s,
    FastAPI's own body limit is not set, and its OpenTelemetry server span would double
    the one `observe_request` opens for the request.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = recognise(scope["method"], scope["path"])
            if found is not None:
                services: Services = self.state.services
                vendor = services.vendors[found.protocol]
                await _serve_vendor_request(scope, receive, send, services, vendor)
                return
        await super().__call__(scope, receive, send)


async def _serve_vendor_request(
    scope: Scope, receive: Receive, send: Send, services: Services, vendor: Vendor
) -> None:
    """Answer one vendor request, in the vendor's own format whatever happens.

    The pipeline answers its own failures; an exception that escapes it anyway (a bug in
    reading or describing the request) is answered with the vendor's own 500-class error,
    if nothing was sent yet, and raised on: the server logs it and closes the connection,
    as it did when Starlette's ServerErrorMiddleware answered such a bug with a plain-text
    500. (A client that leaves mid-body is not one: `read_body` refuses it, on record, as
    ClientDisconnected.)"""
    request_id = new_request_id()
    try:
        response = await handle_vendor_request(scope, receive, services, vendor, request_id)
    except Exception:
        failed = FacegateError("facegate failed to handle the request")
        await vendor.error_response(failed, request_id=request_id)(scope, receive, send)
        raise
    await response(scope, receive, send)
