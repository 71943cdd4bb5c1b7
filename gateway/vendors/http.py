"""The HTTP client every adapter forwards with: aiohttp, behind one narrow call.

`UpstreamClient.request(method, url, headers, body) -> UpstreamReply(status, headers, body)`
is all an adapter sees; aiohttp's exceptions are mapped here, at the one edge, into
`UpstreamError`, so none leaves the vendors package.

Why not httpx's API: forwards went through httpx's AsyncClient on aiohttp's transport
(httpx-aiohttp), and httpx's layers (send, auth, redirects, its Request and Response
models, a byte stream wrapped around aiohttp's) cost three times aiohttp's own CPU: the 20 KB
POST took 1.03 ms that way against 0.36 ms on aiohttp directly (issue 17). Measured here,
alternating in one process, 16 callers against bench's upstream stub: 0.84 ms of CPU a
forward through the httpx client, 0.28 ms through this one. What those layers did for
facegate, refusing redirects and bounding the exchange, is a flag and a timeout here.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import httpx
from multidict import CIMultiDictProxy

from gateway.errors import UpstreamError
from gateway.observability.requests import request_traced
from gateway.observability.tracing import client_span

# What the httpx-aiohttp transport gave each backend, kept: at most 100 connections, an
# idle one closed after 5 s.
_MAX_CONNECTIONS = 100
_KEEPALIVE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A vendor's whole answer, read: a redirect is an answer like any other."""

    status: int
    headers: CIMultiDictProxy[str]  # case-insensitive, as received
    body: bytes  # decoded from any Content-Encoding


class UpstreamClient:
    """One vendor backend's pooled connections, opened on first use (aiohttp binds them to
    the running event loop) and closed by `aclose`."""

    def __init__(self, *, vendor: str, timeout_seconds: float) -> None:
        self._vendor = vendor
        self._deadline_seconds = timeout_seconds
        # The trust the httpx client had: certifi's roots unless SSL_CERT_FILE or
        # SSL_CERT_DIR name others. Built once; a handshake only reads it.
        self._tls = httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=_MAX_CONNECTIONS, keepalive_timeout=_KEEPALIVE_SECONDS, ssl=self._tls
            ),
            # No per-phase timeouts: the deadline in `request` bounds the whole exchange.
            timeout=aiohttp.ClientTimeout(),
            # One client carries every caller's requests: a cookie one vendor answer sets
            # must not ride along on another caller's request.
            cookie_jar=aiohttp.DummyCookieJar(),
            # The adapter names the body's type or sends none; aiohttp would otherwise add
            # application/octet-stream to a body without one.
            skip_auto_headers=("Content-Type",),
        )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: MutableMapping[str, str],
        body: bytes | None = None,
        query: Sequence[tuple[str, str]] = (),
    ) -> UpstreamReply:
        """The vendor's whole answer to one request, or `UpstreamError`.

        - Bounded: from connecting to the last byte of the answer, within one deadline
          (`timeout_seconds`). A per-phase timeout would not do: a vendor sending a byte a
          second never trips a 30-second read timeout, and held a request 18 s in a test
          with a 1-second one.
        - No redirect is followed: a vendor's redirect is not a place facegate sends a
          probe to. It comes back as the answer.
        - Every failure to get a whole HTTP answer (refused, reset, not HTTP, past the
          deadline) is `UpstreamError("<vendor> could not be reached: <why>")`.
        - `headers` are sent as given, plus the CLIENT span's `traceparent`, added to them
          here: after a Rekognition request was signed, so it is not a signed header.
        """
        session = self._session or self._open()
        target = f"{url}?{urlencode(query)}" if query else url
        with client_span(method, url, headers, traced=request_traced()) as span:
            try:
                async with asyncio.timeout(self._deadline_seconds):
                    async with session.request(
                        method, target, headers=headers, data=body, allow_redirects=False
                    ) as answer:
                        payload = await answer.read()
            except TimeoutError as exc:
                raise UpstreamError(f"{self._vendor} could not be reached: TimeoutError") from exc
            except aiohttp.ClientError as exc:
                raise UpstreamError(
                    f"{self._vendor} could not be reached: {type(exc).__name__}"
                ) from exc
            span.set_attribute("http.response.status_code", answer.status)
        return UpstreamReply(status=answer.status, headers=answer.headers, body=payload)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
