"""create_app(settings): wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from gateway import __version__, console
from gateway.api import (
    audit,
    cases,
    health,
    inventory,
    leads,
    principals,
    reports,
    sessions,
    warrants,
)
from gateway.api.docs import install_docs
from gateway.api.middleware import ManagementGuard, RequestIdMiddleware, give_request_id
from gateway.api.vendor_routes import VendorRoutes, serve_vendor_request
from gateway.config import Settings
from gateway.errors import FacegateError
from gateway.observability.logs import startup as startup_log
from gateway.observability.tracing import configure_tracing, shutdown_tracing
from gateway.services import Services
from gateway.vendors import recognise

log = logging.getLogger(__name__)

POLICY_RELOAD_INTERVAL_SECONDS = 2.0


async def _reload_policy_forever(services: Services) -> None:
    """An admin's edit under policies/ takes effect within a couple of seconds."""
    while True:
        await asyncio.sleep(POLICY_RELOAD_INTERVAL_SECONDS)
        try:
            await services.policy.reload_if_changed()
        except Exception:
            log.exception("policy reload failed; still serving the previous revision")


class Gateway(FastAPI):
    """The FastAPI app, taking vendor-protocol requests before its middleware stack.

    A vendor request needs none of the stack: not ServerErrorMiddleware (the pipeline
    answers every error in the vendor's format, and an exception that still escapes gets
    the server's own 500, as the middleware would have sent), nor FastAPI's body limit
    (none is set; read_body enforces FACEGATE_MAX_BODY_BYTES), its exception telemetry,
    exception handlers (management routes only) or the management guard. Its layers are a
    measured share of a forwarded request's CPU. When FastAPI's own OpenTelemetry
    instrumentation is on (a tracer, meter or logger provider is installed), requests take
    the full path, so that it sees them as before: VendorRoutes, in the stack, then takes
    them.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = recognise(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is not None:
            telemetry = getattr(self, "_native_telemetry", None)
            if telemetry is None or not telemetry.enabled():
                if self.root_path:
                    scope["root_path"] = self.root_path
                scope["app"] = self
                give_request_id(scope)
                services: Services = self.state.services
                vendor = services.vendors[found.protocol]
                await serve_vendor_request(scope, receive, send, services, vendor)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_tracing()  # off unless OTEL_* asks (gateway/observability/tracing.py)
        services = await Services.build(settings)
        app.state.services = services
        startup_log(services)
        reloader = asyncio.create_task(_reload_policy_forever(services))
        try:
            yield
        finally:
            reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reloader
            await services.aclose()
            shutdown_tracing()

    app = Gateway(
        title="facegate", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    # The last added runs first: every request gets its id, then vendor protocols leave,
    # then management requests with a body are authenticated before it is read.
    app.add_middleware(ManagementGuard)
    app.add_middleware(VendorRoutes)
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(FacegateError)
    async def facegate_error(request: Request, exc: FacegateError) -> JSONResponse:
        # Management routes only: vendor routes render errors in the vendor's own format.
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message}},
            status_code=exc.status_code,
            headers={"x-facegate-request-id": request.state.request_id},
        )

    for module in (health, sessions, warrants, principals, audit, inventory, cases, reports, leads):
        app.include_router(module.router)
    install_docs(app)  # /docs with Swagger UI served locally (works offline)
    console.install(app)  # the oversight console, /console/
    return app


def create_app_from_environment() -> FastAPI:
    """The app factory for `facegate serve --workers N`: each worker reads FACEGATE_*."""
    return create_app(Settings())
