"""Migration 0005 on a registry an older facegate wrote: warrants gain an agency."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from gateway.db import create_engine
from gateway.migrate import alembic_config, upgrade_async

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


async def test_existing_warrants_are_bound_to_their_registrar_agency(database_url: str) -> None:
    await upgrade_async(database_url, "0004")
    engine = create_engine(database_url)
    warrant = {
        "kind": "warrant",
        "issuing_court": "Superior Court",
        "case_number": "2026-1",
        "operations": ["identify"],
        "collections": ["mugshots"],
        "realtime": False,
        "valid_from": NOW,
        "valid_until": NOW + timedelta(days=1),
        "created_at": NOW,
    }
    try:
        async with engine.begin() as connection:
            principals = sa.table(
                "principals",
                sa.column("id"),
                sa.column("name"),
                sa.column("agency"),
                sa.column("roles", sa.JSON()),
                sa.column("created_at", sa.DateTime(timezone=True)),
            )
            await connection.execute(
                sa.insert(principals).values(
                    id="admin-1", name="A", agency="Metro PD", roles=["admin"], created_at=NOW
                )
            )
            warrants = sa.table(
                "warrants",
                *(sa.column(c) for c in ("id", "kind", "issuing_court", "case_number")),
                sa.column("operations", sa.JSON()),
                sa.column("collections", sa.JSON()),
                sa.column("realtime", sa.Boolean()),
                sa.column("valid_from", sa.DateTime(timezone=True)),
                sa.column("valid_until", sa.DateTime(timezone=True)),
                sa.column("created_by"),
                sa.column("created_at", sa.DateTime(timezone=True)),
            )
            await connection.execute(
                sa.insert(warrants).values(id="W-API", created_by="admin-1", **warrant)
            )
            await connection.execute(
                sa.insert(warrants).values(id="W-CLI", created_by="cli", **warrant)
            )
        await upgrade_async(database_url)
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.text("SELECT id, agency, officers FROM warrants ORDER BY id")
            )
            found = {row.id: (row.agency, row.officers) for row in rows}
    finally:
        await engine.dispose()
    # A warrant registered from the CLI has no principal to take an agency from: it stays
    # unbound, and the policy refuses it (warrant_other_agency) until registered again.
    officers = {k: v[1] if isinstance(v[1], list) else json.loads(v[1]) for k, v in found.items()}
    assert {k: v[0] for k, v in found.items()} == {"W-API": "Metro PD", "W-CLI": None}
    assert officers == {"W-API": [], "W-CLI": []}

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0004")
    await upgrade_async(database_url)
