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


def test_a_key_file_from_before_rotation_is_version_1_and_derives_as_before(
    tmp_path: Path,
) -> None:
    import base64
    import hashlib
    import hmac

    path = tmp_path / "master.key"
    raw = bytes(range(32))
    path.write_bytes(base64.b64encode(raw) + b"\n")  # the one bare line written before
    key = MasterKey.load_or_create(path)
    assert key.versions == [1] and key.current_version == 1
    digest = hmac.new(raw, b"facegate/session-secret/v1\x00FGAKTEST", hashlib.sha256).digest()
    assert key.session_secret("FGAKTEST", 1) == base64.b64encode(digest).decode()[:40]


def test_a_rotated_ring_is_picked_up_and_a_retired_version_is_refused(tmp_path: Path) -> None:
    import pytest

    from gateway.auth.secrets import UnknownKeyVersion, new_master_key, read_ring, write_ring

    path = tmp_path / "master.key"
    running = MasterKey.load_or_create(path)  # a gateway that started before the rotation
    first = running.session_secret("FGAKONE")
    write_ring(path, {**read_ring(path), 2: new_master_key()})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A session under version 2 is verified without a restart (re-read on the miss) ...
    assert running.session_secret("FGAKTWO", 2) == MasterKey.load_or_create(path).session_secret(
        "FGAKTWO", 2
    )
    assert running.current_version == 2  # ... and new sessions derive under it
    assert running.session_secret("FGAKONE", 1) == first
    write_ring(path, {2: read_ring(path)[2]})  # version 1 retired
    fresh = MasterKey.load_or_create(path)
    with pytest.raises(UnknownKeyVersion):
        fresh.session_secret("FGAKONE", 1)
    with pytest.raises(UnknownKeyVersion):
        fresh.session_secret("FGAKONE", 7)
