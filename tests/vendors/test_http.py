"""The forwarding client raises only httpx's errors, whatever the vendor's socket does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from gateway.serving import free_port
from gateway.vendors.http import upstream_client

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
    await writer.drain()
    writer.close()


async def _not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()
    writer.close()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    await asyncio.sleep(5)
    writer.close()


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A byte at a time, each well within a per-read timeout: the answer never ends in time."""
    await reader.read(65536)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\nContent-Type: text/plain\r\n\r\n")
    try:
        for _ in range(60):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)
    except ConnectionError:
        pass  # the client gave up: what the test wants
    writer.close()


@pytest.fixture
async def vendor(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    reply: Reply = request.param
    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("vendor", [_ok], indirect=True)
async def test_a_vendor_answer_comes_back_through_httpx(vendor: str) -> None:
    async with upstream_client(timeout_seconds=2) as client:
        response = await client.post(vendor, content=b"{}")
    assert (response.status_code, response.content) == (200, b"ok")


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        # aiohttp raises ClientResponseError here, which httpx-aiohttp leaves unmapped.
        (_not_http, httpx.TransportError),
        (_hang_up, httpx.TransportError),
        (_silent, httpx.TimeoutException),
        (_trickle, httpx.TimeoutException),
    ],
    indirect=["vendor"],
)
async def test_a_broken_vendor_raises_an_httpx_error(
    vendor: str, expected: type[httpx.HTTPError]
) -> None:
    async with upstream_client(timeout_seconds=0.5) as client:
        with pytest.raises(expected):
            await client.post(vendor, content=b"{}")


async def test_a_closed_port_raises_an_httpx_error() -> None:
    async with upstream_client(timeout_seconds=2) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(f"http://127.0.0.1:{free_port()}/", content=b"{}")
