"""Admins, officers and auditors through the management API, on a live gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.auth.principals import Role
from gateway.auth.sessions import IssuedCredentials
from refvendor import samples
from tests.e2e.conftest import CASE, Stack


def api(stack: Stack, method: str, path: str, key: str | None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, stack.url + path, headers=headers, timeout=30, **kwargs)


async def test_admin_officer_auditor_round_trip(stack: Stack) -> None:
    admin = await stack.principal("admin-1", Role.ADMIN)
    created = api(
        stack,
        "POST",
        "/facegate/v1/principals",
        admin,
        json={
            "id": "officer-9",
            "name": "Officer Nine",
            "agency": "Metro PD",
            # custodian: the round trip creates and deletes a collection (reference data).
            "roles": ["officer", "custodian"],
        },
    )
    assert created.status_code == 201, created.text
    officer = api(stack, "POST", "/facegate/v1/principals/officer-9/keys", admin).json()["api_key"]
    now = datetime.now(UTC)
    warrant = api(
        stack,
        "POST",
        "/facegate/v1/warrants",
        admin,
        json={
            "id": "W-API",
            "kind": "warrant",
            "issuing_court": "Superior Court",
            "case_number": CASE,
            "operations": ["identify"],
            "collections": ["mugshots"],
            "valid_from": (now - timedelta(hours=1)).isoformat(),
            "valid_until": (now + timedelta(days=1)).isoformat(),
        },
    )
    assert warrant.status_code == 201, warrant.text

    opened = api(
        stack,
        "POST",
        "/facegate/v1/sessions",
        officer,
        json={
            "purpose": "criminal_investigation",
            "case_number": CASE,
            "offense": "robbery",
            "legal_basis": "warrant",
            "warrant_id": "W-API",
            "ttl_seconds": 600,
        },
    )
    assert opened.status_code == 201, opened.text
    credentials = IssuedCredentials.model_validate(opened.json())
    assert credentials.secret_access_key not in str(await _all_records(stack))
    client = stack.rekognition(credentials)
    client.create_collection(CollectionId="api-test")
    client.delete_collection(CollectionId="api-test")

    auditor = await stack.principal("auditor-1", Role.AUDITOR)
    page = api(
        stack,
        "GET",
        "/facegate/v1/audit/records",
        auditor,
        params={"case_number": CASE, "event_type": "decision"},
    ).json()
    assert [e["operation"] for e in page["entries"]] == ["CreateCollection", "DeleteCollection"]
    assert all(e["officer"] == "officer-9" and e["decision"] == "allow" for e in page["entries"])
    assert all(e["policy_revision"].startswith("sha256:") for e in page["entries"])

    report = api(stack, "GET", "/facegate/v1/audit/verify", auditor).json()
    assert report["ok"] is True
    reads = api(
        stack, "GET", "/facegate/v1/audit/records", auditor, params={"event_type": "audit_read"}
    ).json()["entries"]
    # A read is committed before it is served (the route records it first), so the read
    # being served is on its own page, last.
    assert [r["detail"]["action"] for r in reads] == ["audit.list", "audit.verify", "audit.list"]
    actions = api(
        stack, "GET", "/facegate/v1/audit/records", auditor, params={"event_type": "admin_action"}
    ).json()["entries"]
    assert [a["detail"]["action"] for a in actions] == [
        "principal.create",
        "api_key.issue",
        "warrant.create",
        "session.open",
    ]


async def test_cursor_pagination_walks_every_record(stack: Stack) -> None:
    client = stack.rekognition(await stack.session())
    for _ in range(5):
        client.list_collections()
    auditor = await stack.principal("auditor-2", Role.AUDITOR)

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3, "event_type": "decision"}
        if cursor:
            params["cursor"] = cursor
        page = api(stack, "GET", "/facegate/v1/audit/records", auditor, params=params).json()
        seen += [e["seq"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and seen == sorted(seen)


async def test_a_cursor_the_log_did_not_issue_is_a_bad_request(stack: Stack) -> None:
    # The query raises a domain error (InvalidQuery); the API, not the storage, makes it a 400.
    auditor = await stack.principal("auditor-cursor", Role.AUDITOR)
    response = api(
        stack, "GET", "/facegate/v1/audit/records", auditor, params={"cursor": "not base64!"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert "cursor" in response.json()["error"]["message"]


@pytest.mark.parametrize("role", [Role.OFFICER, Role.ADMIN])
async def test_only_auditors_read_the_log(stack: Stack, role: Role) -> None:
    key = await stack.principal(f"not-auditor-{role.value}", role)
    response = api(stack, "GET", "/facegate/v1/audit/records", key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


async def test_a_bad_api_key_is_refused_and_recorded(stack: Stack) -> None:
    response = api(stack, "GET", "/facegate/v1/audit/records", "fgk_0011223344556677.nope")
    assert response.status_code == 403
    auditor = await stack.principal("auditor-3", Role.AUDITOR)
    failures = api(
        stack, "GET", "/facegate/v1/audit/records", auditor, params={"event_type": "auth_failure"}
    ).json()["entries"]
    assert [(f["key_id"], f["reason_codes"]) for f in failures] == [
        ("0011223344556677", ["unknown_access_key"])
    ]


async def test_an_officer_cannot_register_warrants(stack: Stack) -> None:
    officer = await stack.principal("officer-5", Role.OFFICER)
    response = api(stack, "POST", "/facegate/v1/warrants", officer, json={})
    assert response.status_code in (403, 422)
    if response.status_code == 403:
        assert response.json()["error"]["code"] == "permission_denied"


async def test_revoked_warrant_refuses_the_next_search(stack: Stack) -> None:
    await stack.warrant("W-REV")
    client = stack.rekognition(await stack.session(warrant_id="W-REV"))
    probe = {"Bytes": samples.astronaut_variant_jpeg()}
    client.search_faces_by_image(CollectionId="mugshots", Image=probe)

    admin = await stack.principal("admin-2", Role.ADMIN)
    revoked = api(
        stack,
        "POST",
        "/facegate/v1/warrants/W-REV/revoke",
        admin,
        json={"reason": "quashed on appeal"},
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]

    # MaxFaces makes it another request: the same one, signed within the same second, would
    # be refused as a replay of the first.
    with pytest.raises(client.exceptions.AccessDeniedException) as raised:
        client.search_faces_by_image(CollectionId="mugshots", Image=probe, MaxFaces=2)
    assert "warrant_revoked" in raised.value.response["Error"]["Message"]


async def _all_records(stack: Stack) -> list[Any]:
    from tests.e2e.test_bad_input import records_of

    return await records_of(stack)
