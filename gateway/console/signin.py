"""Signing in and out of the console: an API key, presented once, for a session cookie."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from gateway.admin import Actor, action_record
from gateway.api.deps import ServicesDep
from gateway.audit.records import AuditRecord, EventType
from gateway.auth.api_keys import key_id_of
from gateway.console.auth import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    CheckedForm,
    SignInRequired,
    Viewer,
    ViewerDep,
    cookie_options,
    current_viewer,
    record_refusal,
)
from gateway.console.nav import pages_for
from gateway.console.rendering import render
from gateway.console.sessions import ConsoleRoleMissing, csrf_matches, sign_in, sign_out
from gateway.db import map_database_errors
from gateway.errors import AuthenticationError
from gateway.services import Services

router = APIRouter(prefix="/console", include_in_schema=False)

SIGNIN_COOKIE_SECONDS = 15 * 60


def home_of(viewer: Viewer) -> str:
    pages = pages_for(viewer.principal.roles)
    return pages[0].path if pages else "/console/"


def _signin_form(
    request: Request, services: Services, *, status_code: int = 200, error: str | None = None
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request, "signin.html", viewer=None, status_code=status_code, token=token, error=error
    )
    response.set_cookie(
        SIGNIN_COOKIE, token, max_age=SIGNIN_COOKIE_SECONDS, **cookie_options(request, services)
    )
    return response


def _action(request: Request, viewer: Viewer, action: str, detail: dict[str, Any]) -> AuditRecord:
    actor = Actor(
        officer=viewer.principal.id,
        agency=viewer.principal.agency,
        key_id=viewer.principal.key_id,
        client_address=request.client.host if request.client else None,
        via="console",
    )
    return action_record(
        EventType.ADMIN_ACTION,
        actor=actor,
        action=action,
        detail=detail,
        request_id=request.state.request_id,
    )


@router.get("/")
async def index(request: Request, services: ServicesDep) -> Response:
    """Signed out: the sign-in form. Signed in: the viewer's first page."""
    try:
        viewer = await current_viewer(request, services)
    except SignInRequired:
        return _signin_form(request, services)
    if not pages_for(viewer.principal.roles):  # a reviewer, until the review queue lands
        return render(request, "home.html", viewer=viewer)
    return RedirectResponse(home_of(viewer), status_code=303)


@router.post("/sign-in")
async def do_sign_in(
    request: Request,
    services: ServicesDep,
    api_key: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    expected = request.cookies.get(SIGNIN_COOKIE)
    if expected is None or not csrf_matches(expected, csrf_token):
        code = "csrf_token_missing" if csrf_token is None else "csrf_token_invalid"
        await record_refusal(services, request, code=code, key_id=key_id_of(api_key.strip()))
        return _signin_form(
            request, services, status_code=403, error="The form had expired: sign in again."
        )
    now = datetime.now(UTC)
    try:
        with map_database_errors("the database failed: nobody could be signed in"):
            async with services.sessions() as db, db.begin():
                token, session = await sign_in(
                    db, api_key=api_key, ttl=services.settings.console_session_ttl, now=now
                )
                viewer = Viewer(session.principal, session.csrf_token, session.expires_at)
                # In the sign-in's own transaction: no session exists that is not on record.
                await services.audit.append(
                    _action(
                        request,
                        viewer,
                        "console.sign_in",
                        {"expires_at": session.expires_at.isoformat()},
                    ),
                    db=db,
                )
    except ConsoleRoleMissing as exc:
        await record_refusal(services, request, code=exc.code, principal=exc.principal)
        return _signin_form(request, services, status_code=403, error=exc.message + ".")
    except AuthenticationError as exc:
        await record_refusal(services, request, code=exc.code, key_id=key_id_of(api_key.strip()))
        return _signin_form(request, services, status_code=403, error="That API key was refused.")
    response = RedirectResponse(home_of(viewer), status_code=303)
    ttl_seconds = int(services.settings.console_session_ttl.total_seconds())
    response.set_cookie(
        SESSION_COOKIE, token, max_age=ttl_seconds, **cookie_options(request, services)
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/console/")
    return response


@router.post("/sign-out")
async def do_sign_out(
    form: CheckedForm, viewer: ViewerDep, request: Request, services: ServicesDep
) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    with map_database_errors("the database failed: the session could not be ended"):
        async with services.sessions() as db, db.begin():
            await sign_out(db, token)
            await services.audit.append(_action(request, viewer, "console.sign_out", {}), db=db)
    response = RedirectResponse("/console/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, **cookie_options(request, services))
    return response
