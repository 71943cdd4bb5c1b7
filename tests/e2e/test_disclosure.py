"""A disclosure packet of a case worked through the gateway with boto3: searches that found
someone, found nobody and were refused, with the lead records of the shared contract
appended beside them; built by `facegate disclose` and by the API, verified offline by
`facegate audit verify-packet` with no database and no settings."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from gateway.audit.checkpoint import Verifier
from gateway.audit.packet import HTML_FILE, PACKET_FILE
from gateway.audit.packet_verifier import verify_packet
from gateway.audit.records import AuditRecord, EventType
from gateway.auth.principals import Role
from gateway.auth.sessions import IssuedCredentials
from gateway.cli.runtime import log_of
from gateway.db import create_engine, session_factory
from refvendor import samples
from tests.cli.test_cli import FACEGATE, facegate
from tests.e2e.conftest import CASE, Stack
from tests.e2e.test_management_api import api

OTHER_CASE = "2026-ROB-0007"


async def run_offline(*args: str, cwd: Path) -> tuple[int, str]:
    """`facegate ...` with no FACEGATE_ setting at all: no database it could reach."""
    import asyncio

    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
    process = await asyncio.create_subprocess_exec(
        FACEGATE,
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def open_session(stack: Stack, officer_key: str, case_number: str) -> IssuedCredentials:
    """A case session opened through the management API, so that its opening is recorded."""
    opened = api(
        stack,
        "POST",
        "/facegate/v1/sessions",
        officer_key,
        json={
            "purpose": "criminal_investigation",
            "case_number": case_number,
            "offense": "homicide",
            "legal_basis": "warrant",
            "warrant_id": "W-1",
        },
    )
    assert opened.status_code == 201, opened.text
    return IssuedCredentials.model_validate(opened.json())


async def append_lead_records(stack: Stack, search_request_id: str) -> None:
    """The lead, review, action and authorisation records of the shared contract, as the
    leads service will append them (it does not exist on this branch)."""
    engine = create_engine(stack.settings.database_url)
    sessions = session_factory(engine)
    log = log_of(sessions, stack.settings)
    case = {
        "agency": "Metro PD",
        "case_number": CASE,
        "vendor": "rekognition",
        "collection": "mugshots",
        "offense": "homicide",
        "legal_basis": "warrant",
    }

    def record(event_type: EventType, minutes: int, **fields: Any) -> AuditRecord:
        return AuditRecord(
            time=datetime.now(UTC) + timedelta(minutes=minutes),
            request_id=f"{event_type.value}-{minutes}",
            event_type=event_type,
            **(case | fields),
        )

    lead = {"lead_id": "L-1", "search_request_id": search_request_id, "rank": 1}
    try:
        for entry in (
            record(
                EventType.LEAD,
                0,
                officer="officer-1",
                top_similarity=99.4,
                match_count=1,
                detail=lead | {"similarity": 99.4, "candidate_digest": "c" * 64},
            ),
            record(
                EventType.LEAD_REVIEW,
                1,
                officer="reviewer-1",
                decision="allow",
                detail={"lead_id": "L-1", "verdict": "confirmed", "rationale": "ear shape"},
            ),
            record(
                EventType.LEAD_REVIEW,
                2,
                officer="officer-1",
                decision="deny",
                reason_codes=["reviewer_is_searcher"],
                detail={"lead_id": "L-1", "verdict": "confirmed", "rationale": "mine"},
            ),
            record(
                EventType.LEAD_ACTION,
                3,
                officer="officer-1",
                decision="deny",
                reason_codes=["lead_not_verified"],
                detail={"lead_id": "L-1", "kind": "arrest_warrant_requested", "note": ""},
            ),
            record(
                EventType.AUTHORISATION,
                4,
                officer="officer-1",
                detail={"authorisation_id": "A-1", "state": "opened", "basis": "exigent"},
            ),
        ):
            await log.append(entry)
    finally:
        await log.aclose()
        await engine.dispose()


@pytest.fixture
async def worked_case(unlimited_stack: Stack) -> Stack:
    """A case worked through the gateway: a match, a search that found nobody, a refused
    request, leads on the match; and a search in another case."""
    stack = unlimited_stack
    await stack.warrant("W-1")
    await stack.warrant("W-2", case_number=OTHER_CASE)
    officer = await stack.principal("officer-1", Role.OFFICER)
    client = stack.rekognition(await open_session(stack, officer, CASE))

    found = client.search_faces_by_image(
        CollectionId="mugshots",
        Image={"Bytes": samples.astronaut_variant_jpeg()},
        FaceMatchThreshold=90,
    )
    assert found["FaceMatches"]
    nobody = client.search_faces_by_image(
        CollectionId="mugshots",
        Image={"Bytes": samples.lfw_face_jpeg(samples.detectable_lfw_indices()[6])},
        FaceMatchThreshold=95,
    )
    assert nobody["FaceMatches"] == []
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()}, Attributes=["ALL"])

    other = stack.rekognition(
        await stack.session("officer-2", case_number=OTHER_CASE, warrant_id="W-2")
    )
    other.search_faces_by_image(
        CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
    )
    search_id = found["ResponseMetadata"]["RequestId"]
    await append_lead_records(stack, search_id)
    return stack


def entries_of(directory: Path) -> list[dict[str, Any]]:
    packet = json.loads((directory / PACKET_FILE).read_text())
    return [item["entry"] for item in packet["entries"]]


async def test_disclose_then_verify_offline_and_tampering_fails(
    worked_case: Stack, tmp_path: Path
) -> None:
    stack = worked_case
    out = tmp_path / "packet"
    code, output = await facegate(
        stack.settings.database_url, tmp_path, "disclose", "--case", CASE, "--out", str(out)
    )
    assert code == 0, output

    entries = entries_of(out)
    kinds = [e["event_type"] for e in entries]
    for kind in ("decision", "outcome", "lead", "lead_review", "lead_action", "authorisation"):
        assert kind in kinds, kinds
    assert all(
        e.get("case_number") == CASE or e["detail"].get("case_number") == CASE for e in entries
    )
    opened = [e for e in entries if e["detail"].get("action") == "session.open"]
    assert len(opened) == 1
    outcomes = [e for e in entries if e["event_type"] == "outcome" and e.get("operation")]
    assert sorted(e["match_count"] for e in outcomes if e["operation"] == "SearchFacesByImage") == [
        0,
        1,
    ]
    assert any(e["decision"] == "deny" for e in entries if e["event_type"] == "decision")
    assert entries[-1]["detail"]["action"] == "case.disclose"  # the disclosure, recorded

    # Only digests: neither image's bytes nor their base64 are anywhere in the packet.
    files = b"".join(path.read_bytes() for path in out.iterdir())
    for image in (samples.astronaut_variant_jpeg(), samples.astronaut_jpeg()):
        assert base64.b64encode(image)[:64] not in files
        assert image[:64] not in files
    digests = [d for e in entries for d in e.get("probe_digests", [])]
    assert digests and all(re.fullmatch(r"sha256:[0-9a-f]{64}", d) for d in digests)

    # A person can read it: one page, nothing fetched.
    html = (out / HTML_FILE).read_text()
    assert CASE in html and "negative result" in html and "Lead L-1" in html
    assert "verify-packet" in html and "<script" not in html
    assert "src=" not in html and "http://" not in html and "https://" not in html

    # Offline: a fresh directory, no FACEGATE_ setting, the key from the public route.
    key = tmp_path / "log.pub"
    key.write_text(api(stack, "GET", "/facegate/v1/audit/public-key", None).text)
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    code, output = await run_offline(
        "audit", "verify-packet", str(out), "--public-key", str(key), cwd=nowhere
    )
    assert code == 0, output
    assert output.count("ok      seq ") == len(entries)
    assert list(nowhere.iterdir()) == []  # nothing created: no database was opened

    # One character of one field of one entry (the search that found nobody).
    packet = json.loads((out / PACKET_FILE).read_text())
    negative = next(
        item
        for item in packet["entries"]
        if item["entry"]["event_type"] == "outcome" and item["entry"].get("match_count") == 0
    )
    negative["entry"]["match_count"] = 1
    (out / PACKET_FILE).write_text(json.dumps(packet))
    code, output = await run_offline(
        "audit", "verify-packet", str(out), "--public-key", str(key), cwd=nowhere
    )
    assert code == 1, output
    assert f"FAILED  seq {negative['seq']} (outcome)" in output and "altered" in output
    assert "Traceback" not in output


async def test_the_api_serves_the_packet_as_a_zip_and_the_timeline_to_auditors(
    worked_case: Stack, tmp_path: Path
) -> None:
    stack = worked_case
    auditor = await stack.principal("auditor-1", Role.AUDITOR)
    officer = await stack.principal("officer-3", Role.OFFICER)
    verifier = Verifier.parse(api(stack, "GET", "/facegate/v1/audit/public-key", None).text)

    response = api(stack, "GET", f"/facegate/v1/cases/{CASE}/disclosure", auditor)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path / "zip")
    (folder,) = (tmp_path / "zip").iterdir()
    report = verify_packet(folder, verifier)
    assert report.ok, report
    disclosure = entries_of(folder)[-1]
    assert disclosure["officer"] == "auditor-1"
    assert disclosure["detail"] | {"case_number": CASE} == disclosure["detail"]
    # The leaf is the RFC 8785 form of the entry: anyone's JCS library gives the same bytes.
    assert rfc8785.dumps(disclosure).startswith(b'{"agency":')

    pages, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = api(stack, "GET", f"/facegate/v1/cases/{CASE}/timeline", auditor, params=params)
        assert page.status_code == 200, page.text
        pages.append(page.json()["entries"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    timeline = [e for page in pages for e in page]
    assert len(pages) > 1
    times = [(e["time"], e["seq"]) for e in timeline]
    assert times == sorted(times)
    assert {e["seq"] for e in timeline} >= {e["seq"] for e in entries_of(folder)}
    assert all(OTHER_CASE not in json.dumps(e) for e in timeline)

    # Auditors only; and each read is on the log.
    assert api(stack, "GET", f"/facegate/v1/cases/{CASE}/disclosure", officer).status_code == 403
    assert api(stack, "GET", f"/facegate/v1/cases/{CASE}/timeline", officer).status_code == 403
    reads = api(
        stack, "GET", "/facegate/v1/audit/records", auditor, params={"event_type": "audit_read"}
    ).json()["entries"]
    actions = {(r["detail"]["action"], r["detail"].get("case_number")) for r in reads}
    assert {("case.disclose", CASE), ("case.timeline", CASE)} <= actions
