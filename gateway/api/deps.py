"""FastAPI dependencies shared by the management API routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin import Actor, action_record
from gateway.audit.records import AuditRecord, EventType
from gateway.auth.api_keys import authenticate_api_key, key_id_of
from gateway.auth.principals import Principal, Role
from gateway.db import map_database_errors
from gateway.errors import (
    AuthenticationError,
    MissingCredentials,
    PermissionDenied,
    StorageUnavailable,
)
from gateway.services import Services

log = logging.getLogger(__name__)


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
    # hop on every request for what is an attribute read.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_db(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits when the route returns without error.

    Contract: the commit, and with it the change's audit record (``record_change``), is
    done before the answer is sent, and a commit that fails is the answer. This holds
    because ``DbDep`` gives this dependency ``scope="function"``: FastAPI runs its exit
    when the route function returns, before the response, and an exception raised there
    goes to the app's error handlers. With the default scope the exit runs after the
    response is sent: fresh credentials were refused as unknown, revoked sessions and
    warrants still worked, right after a 201 or 200, and a failed commit was never told.

    A database error in the route or in its commit becomes StorageUnavailable (503, the
    management API's error shape); the database's own words stay in the server log.
    """
    try:
        with map_database_errors(
            "the database failed: the request was not completed and nothing was saved"
        ):
            async with services.sessions() as db, db.begin():
                yield db
    except StorageUnavailable as exc:
        log.error("a management change was rolled back: the database failed", exc_info=exc)
        raise


DbDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


async def current_principal(request: Request, services: ServicesDep) -> Principal:
    """The caller of a management route, from `Authorization: Bearer fgk_...`. A request
    with a body was authenticated already, before its body was read (ManagementGuard)."""
    authenticated: Principal | None = getattr(request.state, "principal", None)
    if authenticated is not None:
        return authenticated
    return await authenticate_caller(
        services,
        headers=request.headers,
        request_id=request.state.request_id,
        client_address=request.client.host if request.client else None,
        route=request.url.path,
    )


async def authenticate_caller(
    services: Services,
    *,
    headers: Mapping[str, str],
    request_id: str,
    client_address: str | None,
    route: str,
) -> Principal:
    """The principal whose API key `headers` carry; a failure is recorded, then raised."""
    header = headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not presented:
            raise MissingCredentials("send an API key as `Authorization: Bearer fgk_...`")
        with map_database_errors("the database failed: the caller could not be checked"):
            async with services.sessions() as db:
                return await authenticate_api_key(db, presented.strip())
    except AuthenticationError as exc:
        await services.audit.append(
            AuditRecord(
                time=datetime.now(UTC),
                request_id=request_id,
                event_type=EventType.AUTH_FAILURE,
                key_id=key_id_of(presented.strip()),
                client_address=client_address,
                decision="deny",
                reason_codes=[exc.code],
                detail={"route": route},
            )
        )
        raise


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits principals holding any of `roles`."""

    async def dependency(principal: PrincipalDep) -> Principal:
        if not any(principal.has_role(role) for role in roles):
            names = " or ".join(r.value for r in roles)
            raise PermissionDenied(f"this route needs the {names} role")
        return principal

    return dependency


Officer = Annotated[Principal, Depends(require_role(Role.OFFICER))]
Auditor = Annotated[Principal, Depends(require_role(Role.AUDITOR))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]


async def record_change(
    services: Services,
    request: Request,
    *,
    db: AsyncSession,
    by: Principal,
    action: str,
    **detail: Any,
) -> None:
    """Record an admin action in the route's own transaction: the change and its record
    commit together or not at all. AuditUnavailable fails the route."""
    await services.audit.append(
        _record(request, EventType.ADMIN_ACTION, by=by, action=action, detail=detail), db=db
    )


async def record_read(
    services: Services, request: Request, *, by: Principal, action: str, **detail: Any
) -> None:
    """Record an auditor's read before it is served. It commits at once (a read has nothing
    to commit alongside), so the sequencer is not held while the read runs."""
    await services.audit.append(
        _record(request, EventType.AUDIT_READ, by=by, action=action, detail=detail)
    )


def _record(
    request: Request, event_type: EventType, *, by: Principal, action: str, detail: dict[str, Any]
) -> AuditRecord:
    actor = Actor.principal(by, client_address=request.client.host if request.client else None)
    return action_record(
        event_type,
        actor=actor,
        action=action,
        detail=detail,
        request_id=request.state.request_id,
    )
