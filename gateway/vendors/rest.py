"""What the key-header REST adapters (Azure Face, CompreFace) share.

A REST adapter matches the request against a fixed table of routes. Path segments it
captures are checked and quoted again before they are put in the upstream path, which is
appended to the backend's base URL from the inventory: a request can choose an operation,
never a host, and never a path outside the table.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, quote

import python_multipart
import python_multipart.exceptions

from gateway import strict_json
from gateway.errors import MalformedRequest, PayloadTooLarge, UnsupportedOperation
from gateway.operations import OperationKind
from gateway.vendors.b64 import b64decode
from gateway.vendors.base import UpstreamResponse
from gateway.vendors.http import UpstreamClient
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
    """The body as a JSON object, read by the one strict reader (gateway/strict_json.py)."""
    return strict_json.load_object(body)


# A form names at most a few images; the cap stops a body of 60,000 tiny parts at the
# ninth. email.parser took 24 s of the event loop over that body; python-multipart with the
# cap refuses it in 0.3 ms, and reads a 5 MB single-part form in 18 ms (this machine), so
# parsing stays on the event loop: bounded by the body cap, and cheap.
MAX_FORM_PARTS = 8
_FORM_PART_HEADERS = frozenset({"content-disposition", "content-type"})
# RFC 2046's boundary: 1 to 70 characters from a fixed set, not ending in a space.
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_SAFE_FILENAME = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
_SAFE_MEDIA_TYPE = re.compile(r"^[a-z]+/[0-9a-z.+-]{1,64}$")


@dataclass(frozen=True)
class FormPart:
    """One part of a multipart/form-data body, as parsed: what is judged and re-sent."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


def _header_params(value: str, *, what: str) -> tuple[str, dict[str, str]]:
    """A header's value and its parameters; a parameter given twice, or in RFC 2231's
    extended form (which RFC 7578 forbids in forms), is refused rather than guessed at."""
    message = Message()
    message["x"] = value
    params = message.get_params(header="x", unquote=True)
    if not params:
        raise MalformedRequest(f"the {what} header cannot be read")
    (main, _), *rest = params
    found: dict[str, str] = {}
    for key, raw in rest:
        key = key.lower()
        if "*" in key or not isinstance(raw, str):
            raise MalformedRequest(f"the {what} header uses an extended parameter ({key})")
        if key in found:
            raise MalformedRequest(f"the {what} header gives {key!r} twice")
        found[key] = raw
    return main.lower(), found


