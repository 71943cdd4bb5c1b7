"""The HTTP client every adapter forwards with: httpx's interface on aiohttp's transport.

Adapters keep httpx's API and its exceptions (`httpx.HTTPError`); the connections are
aiohttp's, through `httpx-aiohttp`, the transport kept by httpx's maintainers. httpcore's
pure-Python HTTP/1.1 and its anyio layer were the largest single cost of a forward: with
this transport the gateway served 359 instead of 303 requests/s from 16 callers, at 2.5
instead of 3.2 ms of CPU per request (bench/compare_trees.py --load closed, same run).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway.observability.tracing import client_span


class _Transport(AiohttpTransport):
    """httpx-aiohttp maps aiohttp's common errors to httpx's; this maps the rest (a reply
    that is not HTTP, say), so that no aiohttp exception leaves the vendors package."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(f"{type(exc).__name__}: {exc}") from exc


class _DeadlineClient(httpx.AsyncClient):
    """httpx's timeouts bound each phase (connect, each read, each write): a vendor sending
    a byte a second never trips a 30-second read timeout, and held a request 18 s in a test
    with a 1-second one. This client bounds the whole exchange, from connecting to the last
    byte of the answer, by one deadline, and raises httpx's own TimeoutException past it."""

    def __init__(self, *, deadline_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._deadline_seconds = deadline_seconds

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        # The forward's CLIENT span, its traceparent added to the headers as sent: after a
        # Rekognition request was signed, so it is not one of the signed headers.
        url = str(request.url.copy_with(query=None))
        with client_span(request.method, url, request.headers) as span:
            try:
                async with asyncio.timeout(self._deadline_seconds):
                    # Without stream=True (the adapters never stream), send returns only
                    # once the whole body is read: the deadline covers it.
                    response = await super().send(request, **kwargs)
            except TimeoutError as exc:
                raise httpx.TimeoutException(
                    f"no complete answer within {self._deadline_seconds} s", request=request
                ) from exc
            span.set_attribute("http.response.status_code", response.status_code)
            return response


def upstream_client(*, timeout_seconds: float) -> httpx.AsyncClient:
    """A client for one vendor backend: no redirects followed (a vendor's redirect is not a
    place facegate sends a probe to), and the whole exchange, not only each phase, bounded
    by `timeout_seconds`."""
    return _DeadlineClient(
        deadline_seconds=timeout_seconds,
        transport=_Transport(),
        timeout=timeout_seconds,
        follow_redirects=False,
    )
