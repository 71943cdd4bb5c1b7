"""`facegate keys init-log`, `facegate audit export` and offline `facegate audit verify`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.audit.checkpoint import Verifier
from tests.cli.test_cli import append_decisions, facegate


async def test_export_then_verify_offline(migrated_database_url: str, tmp_path: Path) -> None:
    code, output = await facegate(migrated_database_url, tmp_path, "keys", "init-log")
    assert code == 0, output
    public_key = output.strip().splitlines()[-1]
    Verifier.parse(public_key)
    assert stat.S_IMODE(os.stat(tmp_path / "log.key").st_mode) == 0o600
    key_file = tmp_path / "auditor-copy-of-log.pub"
    key_file.write_text(public_key + "\n")

    await append_decisions(migrated_database_url, 12)
    export = tmp_path / "export"
    code, output = await facegate(migrated_database_url, tmp_path, "audit", "export", str(export))
    assert code == 0, output
    assert "exported 13 entries" in output  # twelve decisions and the export's own read
    saved = tmp_path / "saved-checkpoint"
    saved.write_bytes((export / "checkpoint").read_bytes())

    verify = ("audit", "verify", "--export", str(export), "--public-key", str(key_file))
    code, output = await facegate(migrated_database_url, tmp_path, *verify)
    assert code == 0, output
    assert output.startswith("ok: tree of 13 entries")

    # Later: a newer export must be consistent with the checkpoint saved from this one.
    await append_decisions(migrated_database_url, 3)
    newer = tmp_path / "newer"
    await facegate(migrated_database_url, tmp_path, "audit", "export", str(newer))
    code, output = await facegate(
        migrated_database_url,
        tmp_path,
        "audit",
        "verify",
        "--export",
        str(newer),
        "--public-key",
        str(key_file),
        "--older-checkpoint",
        str(saved),
    )
    assert code == 0, output
    assert "consistent with 1 older checkpoint" in output

    # An altered entry is named.
    lines = (export / "entries.jsonl").read_bytes().split(b"\n")
    lines[8] = lines[8].replace(b'"allow"', b'"deny"')
    (export / "entries.jsonl").write_bytes(b"\n".join(lines))
    code, output = await facegate(migrated_database_url, tmp_path, *verify)
    assert code == 1
    assert "TREE BROKEN at record 9: altered" in output
    assert "Traceback" not in output

    # A checkpoint signed by someone else is refused, not verified.
    code, output = await facegate(
        migrated_database_url,
        tmp_path,
        "audit",
        "verify",
        "--export",
        str(newer),
        "--public-key",
        str(key_file),
        "--checkpoint",
        str(key_file),
    )
    assert code == 1 and "bad_checkpoint" in output and "Traceback" not in output


async def test_live_verify_checks_the_tree_and_every_checkpoint(
    migrated_database_url: str, tmp_path: Path
) -> None:
    await append_decisions(migrated_database_url, 4)
    code, output = await facegate(migrated_database_url, tmp_path, "audit", "verify")
    assert code == 0, output
    assert "ok: tree of 5 entries matches the signed checkpoint" in output


async def test_a_missing_public_key_file_is_a_clear_error(
    migrated_database_url: str, tmp_path: Path
) -> None:
    code, output = await facegate(
        migrated_database_url,
        tmp_path,
        "audit",
        "verify",
        "--export",
        str(tmp_path),
        "--public-key",
        str(tmp_path / "nope.pub"),
    )
    assert code == 2 and "cannot read the public key" in output and "Traceback" not in output
