"""Nobody holds a request open for ever: not a vendor that trickles its answer, not a client
whose body stops arriving. Both end in the vendor's own error format, on record. (No time
is asserted: the tests assert that the request was refused, not how fast.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from starlette.types import Receive, Scope, Send

from gateway.serving import BackgroundServer
from refvendor import samples
from tests.e2e.conftest import Stack
from tests.e2e.test_bad_input import records_of, records_once_written, signed
from tests.e2e.test_fail_closed import gateway_with


async def trickling_vendor(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI vendor that answers 200 a byte every tenth of a second, for 15 s, or until
    the gateway hangs up (else the server's shutdown waited out the 15 s after each test)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    hung_up = asyncio.Event()

    async def watch_for_the_hang_up() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        hung_up.set()

    watcher = asyncio.create_task(watch_for_the_hang_up())
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/x-amz-json-1.1"),
                (b"content-length", b"150"),
            ],
        }
    )
    for _ in range(150):
        if hung_up.is_set():
            return
        await send({"type": "http.response.body", "body": b" ", "more_body": True})
        await asyncio.sleep(0.1)
    watcher.cancel()
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def slow_vendor() -> AsyncIterator[str]:
    with BackgroundServer(trickling_vendor) as server:
        yield server.url


async def test_a_vendor_that_trickles_its_answer_is_cut_off_and_recorded(
    stack: Stack, tmp_path: Path, slow_vendor: str
) -> None:
    # Each byte arrives well within the per-read timeout; only a deadline on the whole
    # forward stops it.
    async with gateway_with(
        stack, tmp_path, vendor_url=slow_vendor, upstream_timeout_seconds=1.0
    ) as gateway:
        client = gateway.rekognition(await gateway.session(), read_timeout=120, connect_timeout=5)

        with pytest.raises(ClientError) as raised:
            client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})

        assert raised.value.response["Error"]["Code"] == "InternalServerError"
        [outcome] = await records_of(gateway, event_type="outcome")
        assert outcome.decision == "error"


async def test_a_client_whose_body_stops_is_answered_and_recorded(
    stack: Stack, tmp_path: Path
) -> None:
    async with gateway_with(stack, tmp_path, client_read_timeout_seconds=1.0) as gateway:
        credentials = await gateway.session()
        headers = signed(gateway, credentials, body=b'{"Image": {"Bytes": ""}}')
        headers.pop("Content-Length", None)
        host, port = gateway.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request_line = f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\nTransfer-Encoding: chunked\r\n"
        writer.write(f"{request_line}{head}\r\n".encode())
        writer.write(b'5\r\n{"Ima\r\n')  # the first chunk, then nothing more
        await writer.drain()

        # The guard is the test's own, far past the gateway's deadline: a gateway that
        # never answers fails here.
        status_line = await asyncio.wait_for(reader.readline(), timeout=60)
        writer.close()

        assert status_line.startswith(b"HTTP/1.1 400")
        [record] = await records_of(gateway, event_type="rejected")
        assert record.reason_codes == ["request_timeout"]
        assert record.key_id == credentials.access_key_id


async def test_a_client_that_leaves_mid_body_is_recorded_not_an_error(
    stack: Stack, tmp_path: Path
) -> None:
    """A client that hangs up before its body has all arrived: nothing was asked, so
    nothing is decided, but the attempt is on record (as a truncated request), and the
    gateway does not take it for a failure of its own (no 500, no traceback)."""
    async with gateway_with(stack, tmp_path, client_read_timeout_seconds=120.0) as gateway:
        credentials = await gateway.session()
        body = b'{"Image": {"Bytes": ""}}'
        headers = signed(gateway, credentials, body=body)
        headers["Content-Length"] = str(len(body))
        host, port = gateway.url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\n{head}\r\n".encode())
        writer.write(b'{"Ima')  # a part of the body its Content-Length announced
        await writer.drain()
        writer.close()
        await writer.wait_closed()

        [record] = await records_once_written(gateway, event_type="rejected")
        assert record.reason_codes == ["client_disconnected"]
        assert await records_of(gateway, decision="error") == []
