"""The master key, and the per-session secrets derived from it.

No session secret is stored anywhere: each one is HMAC(master key, access key id), computed
again when a request is verified. Whoever holds the master key file can derive every live
secret, so it gets owner-only permissions and never leaves the gateway host.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

_KEY_BYTES = 32
_SESSION_SECRET_LABEL = b"facegate/session-secret/v1\x00"


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) < _KEY_BYTES:
            raise ValueError(f"master key must be at least {_KEY_BYTES} bytes")
        self._key = key

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
        return cls(base64.b64decode(path.read_bytes().strip(), validate=True))

    def session_secret(self, access_key_id: str) -> str:
        """The secret access key of a case session: 40 characters, like AWS's."""
        digest = hmac.new(
            self._key, _SESSION_SECRET_LABEL + access_key_id.encode(), hashlib.sha256
        ).digest()
        return base64.b64encode(digest).decode()[:40]


def new_access_key_id() -> str:
    """A 20-character access key id in AWS's alphabet, prefixed so operators can tell ours."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "FGAK" + "".join(secrets.choice(alphabet) for _ in range(16))


def digest_token(token: str) -> str:
    """SHA-256 of a high-entropy token: enough to store it, since it cannot be guessed."""
    return hashlib.sha256(token.encode()).hexdigest()
