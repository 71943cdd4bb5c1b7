"""Detours 6, 7, 8 and 10 of issue 10, and administration that can stop someone (issue 11).

A warrant is its agency's (and, when it names officers, theirs); an identification must name
a collection its warrant covers; reference collections are changed only by a custodian; no
principal is both the admin who registers warrants and the officer who uses them; a revoked
key or a disabled principal stops working at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel
from azure.core.exceptions import HttpResponseError
from botocore.exceptions import ClientError

from gateway.auth.key_header import vendor_key
from gateway.auth.models import CaseSessionRow, PrincipalRow
from gateway.auth.principals import Role
from gateway.auth.secrets import MasterKey
from gateway.auth.sessions import IssuedCredentials
from gateway.case import CaseContext, LegalBasis
from gateway.db import create_engine, session_factory
from refvendor import samples
from tests.e2e.conftest import CASE, Stack, vendor_calls

CUSTODIAN = (Role.OFFICER, Role.CUSTODIAN)
SESSION_OPEN_FIELDS = {
    "action", "access_key_id", "principal_id", "expires_at",
    "purpose", "case_number", "offense", "legal_basis", "warrant_id",
}  # fmt: skip
DETECT = {
    "detection_model": FaceDetectionModel.DETECTION03,
    "recognition_model": FaceRecognitionModel.RECOGNITION04,
    "return_face_id": True,
}


def api(stack: Stack, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.request(method, stack.url + path, headers=headers, timeout=30, **kwargs)


def session_body(warrant_id: str | None = "W-1", **overrides: Any) -> dict[str, Any]:
    return {
        "purpose": "criminal_investigation",
        "case_number": CASE,
        "offense": "homicide",
        "legal_basis": "warrant",
        "warrant_id": warrant_id,
        "ttl_seconds": 600,
    } | overrides


def reasons_of(headers: Any) -> set[str]:
    return set(headers.get("x-facegate-reasons", "").split(","))


def refused_boto(stack: Stack, call: Any) -> set[str]:
    """The Rekognition call is refused, never reaches the vendor; its reason codes."""
    before = vendor_calls(stack.vendor)
    with pytest.raises(ClientError) as raised:
        call()
    assert vendor_calls(stack.vendor) == before, "a refused request reached the vendor"
    return reasons_of(raised.value.response["ResponseMetadata"]["HTTPHeaders"])


def refused_azure(stack: Stack, call: Any) -> set[str]:
    before = vendor_calls(stack.vendor)
    with pytest.raises(HttpResponseError) as raised:
        call()
    assert vendor_calls(stack.vendor) == before, "a refused request reached the vendor"
    assert raised.value.response is not None
    return reasons_of(raised.value.response.headers)


def compreface(
    stack: Stack, credentials: IssuedCredentials, method: str, path: str, **kw: Any
) -> httpx.Response:
    key = vendor_key(credentials.access_key_id, credentials.secret_access_key)
    return httpx.request(
        method, f"{stack.url}/api/v1{path}", headers={"x-api-key": key}, timeout=30, **kw
    )


async def admin_records(stack: Stack) -> list[dict[str, Any]]:
    auditor = await stack.principal(f"auditor-{datetime.now(UTC).timestamp()}", Role.AUDITOR)
    response = api(
        stack,
        "GET",
        "/facegate/v1/audit/records",
        auditor,
        params={"event_type": "admin_action", "limit": 1000},
    )
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


# -- detour 7: a warrant anyone can use ------------------------------------------------------


async def test_an_officer_of_another_agency_cannot_open_a_session_on_the_warrant(
    stack: Stack,
) -> None:
    await stack.warrant("W-1", agency="Metro PD")
    sheriff = await stack.principal("deputy-1", Role.OFFICER, agency="County Sheriff")

    opened = api(stack, "POST", "/facegate/v1/sessions", sheriff, json=session_body())

    assert opened.status_code == 403, opened.text
    assert "Metro PD" in opened.json()["error"]["message"]


async def test_an_officer_of_another_agency_cannot_use_the_warrant_by_header(
    stack: Stack,
) -> None:
    await stack.warrant("W-1", agency="Metro PD")
    client = stack.rekognition(await stack.session("deputy-2", warrant_id=None, agency="Sheriff"))

    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Facegate-Warrant"] = "W-1"

    client.meta.events.register("before-sign.rekognition.*", add_header)
    probe = {"Bytes": samples.astronaut_variant_jpeg()}
    codes = refused_boto(
        stack, lambda: client.search_faces_by_image(CollectionId="mugshots", Image=probe)
    )
    assert "warrant_other_agency" in codes


async def test_a_warrant_naming_officers_is_theirs_alone_by_session_and_by_header(
    stack: Stack,
) -> None:
    await stack.principal("officer-1", Role.OFFICER)
    await stack.warrant("W-1", officers=("officer-1",))
    other = await stack.principal("officer-2", Role.OFFICER)

    opened = api(stack, "POST", "/facegate/v1/sessions", other, json=session_body())
    assert opened.status_code == 403, opened.text
    assert "officer-1" in opened.json()["error"]["message"]

    client = stack.rekognition(await stack.session("officer-2", warrant_id=None))

    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Facegate-Warrant"] = "W-1"

    client.meta.events.register("before-sign.rekognition.*", add_header)
    probe = {"Bytes": samples.astronaut_variant_jpeg()}
    codes = refused_boto(
        stack, lambda: client.search_faces_by_image(CollectionId="mugshots", Image=probe)
    )
    assert "warrant_not_for_officer" in codes

    # The officer it names identifies under it.
    named = stack.rekognition(await stack.session("officer-1"))
    assert named.search_faces_by_image(CollectionId="mugshots", Image=probe)["FaceMatches"]


# -- detour 6: out of warrant scope by naming nothing -----------------------------------------


async def test_find_similar_over_face_ids_is_out_of_a_collection_scoped_warrant(
    stack: Stack,
) -> None:
    await stack.warrant("W-1", collections=("mugshots",))
    face, _ = stack.azure(await stack.session())
    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
    [gallery] = face.detect(samples.astronaut_jpeg(), **DETECT)

    codes = refused_azure(
        stack, lambda: face.find_similar(face_id=probe.face_id, face_ids=[gallery.face_id])
    )
    assert codes == {"warrant_out_of_scope"}


async def test_find_similar_over_face_ids_names_no_collection_even_for_any_collection(
    stack: Stack,
) -> None:
    await stack.warrant("W-1", collections=())
    face, _ = stack.azure(await stack.session())
    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
    [gallery] = face.detect(samples.astronaut_jpeg(), **DETECT)

    with pytest.raises(HttpResponseError) as raised:
        face.find_similar(face_id=probe.face_id, face_ids=[gallery.face_id])
    assert raised.value.response is not None
    assert reasons_of(raised.value.response.headers) == {"warrant_out_of_scope"}
    assert "names no collection" in str(raised.value)


# -- detour 8: planting and destroying reference data ----------------------------------------


async def test_an_officer_cannot_plant_or_destroy_rekognition_reference_data(
    stack: Stack,
) -> None:
    client = stack.rekognition(
        await stack.session(legal_basis=LegalBasis.CONSENT, offense="burglary")
    )
    face = {"Bytes": samples.lfw_face_jpeg(samples.detectable_lfw_indices()[5])}

    for call in (
        lambda: client.index_faces(CollectionId="mugshots", Image=face),
        lambda: client.delete_collection(CollectionId="mugshots"),
        lambda: client.delete_faces(CollectionId="mugshots", FaceIds=["0" * 32]),
        lambda: client.create_collection(CollectionId="planted"),
    ):
        assert "reference_data_change_refused" in refused_boto(stack, call)
    # Reading stays open to officers.
    assert "mugshots" in client.list_collections()["CollectionIds"]


async def test_a_custodian_enrols_a_booking_photo_series(unlimited_stack: Stack) -> None:
    stack = unlimited_stack
    client = stack.rekognition(await stack.session("custodian-1", roles=CUSTODIAN))
    collection = f"booking-{datetime.now(UTC).timestamp():.0f}"
    client.create_collection(CollectionId=collection)
    indices = samples.detectable_lfw_indices()[5:8]
    for index in indices:
        added = client.index_faces(
            CollectionId=collection,
            Image={"Bytes": samples.lfw_face_jpeg(index)},
            ExternalImageId=f"booking-{index}",
        )
        assert len(added["FaceRecords"]) == 1
    assert len(client.list_faces(CollectionId=collection)["Faces"]) == len(indices)
    client.delete_collection(CollectionId=collection)


async def test_an_officer_cannot_change_azure_persons_faces_or_groups(
    stack: Stack, azure_mugshots: dict[str, str]
) -> None:
    _, admin = stack.azure(await stack.session(legal_basis=LegalBasis.CONSENT, offense="burglary"))
    person = azure_mugshots["astronaut"]
    image = samples.lfw_face_jpeg(samples.detectable_lfw_indices()[5])

    for call in (
        lambda: admin.large_person_group.create("planted", name="Planted"),
        lambda: admin.large_person_group.create_person("mugshots", name="planted"),
        lambda: admin.large_person_group.add_face(
            "mugshots", person, image, detection_model=FaceDetectionModel.DETECTION03
        ),
        lambda: admin.large_person_group.delete_person("mugshots", person),
        lambda: admin.large_person_group.delete("mugshots"),
    ):
        assert "reference_data_change_refused" in refused_azure(stack, call)
    assert admin.large_person_group.get_persons("mugshots")


async def test_an_officer_cannot_change_compreface_examples_or_subjects(stack: Stack) -> None:
    credentials = await stack.session(legal_basis=LegalBasis.CONSENT, offense="burglary")
    image = samples.lfw_face_jpeg(samples.detectable_lfw_indices()[5])

    for method, path, kwargs in (
        ("POST", "/recognition/faces?subject=planted", {"files": {"file": ("f.jpg", image)}}),
        ("DELETE", "/recognition/faces?subject=astronaut", {}),
        ("DELETE", "/recognition/faces/some-image-id", {}),
        ("POST", "/recognition/subjects", {"json": {"subject": "planted"}}),
        ("PUT", "/recognition/subjects/astronaut", {"json": {"subject": "someone"}}),
        ("DELETE", "/recognition/subjects/astronaut", {}),
        ("DELETE", "/recognition/subjects", {}),
    ):
        before = vendor_calls(stack.vendor)
        response = compreface(stack, credentials, method, path, **kwargs)
        assert response.status_code == 403, (path, response.text)
        assert "reference_data_change_refused" in reasons_of(response.headers), path
        assert vendor_calls(stack.vendor) == before
    listed = compreface(stack, credentials, "GET", "/recognition/subjects")
    assert "astronaut" in listed.json()["subjects"]


# -- detour 10: one person is both sides ------------------------------------------------------


async def test_a_principal_cannot_be_admin_and_officer(stack: Stack) -> None:
    admin = await stack.principal("admin-1", Role.ADMIN)
    created = api(
        stack,
        "POST",
        "/facegate/v1/principals",
        admin,
        json={"id": "both-1", "name": "Both", "agency": "Metro PD", "roles": ["admin", "officer"]},
    )
    assert created.status_code == 400, created.text
    assert "admin and officer" in created.json()["error"]["message"]


async def _legacy_admin_officer(stack: Stack, principal_id: str) -> IssuedCredentials:
    """A principal enrolled before the rule with both roles, with a warrant it registered and
    a session on it: the rows as an older facegate wrote them."""
    await stack.warrant("W-SELF", created_by=principal_id)
    master_key = MasterKey.load_or_create(stack.settings.master_key_file)
    engine = create_engine(stack.settings.database_url)
    now = datetime.now(UTC)
    try:
        async with session_factory(engine)() as db, db.begin():
            db.add(
                PrincipalRow(
                    id=principal_id,
                    name="Both Sides",
                    agency="Metro PD",
                    roles=["admin", "officer"],
                    created_at=now,
                )
            )
            await db.flush()
            db.add(
                CaseSessionRow(
                    access_key_id="FGAKLEGACYBOTHSIDES1",
                    principal_id=principal_id,
                    purpose="criminal_investigation",
                    case_number=CASE,
                    offense="homicide",
                    legal_basis="warrant",
                    warrant_id="W-SELF",
                    created_at=now,
                    expires_at=now + timedelta(hours=1),
                )
            )
    finally:
        await engine.dispose()
    return IssuedCredentials(
        access_key_id="FGAKLEGACYBOTHSIDES1",
        secret_access_key=master_key.session_secret("FGAKLEGACYBOTHSIDES1"),
        expires_at=now + timedelta(hours=1),
        principal_id=principal_id,
        context=CaseContext(),
    )


async def test_a_self_issued_warrant_and_a_two_sided_principal_are_refused(stack: Stack) -> None:
    credentials = await _legacy_admin_officer(stack, "both-2")
    client = stack.rekognition(credentials)
    probe = {"Bytes": samples.astronaut_variant_jpeg()}

    codes = refused_boto(
        stack, lambda: client.search_faces_by_image(CollectionId="mugshots", Image=probe)
    )
    assert {"warrant_self_issued", "admin_and_officer"} <= codes


async def test_no_key_is_issued_to_a_two_sided_principal(stack: Stack) -> None:
    await _legacy_admin_officer(stack, "both-3")
    admin = await stack.principal("admin-3", Role.ADMIN)
    issued = api(stack, "POST", "/facegate/v1/principals/both-3/keys", admin)
    assert issued.status_code == 400, issued.text
    assert "admin and officer" in issued.json()["error"]["message"]


async def test_an_admin_registered_warrant_cannot_be_opened_by_its_registrar(
    stack: Stack,
) -> None:
    """The API binds a warrant to the registering admin's agency and records who it was."""
    admin = await stack.principal("admin-4", Role.ADMIN)
    await stack.principal("officer-1", Role.OFFICER)
    now = datetime.now(UTC)
    registered = api(
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
            "officers": ["officer-1"],
            "valid_from": (now - timedelta(hours=1)).isoformat(),
            "valid_until": (now + timedelta(days=1)).isoformat(),
        },
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["agency"] == "Metro PD"
    assert registered.json()["created_by"] == "admin-4"
    assert registered.json()["officers"] == ["officer-1"]
    opened = api(stack, "POST", "/facegate/v1/sessions", admin, json=session_body("W-API"))
    assert opened.status_code == 403


