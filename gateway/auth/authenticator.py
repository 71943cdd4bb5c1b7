"""Authenticate a vendor-protocol request against the case session its key belongs to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from gateway.auth.replay import MemoryReplayCache, ReplayCache
from gateway.auth.secrets import MasterKey, UnknownKeyVersion
from gateway.auth.sessions import BoundSession, read_case_session
from gateway.auth.sigv4 import (
    ALWAYS_SIGNED,
    check_clock_skew,
    parse_amz_date,
    parse_authorization,
    verify_signature,
)
from gateway.db import RequestReader
from gateway.errors import (
    AuthenticationError,
    ExpiredCredentials,
    ReplayedRequest,
    UnknownAccessKey,
)
from gateway.requests import IncomingRequest


@dataclass(frozen=True)
class SigV4Authenticator:
    reads: RequestReader
    master_key: MasterKey
    max_clock_skew: timedelta
    # Shared by replicas when Redis is configured (gateway/auth/replay.py).
    replays: ReplayCache = field(default_factory=MemoryReplayCache)

    async def authenticate(
        self, request: IncomingRequest, *, required_headers: frozenset[str] = ALWAYS_SIGNED
    ) -> BoundSession:
        """The live case session that signed this request; raises an AuthenticationError.

        The session is read from the database at each call (read_case_session), so a
        revocation refuses the next request; StorageUnavailable if it cannot be read, and
        ReplayCacheUnavailable if the replay cache cannot tell (both fail closed)."""
        authorization = parse_authorization(request.headers.get("authorization"))
        signed_at = parse_amz_date(request.headers.get("x-amz-date"))
        check_clock_skew(signed_at, now=request.received_at, max_skew=self.max_clock_skew)
        session = await read_case_session(self.reads, authorization.access_key_id)
        if session is None:
            raise UnknownAccessKey(
                "the security token included in the request is invalid: unknown access key"
            )
        try:
            secret = self.master_key.session_secret(session.access_key_id, session.key_version)
        except UnknownKeyVersion:
            # Its master key was retired, so it is no longer live; said as for an unknown
            # key, since the signature was not checked (only the holder learns of expiry).
            raise UnknownAccessKey(
                "the security token included in the request is invalid: unknown access key"
            ) from None
        verify_signature(
            authorization=authorization,
            secret_access_key=secret,
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=request.body,
            body_sha256=request.body_sha256,
            required_headers=required_headers,
        )
        if await self.replays.seen(authorization.signature, now=request.received_at):
            raise ReplayedRequest(_REPLAYED)
        # Checked after the signature, so only the key's holder learns that it has expired.
        if session.revoked:
            raise ExpiredCredentials("this case session has been revoked")
        if not session.is_live(request.received_at):
            raise ExpiredCredentials(
                f"this case session expired at {session.expires_at:%Y-%m-%dT%H:%M:%SZ}"
            )
        return session

    async def spend(self, request: IncomingRequest) -> None:
        """Spend the signature of an authenticated request about to be forwarded; raise
        ReplayedRequest if it was spent already. Atomic in the cache: of two copies of one
        request arriving at once, at two replicas even, one is forwarded."""
        authorization = parse_authorization(request.headers.get("authorization"))
        signed_at = parse_amz_date(request.headers.get("x-amz-date"))
        if not await self.replays.first_use(
            authorization.signature,
            until=signed_at + self.max_clock_skew,
            now=request.received_at,
        ):
            raise ReplayedRequest(_REPLAYED)


_REPLAYED = "this signed request was already received: a signature is accepted once"


def claimed_access_key_id(request: IncomingRequest) -> str | None:
    """The key id a request claims, for the audit record of a failed authentication."""
    try:
        return parse_authorization(request.headers.get("authorization")).access_key_id
    except AuthenticationError:
        return None
