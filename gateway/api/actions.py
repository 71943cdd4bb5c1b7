"""What the management routes share to call an admin action (gateway/admin.py): a
recorder writing to the route's transaction, and the commit before the answer."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin import Recorder
from gateway.api.deps import record_change
from gateway.auth.principals import Principal
from gateway.services import Services


def recorder(services: Services, request: Request, *, db: AsyncSession, by: Principal) -> Recorder:
    """Record the action in the route's transaction, attributed to the caller."""

    async def record(action: str, **detail: Any) -> None:
        await record_change(services, request, db=db, by=by, action=action, **detail)

    return record


async def commit_before_answering(db: AsyncSession) -> None:
    """Commit the route's change and its audit record before the answer is sent.

    A `yield` dependency's exit runs after FastAPI has sent the answer, so without this an
    admin is told a key is revoked while it still works, and an officer gets credentials
    that are not yet known (issue 11). A failed commit raises here, and is the answer."""
    await db.commit()