# -- administration that can stop someone (issue 11) ------------------------------------------


async def test_a_revoked_api_key_is_refused_at_once_and_recorded(stack: Stack) -> None:
    admin = await stack.principal("admin-5", Role.ADMIN)
    officer = await stack.principal("officer-5", Role.OFFICER)
    key_id = officer.removeprefix("fgk_").split(".")[0]
    opened = api(stack, "POST", "/facegate/v1/sessions", officer, json=session_body(None))
    assert opened.status_code == 201, opened.text
    client = stack.rekognition(IssuedCredentials.model_validate(opened.json()))
    client.list_collections()

    revoked = api(stack, "POST", f"/facegate/v1/principals/officer-5/keys/{key_id}/revoke", admin)
    assert revoked.status_code == 200, revoked.text
    # The sessions the key opened end with it.
    assert revoked.json()["revoked_sessions"] == [opened.json()["access_key_id"]]
    with pytest.raises(ClientError) as raised:
        client.list_collections()
    assert raised.value.response["Error"]["Code"] == "ExpiredTokenException"

    refused = api(stack, "POST", "/facegate/v1/sessions", officer, json=session_body(None))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "expired_credentials"
    [record] = [r for r in await admin_records(stack) if r["detail"]["action"] == "api_key.revoke"]
    assert record["officer"] == "admin-5"
    assert record["detail"]["principal_id"] == "officer-5"
    assert record["detail"]["api_key_id"] == key_id
    assert record["detail"]["revoked_sessions"] == [opened.json()["access_key_id"]]
    # The same fields as the CLI records (tests/cli/test_cli_admin.py), one service for both.
    [opening] = [r for r in await admin_records(stack) if r["detail"]["action"] == "session.open"]
    assert set(opening["detail"]) == SESSION_OPEN_FIELDS


