"""What the key-header REST adapters (Azure Face, CompreFace) share.

A REST adapter matches the request against a fixed table of routes. Path segments it
captures are checked and quoted again before they are put in the upstream path, which is
appended to the backend's base URL from the inventory: a request can choose an operation,
never a host, and never a path outside the table.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx

from gateway.errors import MalformedRequest, PayloadTooLarge, UnsupportedOperation, UpstreamError
from gateway.operations import OperationKind
from gateway.vendors.base import UpstreamResponse
from gateway.vendors.http import upstream_client
from gateway.vendors.inventory import VendorBackend

# A captured path segment: no separators, no dot segments, nothing a URL would reinterpret.
_SEGMENT = re.compile(r"^[^/\\?#\x00-\x1f]{1,256}$")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # a regex over the path after the protocol's prefix; groups are segments
    name: str  # the operation name the policy and the audit log see
    kind: OperationKind
    params: frozenset[str] = frozenset()  # query parameters accepted (others are refused)
    images: tuple[str, ...] = ()  # body fields holding images, in probe order

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = re.fullmatch(self.pattern, path)
        return None if found is None else found.groupdict()


def route(
    method: str,
    pattern: str,
    name: str,
    kind: OperationKind,
    params: Iterable[str] = (),
    images: tuple[str, ...] = (),
) -> Route:
    return Route(method, pattern, name, kind, frozenset(params), images)


def match_route(routes: Iterable[Route], method: str, path: str) -> tuple[Route, dict[str, str]]:
    for candidate in routes:
        segments = candidate.match(method, path)
        if segments is not None:
            for value in segments.values():
                if value in (".", "..") or not _SEGMENT.match(value):
                    raise MalformedRequest(f"{value!r} is not a valid path segment")
            return candidate, segments
    # Never forwarded blindly: an operation we cannot classify cannot be judged.
    raise UnsupportedOperation(f"{method} {path} is not an operation facegate supports")


def quoted(segment: str) -> str:
    return quote(segment, safe="")


def parse_query(query: str, allowed: frozenset[str]) -> dict[str, str]:
    """The query's parameters; unknown or repeated ones are refused, so none pass unjudged."""
    params: dict[str, str] = {}
    # keep_blank_values: `?&limit=0` (the CompreFace SDK's habit) parses as limit=0.
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in allowed:
            raise MalformedRequest(f"query parameter {name!r} is not accepted here")
        if name in params:
            raise MalformedRequest(f"query parameter {name!r} is given twice")
        params[name] = value
    return params


def json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise MalformedRequest("the request body must be a JSON object")
    return document


def multipart_files(content_type: str, body: bytes) -> dict[str, bytes]:
    """The parts of a multipart/form-data body, by field name."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise MalformedRequest("the multipart body cannot be read")
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            raise MalformedRequest("a multipart part has no name or no content")
        if name in parts:
            raise MalformedRequest(f"multipart field {name!r} is given twice")
        parts[name] = payload
    return parts


def b64_image(value: object, *, field: str, max_image_bytes: int) -> bytes:
    if not isinstance(value, str):
        raise MalformedRequest(f"{field} must be base64-encoded image bytes")
    if len(value) // 4 * 3 > max_image_bytes + 2:
        raise PayloadTooLarge(f"{field} is larger than {max_image_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedRequest(f"{field} is not valid base64") from exc


def image_digest(data: bytes | None, *, field: str, max_image_bytes: int) -> str:
    if not data:
        raise MalformedRequest(f"{field} is required and must hold image bytes")
    if len(data) > max_image_bytes:
        raise PayloadTooLarge(f"{field} is larger than {max_image_bytes} bytes")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def keep_scored(
    items: list[Any], score: Callable[[Any], float], *, floor: float | None, cap: int | None
) -> tuple[list[Any], dict[str, int]]:
    """Items at or above the floor, at most `cap` of them, and what was dropped and why.

    The vendor is checked, not trusted: whatever it returns under the floor or past the cap
    is dropped here, whether or not it honoured the rewritten request.
    """
    kept = [item for item in items if floor is None or score(item) >= floor]
    dropped: dict[str, int] = {}
    if len(kept) < len(items):
        dropped["below_threshold"] = len(items) - len(kept)
    if cap is not None and len(kept) > cap:
        dropped["over_result_cap"] = len(kept) - cap
        kept = kept[:cap]
    return kept, dropped


def add_counts(total: dict[str, int], more: Mapping[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


class RestForwarder:
    """Sends a parsed request to the backend's fixed base URL with the backend's own key."""

    def __init__(self, *, backend: VendorBackend, key_header: str, timeout_seconds: float) -> None:
        self._base_url = backend.base_url
        self._key_header = key_header
        self._secret = backend.secret
        self._client = upstream_client(timeout_seconds=timeout_seconds)

    async def send(
        self,
        *,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        body: bytes,
        content_type: str | None,
        vendor: str,
    ) -> UpstreamResponse:
        # Only the backend's key and the body's type go upstream; none of the client's
        # headers (Host included) do.
        headers = {self._key_header: self._secret.get_secret_value()}
        if content_type:
            headers["content-type"] = content_type
        try:
            response = await self._client.request(
                method,
                self._base_url + path,
                params=list(query),
                content=body if body else None,
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{vendor} could not be reached: {type(exc).__name__}") from exc
        kept = {"content-type": response.headers.get("content-type", "application/json")}
        return UpstreamResponse(
            status_code=response.status_code, headers=kept, body=response.content
        )

    async def aclose(self) -> None:
        await self._client.aclose()
