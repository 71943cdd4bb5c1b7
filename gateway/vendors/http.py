"""The HTTP client every adapter forwards with: httpx's interface on aiohttp's transport.

Adapters keep httpx's API and its exceptions (`httpx.HTTPError`); the connections are
aiohttp's, through `httpx-aiohttp`, the transport kept by httpx's maintainers. httpcore's
pure-Python HTTP/1.1 and its anyio layer were the largest single cost of a forward: with
this transport the gateway served 359 instead of 303 requests/s from 16 callers, at 2.5
instead of 3.2 ms of CPU per request (bench/compare_trees.py --load closed, same run).
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class _Transport(AiohttpTransport):
    """httpx-aiohttp maps aiohttp's common errors to httpx's; this maps the rest (a reply
    that is not HTTP, say), so that no aiohttp exception leaves the vendors package."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(f"{type(exc).__name__}: {exc}") from exc


def upstream_client(*, timeout_seconds: float) -> httpx.AsyncClient:
    """A client for one vendor backend: no redirects followed (a vendor's redirect is not a
    place facegate sends a probe to), every phase bounded by `timeout_seconds`."""
    return httpx.AsyncClient(
        transport=_Transport(), timeout=timeout_seconds, follow_redirects=False
    )