async def test_a_disabled_principal_is_refused_at_once_key_and_sessions(stack: Stack) -> None:
    admin = await stack.principal("admin-6", Role.ADMIN)
    officer = await stack.principal("officer-6", Role.OFFICER)
    opened = api(stack, "POST", "/facegate/v1/sessions", officer, json=session_body(None))
    assert opened.status_code == 201, opened.text
    client = stack.rekognition(IssuedCredentials.model_validate(opened.json()))
    client.list_collections()

    disabled = api(
        stack,
        "POST",
        "/facegate/v1/principals/officer-6/disable",
        admin,
        json={"reason": "dismissed"},
    )
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["revoked_sessions"] == [opened.json()["access_key_id"]]

    with pytest.raises(ClientError):
        client.list_collections()
    refused = api(stack, "POST", "/facegate/v1/sessions", officer, json=session_body(None))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "expired_credentials"
    listed = api(stack, "GET", "/facegate/v1/principals", admin).json()
    assert "officer-6" not in [p["id"] for p in listed]
    [record] = [
        r for r in await admin_records(stack) if r["detail"]["action"] == "principal.disable"
    ]
    assert record["officer"] == "admin-6"
    assert record["detail"]["principal_id"] == "officer-6"
    assert record["detail"]["reason"] == "dismissed"
    assert record["detail"]["revoked_sessions"] == [opened.json()["access_key_id"]]
    assert len(record["detail"]["revoked_api_keys"]) == 1


async def test_only_an_admin_disables_or_revokes(stack: Stack) -> None:
    officer = await stack.principal("officer-7", Role.OFFICER)
    key_id = officer.removeprefix("fgk_").split(".")[0]
    for path, body in (
        ("/facegate/v1/principals/officer-7/disable", {"reason": "x"}),
        (f"/facegate/v1/principals/officer-7/keys/{key_id}/revoke", None),
    ):
        response = api(stack, "POST", path, officer, json=body)
        assert response.status_code == 403, response.text
