"""`facegate audit verify` and `export` on a damaged log: they read it as found, append
nothing (an append would fail on the damage, or build on it), and name the first bad record.
`facegate audit pin-head` restores a lost record of the last signed tree."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.audit.checkpoint import SignedTreeState, Signer
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord, EventType
from gateway.db import create_engine, session_factory
from tests.audit.test_signed_state import as_database_owner
from tests.cli.test_cli import facegate

ORIGIN = "facegate.local/audit"  # the CLI's default FACEGATE_LOG_ORIGIN


async def signed_decisions(database_url: str, tmp_path: Path, count: int) -> None:
    """Decisions appended as the gateway appends them: each batch signed with the CLI's key."""
    engine = create_engine(database_url)
    key_file = tmp_path / "log.key"
    log = AuditLog(
        session_factory(engine),
        signer=Signer.load_or_create(key_file, ORIGIN),
        signed_state=SignedTreeState.beside(key_file),
    )
    try:
        for index in range(count):
            await log.append(
                AuditRecord(
                    time=datetime.now(UTC),
                    request_id=f"req-{index + 1}",
                    event_type=EventType.DECISION,
                    case_number="2026-1",
                    decision="allow",
                )
            )
    finally:
        await log.aclose()
        await engine.dispose()


async def entry_count(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(sa.text("SELECT count(*) FROM audit_log")) or 0)
    finally:
        await engine.dispose()


DAMAGES = {
    "altered": (("UPDATE audit_log SET decision = 'deny' WHERE seq = 4",), "record 4: altered"),
    "missing": (("DELETE FROM audit_log WHERE seq = 4",), "record 4: missing"),
    "out_of_order": (
        (f"UPDATE audit_log SET prev_hash = '{'ab' * 32}' WHERE seq = 4",),
        "record 4: out_of_order",
    ),
    "truncated": (("DELETE FROM audit_log WHERE seq > 4",), "TREE BROKEN at record 5"),
    "bad_checkpoint": (
        (
            "UPDATE audit_checkpoint SET note = replace(note, char(10) || '6' || char(10), "
            "char(10) || '5' || char(10))",
        ),
        "bad_checkpoint",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
async def test_verify_and_export_read_a_damaged_log_as_found(
    migrated_database_url: str, tmp_path: Path, damage: str
) -> None:
    await signed_decisions(migrated_database_url, tmp_path, 6)
    statements, named = DAMAGES[damage]
    if damage == "bad_checkpoint" and "postgresql" in migrated_database_url:
        statements = tuple(s.replace("char(10)", "chr(10)") for s in statements)
    engine = create_engine(migrated_database_url)
    try:
        await as_database_owner(engine, *statements)
    finally:
        await engine.dispose()
    before = await entry_count(migrated_database_url)

    code, output = await facegate(migrated_database_url, tmp_path, "audit", "verify")
    assert code == 1, output
    assert named in output
    assert "left as found" in output and "Traceback" not in output

    out = tmp_path / "export"
    code, output = await facegate(migrated_database_url, tmp_path, "audit", "export", str(out))
    assert code == 1, output
    assert named in output
    assert "Traceback" not in output
    if damage != "bad_checkpoint":  # the evidence is written as found
        assert (out / "entries.jsonl").is_file() and (out / "checkpoint").is_file()

    assert await entry_count(migrated_database_url) == before  # nothing appended


async def test_an_unreadable_row_is_named_too(sqlite_url: str, tmp_path: Path) -> None:
    from gateway.migrate import upgrade_async

    await upgrade_async(sqlite_url)
    await signed_decisions(sqlite_url, tmp_path, 6)
    engine = create_engine(sqlite_url)
    try:  # SQLite keeps whatever is written behind the triggers: text in a time column
        await as_database_owner(engine, "UPDATE audit_log SET time = 'yesterday' WHERE seq = 3")
    finally:
        await engine.dispose()
    for command in (("verify",), ("export", str(tmp_path / "out"))):
        code, output = await facegate(sqlite_url, tmp_path, "audit", *command)
        assert code == 1, output
        assert "record 3" in output and "Traceback" not in output
    assert await entry_count(sqlite_url) == 6


async def test_a_sound_log_is_verified_then_the_read_recorded(
    migrated_database_url: str, tmp_path: Path
) -> None:
    await signed_decisions(migrated_database_url, tmp_path, 3)
    code, output = await facegate(migrated_database_url, tmp_path, "audit", "verify")
    assert code == 0, output
    assert "ok: tree of 3 entries" in output  # what was checked, before the read's record
    assert await entry_count(migrated_database_url) == 4
    code, output = await facegate(
        migrated_database_url, tmp_path, "audit", "export", str(tmp_path / "out")
    )
    assert code == 0, output
    assert "exported 4 entries" in output
    assert await entry_count(migrated_database_url) == 5


async def test_pin_head_restores_a_lost_record(migrated_database_url: str, tmp_path: Path) -> None:
    await signed_decisions(migrated_database_url, tmp_path, 4)
    witness_copy = tmp_path / "witness-checkpoint"
    code, output = await facegate(
        migrated_database_url, tmp_path, "audit", "export", str(tmp_path / "out")
    )
    assert code == 0, output
    witness_copy.write_bytes((tmp_path / "out" / "checkpoint").read_bytes())
    (tmp_path / "log.key.signed-tree").unlink()

    code, output = await facegate(migrated_database_url, tmp_path, "audit", "verify")
    assert code == 1, output  # sound, but the read cannot be recorded: nothing is signed
    assert "ok: tree of" in output and "pin-head" in output

    code, output = await facegate(
        migrated_database_url, tmp_path, "audit", "pin-head", "--checkpoint", str(witness_copy)
    )
    assert code == 0, output
    assert "pinned the tree of 4 entries" in output
    code, output = await facegate(migrated_database_url, tmp_path, "audit", "verify")
    assert code == 0, output


async def test_pin_head_refuses_a_damaged_log(migrated_database_url: str, tmp_path: Path) -> None:
    await signed_decisions(migrated_database_url, tmp_path, 4)
    (tmp_path / "log.key.signed-tree").unlink()
    engine = create_engine(migrated_database_url)
    try:
        await as_database_owner(engine, "DELETE FROM audit_log WHERE seq = 2")
    finally:
        await engine.dispose()
    code, output = await facegate(migrated_database_url, tmp_path, "audit", "pin-head")
    assert code == 1, output
    assert "record 2: missing" in output and "nothing pinned" in output
    assert not (tmp_path / "log.key.signed-tree").exists()
