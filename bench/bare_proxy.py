"""A bare forwarding proxy: the floor facegate's CPU per request is measured against.

uvicorn + aiohttp, nothing else: it reads the request, POSTs it to the upstream on one
pooled aiohttp session and returns the answer. No authentication, policy or audit.

    FACEGATE_BARE_UPSTREAM=http://127.0.0.1:9000 \
        uvicorn --app-dir bench bare_proxy:app --port 8000 --no-access-log
"""

from __future__ import annotations

import os

import aiohttp
from starlette.types import Receive, Scope, Send

UPSTREAM = os.environ["FACEGATE_BARE_UPSTREAM"]
_session: aiohttp.ClientSession | None = None
# Hop-by-hop and framing headers the server recomputes.
_DROP = {"host", "content-length", "connection", "transfer-encoding"}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global _session
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if _session is None:  # created on the server's loop, kept for the process's life
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.decode() not in _DROP}
    async with _session.post(UPSTREAM + scope["path"], data=body, headers=headers) as answer:
        payload = await answer.read()
        status = answer.status
        content_type = answer.headers.get("Content-Type", "application/octet-stream")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
