"""The forwarding client: the vendor's whole answer or UpstreamError, whatever the socket does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest

from gateway.errors import UpstreamError
from gateway.observability import requests, tracing
from gateway.observability.metrics import ReasonCodes
from gateway.requests import IncomingRequest
from gateway.serving import free_port
from gateway.vendors.http import UpstreamClient

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
        b"X-Amzn-RequestId: r-1\r\n\r\nok"
    )
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


async def _short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Fewer bytes than Content-Length promised, then the connection closes."""
    await reader.read(65536)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\nnot sixty")
    await writer.drain()
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
async def test_a_vendor_answer_comes_back_whole(vendor: str) -> None:
    client = UpstreamClient(vendor="Toy", timeout_seconds=2)
    try:
        reply = await client.request("POST", vendor, body=b"{}", headers={})
    finally:
        await client.aclose()
    assert (reply.status, reply.body) == (200, b"ok")
    assert reply.headers["x-amzn-requestid"] == "r-1"  # case-insensitive, as received


@pytest.mark.parametrize(
    "vendor",
    # aiohttp raises ClientResponseError on a reply that is not HTTP, ServerDisconnectedError
    # on a hang-up, ClientPayloadError on a short body; _silent and _trickle need the deadline.
    [_not_http, _hang_up, _short, _silent, _trickle],
    indirect=True,
)
async def test_a_broken_vendor_raises_upstream_error(vendor: str) -> None:
    client = UpstreamClient(vendor="Toy", timeout_seconds=0.5)
    try:
        with pytest.raises(UpstreamError, match=r"^Toy could not be reached: "):
            await client.request("POST", vendor, body=b"{}", headers={})
    finally:
        await client.aclose()


async def test_a_closed_port_raises_upstream_error() -> None:
    client = UpstreamClient(vendor="Toy", timeout_seconds=2)
    try:
        with pytest.raises(UpstreamError, match=r"^Toy could not be reached: "):
            await client.request("POST", f"http://127.0.0.1:{free_port()}/", headers={})
    finally:
        await client.aclose()


class Recorder:
    """A vendor that remembers each request's head and answers with `answer`."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.heads: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: the client may send its next request on this one
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                lines = head.lower().split(b"\r\n")
                length = [line for line in lines if line.startswith(b"content-length:")]
                if length:
                    await reader.readexactly(int(length[0].split(b":")[1]))
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def served() -> AsyncIterator[Callable[[Recorder], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def serve(recorder: Recorder) -> str:
        server = await asyncio.start_server(recorder, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield serve
    for server in servers:
        server.close()


async def test_a_redirect_is_the_answer_never_followed(
    served: Callable[[Recorder], Awaitable[str]],
) -> None:
    elsewhere = Recorder(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    elsewhere_url = await served(elsewhere)
    redirecting = Recorder(
        f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {elsewhere_url}/x\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    client = UpstreamClient(vendor="Toy", timeout_seconds=2)
    try:
        reply = await client.request(
            "POST", await served(redirecting) + "/", body=b"{}", headers={}
        )
    finally:
        await client.aclose()
    assert reply.status == 307
    assert elsewhere.heads == []  # the probe went nowhere else


async def test_the_vendor_gets_the_headers_given_and_no_cookie_back(
    served: Callable[[Recorder], Awaitable[str]],
) -> None:
    vendor = Recorder(
        b"HTTP/1.1 200 OK\r\nSet-Cookie: caller=first; Path=/\r\nContent-Length: 0\r\n\r\n"
    )
    # By name: aiohttp's default cookie jar ignores cookies from an IP address.
    url = (await served(vendor)).replace("127.0.0.1", "localhost")
    client = UpstreamClient(vendor="Toy", timeout_seconds=2)
    try:
        for _ in range(2):
            await client.request(
                "POST", url + "/a", body=b"raw", headers={"x-key": "k"}, query=[("q", "a b,c")]
            )
    finally:
        await client.aclose()
    first, second = (head.decode().lower() for head in vendor.heads)
    method, target, _ = first.split("\r\n")[0].split(" ")
    assert (method, urlsplit(target).path, parse_qsl(urlsplit(target).query)) == (
        "post",
        "/a",
        [("q", "a b,c")],
    )
    assert "x-key: k\r\n" in first
    # A body sent without a type goes without one: aiohttp would call it octet-stream.
    assert "content-type" not in first
    # One client carries every caller's requests: no cookie passes from one to the next.
    assert "cookie" not in second


@pytest.mark.parametrize("vendor", [_ok], indirect=True)
async def test_a_request_asks_whether_it_is_traced_once(
    vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no tracer provider installed, asking costs an environment lookup (OpenTelemetry
    # looks up OTEL_PYTHON_TRACER_PROVIDER each time): observe_request asks, and its steps
    # and its forward's CLIENT span go by that answer.
    asked: list[str] = []

    def tracing_on() -> bool:
        asked.append("asked")
        return False

    monkeypatch.setattr(requests, "tracing_on", tracing_on)
    monkeypatch.setattr(tracing, "tracing_on", tracing_on)
    incoming = IncomingRequest(
        request_id="r1",
        received_at=datetime.now(UTC),
        method="POST",
        path="/",
        query="",
        headers={},
        body=b"{}",
        client_address=None,
    )
    client = UpstreamClient(vendor="Toy", timeout_seconds=2)
    try:
        with (
            requests.observe_request(
                "toy", incoming, known_operations=frozenset(), reasons=ReasonCodes()
            ),
            requests.step("forward"),
        ):
            await client.request("POST", vendor, body=b"{}", headers={})
    finally:
        await client.aclose()
    assert asked == ["asked"]
