"""The oversight console: server-rendered pages for auditors, admins and reviewers at
``/console/``, served by the gateway itself with every asset it needs (no CDN, no external
font), so it works on an air-gapped network.

    __init__.py      install(app): routers, static files, the console's error pages
    nav.py           the pages and the roles that may see each (one list)
    sessions.py      sign-in sessions (table console_sessions), CSRF tokens
    auth.py          dependencies: the viewer, page roles, CSRF checks, recorded refusals
    signin.py        sign-in and sign-out
    pages.py         dashboard, vendors, warrants, policy
    audit_pages.py   audit explorer, a record and its proof, case timelines
    lead_pages.py    the review queue, an authority's decision on an authorisation
    report_pages.py  reports (make, preview, download), a case's disclosure packet
    stats.py         the dashboard's figures, counted from audit records alone
    rendering.py     templates and the security headers of every page
    templates/, static/ (static/vendor/ holds third-party files with their licences)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse, Response

from gateway.console import audit_pages, lead_pages, pages, report_pages, signin
from gateway.console.auth import ConsoleRefusal, SignInRequired
from gateway.console.rendering import HERE, render


def install(app: FastAPI) -> None:
    """Serve the console from ``app``, under /console/."""
    for module in (signin, pages, audit_pages, lead_pages, report_pages):
        app.include_router(module.router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse("/console/", status_code=303)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> Response:
        # A console address someone edited (a limit of 0, a page that is no number) gets a
        # page naming the parameter; the management API keeps FastAPI's JSON answer.
        if not request.url.path.startswith("/console/"):
            return await request_validation_exception_handler(request, exc)
        problems = "; ".join(
            f"{error['loc'][-1]}: {error['msg']}" for error in exc.errors() if error.get("loc")
        )
        return render(
            request,
            "error.html",
            viewer=None,
            status_code=400,
            heading="Bad request",
            message=f"This page cannot be shown for that address ({problems}).",
            code=None,
        )

    @app.exception_handler(ConsoleRefusal)
    async def refused(request: Request, exc: ConsoleRefusal) -> Response:
        # The refusal is on record already (auth.record_refusal).
        return render(
            request,
            "error.html",
            viewer=exc.viewer,
            status_code=exc.status_code,
            message=exc.message,
            code=exc.code,
        )
