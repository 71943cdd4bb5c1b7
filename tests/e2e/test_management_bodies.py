"""The management API authenticates a caller before it reads a byte of the body, caps the
body, and reads JSON as strictly as the vendor protocols do."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx

from gateway.auth.principals import Role
from tests.e2e.conftest import Stack
from tests.e2e.test_bad_input import records_of, records_once_written

HUGE = 150 * 1024 * 1024
CHUNK = 256 * 1024


async def send_huge_body(stack: Stack, headers: dict[str, str]) -> tuple[bytes, int]:
    """POST a 150 MB body to a management route, writing until the gateway answers; the
    status line and how many body bytes the gateway let through before answering."""
    host, port = stack.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        f"POST /facegate/v1/principals HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {HUGE}\r\n{head}\r\n".encode()
    )
    sent = 0

    async def write() -> None:
        nonlocal sent
        chunk = b" " * CHUNK
        with contextlib.suppress(ConnectionError):  # the gateway hung up: it read no more
            while sent < HUGE:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)

    writing = asyncio.create_task(write())
    try:
        # The test's own guard, far past anything the gateway should need.
        status_line = await asyncio.wait_for(reader.readline(), timeout=120)
    finally:
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        writer.close()
    return status_line, sent


async def test_an_unauthenticated_huge_body_is_refused_unread(stack: Stack) -> None:
    status_line, sent = await send_huge_body(stack, {})

    assert status_line.split()[1] in (b"401", b"403")
    # Not read: the client could write no more than the sockets' buffers hold.
    assert sent < HUGE // 10
    [record] = await records_of(stack, event_type="auth_failure")
    assert record.reason_codes == ["missing_credentials"]


async def test_an_authenticated_huge_body_is_refused_at_the_cap(stack: Stack) -> None:
    admin = await stack.principal("admin-huge", Role.ADMIN)

    status_line, sent = await send_huge_body(stack, {"Authorization": f"Bearer {admin}"})

    assert status_line.split()[1] == b"413"
    assert sent < HUGE // 10
    [record] = await records_of(stack, event_type="rejected")
    assert record.reason_codes == ["payload_too_large"]
    assert record.officer == "admin-huge"


async def test_duplicate_keys_in_a_management_body_are_refused(stack: Stack) -> None:
    admin = await stack.principal("admin-dup", Role.ADMIN)
    body = (
        '{"id": "officer-dup", "name": "Dup", "agency": "Metro PD",'
        ' "roles": ["officer"], "roles": ["admin"]}'
    )

    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{stack.url}/facegate/v1/principals",
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
            content=body.encode(),
        )
        listed = await client.get(
            f"{stack.url}/facegate/v1/principals", headers={"Authorization": f"Bearer {admin}"}
        )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "malformed_request"
    assert "officer-dup" not in json.dumps(listed.json())
    [record] = await records_of(stack, event_type="rejected")
    assert record.reason_codes == ["malformed_request"]


async def test_a_caller_that_leaves_mid_body_is_refused_on_record(stack: Stack) -> None:
    admin = await stack.principal("admin-gone", Role.ADMIN)
    host, port = stack.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /facegate/v1/principals HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {admin}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n".encode()
    )
    writer.write(b'{"id": "officer-')  # then the caller hangs up
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    [record] = await records_once_written(stack, event_type="rejected")
    assert record.reason_codes == ["client_disconnected"]
    assert record.officer == "admin-gone"
