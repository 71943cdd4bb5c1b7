"""Pure ASGI middleware (no BaseHTTPMiddleware on the hot path)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import strict_json
from gateway.api.bodies import read_body
from gateway.api.deps import authenticate_caller
from gateway.audit.records import AuditRecord, EventType
from gateway.auth.principals import Principal
from gateway.errors import (
    AuditUnavailable,
    FacegateError,
    RequestError,
)
from gateway.requests import new_request_id
from gateway.services import Services

# Paths under this prefix authenticate by a console session cookie, not a bearer key.
COOKIE_SESSION_PREFIX = "/console/"
COOKIE_SESSION_MAX_BODY_BYTES = 16 * 1024


class RequestIdMiddleware:
    """Gives every HTTP request to the management API an id, reachable as
    `request.state.request_id` (vendor requests get theirs in GatewayApp)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["request_id"] = new_request_id()
        await self.app(scope, receive, send)


class ManagementGuard:
    """Pure ASGI middleware for facegate's own routes: authenticate, then read the body.

    FastAPI reads and parses a route's body before it solves the route's dependencies,
    authentication included: a 150 MB body was read and parsed for a caller with no key
    (the process grew by 320 MB). Here a request that carries a body is authenticated from
    its headers first (a failure is recorded, as `current_principal` records it), and only
    then is its body read: refused past `management_max_body_bytes` (at once when
    Content-Length says so), or when it has not all arrived within
    `client_read_timeout_seconds`, and read as JSON by gateway/strict_json.py (duplicate
    keys, depth, lone surrogates), so FastAPI parses a document no other reader could read
    otherwise. The app then gets the buffered body and the principal (`request.state`).

    Requests without a body pass through: their routes authenticate as before. Vendor
    protocols never get here (GatewayApp takes them before FastAPI).
    The console's forms (under COOKIE_SESSION_PREFIX) carry no bearer key: their bodies
    are read bounded (COOKIE_SESSION_MAX_BODY_BYTES) without it, and the console's routes
    check the session cookie and CSRF token themselves (gateway/console/auth.py).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        services: Services = scope["app"].state.services
        request_id: str = scope["state"]["request_id"]
        client = scope.get("client")
        client_address = client[0] if client else None
        principal: Principal | None = None
        # The console's forms authenticate by session cookie and CSRF token, checked by
        # its own routes (gateway/console/); their bodies are small and read bounded here.
        cookie_session = scope["path"].startswith(COOKIE_SESSION_PREFIX)
        try:
            if not cookie_session:
                principal = await authenticate_caller(
                    services,
                    headers=headers,
                    request_id=request_id,
                    client_address=client_address,
                    route=scope["path"],
                )
            body = await read_body(
                scope,
                receive,
                max_body_bytes=COOKIE_SESSION_MAX_BODY_BYTES
                if cookie_session
                else services.settings.management_max_body_bytes,
                timeout_seconds=services.settings.client_read_timeout_seconds,
            )
            content_type = headers.get("content-type", "application/json").split(";")[0]
            if content_type.strip().lower().endswith("json"):
                strict_json.loads(body)
        except FacegateError as exc:
            if principal is not None and isinstance(exc, RequestError):
                exc = await _record_rejection(
                    services, exc, principal=principal, request_id=request_id,
                    client_address=client_address, route=scope["path"],
                )  # fmt: skip
            # The body may be unread: closing the connection after the answer keeps the
            # server from draining it (RFC 9112 9.6), so a refused upload costs nothing.
            response = JSONResponse(
                {"error": {"code": exc.code, "message": exc.message}},
                status_code=exc.status_code,
                headers={"x-facegate-request-id": request_id, "connection": "close"},
            )
            await response(scope, receive, send)
            return
        if principal is not None:
            scope["state"]["principal"] = principal
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replay


async def _record_rejection(
    services: Services,
    error: RequestError,
    *,
    principal: Principal,
    request_id: str,
    client_address: str | None,
    route: str,
) -> FacegateError:
    """The error to answer with: `error`, once recorded, or AuditUnavailable."""
    try:
        await services.audit.append(
            AuditRecord(
                time=datetime.now(UTC),
                request_id=request_id,
                event_type=EventType.REJECTED,
                agency=principal.agency,
                officer=principal.id,
                key_id=principal.key_id,
                client_address=client_address,
                decision="deny",
                reason_codes=[error.code],
                detail={"route": route, "message": error.message},
            )
        )
    except AuditUnavailable as exc:
        return exc
    return error
