"""Rendering console pages: Jinja2 templates, the navigation, and the headers every page
carries (a strict Content-Security-Policy: scripts and styles from facegate only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from gateway.console.auth import CSRF_FIELD, Viewer
from gateway.console.nav import pages_for

HERE: Final = Path(__file__).parent
templates: Final = Jinja2Templates(directory=HERE / "templates")

# No third party is ever contacted: the console must work on an air-gapped network, and a
# page showing the audit log must not run anyone else's script. Chart.js writes canvas
# styles through the CSSOM, which style-src does not govern, so no 'unsafe-inline'.
SECURITY_HEADERS: Final = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",  # audit data stays off shared and back-button caches
}


def render(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    context |= {
        "viewer": viewer,
        "nav": pages_for(viewer.principal.roles) if viewer else [],
        "csrf_field": CSRF_FIELD,
        "current": request.url.path,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response
