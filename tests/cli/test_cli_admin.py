"""`facegate principals revoke-key / disable`, and warrants bound to an agency and officers,
as an admin runs them on the gateway host."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import facegate
from tests.e2e.test_warrants_and_roles import SESSION_OPEN_FIELDS


async def add_officer(url: str, tmp_path: Path, principal_id: str, agency: str) -> str:
    code, api_key = await facegate(
        url, tmp_path, "principals", "add", principal_id, "--name", principal_id,
        "--agency", agency, "--role", "officer",
    )  # fmt: skip
    assert code == 0, api_key
    return api_key.strip()


async def open_session(url: str, tmp_path: Path, officer: str) -> tuple[int, str]:
    return await facegate(
        url, tmp_path, "sessions", "open", "--officer", officer, "--case", "2026-9",
        "--legal-basis", "warrant", "--warrant", "W-9",
    )  # fmt: skip


async def test_warrants_are_their_agency_and_named_officers(
    migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    await add_officer(url, tmp_path, "officer-1", "Metro PD")
    await add_officer(url, tmp_path, "officer-2", "Metro PD")
    await add_officer(url, tmp_path, "deputy-1", "County Sheriff")
    code, output = await facegate(
        url, tmp_path, "warrants", "add", "W-9", "--kind", "warrant", "--court", "District",
        "--case", "2026-9", "--operation", "identify", "--agency", "Metro PD",
        "--officer", "officer-1", "--valid-until", "2030-01-01T00:00:00",
    )  # fmt: skip
    assert code == 0, output
    assert json.loads(output)["officers"] == ["officer-1"]

    code, output = await open_session(url, tmp_path, "deputy-1")
    assert code == 1
    assert "issued to Metro PD, and deputy-1 is of County Sheriff" in output
    code, output = await open_session(url, tmp_path, "officer-2")
    assert code == 1
    assert "names the officers who may use it (officer-1)" in output
    code, output = await open_session(url, tmp_path, "officer-1")
    assert code == 0, output


async def test_a_cli_principal_is_never_both_admin_and_officer(
    migrated_database_url: str, tmp_path: Path
) -> None:
    code, output = await facegate(
        migrated_database_url, tmp_path, "principals", "add", "both", "--name", "Both",
        "--agency", "Metro PD", "--role", "admin", "--role", "officer",
    )  # fmt: skip
    assert code == 1
    assert "both the admin and officer roles" in output


async def test_revoke_key_and_disable_stop_a_principal_and_are_recorded(
    migrated_database_url: str, tmp_path: Path
) -> None:
    url = migrated_database_url
    first = await add_officer(url, tmp_path, "officer-3", "Metro PD")
    first_id = first.removeprefix("fgk_").split(".")[0]
    code, second = await facegate(url, tmp_path, "principals", "key", "officer-3")
    assert code == 0, second
    second_id = second.strip().removeprefix("fgk_").split(".")[0]
    code, opened = await facegate(url, tmp_path, "sessions", "open", "--officer", "officer-3")
    assert code == 0, opened
    session = json.loads(opened)["access_key_id"]

    code, output = await facegate(url, tmp_path, "principals", "revoke-key", "officer-3", first_id)
    assert code == 0, output
    assert json.loads(output)["api_key_id"] == first_id

    code, output = await facegate(
        url, tmp_path, "principals", "disable", "officer-3", "--reason", "dismissed"
    )
    assert code == 0, output
    disabled = json.loads(output)
    assert disabled["revoked_sessions"] == [session]
    assert disabled["revoked_api_keys"] == [second_id]  # the first was revoked already

    code, output = await facegate(url, tmp_path, "sessions", "open", "--officer", "officer-3")
    assert code == 1
    code, output = await facegate(url, tmp_path, "principals", "list")
    assert "officer-3" not in output

    code, output = await facegate(url, tmp_path, "audit", "list", "--event-type", "admin_action")
    assert code == 0, output
    details = [json.loads(line)["detail"] for line in output.splitlines()]
    assert [d["action"] for d in details][-2:] == ["api_key.revoke", "principal.disable"]
    revoke, disable = details[-2:]
    [opening] = [d for d in details if d["action"] == "session.open"]
    assert set(opening) == SESSION_OPEN_FIELDS | {"via"}
    assert revoke == {
        "action": "api_key.revoke",
        "via": "cli",
        "principal_id": "officer-3",
        "api_key_id": first_id,
        "revoked_sessions": [],  # the CLI's session was opened with no key
    }
    assert disable == {
        "action": "principal.disable",
        "via": "cli",
        "principal_id": "officer-3",
        "reason": "dismissed",
        "revoked_sessions": [session],
        "revoked_api_keys": [second_id],
    }
