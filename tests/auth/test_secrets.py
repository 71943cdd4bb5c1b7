"""The master key and the session secrets derived from it."""

from __future__ import annotations

import stat
from pathlib import Path

from gateway.auth.secrets import MasterKey, new_access_key_id


def test_master_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    first = MasterKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = MasterKey.load_or_create(path)
    key_id = new_access_key_id()
    assert first.session_secret(key_id) == again.session_secret(key_id)


def test_session_secrets_differ_per_key_and_per_master_key(tmp_path: Path) -> None:
    one = MasterKey.load_or_create(tmp_path / "one.key")
    two = MasterKey.load_or_create(tmp_path / "two.key")
    a, b = new_access_key_id(), new_access_key_id()
    assert a != b and a.startswith("FGAK") and len(a) == 20
    assert len(one.session_secret(a)) == 40
    assert one.session_secret(a) != one.session_secret(b)
    assert one.session_secret(a) != two.session_secret(a)
