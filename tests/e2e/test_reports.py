"""Reports from a log built by real requests: boto3 searches through the gateway to the
reference vendor, warrants registered through the management API, plus the leads
contract's records (issue 13) appended to the same log. Every template's figures are
checked against counts made here, differently: from the records the audit API lists."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.audit.checkpoint import Signer
from gateway.audit.fsck import LogChecker
from gateway.auth.principals import Role
from gateway.cli.runtime import log_of
from gateway.db import create_engine, session_factory
from gateway.reports.verify import verify_report
from refvendor import samples
from tests.e2e.conftest import CASE, Stack
from tests.e2e.test_leads import act as act_on_lead
from tests.e2e.test_leads import api_key_of, enrol
from tests.e2e.test_leads import review as review_lead
from tests.reports.support import authorisation


def api(stack: Stack, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} | kwargs.pop("headers", {})
    return httpx.request(method, stack.url + path, headers=headers, timeout=60, **kwargs)


def records(stack: Stack, auditor: str, event_type: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"event_type": event_type, "limit": 1000} | ({"cursor": cursor} if cursor else {})
        page = api(stack, "GET", "/facegate/v1/audit/records", auditor, params=params).json()
        found += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def figures(report: dict[str, Any]) -> dict[str, Any]:
    return {f["definition"]["id"]: f["value"] for f in report["figures"]}


def groups(value: list[dict[str, Any]]) -> dict[Any, Any]:
    return {
        tuple(c["group"].values()) if len(c["group"]) > 1 else next(iter(c["group"].values())): c[
            "value"
        ]
        for c in value
    }


async def _history(stack: Stack) -> dict[str, str]:
    """Searches allowed and refused, a warrant registered on record, leads reviewed and
    acted on, an authorisation. Returns the API keys."""
    admin = await stack.principal("admin-r", Role.ADMIN)
    auditor = await stack.principal("auditor-r", Role.AUDITOR)
    now = datetime.now(UTC)
    registered = api(
        stack,
        "POST",
        "/facegate/v1/warrants",
        admin,
        json={
            "id": "W-R",
            "kind": "warrant",
            "issuing_court": "Superior Court",
            "case_number": CASE,
            "operations": ["identify"],
            "collections": ["mugshots"],
            "valid_from": (now - timedelta(hours=1)).isoformat(),
            "valid_until": (now + timedelta(days=3)).isoformat(),
        },
    )
    assert registered.status_code == 201, registered.text

    client = stack.rekognition(await stack.session("officer-r", warrant_id="W-R"))
    probe = {"Bytes": samples.astronaut_variant_jpeg()}
    found: list[str] = []
    for max_faces in (3, 4, 5):  # each a distinct request: a resent signature is refused
        answer = client.search_faces_by_image(
            CollectionId="mugshots", Image=probe, MaxFaces=max_faces
        )
        header = answer["ResponseMetadata"]["HTTPHeaders"]["x-facegate-leads"]
        found += [lead_id for lead_id in header.split(",") if lead_id]
    for session in (
        await stack.session("officer-s", case_number=None, warrant_id=None, legal_basis=None),
        await stack.session("officer-t", warrant_id="W-404"),
    ):
        with pytest.raises(client.exceptions.AccessDeniedException):
            stack.rekognition(session).search_faces_by_image(CollectionId="mugshots", Image=probe)

    # Leads reviewed and acted on through the leads API (gateway/leads/), refusals included:
    # the reports must count only what was recorded as done.
    assert len(found) == 3
    officer = await api_key_of(stack, "officer-r")
    first, second = [await enrol(stack, f"examiner-{n}", Role.REVIEWER) for n in (1, 2)]
    for reviewer in (first, second):
        assert review_lead(stack, reviewer, found[0]).status_code == 200
    assert review_lead(stack, first, found[1], "rejected").status_code == 200
    for reviewer in (first, second):
        assert review_lead(stack, reviewer, found[2]).status_code == 200
    assert review_lead(stack, second, found[2]).status_code == 403  # final: refused
    for lead_id, kind in ((found[0], "arrest"), (found[0], "convicted"), (found[2], "arrest")):
        assert act_on_lead(stack, officer, lead_id, kind).status_code == 200
    assert act_on_lead(stack, officer, found[1], "arrest").status_code == 403  # rejected

    # An after-the-fact authorisation's life (issue 13's contract), written to the same log
    # with the gateway's own key, as the leads service does for an exigent search.
    when = datetime.now(UTC)
    contract = [authorisation("opened", when=when), authorisation("granted", when=when)]
    engine = create_engine(stack.settings.database_url)
    audit = log_of(session_factory(engine), stack.settings)
    try:
        for record in contract:
            await audit.append(record)
    finally:
        await audit.aclose()
        await engine.dispose()
    return {"admin": admin, "auditor": auditor, "period": str(when.year)}


def make(stack: Stack, key: str, template: str, period: str, audience: str) -> dict[str, Any]:
    response = api(
        stack,
        "POST",
        "/facegate/v1/reports",
        key,
        json={"template": template, "period": period, "audience": audience},
    )
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def test_every_template_against_counts_of_the_logged_records(
    unlimited_stack: Stack, tmp_path: Any
) -> None:
    stack = unlimited_stack
    keys = await _history(stack)
    auditor, period = keys["auditor"], keys["period"]

    decisions = [
        r for r in records(stack, auditor, "decision") if r["operation_kind"] == "identify"
    ]
    searches = [
        r
        for r in records(stack, auditor, "outcome")
        if r["operation_kind"] == "identify" and r["decision"] == "allow"
    ]
    refused = [r for r in decisions if r["decision"] == "deny"]
    leads = records(stack, auditor, "lead")
    reviews = [r for r in records(stack, auditor, "lead_review") if r["decision"] == "allow"]
    actions = [r for r in records(stack, auditor, "lead_action") if r["decision"] == "allow"]
    assert len(searches) == 3 and len(refused) == 2 and len(leads) == 3

    made = {}
    for template in (
        "massachusetts",
        "utah",
        "montana",
        "maryland",
        "washington",
        "eu-ai-act-26-10",
        "transparency",
    ):
        made[template] = figures(make(stack, auditor, template, period, "oversight"))

    ma = made["massachusetts"]
    assert ma["searches"] == len(searches)
    assert ma["matches_returned"] == sum(r["match_count"] for r in searches)
    assert ma["refused_requests"] == len(refused)
    assert [row["seq"] for row in ma["each_search"]] == [r["seq"] for r in searches]
    assert {row["case_number"] for row in ma["each_search"]} == {CASE}

    ut = made["utah"]
    assert groups(ut["requests_by_crime"]) == Counter(r["offense"] for r in decisions)
    assert groups(ut["matches_by_collection"]) == Counter(r["collection"] for r in leads)
    assert groups(ut["requests_by_match_count"]) == Counter(r["match_count"] for r in searches)

    mt = made["montana"]
    assert mt["arrests"] == len(
        {a["detail"]["lead_id"] for a in actions if a["detail"]["kind"] == "arrest"}
    )
    assert mt["arrests"] == 2 and mt["convictions"] == 1

    md = made["maryland"]
    assert groups(md["searches_by_system"]) == Counter(r["vendor"] for r in searches)
    assert groups(md["systems_and_databases"]) == Counter(
        (r["vendor"], r["collection"]) for r in searches
    )
    assert groups(md["unauthorised_uses"]) == Counter(
        code
        for r in refused
        if "warrant_unknown" in r["reason_codes"]
        for code in r["reason_codes"]
    )

    wa = made["washington"]
    assert groups(wa["warrants_registered"]) == {"warrant": 1}
    assert [row["detail.warrant.id"] for row in wa["warrant_periods"]] == ["W-R"]
    assert groups(wa["compliance"]) == Counter(r["decision"] for r in decisions)
    assert groups(wa["authorisations"]) == {"opened": 1, "granted": 1}

    eu = made["eu-ai-act-26-10"]
    assert eu["uses"] == len(searches)
    assert groups(eu["uses_by_legal_basis"]) == Counter(r["legal_basis"] for r in searches)

    tr = made["transparency"]
    assert groups(tr["searches_by_vendor"]) == Counter(r["vendor"] for r in searches)
    assert groups(tr["reviews_by_verdict"]) == Counter(r["detail"]["verdict"] for r in reviews)
    assert groups(tr["confirmed_rate_by_vendor"]) == {"rekognition": round(2 / 3, 4)}
    assert groups(tr["lead_actions_by_kind"]) == Counter(a["detail"]["kind"] for a in actions)
    assert groups(tr["refusals_by_reason"]) == Counter(
        code
        for r in records(stack, auditor, "decision")
        if r["decision"] == "deny"
        for code in r["reason_codes"]
    )

    # Public: the same counts, all below 5 here, so each is hidden; no case, no officer.
    public = make(stack, auditor, "massachusetts", period, "public")
    assert figures(public)["searches"] == "fewer than 5"
    assert CASE not in str(public) and "officer-r" not in str(public)

    # Each making is on the log, with the report's digest.
    made_records = [
        r for r in records(stack, auditor, "report") if r["detail"]["action"] == "report.make"
    ]
    assert len(made_records) == 8
    assert made_records[-1]["detail"]["template"] == "massachusetts"
    assert made_records[-1]["detail"]["audience"] == "public"

    # And the report recomputes from an export of this log.
    engine = create_engine(stack.settings.database_url)
    audit = log_of(session_factory(engine), stack.settings)
    try:
        await LogChecker(audit.sessions).export(tmp_path / "export")
    finally:
        await audit.aclose()
        await engine.dispose()
    verifier = Signer.load_or_create(
        stack.settings.log_key_file, stack.settings.log_origin
    ).verifier
    check = verify_report(
        report_text=json.dumps(public).encode(), export_dir=tmp_path / "export", verifier=verifier
    )
    assert check.ok, check.problems
    assert check.recorded_at_seq == made_records[-1]["seq"]


async def test_only_auditors_and_admins_get_reports_and_a_refusal_is_recorded(
    stack: Stack,
) -> None:
    auditor = await stack.principal("auditor-q", Role.AUDITOR)
    officer = await stack.principal("officer-q", Role.OFFICER)
    body = {"template": "transparency", "period": "2026", "audience": "public"}

    refused = api(stack, "POST", "/facegate/v1/reports", officer, json=body)
    listed = api(stack, "GET", "/facegate/v1/reports/templates", officer)

    assert refused.status_code == 403 and listed.status_code == 403
    denials = [r for r in records(stack, auditor, "report") if r["decision"] == "deny"]
    assert [(r["officer"], r["reason_codes"]) for r in denials] == [
        ("officer-q", ["not_an_auditor"]),
        ("officer-q", ["not_an_auditor"]),
    ]
    templates = api(stack, "GET", "/facegate/v1/reports/templates", auditor).json()
    assert {t["id"] for t in templates} >= {"massachusetts", "transparency", "misuse-signals"}


async def test_the_html_page_is_self_contained_with_charts(stack: Stack) -> None:
    auditor = await stack.principal("auditor-h", Role.AUDITOR)
    # Something to chart: the auditor's own reads are refused nothing, so chart the
    # transparency report's refusals after one refused search.
    client = stack.rekognition(
        await stack.session("officer-h", case_number=None, warrant_id=None, legal_basis=None)
    )
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": samples.astronaut_variant_jpeg()}
        )
    response = api(
        stack,
        "POST",
        "/facegate/v1/reports",
        auditor,
        json={
            "template": "transparency",
            "period": str(datetime.now(UTC).year),
            "audience": "oversight",
        },
        headers={"Accept": "text/html"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<svg" in page and "missing_case_number" in page
    # Nothing is fetched: no script, no stylesheet link, no image or font from elsewhere.
    # (An SVG's references within itself, href="#id" and url(#id), fetch nothing.)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert re.search(r"""(src|href)\s*=\s*["'](?!#)""", page) is None
    assert re.search(r"url\((?!#)", page) is None
