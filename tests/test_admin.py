"""Who may hold which roles, who may open a session on a warrant, and the admin actions that
stop someone (gateway/admin.py), against a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin import disable_principal, revoke_key
from gateway.auth.api_keys import authenticate_api_key, issue_api_key, key_id_of
from gateway.auth.models import PrincipalRow
from gateway.auth.principals import Principal, Role, create_principal, get_principal
from gateway.auth.secrets import MasterKey
from gateway.auth.sessions import load_case_session, open_case_session
from gateway.case import CaseContext, LegalBasis
from gateway.context.warrants import WarrantCreate, WarrantKind, create_warrant
from gateway.db import create_engine, session_factory
from gateway.errors import ExpiredCredentials, MalformedRequest, PermissionDenied
from gateway.operations import OperationKind

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
MASTER = MasterKey(b"k" * 32)


@pytest.fixture
async def db(migrated_database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(migrated_database_url)
    async with session_factory(engine)() as session, session.begin():
        yield session
    await engine.dispose()


async def enrol(
    db: AsyncSession, principal_id: str, *roles: Role, agency: str = "Metro PD"
) -> Principal:
    return await create_principal(
        db, principal_id=principal_id, name=principal_id, agency=agency, roles=roles, now=NOW
    )


async def warrant(db: AsyncSession, *, created_by: str = "admin-1", **fields: Any) -> None:
    await create_warrant(
        db,
        warrant=WarrantCreate(
            id="W-1",
            kind=WarrantKind.WARRANT,
            issuing_court="Superior Court",
            case_number="2026-1",
            operations=[OperationKind.IDENTIFY],
            valid_from=NOW - timedelta(days=1),
            valid_until=NOW + timedelta(days=1),
            **({"agency": "Metro PD"} | fields),
        ),
        created_by=created_by,
        now=NOW,
    )


async def open_on_w1(db: AsyncSession, principal: Principal) -> str:
    issued = await open_case_session(
        db,
        master_key=MASTER,
        principal=principal,
        context=CaseContext(case_number="2026-1", legal_basis=LegalBasis.WARRANT, warrant_id="W-1"),
        ttl=timedelta(hours=1),
        max_ttl=timedelta(days=1),
        now=NOW,
    )
    return issued.access_key_id


class Recorded:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, action: str, **detail: Any) -> None:
        self.records.append((action, detail))


async def test_no_principal_is_both_admin_and_officer(db: AsyncSession) -> None:
    with pytest.raises(MalformedRequest, match="both the admin and officer roles"):
        await enrol(db, "both-1", Role.ADMIN, Role.OFFICER)
    assert await get_principal(db, "both-1") is None
    # Admin with auditor, officer with custodian are fine.
    await enrol(db, "admin-1", Role.ADMIN, Role.AUDITOR)
    await enrol(db, "officer-1", Role.OFFICER, Role.CUSTODIAN)


async def test_a_two_sided_principal_enrolled_before_the_rule_gets_no_key_or_session(
    db: AsyncSession,
) -> None:
    db.add(
        PrincipalRow(
            id="both-2", name="B", agency="Metro PD", roles=["admin", "officer"], created_at=NOW
        )
    )
    await db.flush()
    with pytest.raises(MalformedRequest, match="both the admin and officer roles"):
        await issue_api_key(db, principal_id="both-2", now=NOW)
    principal = await get_principal(db, "both-2")
    assert principal is not None
    with pytest.raises(PermissionDenied, match="both the admin and officer roles"):
        await open_on_w1(db, principal)


async def test_a_session_opens_only_on_a_warrant_the_officer_may_use(db: AsyncSession) -> None:
    await enrol(db, "admin-1", Role.ADMIN)
    named = await enrol(db, "officer-1", Role.OFFICER)
    other = await enrol(db, "officer-2", Role.OFFICER)
    deputy = await enrol(db, "deputy-1", Role.OFFICER, agency="County Sheriff")
    await warrant(db, officers=["officer-1"])

    with pytest.raises(PermissionDenied, match="issued to Metro PD, and deputy-1 is of County"):
        await open_on_w1(db, deputy)
    with pytest.raises(PermissionDenied, match=r"names the officers who may use it \(officer-1\)"):
        await open_on_w1(db, other)
    assert await open_on_w1(db, named)


async def test_a_session_does_not_open_on_a_warrant_the_officer_registered(
    db: AsyncSession,
) -> None:
    officer = await enrol(db, "officer-1", Role.OFFICER)
    await warrant(db, created_by="officer-1")
    with pytest.raises(PermissionDenied, match="registered by officer-1 itself"):
        await open_on_w1(db, officer)


async def test_a_session_on_an_unknown_warrant_is_left_to_the_policy(db: AsyncSession) -> None:
    officer = await enrol(db, "officer-1", Role.OFFICER)
    assert await open_on_w1(db, officer)


async def test_revoking_a_key_stops_it_and_is_recorded(db: AsyncSession) -> None:
    await enrol(db, "officer-1", Role.OFFICER)
    await enrol(db, "officer-2", Role.OFFICER)
    first = await issue_api_key(db, principal_id="officer-1", now=NOW)
    second = await issue_api_key(db, principal_id="officer-1", now=NOW)
    key_id = key_id_of(first)
    assert key_id is not None
    with_first = await open_on_w1(db, await authenticate_api_key(db, first))
    with_second = await open_on_w1(db, await authenticate_api_key(db, second))
    record = Recorded()

    with pytest.raises(MalformedRequest, match="has no API key"):
        await revoke_key(db=db, principal_id="officer-2", key_id=key_id, now=NOW, record=record)
    revoked = await revoke_key(
        db=db, principal_id="officer-1", key_id=key_id, now=NOW, record=record
    )

    assert revoked.revoked_at == NOW
    assert revoked.revoked_sessions == [with_first]
    ended = await load_case_session(db, with_first)
    kept = await load_case_session(db, with_second)
    assert ended is not None and not ended.is_live(NOW)
    assert kept is not None and kept.is_live(NOW)
    with pytest.raises(ExpiredCredentials, match="revoked"):
        await authenticate_api_key(db, first)
    assert (await authenticate_api_key(db, second)).id == "officer-1"
    assert record.records == [
        (
            "api_key.revoke",
            {"principal_id": "officer-1", "api_key_id": key_id, "revoked_sessions": [with_first]},
        )
    ]


async def test_disabling_revokes_sessions_and_keys_and_is_recorded(db: AsyncSession) -> None:
    await enrol(db, "admin-1", Role.ADMIN)
    officer = await enrol(db, "officer-1", Role.OFFICER)
    bystander = await enrol(db, "officer-2", Role.OFFICER)
    await warrant(db)
    key = await issue_api_key(db, principal_id="officer-1", now=NOW)
    session = await open_on_w1(db, officer)
    kept = await open_on_w1(db, bystander)
    record = Recorded()

    disabled = await disable_principal(
        db=db, principal_id="officer-1", reason="dismissed", now=NOW, record=record
    )

    assert disabled.revoked_sessions == [session]
    assert disabled.revoked_api_keys == [key_id_of(key)]
    assert await load_case_session(db, session) is None
    with pytest.raises(ExpiredCredentials, match="revoked"):
        await authenticate_api_key(db, key)
    with pytest.raises(MalformedRequest, match="disabled"):
        await issue_api_key(db, principal_id="officer-1", now=NOW)
    assert await get_principal(db, "officer-1") is None
    bound = await load_case_session(db, kept)
    assert bound is not None and bound.is_live(NOW)
    assert record.records == [
        (
            "principal.disable",
            {
                "principal_id": "officer-1",
                "reason": "dismissed",
                "revoked_sessions": [session],
                "revoked_api_keys": [key_id_of(key)],
            },
        )
    ]
    with pytest.raises(MalformedRequest, match="no principal"):
        await disable_principal(db=db, principal_id="nobody", reason="x", now=NOW, record=record)
