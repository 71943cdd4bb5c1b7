"""Migration 0003 on a database the hash-chain log already wrote to; the gateway's role."""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest
import sqlalchemy as sa
from alembic import command

from gateway.audit import chain, guards, merkle
from gateway.audit.checkpoint import Checkpoint, Signer
from gateway.audit.log import AuditLog, _column_values
from gateway.audit.models import AuditLogEntry
from gateway.db import create_engine, session_factory
from gateway.migrate import alembic_config, upgrade_async
from tests.audit.conftest import checker_of, make_record, reader_of


async def write_chain_entries(url: str, count: int, *, break_at: int | None = None) -> None:
    """Entries exactly as the hash-chain log (revision 0002) wrote them."""
    engine = create_engine(url)
    prev = chain.GENESIS_HASH
    try:
        async with engine.begin() as connection:
            for seq in range(1, count + 1):
                record = make_record(request_id=f"old-{seq}")
                record_hash = chain.entry_hash(seq, record, prev)
                values = _column_values(record)
                if seq == break_at:
                    values["decision"] = "deny"  # altered after hashing
                await connection.execute(
                    sa.insert(AuditLogEntry.__table__).values(
                        seq=seq, prev_hash=prev.hex(), record_hash=record_hash.hex(), **values
                    )
                )
                prev = record_hash
    finally:
        await engine.dispose()


async def test_existing_entries_become_the_first_leaves(database_url: str) -> None:
    await upgrade_async(database_url, "0002")
    await write_chain_entries(database_url, 37)
    await upgrade_async(database_url)

    signer = Signer.generate("test.example/facegate")
    engine = create_engine(database_url)
    try:
        log = AuditLog(session_factory(engine), signer=signer)
        entry = await log.append(make_record(request_id="new"))
        assert entry.seq == 38
        note = await reader_of(log).latest_checkpoint()
        assert note is not None
        checkpoint = Checkpoint.open(note.note, signer.verifier)
        assert checkpoint.size == 38
        expected = merkle.root_of(
            merkle.leaf_hash(chain.canonical_bytes(seq, make_record(request_id=f"old-{seq}")))
            for seq in range(1, 38)
        )
        proof = await reader_of(log).consistency_proof(37, 38)
        merkle.verify_consistency(
            37,
            38,
            expected,
            checkpoint.root_hash,
            [base64.b64decode(h) for h in proof.hashes],
        )
        assert (await checker_of(log).verify()).ok
        assert (await checker_of(log).verify_tree(signer.verifier)).ok
    finally:
        await engine.dispose()


async def test_a_broken_chain_is_not_sealed_into_the_tree(database_url: str) -> None:
    await upgrade_async(database_url, "0002")
    await write_chain_entries(database_url, 10, break_at=4)
    with pytest.raises(RuntimeError, match="broken at seq 4"):
        await upgrade_async(database_url)


async def test_downgrade_removes_the_tree(database_url: str) -> None:
    await upgrade_async(database_url)
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0002")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
    finally:
        await engine.dispose()
    assert "audit_tree" not in tables and "audit_log" in tables


@pytest.mark.postgres
async def test_the_gateway_role_can_append_and_read_only(postgres_url: str) -> None:
    await upgrade_async(postgres_url)
    signer = Signer.generate("test.example/facegate")
    role = f"facegate_gw_{uuid.uuid4().hex[:8]}"
    engine = create_engine(postgres_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text(f"CREATE ROLE {role}"))
            for statement in guards.gateway_role_statements(role):
                await connection.execute(sa.text(statement))
        # Appends and reads as the role (a superuser may SET ROLE to it).
        sessions = session_factory(engine)
        async with sessions() as db, db.begin():
            await db.execute(sa.text(f"SET LOCAL ROLE {role}"))
            await AuditLog(sessions, signer=signer).append(make_record(), db=db)
        for statement in (
            "UPDATE audit_log SET decision = 'deny'",
            "DELETE FROM audit_tree",
            "TRUNCATE audit_checkpoint",
            "DROP TRIGGER audit_log_refuse_update_delete ON audit_log",
        ):
            with pytest.raises(sa.exc.DBAPIError, match=r"permission denied|must be owner"):
                async with engine.begin() as connection:
                    await connection.execute(sa.text(f"SET LOCAL ROLE {role}"))
                    await connection.execute(sa.text(statement))
    finally:
        async with engine.begin() as connection:
            await connection.execute(sa.text(f"DROP OWNED BY {role}"))
            await connection.execute(sa.text(f"DROP ROLE {role}"))
        await engine.dispose()
