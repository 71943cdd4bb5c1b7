"""AWS Signature Version 4, the way AWS SDKs sign requests: verified on the way in
(`verify_signature`), made on the way out (`SigV4Signer`, the forward to Rekognition).

One canonicalisation serves both directions: botocore's SigV4Auth's (its path
normalisation and quoting, its query ordering, its list of headers never signed), so a
signature checked here matches what boto3 produced byte for byte, and one made here is the
Authorization header botocore's `add_auth` would have written. It is written out here
rather than run through botocore's signer, which builds an AWSRequest and an email-style
header map per request (that cost 2.6 % of the gateway's CPU to verify, and about as much
again to sign the forward); tests/auth/test_sigv4.py holds the two to the same answer over
query strings, repeated and blacklisted headers, odd paths, payload declarations, ports
and hosts.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import quote, urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST
from botocore.utils import is_valid_ipv6_endpoint_url, normalize_url_path

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
    body_sha256: str | None = None,
) -> None:
    """Raise InvalidSignature unless the request was signed with `secret_access_key`, over
    `required_headers` (Host and X-Amz-Date always) and every X-Facegate-* header it
    carries. `body_sha256`, when given, must be `body`'s SHA-256 in hex (the request's
    own, `IncomingRequest.body_sha256`): `body` is not hashed again."""
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
    body_sha256 = body_sha256 or hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != body_sha256:
        # Covers UNSIGNED-PAYLOAD too: the body is what the policy judges, so it must be signed.
        raise InvalidSignature("X-Amz-Content-SHA256 does not match the request body")

    for name in authorization.signed_headers:
        if name not in headers:
            raise InvalidSignature(f"signed header {name!r} is missing from the request")
    names = sorted(set(authorization.signed_headers) - _NEVER_SIGNED)
    # The URL botocore would be handed: an http:// URL makes it hash the payload, whatever
    # scheme the client used, and its path and query are read back through urlsplit.
    url = urlsplit(f"http://{headers['host']}{path}" + (f"?{query}" if query else ""))
    expected = _signature(
        secret_access_key=secret_access_key,
        amz_date=amz_date,
        date=authorization.date,
        region=authorization.region,
        service=authorization.service,
        method=method,
        path=url.path,
        query=url.query,
        headers=[(name, headers[name]) for name in names],
        # Either the body's digest or a declaration equal to it (checked above).
        payload_sha256=body_sha256,
    )
    if not hmac.compare_digest(expected, authorization.signature):
        raise InvalidSignature(
            "the request signature we calculated does not match the signature you provided"
        )


@dataclass(frozen=True)
class SigV4Signer:
    """Signs requests with one AWS key, as botocore's `SigV4Auth(credentials, service,
    region).add_auth` signs an AWSRequest built from the same method, URL, headers and
    body (a key without a session token; the payload hashed, as botocore does for a
    request without an `X-Amz-Content-SHA256` header)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str
    service: str

    def sign(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now: datetime | None = None,
        body_sha256: str | None = None,
    ) -> dict[str, str]:
        """The headers to send: `headers` as given, then X-Amz-Date (`now`, a time-zone
        aware datetime, by default the clock's) and Authorization, in the order and spelling
        botocore leaves them in.

        Signed: the Host botocore derives from `url` (lower case, no default port), and
        every header in `headers` but those botocore never signs (User-Agent, Expect, ...).
        `headers` must not hold X-Amz-Date, Authorization or X-Amz-Content-SHA256 (botocore
        would replace the first two and sign the third instead of hashing the body), nor
        Host, nor two names differing only in case. `body_sha256`, when given, must be
        `body`'s SHA-256 in hex: it is signed instead of hashing `body` again."""
        amz_date = (now or datetime.now(UTC)).astimezone(UTC).strftime(_AMZ_DATE_FORMAT)
        host, path, query = _url_parts(url)
        signed = [(name.lower(), value) for name, value in headers.items()]
        signed.append(("x-amz-date", amz_date))
        signed.append(("host", host))
        signed = sorted(item for item in signed if item[0] not in _NEVER_SIGNED)
        signature = _signature(
            secret_access_key=self.secret_access_key,
            amz_date=amz_date,
            date=amz_date[:8],
            region=self.region,
            service=self.service,
            method=method,
            path=path,
            query=query,
            headers=signed,
            payload_sha256=body_sha256 or hashlib.sha256(body).hexdigest(),
        )
        return {
            **headers,
            "X-Amz-Date": amz_date,
            "Authorization": (
                f"{_ALGORITHM} Credential={self.access_key_id}/{amz_date[:8]}/{self.region}/"
                f"{self.service}/aws4_request, SignedHeaders={';'.join(n for n, _ in signed)}, "
                f"Signature={signature}"
            ),
        }


def _signature(
    *,
    secret_access_key: str,
    amz_date: str,
    date: str,
    region: str,
    service: str,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    payload_sha256: str,
) -> str:
    """The hex signature of one request, both ways. `path` and `query` as urlsplit reads
    them from the URL; `headers` the signed ones, lower-case names, sorted and distinct."""
    # Each value trimmed and its runs of white space made one space (the spec's Trimall).
    canonical_headers = "".join(f"{name}:{' '.join(value.split())}\n" for name, value in headers)
    canonical_request = "\n".join(
        (
            method.upper(),
            _canonical_path(path),
            _canonical_query(query),
            canonical_headers,
            ";".join(name for name, _ in headers),
            payload_sha256,
        )
    )
    string_to_sign = "\n".join(
        (
            _ALGORITHM,
            amz_date,
            f"{date}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        )
    )
    key = _signing_key(secret_access_key, date, region, service)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=64)
def _url_parts(url: str) -> tuple[str, str, str]:
    """The Host botocore signs for a URL (`botocore.auth._host_from_url`: the host in lower
    case, an IPv6 one in brackets, the port unless it is the scheme's default), its path and
    its query. A gateway sends to a handful of URLs, so each is read once."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_valid_ipv6_endpoint_url(url):
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host, parts.path, parts.query


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
