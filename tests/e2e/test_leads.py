"""Issue 13: a match is only a lead until two people confirm it.

Through the vendors' own SDKs (boto3, the Azure and CompreFace SDKs) against a real gateway
and reference vendor: an identification yields leads (x-facegate-leads), reviewers verify
them through the management API, every refusal is answered and on record, an action needs a
verified lead, and an exigent search whose authorisation is refused voids its leads and
blocks the case's next exigent search. The overdue clock is driven by the services' `now`.
"""

from __future__ import annotations

import io
import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

import httpx
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from gateway.admin import Actor
from gateway.audit.records import AuditRecord
from gateway.auth.api_keys import issue_api_key
from gateway.auth.principals import Role, create_principal
from gateway.case import LegalBasis
from gateway.db import create_engine, session_factory
from gateway.leads import reads, service
from gateway.policy.engine import PolicyService
from refvendor import samples
from tests.e2e.conftest import CASE, Stack

CURRENT: Final = "current"  # enrol()'s default: training valid for a year from today


def next_year() -> date:
    """A training date a year ahead, read when a test runs (never at collection)."""
    return date.today() + timedelta(days=365)


def api(stack: Stack, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.request(method, stack.url + path, headers=headers, timeout=30, **kwargs)


async def enrol(
    stack: Stack,
    principal_id: str,
    *roles: Role,
    agency: str = "Metro PD",
    trained_until: date | Literal["current"] | None = CURRENT,
) -> str:
    until = next_year() if trained_until == CURRENT else trained_until
    engine = create_engine(stack.settings.database_url)
    try:
        async with session_factory(engine)() as db, db.begin():
            now = datetime.now(UTC)
            await create_principal(
                db,
                principal_id=principal_id,
                name=principal_id,
                agency=agency,
                roles=roles,
                now=now,
                trained_until=until,
            )
            return await issue_api_key(db, principal_id=principal_id, now=now)
    finally:
        await engine.dispose()


def review(stack: Stack, key: str, lead: str, verdict: str = "confirmed") -> httpx.Response:
    body = {"verdict": verdict, "rationale": "compared the probe with the booking photo"}
    return api(stack, "POST", f"/facegate/v1/leads/{lead}/reviews", key, json=body)


def act(stack: Stack, key: str, lead: str, kind: str) -> httpx.Response:
    return api(stack, "POST", f"/facegate/v1/leads/{lead}/actions", key, json={"kind": kind})


def refused(response: httpx.Response) -> set[str]:
    assert response.status_code == 403, response.text
    return set(response.json()["error"]["reasons"])


def records(stack: Stack, auditor: str, **filters: str) -> list[dict[str, Any]]:
    response = api(
        stack, "GET", "/facegate/v1/audit/records", auditor, params=filters | {"limit": 1000}
    )
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


_SEARCHES = itertools.count()


def distinct_probe() -> bytes:
    """The same face, encoded anew for each search: two identical SigV4 requests within one
    second carry one signature, and facegate accepts a signature once (auth/replay.py)."""
    image = Image.open(io.BytesIO(samples.astronaut_variant_jpeg()))
    encoded = io.BytesIO()
    image.save(encoded, "JPEG", quality=95 - next(_SEARCHES) % 20)
    return encoded.getvalue()


def boto_search(stack: Stack, client: Any) -> tuple[dict[str, Any], list[str]]:
    answer = client.search_faces_by_image(
        CollectionId="mugshots", Image={"Bytes": distinct_probe()}
    )
    header = answer["ResponseMetadata"]["HTTPHeaders"]["x-facegate-leads"]
    return answer, [lead for lead in header.split(",") if lead]


async def test_a_search_yields_leads_that_two_distinct_reviewers_verify(stack: Stack) -> None:
    await stack.warrant("W-1")
    # The searching officer is a trained reviewer too: still not for its own search.
    await enrol(stack, "officer-1", Role.OFFICER, Role.REVIEWER)
    officer_key = await enrol(stack, "officer-2", Role.OFFICER)
    credentials = await stack.session("officer-1")
    officer_1 = await api_key_of(stack, "officer-1")
    examiner_1 = await enrol(stack, "examiner-1", Role.REVIEWER)
    examiner_2 = await enrol(stack, "examiner-2", Role.REVIEWER)
    examiner_3 = await enrol(stack, "examiner-3", Role.REVIEWER)
    lapsed = await enrol(stack, "examiner-old", Role.REVIEWER, trained_until=date(2020, 1, 1))
    elsewhere = await enrol(stack, "examiner-far", Role.REVIEWER, agency="County SO")
    auditor = await enrol(stack, "auditor-1", Role.AUDITOR)

    answer, leads = boto_search(stack, stack.rekognition(credentials))

    # The vendor's answer in its own shape, and one lead per match, best first.
    assert [m["Face"]["ExternalImageId"] for m in answer["FaceMatches"]] == ["astronaut"]
    assert len(leads) == 1
    [lead] = leads
    queue = api(stack, "GET", "/facegate/v1/leads", examiner_1, params={"status": "pending"})
    [listed] = queue.json()["leads"]
    assert listed["id"] == lead
    assert listed["candidate_id"] == answer["FaceMatches"][0]["Face"]["FaceId"]
    assert (listed["officer"], listed["case_number"], listed["warrant_id"]) == (
        "officer-1",
        CASE,
        "W-1",
    )

    # Before verification, acting on it is refused; ruling someone out is not.
    assert refused(act(stack, officer_1, lead, "arrest_warrant_requested")) == {"lead_not_verified"}
    assert act(stack, officer_1, lead, "excluded").status_code == 200

    assert refused(review(stack, officer_1, lead)) == {"reviewer_is_searcher"}
    assert refused(review(stack, officer_key, lead)) == {"reviewer_not_qualified"}
    assert refused(review(stack, lapsed, lead)) == {"reviewer_training_lapsed"}
    assert refused(review(stack, elsewhere, lead)) == {"lead_other_agency"}

    first = review(stack, examiner_1, lead)
    assert first.status_code == 200 and first.json()["status"] == "pending"
    assert refused(review(stack, examiner_1, lead)) == {"reviewer_already_reviewed"}
    second = review(stack, examiner_2, lead)
    assert second.status_code == 200 and second.json()["status"] == "verified"
    assert refused(review(stack, examiner_3, lead, "rejected")) == {"lead_final"}

    assert act(stack, officer_1, lead, "arrest_warrant_requested").status_code == 200

    # Each step is in the one log, with the reviewer's identity and the case.
    [lead_record] = records(stack, auditor, event_type="lead")
    assert lead_record["detail"]["lead_id"] == lead
    assert "candidate_id" not in lead_record["detail"]
    assert lead_record["detail"]["candidate_digest"] != listed["candidate_id"]
    [outcome] = [
        r for r in records(stack, auditor, event_type="outcome") if r["detail"].get("leads")
    ]
    assert outcome["detail"] == outcome["detail"] | {"leads": [lead], "negative_result": False}
    reviews = records(stack, auditor, event_type="lead_review")
    assert [(r["officer"], r["decision"], r["reason_codes"]) for r in reviews] == [
        ("officer-1", "deny", ["reviewer_is_searcher"]),
        ("officer-2", "deny", ["reviewer_not_qualified"]),
        ("examiner-old", "deny", ["reviewer_training_lapsed"]),
        ("examiner-far", "deny", ["lead_other_agency"]),
        ("examiner-1", "allow", []),
        ("examiner-1", "deny", ["reviewer_already_reviewed"]),
        ("examiner-2", "allow", []),
        ("examiner-3", "deny", ["lead_final"]),
    ]
    assert all(r["case_number"] == CASE for r in reviews)
    actions = records(stack, auditor, event_type="lead_action")
    assert [(r["detail"]["kind"], r["decision"]) for r in actions] == [
        ("arrest_warrant_requested", "deny"),
        ("excluded", "allow"),
        ("arrest_warrant_requested", "allow"),
    ]

    outcomes = api(stack, "GET", "/facegate/v1/leads/outcomes", auditor).json()
    assert [(o["vendor"], o["confirmed"]) for o in outcomes] == [("rekognition", 1)]


async def api_key_of(stack: Stack, principal_id: str) -> str:
    engine = create_engine(stack.settings.database_url)
    try:
        async with session_factory(engine)() as db, db.begin():
            return await issue_api_key(db, principal_id=principal_id, now=datetime.now(UTC))
    finally:
        await engine.dispose()


async def test_azure_and_compreface_identifications_yield_leads(stack: Stack) -> None:
    await stack.warrant("W-1")
    examiner = await enrol(stack, "examiner-1", Role.REVIEWER)
    credentials = await stack.session("officer-1")
    face, _ = stack.azure(credentials)
    from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel

    [probe] = face.detect(
        samples.astronaut_variant_jpeg(),
        detection_model=FaceDetectionModel.DETECTION03,
        recognition_model=FaceRecognitionModel.RECOGNITION04,
        return_face_id=True,
    )
    headers: dict[str, str] = {}
    [result] = face.identify_from_large_person_group(
        face_ids=[probe.face_id],
        large_person_group_id="mugshots",
        raw_response_hook=lambda r: headers.update(r.http_response.headers),
    )
    azure_leads = headers["x-facegate-leads"].split(",")
    assert len(azure_leads) == len(result.candidates) == 1

    compreface = stack.compreface(credentials).recognition
    answer = compreface.recognize(samples.astronaut_variant_jpeg())
    assert answer["result"][0]["subjects"][0]["subject"] == "astronaut"

    listed = api(stack, "GET", "/facegate/v1/leads", examiner, params={"officer": "officer-1"})
    by_vendor = {(lead["vendor"], lead["candidate_id"]) for lead in listed.json()["leads"]}
    assert ("azure", result.candidates[0].person_id) in by_vendor
    assert ("compreface", "astronaut") in by_vendor


async def test_a_search_with_no_candidate_is_a_negative_result(stack: Stack) -> None:
    await stack.warrant("W-1")
    auditor = await enrol(stack, "auditor-1", Role.AUDITOR)
    client = stack.rekognition(await stack.session("officer-1"))
    answer = client.search_faces_by_image(
        CollectionId="mugshots",
        # A face not in the collection (its first four detectable LFW faces are).
        Image={"Bytes": samples.lfw_face_jpeg(samples.detectable_lfw_indices()[6])},
    )
    matches = answer["FaceMatches"]
    header = answer["ResponseMetadata"]["HTTPHeaders"].get("x-facegate-leads")
    outcome = [r for r in records(stack, auditor, event_type="outcome") if "leads" in r["detail"]]
    if matches:
        pytest.skip("the reference vendor matched this face; no negative result to see")
    assert header == ""
    assert outcome[-1]["detail"]["negative_result"] is True
    assert outcome[-1]["detail"]["leads"] == []


async def test_a_refused_exigent_authorisation_voids_its_leads_and_blocks_the_next(
    stack: Stack,
) -> None:
    credentials = await stack.session(legal_basis=LegalBasis.EXIGENT, warrant_id=None)
    admin = await enrol(stack, "admin-1", Role.ADMIN)
    auditor = await enrol(stack, "auditor-1", Role.AUDITOR)
    officer = await api_key_of(stack, "officer-1")
    client = stack.rekognition(credentials)

    _, [lead] = boto_search(stack, client)
    view = api(stack, "GET", f"/facegate/v1/leads/{lead}", officer).json()
    assert view["status"] == "awaiting_authorisation"
    assert view["authorisation"]["basis"] == "exigent"
    pending = api(
        stack, "GET", "/facegate/v1/authorisations", auditor, params={"status": "pending"}
    )
    [authorisation] = pending.json()
    assert authorisation["id"] == view["authorisation"]["id"]
    assert refused(act(stack, officer, lead, "contacted")) == {
        "lead_not_verified",
        "authorisation_pending",
    }

    decision = api(
        stack,
        "POST",
        f"/facegate/v1/authorisations/{authorisation['id']}/decision",
        admin,
        json={"granted": False, "authority": "Judge Doe", "reference": "EX-2026-7"},
    )
    assert decision.status_code == 200, decision.text
    assert decision.json()["voided_leads"] == [lead]
    assert api(stack, "GET", f"/facegate/v1/leads/{lead}", officer).json()["status"] == "void"
    assert refused(act(stack, officer, lead, "arrest_warrant_requested")) == {"lead_void"}

    with pytest.raises(ClientError) as raised:
        boto_search(stack, client)
    reasons = raised.value.response["ResponseMetadata"]["HTTPHeaders"]["x-facegate-reasons"]
    assert reasons == "authorisation_refused"

    listed = api(stack, "GET", "/facegate/v1/authorisations", auditor, params={"status": "refused"})
    assert [a["id"] for a in listed.json()] == [authorisation["id"]]
    states = [r["detail"]["state"] for r in records(stack, auditor, event_type="authorisation")]
    assert states == ["opened", "refused"]
    [refusal] = [
        r
        for r in records(stack, auditor, event_type="authorisation")
        if r["detail"]["state"] == "refused"
    ]
    assert refusal["detail"]["voided_leads"] == [lead]
    assert refusal["case_number"] == CASE


async def test_an_authorisation_clock_runs_out(stack: Stack) -> None:
    credentials = await stack.session(legal_basis=LegalBasis.EXIGENT, warrant_id=None)
    await enrol(stack, "examiner-1", Role.REVIEWER)
    await enrol(stack, "examiner-2", Role.REVIEWER)
    _, [lead] = boto_search(stack, stack.rekognition(credentials))

    engine = create_engine(stack.settings.database_url)
    policy = await PolicyService.open(stack.settings)
    try:
        sessions = session_factory(engine)
        async with sessions() as db, db.begin():
            [opened] = await reads.list_authorisations(db, agency=None, now=datetime.now(UTC))
        before, after = opened.deadline - timedelta(seconds=1), opened.deadline
        assert opened.deadline - opened.opened_at == timedelta(hours=48)  # post-remote clock

        async def record(_: Any) -> None:
            return None

        async with sessions() as db, db.begin():
            for examiner in ("examiner-1", "examiner-2"):
                await service.review_lead(
                    db=db,
                    decide=policy.decide,
                    lead_id=lead,
                    actor=Actor(officer=examiner),
                    verdict="confirmed",
                    rationale="same person",
                    now=before,
                    record=record,
                )
            assert (
                await reads.list_authorisations(db, agency=None, now=before, status="overdue") == []
            )
            [overdue] = await reads.list_authorisations(
                db, agency=None, now=after, status="overdue"
            )
            assert overdue.id == opened.id
            kept: list[AuditRecord] = []

            async def keep(entry: AuditRecord) -> None:
                kept.append(entry)

            assert await service.record_overdue(db=db, now=before, record=keep) == []
            assert await service.record_overdue(db=db, now=after, record=keep) == [opened.id]
            assert await service.record_overdue(db=db, now=after, record=keep) == []  # once
            [entry] = kept
            assert entry.detail["state"] == "overdue" and entry.case_number == CASE
            early = await service.act_on_lead(
                db=db, decide=policy.decide, lead_id=lead, actor=Actor(officer="officer-1"),
                kind="contacted", note="", now=before, record=record,
            )  # fmt: skip
            late = await service.act_on_lead(
                db=db, decide=policy.decide, lead_id=lead, actor=Actor(officer="officer-1"),
                kind="contacted", note="", now=after, record=record,
            )  # fmt: skip
            await db.rollback()
        assert (early.reasons, late.reasons) == (
            ["authorisation_pending"],
            ["authorisation_overdue"],
        )
    finally:
        await policy.close()
        await engine.dispose()


async def test_a_reviewer_whose_training_is_renewed_may_review(stack: Stack) -> None:
    await stack.warrant("W-1")
    admin = await enrol(stack, "admin-1", Role.ADMIN)
    lapsed = await enrol(stack, "examiner-1", Role.REVIEWER, trained_until=None)
    _, [lead] = boto_search(stack, stack.rekognition(await stack.session("officer-1")))
    assert refused(review(stack, lapsed, lead)) == {"reviewer_training_lapsed"}

    renewed = {"trained_until": next_year().isoformat()}
    path = "/facegate/v1/principals/examiner-1/training"
    assert api(stack, "POST", path, lapsed, json=renewed).status_code == 403  # not an admin
    assert api(stack, "POST", path, admin, json=renewed).status_code == 200
    assert review(stack, lapsed, lead).status_code == 200
