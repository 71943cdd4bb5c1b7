"""The management API answers a database outage with a 503 in its own error shape.

Two outages of a real database under a running gateway: the whole PostgreSQL database
dropped (its connections terminated, new ones refused), where every route fails from
authentication on; and, on SQLite and PostgreSQL, the tables a route works on taken away
while the caller can still be authenticated, so that the failure comes from the route's
own reads and writes. Each call must answer 503 with ``{"error": {"code", "message"}}``
and a request id, never a bare 500, and never say the database's name or address."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gateway.app import create_app
from gateway.auth.api_keys import issue_api_key
from gateway.auth.principals import Role, create_principal
from gateway.config import Settings
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async
from gateway.serving import BackgroundServer
from tests.conftest import POSTGRES_ADMIN_URL, _create_postgres_database, _drop_postgres_database

REPO = Path(__file__).resolve().parents[2]
OUTAGE_CODES = {"service_unavailable", "audit_unavailable"}


@pytest.fixture
def database() -> Iterator[str]:
    """A database of this test's own: the test drops it itself, mid-run."""
    name = _create_postgres_database()
    try:
        yield name
    finally:
        _drop_postgres_database(name)


def drop(name: str) -> None:
    engine = sa.create_engine(
        POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    engine.dispose()


async def enrol(url: str, principal_id: str, *roles: Role) -> str:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as db, db.begin():
            now = datetime.now(UTC)
            await create_principal(
                db, principal_id=principal_id, name=principal_id, agency="Metro PD",
                roles=roles, now=now,
            )  # fmt: skip
            return await issue_api_key(db, principal_id=principal_id, now=now)
    finally:
        await engine.dispose()


def calls(admin: str, auditor: str, officer: str) -> list[tuple[str, str, str, Any]]:
    """(method, path, key, JSON body): one call of every kind the management API serves."""
    case = {
        "purpose": "criminal_investigation",
        "case_number": "2026-HOM-7",
        "offense": "homicide",
        "legal_basis": "exigent",
    }
    enrolment = {"id": "new", "name": "New", "agency": "Metro PD", "roles": ["officer"]}
    return [
        ("GET", "/facegate/v1/principals", admin, None),
        ("POST", "/facegate/v1/principals", admin, enrolment),  # authenticated before the body
        ("POST", "/facegate/v1/principals/someone/disable", admin, {"reason": "left"}),
        ("GET", "/facegate/v1/warrants", admin, None),
        ("POST", "/facegate/v1/sessions", officer, case),
        ("DELETE", "/facegate/v1/sessions/AKIAUNKNOWN", officer, None),
        ("GET", "/facegate/v1/vendors", auditor, None),
        ("GET", "/facegate/v1/audit/records", auditor, None),
        ("GET", "/facegate/v1/audit/verify", auditor, None),
        ("GET", "/facegate/v1/audit/checkpoint", auditor, None),
        ("GET", "/facegate/v1/audit/entries?start=1&end=2", auditor, None),
        ("GET", "/facegate/v1/audit/proofs/inclusion?seq=1&tree_size=1", auditor, None),
        ("GET", "/facegate/v1/audit/records", "fgk_not-a-key", None),  # an unknown key
    ]


def assert_outage(response: httpx.Response, where: str, *hidden: str) -> None:
    assert response.status_code == 503, (where, response.text)
    assert response.headers["content-type"] == "application/json", where
    error = response.json()["error"]
    assert set(error) == {"code", "message"}, where
    assert error["code"] in OUTAGE_CODES, (where, error)
    assert error["message"], where
    for secret in hidden:
        assert secret not in response.text, (where, secret)
    assert response.headers["x-facegate-request-id"], where


def settings_for(url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=url,
        master_key_file=tmp_path / "master.key",
        log_key_file=tmp_path / "log.key",
        policy_dir=REPO / "policies",
    )


@pytest.mark.postgres
async def test_a_dropped_database_is_a_503_in_the_management_error_shape(
    database: str, tmp_path: Path
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    await upgrade_async(url)
    admin = await enrol(url, "admin", Role.ADMIN)
    auditor = await enrol(url, "auditor", Role.AUDITOR)
    officer = await enrol(url, "officer", Role.OFFICER)
    with BackgroundServer(create_app(settings_for(url, tmp_path))) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            # Up: the same calls are served (or refused for what they ask), not 503.
            listed = await client.get(
                "/facegate/v1/principals", headers={"Authorization": f"Bearer {admin}"}
            )
            assert listed.status_code == 200, listed.text

            drop(database)

            for method, path, key, body in calls(admin, auditor, officer):
                response = await client.request(
                    method, path, headers={"Authorization": f"Bearer {key}"}, json=body
                )
                assert_outage(response, f"{method} {path}", database, "127.0.0.1")


def take_away(url: str, *tables: str) -> None:
    """Rename ``tables`` from another connection: to the gateway they are gone."""
    sync_url = url.replace("+asyncpg", "+psycopg").replace("+aiosqlite", "")
    engine = sa.create_engine(sync_url)
    with engine.begin() as connection:
        for table in tables:
            connection.execute(sa.text(f'ALTER TABLE "{table}" RENAME TO "{table}_gone"'))
    engine.dispose()


async def test_tables_gone_under_an_authenticated_caller_are_a_503(
    migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    admin = await enrol(url, "admin", Role.ADMIN)
    officer = await enrol(url, "officer", Role.OFFICER)
    warrant = {
        "id": "W-1",
        "kind": "warrant",
        "issuing_court": "Court",
        "case_number": "2026-HOM-7",
        "operations": ["identify"],
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2036-01-01T00:00:00Z",
    }
    case = {
        "purpose": "criminal_investigation",
        "case_number": "2026-HOM-7",
        "offense": "homicide",
        "legal_basis": "exigent",
    }
    with BackgroundServer(create_app(settings_for(url, tmp_path))) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            as_admin = {"Authorization": f"Bearer {admin}"}
            as_officer = {"Authorization": f"Bearer {officer}"}
            listed = await client.get("/facegate/v1/warrants", headers=as_admin)
            assert listed.status_code == 200, listed.text

            # Principals and keys stay: each caller is authenticated, and the route's own
            # reads and writes are what fail.
            take_away(url, "warrants", "case_sessions")

            for method, path, headers, body in [
                ("GET", "/facegate/v1/warrants", as_admin, None),
                ("POST", "/facegate/v1/warrants", as_admin, warrant),
                ("POST", "/facegate/v1/warrants/W-1/revoke", as_admin, {"reason": "quashed"}),
                ("POST", "/facegate/v1/sessions", as_officer, case),
                ("DELETE", "/facegate/v1/sessions/AKIAUNKNOWN", as_officer, None),
            ]:
                response = await client.request(method, path, headers=headers, json=body)
                assert_outage(response, f"{method} {path}", "warrants_gone", "case_sessions")

            # The callers were authenticated all along: the same key still lists principals.
            listed = await client.get("/facegate/v1/principals", headers=as_admin)
            assert listed.status_code == 200, listed.text