def multipart_form(
    content_type: str, body: bytes, *, max_parts: int = MAX_FORM_PARTS
) -> dict[str, FormPart]:
    """The parts of a multipart/form-data body, by field name, parsed by python-multipart
    (the parser Starlette uses) under RFC 7578's rules, strictly: one boundary, no transfer
    encodings, no nested multiparts, no field twice, at most `max_parts` parts, and the
    closing boundary present. Anything a second parser could read otherwise is refused."""
    media_type, params = _header_params(content_type, what="Content-Type")
    boundary = params.get("boundary", "")
    if media_type != "multipart/form-data" or not _BOUNDARY.match(boundary):
        raise MalformedRequest("the body must be multipart/form-data with one valid boundary")
    parts: list[tuple[list[tuple[str, str]], bytearray]] = []
    header: list[bytearray] = [bytearray(), bytearray()]
    ended = False

    def part_begin() -> None:
        if len(parts) >= max_parts:
            raise MalformedRequest(f"a form may hold at most {max_parts} parts")
        parts.append(([], bytearray()))

    def header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def header_end() -> None:
        parts[-1][0].append((header[0].decode("latin-1").lower(), header[1].decode("latin-1")))
        header[0], header[1] = bytearray(), bytearray()

    def part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    def end() -> None:
        nonlocal ended
        ended = True

    parser = python_multipart.MultipartParser(
        boundary.encode("latin-1"),
        {
            "on_part_begin": part_begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_part_data": part_data,
            "on_end": end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except python_multipart.exceptions.MultipartParseError as exc:
        raise MalformedRequest(f"the multipart body cannot be read: {exc}") from exc
    if not ended:
        raise MalformedRequest("the multipart body ends before its closing boundary")
    form: dict[str, FormPart] = {}
    for headers, data in parts:
        part = _form_part(headers, bytes(data))
        if part.name in form:
            raise MalformedRequest(f"multipart field {part.name!r} is given twice")
        form[part.name] = part
    return form


def _form_part(headers: list[tuple[str, str]], data: bytes) -> FormPart:
    names = [name for name, _ in headers]
    if len(set(names)) != len(names) or not set(names) <= _FORM_PART_HEADERS:
        # Content-Transfer-Encoding above all: RFC 7578 deprecates it, and a parser that
        # decodes it reads other bytes than one that does not.
        raise MalformedRequest(
            "a multipart part may carry one Content-Disposition and one Content-Type, no other "
            "header"
        )
    values = dict(headers)
    disposition, params = _header_params(
        values.get("content-disposition", ""), what="Content-Disposition"
    )
    name = params.get("name")
    if disposition != "form-data" or not name or set(params) - {"name", "filename"}:
        raise MalformedRequest("a multipart part must be form-data with a name")
    content_type = values.get("content-type")
    if content_type is not None:
        media_type, _ = _header_params(content_type, what="Content-Type")
        if media_type.startswith("multipart/"):
            raise MalformedRequest("a multipart part may not hold another multipart body")
        content_type = media_type
    return FormPart(
        name=name, data=data, filename=params.get("filename"), content_type=content_type
    )


def encode_multipart(parts: Iterable[FormPart]) -> tuple[bytes, str]:
    """A multipart/form-data body built from parsed parts, and its Content-Type: what the
    vendor receives is these parts and nothing else the client's bytes held."""
    parts = list(parts)
    boundary = "facegate-" + secrets.token_hex(16)
    while any(boundary.encode() in part.data for part in parts):
        boundary = "facegate-" + secrets.token_hex(16)
    chunks: list[bytes] = []
    for part in parts:
        filename = part.filename if part.filename and _SAFE_FILENAME.match(part.filename) else None
        media_type = part.content_type or ""
        if not _SAFE_MEDIA_TYPE.match(media_type):
            media_type = "application/octet-stream"
        disposition = f'form-data; name="{quote(part.name, safe="_-.")}"'
        if filename is not None or part.content_type is not None:
            disposition += f'; filename="{filename or "image"}"'
        chunks += [
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode(),
            f"Content-Type: {media_type}\r\n\r\n".encode(),
            part.data,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def b64_image(value: object, *, field: str, max_image_bytes: int) -> bytes:
    if not isinstance(value, str):
        raise MalformedRequest(f"{field} must be base64-encoded image bytes")
    if len(value) // 4 * 3 > max_image_bytes + 2:
        raise PayloadTooLarge(f"{field} is larger than {max_image_bytes} bytes")
    try:
        return b64decode(value)
    except (binascii.Error, ValueError) as exc:
        raise MalformedRequest(f"{field} is not valid base64") from exc


def image_digest(data: bytes | None, *, field: str, max_image_bytes: int) -> str:
    if not data:
        raise MalformedRequest(f"{field} is required and must hold image bytes")
    if len(data) > max_image_bytes:
        raise PayloadTooLarge(f"{field} is larger than {max_image_bytes} bytes")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_counts(total: dict[str, int], more: Mapping[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


class RestForwarder:
    """Sends a parsed request to the backend's fixed base URL with the backend's own key."""

    def __init__(
        self, *, backend: VendorBackend, key_header: str, timeout_seconds: float, vendor: str
    ) -> None:
        self._base_url = backend.base_url
        self._key_header = key_header
        self._secret = backend.secret
        self._client = UpstreamClient(vendor=vendor, timeout_seconds=timeout_seconds)

    async def send(
        self,
        *,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        body: bytes,
        content_type: str | None,
    ) -> UpstreamResponse:
        """The vendor's answer, or `UpstreamError` when there is none (UpstreamClient)."""
        # Only the backend's key and the body's type go upstream; none of the client's
        # headers (Host included) do.
        headers = {self._key_header: self._secret.get_secret_value()}
        if content_type:
            headers["content-type"] = content_type
        reply = await self._client.request(
            method, self._base_url + path, query=list(query), body=body or None, headers=headers
        )
        kept = {"content-type": reply.headers.get("content-type", "application/json")}
        return UpstreamResponse(status_code=reply.status, headers=kept, body=reply.body)

    async def aclose(self) -> None:
        await self._client.aclose()
