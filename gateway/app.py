"""create_app(settings): wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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
from gateway.api.middleware import ManagementGuard, RequestIdMiddleware
from gateway.api.vendor_routes import GatewayApp
from gateway.config import Settings
from gateway.errors import FacegateError
from gateway.observability.logs import startup as startup_log
from gateway.observability.tracing import configure_tracing, shutdown_tracing
from gateway.services import Services
from gateway.serving import prepare_heap_for_serving

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

    # Vendor protocols are answered by GatewayApp before FastAPI sees them; what follows
    # is the management API's.
    app = GatewayApp(
        title="facegate", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    # The last added runs first: every request gets its id, then those with a body are
    # authenticated before it is read.
    app.add_middleware(ManagementGuard)
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
    """The app factory for `facegate serve --workers N`: each worker reads FACEGATE_*, and
    serves until it exits, so its startup heap is frozen (`prepare_heap_for_serving`)."""
    app = create_app(Settings())
    prepare_heap_for_serving()
    return app
