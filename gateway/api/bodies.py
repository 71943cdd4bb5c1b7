"""A request body read in full, bounded in size and time: the one reader of the vendor
routes (`vendor_routes`) and the management API (`middleware`), so both refuse the same
bodies the same way (RequestError subclasses, recorded by their callers)."""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope

from gateway.errors import ClientDisconnected, MalformedRequest, PayloadTooLarge, RequestTimeout


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
    as RequestTimeout when it has not all arrived within `timeout_seconds`, and as
    ClientDisconnected when the client leaves before it is all sent."""
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
                    raise ClientDisconnected(
                        "the client closed the connection before its request body arrived"
                    )
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
