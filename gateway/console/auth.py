"""Who is looking at a console page, and whether they may: FastAPI dependencies.

Every refusal (no or a bad CSRF token, a page the role may not see, a bad key at sign-in)
is recorded as an ``auth_failure`` before it is answered; if the record cannot be written,
AuditUnavailable is the answer (fail closed). A request with no live session is sent to
the sign-in form; that is not an attempt, so it is not recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import Depends, Request

from gateway.admin import Actor, action_record
from gateway.api.deps import ServicesDep
from gateway.audit.records import AuditRecord, EventType
from gateway.auth.principals import Principal, Role
from gateway.console.sessions import ConsoleSession, csrf_matches, find_session
from gateway.db import map_database_errors
from gateway.services import Services

SESSION_COOKIE: Final = "facegate_console"
# Sign-in has no session yet: its form is protected by a double-submit token, a random
# value in a short-lived cookie that the form must repeat (login CSRF).
SIGNIN_COOKIE: Final = "facegate_console_signin"
COOKIE_PATH: Final = "/console/"
CSRF_FIELD: Final = "csrf_token"


class SignInRequired(Exception):
    """No live session: the console answers with its sign-in form."""


class ConsoleRefusal(Exception):
    """A refused console request, already on record: answered with an error page."""

    def __init__(self, status_code: int, code: str, message: str, *, viewer: Viewer) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.viewer = viewer  # still signed in: the error page keeps its Sign out control


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in principal of a console request, and its session's CSRF token."""

    principal: Principal
    csrf_token: str
    expires_at: datetime

    def may(self, roles: frozenset[Role]) -> bool:
        return bool(roles.intersection(self.principal.roles))


def served_over_tls(request: Request, services: Services) -> bool:
    """Whether the browser reached facegate over TLS: the request's own scheme, or
    X-Forwarded-Proto from a proxy listed in ``trusted_proxies`` (anyone else could send
    the header). Decides the cookies' Secure flag."""
    if request.url.scheme == "https":
        return True
    client = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return client in services.settings.trusted_proxies and forwarded == "https"


def cookie_options(request: Request, services: Services) -> dict[str, Any]:
    return {
        "path": COOKIE_PATH,
        "httponly": True,
        "secure": served_over_tls(request, services),
        "samesite": "strict",
    }


async def record_refusal(
    services: Services,
    request: Request,
    *,
    code: str,
    principal: Principal | None = None,
    key_id: str | None = None,
) -> None:
    """An ``auth_failure`` record for a refused console request; raises AuditUnavailable
    if it cannot be written (the caller's refusal is then not answered as such)."""
    await services.audit.append(
        AuditRecord(
            time=datetime.now(UTC),
            request_id=request.state.request_id,
            event_type=EventType.AUTH_FAILURE,
            agency=principal.agency if principal else None,
            officer=principal.id if principal else None,
            key_id=principal.key_id if principal else key_id,
            client_address=request.client.host if request.client else None,
            decision="deny",
            reason_codes=[code],
            detail={"route": request.url.path, "method": request.method, "via": "console"},
        )
    )


async def current_viewer(request: Request, services: ServicesDep) -> Viewer:
    """The viewer of this request's session cookie. SignInRequired without a live one."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    with map_database_errors("the database failed: the console session could not be checked"):
        async with services.sessions() as db:
            session: ConsoleSession | None = await find_session(db, token, now=datetime.now(UTC))
    if session is None:
        raise SignInRequired
    return Viewer(session.principal, session.csrf_token, session.expires_at)


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def page_for(*roles: Role) -> Callable[..., Awaitable[Viewer]]:
    """A dependency admitting viewers holding any of ``roles``; others are refused (403)
    on record. The roles are the page's, kept where the page is declared (pages.PAGES)."""
    allowed = frozenset(roles)

    async def dependency(viewer: ViewerDep, request: Request, services: ServicesDep) -> Viewer:
        if not viewer.may(allowed):
            await record_refusal(
                services, request, code="permission_denied", principal=viewer.principal
            )
            names = " or ".join(sorted(r.value for r in allowed))
            raise ConsoleRefusal(
                403, "permission_denied", f"this page is for the {names} role", viewer=viewer
            )
        return viewer

    return dependency


async def checked_form(
    request: Request, viewer: ViewerDep, services: ServicesDep
) -> dict[str, str]:
    """A signed-in form post's fields, once its CSRF token matched the session's; refused
    (403) on record without it. Every console POST after sign-in depends on this."""
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    if not csrf_matches(viewer.csrf_token, fields.get(CSRF_FIELD)):
        code = "csrf_token_missing" if CSRF_FIELD not in fields else "csrf_token_invalid"
        await record_refusal(services, request, code=code, principal=viewer.principal)
        raise ConsoleRefusal(
            403, code, "the form's CSRF token is missing or wrong: reload it", viewer=viewer
        )
    return fields


CheckedForm = Annotated[dict[str, str], Depends(checked_form)]


async def record_read(
    services: Services, request: Request, *, viewer: Viewer, action: str, **detail: Any
) -> None:
    """Record a console page's read of audit data before the page is served, as the audit
    API records its reads (an ``audit_read``, ``via: console``). AuditUnavailable if the
    record cannot be written: the page is then not served."""
    actor = Actor(
        officer=viewer.principal.id,
        agency=viewer.principal.agency,
        key_id=viewer.principal.key_id,
        client_address=request.client.host if request.client else None,
        via="console",
    )
    await services.audit.append(
        action_record(
            EventType.AUDIT_READ,
            actor=actor,
            action=action,
            detail=detail,
            request_id=request.state.request_id,
        )
    )
