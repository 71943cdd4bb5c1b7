"""The master keys, and the per-session secrets derived from them.

No session secret is stored anywhere: each one is HMAC(master key, access key id), computed
again when a request is verified. Whoever holds the master key file can derive every live
secret, so it gets owner-only permissions and never leaves the gateway host.

Rotation (`facegate keys rotate-master`): the file is a key ring, one ``<version> <base64
key>`` line per key, the last line the current key. A new session derives its secret under
the current key and its row remembers the version (``case_sessions.key_version``); a live
session keeps the version it was opened under until it expires, and a version no live
session uses is retired (removed from the file). A file holding one bare base64 line (made
before rotation existed) is version 1, which derives exactly as before, so sessions opened
before an upgrade keep working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

_KEY_BYTES = 32
_SESSION_SECRET_LABEL = b"facegate/session-secret/v1\x00"
_HEADER = "# facegate master keys: <version> <base64 key>; the last line is the current key\n"


class UnknownKeyVersion(LookupError):
    """A session names a master key version the ring no longer (or never) held."""


class MasterKey:
    """A ring of master keys by version; ``current_version`` derives new sessions' secrets.

    Loaded from a file, it re-reads the file when asked for a version it does not hold (a
    key added by `facegate keys rotate-master` in another process) and when ``refresh`` sees
    the file changed, so a running gateway opens new sessions under a new key without a
    restart. Keys it already holds stay in memory until the process ends.
    """

    def __init__(self, key: bytes | Mapping[int, bytes], *, path: Path | None = None) -> None:
        keys = {1: key} if isinstance(key, bytes) else dict(key)
        if not keys:
            raise ValueError("a master key ring holds at least one key")
        for version, value in keys.items():
            if version < 1:
                raise ValueError("master key versions start at 1")
            if len(value) < _KEY_BYTES:
                raise ValueError(f"master key must be at least {_KEY_BYTES} bytes")
        self._keys = keys
        self._current = max(keys)
        self._path = path
        self._stamp = _stamp(path) if path is not None else None

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        """Read the key file, creating it (mode 0600) on first use of an embedded install."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting at once cannot both write a different key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(base64.b64encode(secrets.token_bytes(_KEY_BYTES)) + b"\n")
        return cls(read_ring(path), path=path)

    @property
    def current_version(self) -> int:
        return self._current

    @property
    def versions(self) -> list[int]:
        return sorted(self._keys)

    def refresh(self) -> None:
        """Re-read the file if it changed since it was read (a stat, no read otherwise)."""
        if self._path is None:
            return
        stamp = _stamp(self._path)
        if stamp != self._stamp:
            keys = read_ring(self._path)
            # Keys already held stay: a session under a just-retired version may still be
            # verified by this process until it restarts, never the other way round.
            self._keys = {**self._keys, **keys}
            self._current = max(keys)
            self._stamp = stamp

    def session_secret(self, access_key_id: str, version: int | None = None) -> str:
        """The secret access key of a case session (40 characters, like AWS's), under master
        key ``version`` (default: the current one). Raises UnknownKeyVersion if that
        version is not in the ring, even after re-reading the file."""
        number = self._current if version is None else version
        key = self._keys.get(number)
        if key is None:
            self.refresh()
            key = self._keys.get(number)
        if key is None:
            raise UnknownKeyVersion(f"master key version {number} is not in the key ring")
        digest = hmac.new(
            key, _SESSION_SECRET_LABEL + access_key_id.encode(), hashlib.sha256
        ).digest()
        return base64.b64encode(digest).decode()[:40]


def read_ring(path: Path) -> dict[int, bytes]:
    """The versions and keys in a key file (a bare base64 line is version 1)."""
    keys: dict[int, bytes] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        version_text, _, encoded = line.rpartition(" ")
        try:
            version = int(version_text) if version_text else 1
            keys[version] = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError(f"{path}: a line is not '<version> <base64 key>'") from None
    if not keys:
        raise ValueError(f"{path} holds no master key")
    return keys


def write_ring(path: Path, keys: Mapping[int, bytes]) -> None:
    """Replace the key file with ``keys`` (mode 0600), atomically: written beside it,
    fsync'd, renamed over it, the directory fsync'd. A crash leaves the old or the new."""
    text = _HEADER + "".join(
        f"{version} {base64.b64encode(keys[version]).decode()}\n" for version in sorted(keys)
    )
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    try:
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def new_master_key() -> bytes:
    return secrets.token_bytes(_KEY_BYTES)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def new_access_key_id() -> str:
    """A 20-character access key id in AWS's alphabet, prefixed so operators can tell ours."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "FGAK" + "".join(secrets.choice(alphabet) for _ in range(16))


def digest_token(token: str) -> str:
    """SHA-256 of a high-entropy token: enough to store it, since it cannot be guessed."""
    return hashlib.sha256(token.encode()).hexdigest()
