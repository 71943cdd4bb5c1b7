"""Verification of AWS Signature Version 4, the way AWS SDKs sign requests.

The signature is recomputed over exactly the headers the client signed, canonicalised as
botocore's SigV4Auth canonicalises them (its path normalisation and quoting, its query
ordering, its list of headers never signed), so the result matches what boto3 produced
byte for byte. It is written out here rather than run through botocore's signer, which
builds an AWSRequest and an email-style header map per request (that cost 2.6 % of the
gateway's CPU); tests/auth/test_sigv4.py holds the two to the same answer over query
strings, repeated and blacklisted headers, odd paths and payload declarations.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import quote, urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST
from botocore.utils import normalize_url_path

from gateway.errors import ClockSkew, InvalidSignature, MissingCredentials

_ALGORITHM = "AWS4-HMAC-SHA256"
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+"
    r"Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[^/\s,]+)/(?P<service>[^/\s,]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9\-;]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z", re.ASCII)
# Headers botocore leaves out of a signature even when asked to sign them (hop-by-hop
# headers, User-Agent, tracing): a client signing with botocore never covers them, and one
# that lists them is verified as botocore would verify it.
_NEVER_SIGNED: Final = frozenset(SIGNED_HEADERS_BLACKLIST)
# Headers a signature must cover, or a captured request could be replayed with them changed.
ALWAYS_SIGNED = frozenset({"host", "x-amz-date"})
# Headers that state the case context (gateway/context/gather.py): they change what the
# policy judges, so every one present must be signed. Unsigned, one added to a captured
# request turned a `warrant_required` refusal into an allowed search.
CONTEXT_HEADER_PREFIX = "x-facegate-"


def context_headers(headers: Mapping[str, str]) -> frozenset[str]:
    """The X-Facegate-* headers a request carries (lower-case names)."""
    return frozenset(name for name in headers if name.startswith(CONTEXT_HEADER_PREFIX))


@dataclass(frozen=True)
class SigV4Authorization:
    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


# Both parsers are pure and each request is parsed twice, when authenticated and when its
# signature is spent (gateway/auth/authenticator.py): the second parse is a cache hit on
# the same header string. Bounded to the requests in flight; errors are not cached.
@functools.lru_cache(maxsize=1024)
def parse_authorization(value: str | None) -> SigV4Authorization:
    if not value:
        raise MissingCredentials("the request is not signed: no Authorization header")
    if not value.startswith(_ALGORITHM):
        raise MissingCredentials(f"only {_ALGORITHM} signatures are accepted")
    match = _AUTHORIZATION.match(value.strip())
    if match is None:
        raise InvalidSignature("the Authorization header is not a well-formed SigV4 header")
    return SigV4Authorization(
        access_key_id=match["key"],
        date=match["date"],
        region=match["region"],
        service=match["service"],
        signed_headers=tuple(match["headers"].split(";")),
        signature=match["signature"],
    )


@functools.lru_cache(maxsize=1024)
def parse_amz_date(value: str | None) -> datetime:
    if not value:
        raise InvalidSignature("the request has no X-Amz-Date header")
    if _AMZ_DATE.fullmatch(value):
        # The form every SDK sends, read by slicing: strptime costs ten times as much. A
        # value out of range (month 13) raises ValueError here as it does in strptime.
        try:
            return datetime(
                int(value[0:4]),
                int(value[4:6]),
                int(value[6:8]),
                int(value[9:11]),
                int(value[11:13]),
                int(value[13:15]),
                tzinfo=UTC,
            )
        except ValueError as exc:
            raise InvalidSignature(f"X-Amz-Date {value!r} is not YYYYMMDDTHHMMSSZ") from exc
    try:
        return datetime.strptime(value, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidSignature(f"X-Amz-Date {value!r} is not YYYYMMDDTHHMMSSZ") from exc


def check_clock_skew(signed_at: datetime, *, now: datetime, max_skew: timedelta) -> None:
    if abs(now - signed_at) > max_skew:
        raise ClockSkew(
            f"the request was signed at {signed_at:%Y-%m-%dT%H:%M:%SZ}, more than "
            f"{int(max_skew.total_seconds() // 60)} minutes from the gateway's clock"
        )


def verify_signature(
    *,
    authorization: SigV4Authorization,
    secret_access_key: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    required_headers: frozenset[str] = ALWAYS_SIGNED,
) -> None:
    """Raise InvalidSignature unless the request was signed with `secret_access_key`, over
    `required_headers` (Host and X-Amz-Date always) and every X-Facegate-* header it
    carries."""
    missing = (ALWAYS_SIGNED | required_headers | context_headers(headers)) - set(
        authorization.signed_headers
    )
    if missing:
        raise InvalidSignature(
            f"the signature must cover the headers: {', '.join(sorted(missing))}"
        )
    amz_date = headers.get("x-amz-date", "")
    if amz_date[:8] != authorization.date:
        raise InvalidSignature("the credential scope date does not match X-Amz-Date")
    body_sha256 = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != body_sha256:
        # Covers UNSIGNED-PAYLOAD too: the body is what the policy judges, so it must be signed.
        raise InvalidSignature("X-Amz-Content-SHA256 does not match the request body")

    for name in authorization.signed_headers:
        if name not in headers:
            raise InvalidSignature(f"signed header {name!r} is missing from the request")
    names = sorted(set(authorization.signed_headers) - _NEVER_SIGNED)
    # Each value trimmed and its runs of white space made one space (the spec's Trimall).
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names)
    # The URL botocore would be handed: an http:// URL makes it hash the payload, whatever
    # scheme the client used, and its path and query are read back through urlsplit.
    url = urlsplit(f"http://{headers['host']}{path}" + (f"?{query}" if query else ""))
    canonical_request = "\n".join(
        (
            method.upper(),
            _canonical_path(url.path),
            _canonical_query(url.query),
            canonical_headers,
            ";".join(names),
            # Either the body's digest or a declaration equal to it (checked above).
            body_sha256,
        )
    )
    scope = f"{authorization.date}/{authorization.region}/{authorization.service}/aws4_request"
    string_to_sign = "\n".join(
        (
            _ALGORITHM,
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        )
    )
    key = _signing_key(
        secret_access_key, authorization.date, authorization.region, authorization.service
    )
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, authorization.signature):
        raise InvalidSignature(
            "the request signature we calculated does not match the signature you provided"
        )


@functools.lru_cache(maxsize=4096)
def _signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """The key a day's signatures in one scope are made with: four HMACs, the same for
    every request a session signs that day, so kept (bounded; secrets of live sessions
    only ever reach it after their key id was found, and the process holds the master key
    from which they derive anyway)."""
    key = _hmac(f"AWS4{secret_access_key}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


@functools.lru_cache(maxsize=256)
def _canonical_path(path: str) -> str:
    """botocore's: dot segments and repeated slashes removed, then percent-encoded. A
    vendor protocol has a handful of paths, so each is worked out once."""
    return quote(normalize_url_path(path), safe="/~")


def _canonical_query(query: str) -> str:
    """botocore's, for a query read from the URL: its pairs sorted as sent, not re-encoded."""
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{key}={value}" for key, value in pairs)
