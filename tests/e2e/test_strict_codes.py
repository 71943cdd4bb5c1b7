"""Codes enter in a strict ASCII syntax, or not at all (gateway/case.py).

The two policy engines lower-case and trim text differently beyond ASCII, so a code outside
it could be allowed by one and refused by the other. Where an officer states one (a case
session, an X-Facegate-* header) or a client asks for a face attribute, it is refused with
the vendor's or the API's own error, on record, and never reaches the policy or the vendor.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.auth.principals import Role
from gateway.auth.sessions import IssuedCredentials
from gateway.db import create_engine
from refvendor import samples
from tests.e2e.conftest import Stack, vendor_calls
from tests.e2e.test_bad_input import records_of

# As a client's HTTP library sends a UTF-8 header: the gateway reads the bytes as Latin-1.
DOTTED_I_OFFENSE = "KİDNAPPİNG".encode().decode("latin-1")
NO_FACE = base64.b64encode(samples.no_face_jpeg()).decode()


def post_signed(
    stack: Stack,
    credentials: IssuedCredentials,
    body: dict[str, object],
    *,
    target: str = "RekognitionService.DetectFaces",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A Rekognition call signed as botocore signs it, extra headers signed too."""
    content = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=f"{stack.url}/",
        data=content,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": target,
            **(headers or {}),
        },
    )
    SigV4Auth(
        Credentials(credentials.access_key_id, credentials.secret_access_key),
        "rekognition",
        "us-east-1",
    ).add_auth(request)
    sent = {name: value.encode("latin-1") for name, value in request.headers.items()}
    return httpx.post(f"{stack.url}/", headers=sent, content=content, timeout=30)


@pytest.fixture
def count_upstream(stack: Stack) -> Iterator[None]:
    before = vendor_calls(stack.vendor)
    yield
    assert vendor_calls(stack.vendor) == before, "a request with a bad code reached the vendor"


async def test_an_offense_header_outside_ascii_is_a_rekognition_error_on_record(
    stack: Stack, count_upstream: None
) -> None:
    credentials = await stack.session(offense=None)
    response = post_signed(
        stack,
        credentials,
        {"Image": {"Bytes": NO_FACE}},
        headers={"X-Facegate-Offense": DOTTED_I_OFFENSE},
    )
    assert response.status_code == 400, response.text
    assert response.json()["__type"] == "InvalidParameterException"
    assert "X-Facegate-Offense must be a code of ASCII letters" in response.json()["Message"]
    [record] = await records_of(stack, event_type="rejected")
    assert record.key_id == credentials.access_key_id
    assert record.decision == "deny"


async def test_a_face_attribute_outside_ascii_is_a_rekognition_error_on_record(
    stack: Stack, count_upstream: None
) -> None:
    credentials = await stack.session()
    response = post_signed(
        stack, credentials, {"Image": {"Bytes": NO_FACE}, "Attributes": ["EMOTİONS"]}
    )
    assert response.status_code == 400, response.text
    assert response.json()["__type"] == "InvalidParameterException"
    assert "face attribute" in response.json()["Message"]
    assert len(await records_of(stack, event_type="rejected")) == 1


async def test_a_session_is_opened_only_with_codes_and_stores_them_canonical(
    stack: Stack,
) -> None:
    key = await stack.principal("officer-3", Role.OFFICER)

    def open_session(**context: str) -> httpx.Response:
        return httpx.post(
            f"{stack.url}/facegate/v1/sessions",
            headers={"Authorization": f"Bearer {key}"},
            json={"purpose": "criminal_investigation", "case_number": "2026-HOM-0042", **context},
            timeout=30,
        )

    refused = open_session(offense="KİDNAPPİNG", legal_basis="warrant")
    assert refused.status_code == 422, refused.text
    assert "offense must be a code of ASCII letters" in refused.text
    refused = open_session(offense="homicide", case_number="2026 HOM\u00a00042")
    assert refused.status_code == 422, refused.text
    assert "case_number must be printable ASCII" in refused.text

    opened = open_session(offense=" Homicide ", legal_basis="WARRANT")
    assert opened.status_code == 201, opened.text
    assert opened.json()["context"]["offense"] == "homicide"
    assert opened.json()["context"]["legal_basis"] == "warrant"


async def test_a_stored_session_whose_offense_is_no_code_is_refused_by_the_policy_gate(
    stack: Stack, count_upstream: None
) -> None:
    # As a session opened before codes were checked would be: the engines never see it.
    credentials = await stack.session()
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.begin() as db:
            await db.execute(
                sa.text("UPDATE case_sessions SET offense = :offense WHERE access_key_id = :key"),
                {"offense": "KİDNAPPİNG", "key": credentials.access_key_id},
            )
    finally:
        await engine.dispose()

    response = post_signed(stack, credentials, {"Image": {"Bytes": NO_FACE}})
    assert response.status_code == 400, response.text
    assert response.json()["__type"] == "AccessDeniedException"
    assert response.headers["x-facegate-reasons"] == "policy_input_invalid"
    [record] = await records_of(stack, event_type="decision")
    assert record.reason_codes == ["policy_input_invalid"]
