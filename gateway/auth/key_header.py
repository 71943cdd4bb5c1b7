"""Case-session credentials in the form of a vendor API key, for key-header protocols.

Azure Face (`Ocp-Apim-Subscription-Key`) and CompreFace (`x-api-key`) authenticate with one
opaque key. The same case session that issues an AWS key pair issues that key too: the
client presents `<access key id>.<secret access key>` in the vendor's header. The gateway
looks the session up by the id part and compares the secret with the one derived from the
master key, in constant time. Nothing new is stored, and revoking the session revokes every
form of its credentials at once.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from gateway.auth.secrets import MasterKey, UnknownKeyVersion
from gateway.auth.sessions import BoundSession, read_case_session
from gateway.db import RequestReader
from gateway.errors import ExpiredCredentials, MissingCredentials, UnknownAccessKey
from gateway.operations import FaceOperation
from gateway.requests import IncomingRequest

SEPARATOR = "."


def vendor_key(access_key_id: str, secret_access_key: str) -> str:
    """The key-header form of a case session's credentials (IssuedCredentials.vendor_key)."""
    return f"{access_key_id}{SEPARATOR}{secret_access_key}"


def split_vendor_key(presented: str) -> tuple[str, str] | None:
    access_key_id, separator, secret = presented.strip().partition(SEPARATOR)
    if not separator or not access_key_id or not secret:
        return None
    return access_key_id, secret


@dataclass(frozen=True)
class KeyHeaderAuthenticator:
    reads: RequestReader
    master_key: MasterKey
    header: str  # lower case, as ASGI servers hand header names over

    async def authenticate(self, request: IncomingRequest) -> BoundSession:
        presented = request.headers.get(self.header)
        if not presented:
            raise MissingCredentials(f"the request carries no {self.header} header")
        parts = split_vendor_key(presented)
        if parts is None:
            raise UnknownAccessKey(
                f"the {self.header} key is not of the form <access key id>.<secret>"
            )
        access_key_id, secret = parts
        session = await read_case_session(self.reads, access_key_id)
        try:
            expected = self.master_key.session_secret(
                access_key_id, session.key_version if session is not None else None
            )
        except UnknownKeyVersion:
            # A retired master key: only sessions no longer live are left under it.
            session, expected = None, self.master_key.session_secret(access_key_id)
        # Compared even when the session is unknown, so timing does not tell the two apart.
        if not hmac.compare_digest(expected.encode(), secret.encode()) or session is None:
            raise UnknownAccessKey("the key is not valid for any case session")
        if session.revoked:
            raise ExpiredCredentials("this case session has been revoked")
        if not session.is_live(request.received_at):
            raise ExpiredCredentials(
                f"this case session expired at {session.expires_at:%Y-%m-%dT%H:%M:%SZ}"
            )
        return session

    def claimed_key_id(self, request: IncomingRequest) -> str | None:
        parts = split_vendor_key(request.headers.get(self.header, ""))
        return parts[0][:32] if parts else None

    async def claim(self, request: IncomingRequest, operation: FaceOperation) -> None:
        """Nothing to claim: a bearer key signs no request, so a resent one cannot be told
        from a new one (README: the key goes over TLS only, and the session wins)."""
        return None
