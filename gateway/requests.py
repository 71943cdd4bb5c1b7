"""The incoming request as the pipeline sees it, independent of the web framework."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from os import urandom
from typing import Final

# The bits uuid.UUID(..., version=4) sets: the RFC 4122 variant (10) and version 4.
_UUID4_CLEAR: Final = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET: Final = (0x8000 << 48) | (4 << 76)


def new_request_id() -> str:
    """A new request id: a random UUID (version 4) as 32 lower-case hex digits, exactly what
    `uuid.uuid4().hex` gives from the same 16 bytes of os.urandom, for less than half its
    CPU (UUID's constructor checks and stores what is built right here, every request)."""
    return f"{int.from_bytes(urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"


@dataclass(frozen=True)
class IncomingRequest:
    request_id: str
    received_at: datetime  # UTC
    method: str
    path: str
    query: str  # raw query string, without "?"
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    client_address: str | None

    @cached_property
    def body_sha256(self) -> str:
        """The body's SHA-256, in hex: hashed once a request, for the caller's SigV4
        signature and, when the vendor is sent these very bytes, for the forward's."""
        return hashlib.sha256(self.body).hexdigest()
