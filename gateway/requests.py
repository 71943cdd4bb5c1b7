"""The incoming request as the pipeline sees it, independent of the web framework."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


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
