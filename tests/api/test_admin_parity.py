"""One admin action, two callers: the management API and the CLI record the same fields.

Both call the same service (gateway/admin.py) and build the record with the same
function; only the attribution may differ (a principal and its key through the API, the
host's OS user through the CLI)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit.models import AuditLogEntry
from gateway.auth.api_keys import issue_api_key
from gateway.auth.principals import Role, create_principal
from gateway.config import Settings
from gateway.db import create_engine, session_factory
from gateway.serving import BackgroundServer
from tests.cli.test_cli import facegate

REPO = Path(__file__).resolve().parents[2]
CONTEXT = {
    "purpose": "criminal_investigation",
    "case_number": "2026-HOM-7",
    "offense": "homicide",
    "legal_basis": "exigent",
}
# Attribution, and the values each opening has of its own.
ATTRIBUTION = {"agency", "key_id", "client_address", "officer", "request_id", "time", "seq"}
OWN_VALUES = {"access_key_id", "expires_at", "principal_id"}


async def enrol_officer(database_url: str, principal_id: str) -> str:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as db, db.begin():
            now = datetime.now(UTC)
            await create_principal(
                db,
                principal_id=principal_id,
                name=principal_id,
                agency="Metro PD",
                roles=(Role.OFFICER,),
                now=now,
            )
            return await issue_api_key(db, principal_id=principal_id, now=now)
    finally:
        await engine.dispose()


async def session_open_records(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as db:
            rows = await db.scalars(select(AuditLogEntry).order_by(AuditLogEntry.seq))
            return [
                {column.key: getattr(row, column.key) for column in AuditLogEntry.__table__.c}
                for row in rows
                if row.detail and row.detail.get("action") == "session.open"
            ]
    finally:
        await engine.dispose()


def shape(record: dict[str, Any]) -> tuple[set[str], dict[str, Any]]:
    """The fields a record fills (attribution aside), and the detail's values."""
    filled = {k for k, v in record.items() if v not in (None, [], {}) and k not in ATTRIBUTION}
    detail = {k: v for k, v in record["detail"].items() if k != "via"}
    return filled, detail


def comparable(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: ("<own>" if k in OWN_VALUES else v) for k, v in detail.items()}


async def test_opening_a_session_records_the_same_fields_through_the_api_and_the_cli(
    migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    settings = Settings(
        database_url=url,
        master_key_file=tmp_path / "master.key",
        log_key_file=tmp_path / "log.key",
        policy_dir=REPO / "policies",
    )
    api_key = await enrol_officer(url, "officer-api")
    await enrol_officer(url, "officer-cli")
    with BackgroundServer(create_app(settings)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            opened = await client.post(
                "/facegate/v1/sessions",
                headers={"Authorization": f"Bearer {api_key}"},
                json=CONTEXT,
            )
    assert opened.status_code == 201, opened.text
    code, output = await facegate(
        url, tmp_path, "sessions", "open", "--officer", "officer-cli",
        "--purpose", CONTEXT["purpose"], "--case", CONTEXT["case_number"],
        "--offense", CONTEXT["offense"], "--legal-basis", CONTEXT["legal_basis"],
    )  # fmt: skip
    assert code == 0, output

    through_api, through_cli = await session_open_records(url)
    assert through_api["officer"] == "officer-api"
    assert through_cli["detail"]["via"] == "cli"
    api_fields, api_detail = shape(through_api)
    cli_fields, cli_detail = shape(through_cli)
    assert api_fields == cli_fields
    assert comparable(api_detail) == comparable(cli_detail)
    assert api_detail["principal_id"] == "officer-api"
    assert cli_detail["principal_id"] == "officer-cli"
