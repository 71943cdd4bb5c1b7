"""Pure ASGI middleware (no BaseHTTPMiddleware on the hot path)."""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Receive, Scope, Send


class RequestIdMiddleware:
    """Gives every HTTP request an id, reachable as `request.state.request_id`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["request_id"] = uuid.uuid4().hex
        await self.app(scope, receive, send)
